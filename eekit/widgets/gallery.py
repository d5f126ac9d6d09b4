"""The exit gallery: which images leave at which exit, with the confidence they left with.

Easy images (clear, typical) leave at the first exits; hard ones (odd poses, clutter, look-alike classes) travel to
the end. The gallery reads an :class:`~eekit.profile.ExitProfile` plus the images it was computed on.
"""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..criteria import get_criterion
from ..profile import ExitProfile
from .base import Dashboard
from .style import error_html, snap_threshold, threshold_slider_settings, update_figure

__all__ = ["ExitGallery"]


class ExitGallery(Dashboard):
    """A grid of ``rows x cols`` test images that leave at the chosen exit under max-prob (or another
    criterion) at the chosen threshold, titled with true/predicted class and score. Wrong answers are marked."""

    def __init__(self, profile: ExitProfile, images: np.ndarray, classes, criterion: str = "max_prob",
                 threshold: float = 0.9, rows: int = 2, cols: int = 6, seed: int = 0):
        images = np.asarray(images)
        if images.ndim != 4 or len(images) != profile.num_samples:
            raise ValueError(f"images must be [N={profile.num_samples}, C, H, W] (the profile's samples, in order), "
                             f"got {images.shape}")
        c = get_criterion(criterion, profile.kind)
        self.profile, self.classes, self.criterion = profile, list(classes), c.name
        # HWC uint8 for plotly; grayscale becomes RGB
        hwc = images.transpose(0, 2, 3, 1)
        if hwc.dtype != np.uint8:
            hwc = (np.clip(hwc, 0, 1) * 255).astype(np.uint8)
        self.images = np.repeat(hwc, 3, axis=-1) if hwc.shape[-1] == 1 else hwc
        self.rows, self.cols, self.rng_seed = rows, cols, seed
        self.exit_dropdown = W.Dropdown(options=[(n, k) for k, n in enumerate(profile.exit_names)], value=0,
                                        description="exit")
        profile.exit_index(c, threshold)  # a threshold the criterion refuses fails here, with what is accepted
        settings = threshold_slider_settings(profile, c)  # whole steps for patience and fixed
        self.threshold_slider = W.FloatSlider(value=min(max(threshold, settings["min"]), settings["max"]),
                                              description=f"{c.name} threshold", style={"description_width": "initial"},
                                              layout=W.Layout(width="420px"), **settings)
        self._make_readout()
        n = rows * cols
        self.figure = go.FigureWidget(make_subplots(rows=rows, cols=cols, subplot_titles=[" "] * n,
                                                    horizontal_spacing=0.02, vertical_spacing=0.2))
        blank = np.zeros_like(self.images[0])
        for i in range(n):
            self.figure.add_trace(go.Image(z=blank, hoverinfo="skip"), row=i // cols + 1, col=i % cols + 1)
        self.figure.update_xaxes(visible=False)
        self.figure.update_yaxes(visible=False)
        self.figure.update_layout(height=190 * rows + 70, margin={"l": 10, "r": 10, "t": 80, "b": 10},
                                  title={"text": "Test images that leave at this exit", "x": 0.02},
                                  template="plotly_white")
        self.shown: np.ndarray = np.array([], dtype=int)
        self.exit_dropdown.observe(lambda _: self._update(), names="value")
        self.threshold_slider.observe(lambda _: self._update(), names="value")
        self._update()
        self.widget = W.VBox([W.HBox([self.exit_dropdown, self.threshold_slider]), self.readout, self.figure])

    def set(self, exit: int | None = None, threshold: float | None = None) -> np.ndarray:
        """Move the controls from Python; returns the indices of the images shown."""
        if exit is not None:
            self.exit_dropdown.value = exit
        if threshold is not None:
            self.threshold_slider.value = threshold
        return self.shown


    def _update(self) -> None:
        try:
            k, t = int(self.exit_dropdown.value), snap_threshold(self.criterion, self.threshold_slider.value)
            exits = self.profile.exit_index(self.criterion, t)
            pool = np.flatnonzero(exits == k)
            rng = np.random.default_rng(self.rng_seed)
            self.shown = np.sort(rng.choice(pool, size=min(len(pool), self.rows * self.cols), replace=False))
            scores = self.profile.scores_for(self.criterion)[:, k]
            preds = self.profile.predictions[:, k]
            labels = self.profile.labels
        except Exception as err:  # never leave the dashboard dead, nor showing the previous setting's images
            self.readout.value = error_html("Cannot show", err)
            self.shown = np.array([], dtype=int)
            self._draw(None, None, None)
            return
        wrong = int((preds[pool] != labels[pool]).sum()) if len(pool) else 0
        self.readout.value = (f"<b>{len(pool)}</b> of {self.profile.num_samples} test images leave at "
                              f"<b>{self.profile.exit_names[k]}</b> ({len(pool) / self.profile.num_samples:.1%}); "
                              f"{wrong} of them wrongly ({wrong / max(len(pool), 1):.1%}). "
                              f"Titles: true → predicted (score); ✗ marks a wrong answer.")
        self._draw(preds, labels, scores)

    def _draw(self, preds, labels, scores) -> None:
        """The shown images titled with truth, prediction and score; blank tiles past the last one."""
        titles, tiles = [], {}
        for i in range(len(self.figure.data)):
            if i < len(self.shown):
                n = self.shown[i]
                tiles[i] = {"z": self.images[n]}
                mark = "" if preds[n] == labels[n] else " ✗"
                # two short lines: one line overlapped its neighbours at six tiles a row
                titles.append(f"{self.classes[labels[n]]} →<br>{self.classes[preds[n]]}{mark} ({scores[n]:.2f})")
            else:
                tiles[i] = {"z": np.full_like(self.images[0], 255)}
                titles.append("")
        layout = {}
        for i, text in enumerate(titles[:len(self.figure.layout.annotations)]):
            layout[f"annotations[{i}].text"] = text
            layout[f"annotations[{i}].font.size"] = 10
        update_figure(self.figure, tiles, layout)
