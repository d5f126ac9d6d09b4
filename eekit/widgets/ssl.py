"""Lesson 22's views of the self-supervised encoder: masked unit prediction and DAISY's label-free exits.

* :func:`masked_units_figure` - one clip: its k-means units, the masked frames and what the encoder predicts there;
* :func:`entropy_by_layer_figure` - mean unit entropy per layer, pretrained encoder vs. its random-weight twin;
* :class:`UnitExitExplorer` - noise dropdown + SNR slider -> where clips exit (both encoders, one threshold each)
  and the mean exit layer across SNRs, read from the shipped noisy profiles (no model run), with the mix to hear.
"""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch

from .. import data
from ..daisy import NOISY_SNRS, noise_slice
from ..profile import ExitProfile
from .speech import audio_player, move_noise_controls, noise_controls
from .style import PALETTE, clear_figure, error_html, figure_widget, rename_trace

__all__ = ["masked_units_figure", "entropy_by_layer_figure", "UnitExitExplorer"]


def masked_units_figure(targets: np.ndarray, predicted: np.ndarray, mask: np.ndarray, frame_ms: float = 40.0
                        ) -> go.FigureWidget:
    """Unit index per 40 ms frame: the k-means target (grey; a gap where the frame is not speech and has no unit),
    the encoder's prediction at masked speech frames (green when right, orange when wrong), masked spans shaded."""
    t = np.arange(len(targets)) * frame_ms / 1000
    scored = mask & (targets >= 0)  # only speech frames have a unit to predict
    right = scored & (predicted == targets)
    wrong = scored & (predicted != targets)
    title = f"Masked unit prediction: {int(right.sum())} of {int(scored.sum())} masked speech frames right"
    fig = figure_widget(title, "time (s)", "unit (k-means cluster index)", height=340, traces=[
        go.Scatter(x=t, y=np.where(targets >= 0, targets, np.nan), mode="lines+markers",
                   name="target unit (k-means)", line={"color": "#999999", "shape": "hv"}),
        go.Scatter(x=t[right], y=predicted[right], mode="markers", name="predicted, right",
                   marker={"color": PALETTE[2], "size": 11, "symbol": "circle"}),
        go.Scatter(x=t[wrong], y=predicted[wrong], mode="markers", name="predicted, wrong",
                   marker={"color": PALETTE[1], "size": 11, "symbol": "x"}),
    ])
    for start, stop in _spans(mask):
        fig.add_vrect(x0=t[start] - frame_ms / 2000, x1=t[stop - 1] + frame_ms / 2000, fillcolor=PALETTE[4],
                      opacity=0.15, line_width=0)
    return fig


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def entropy_by_layer_figure(ssl: list[float], random: list[float]) -> go.FigureWidget:
    """Mean normalized unit entropy per layer on clean held-out clips, both encoders."""
    layers = [str(k + 1) for k in range(len(ssl))]
    return figure_widget("Unit entropy by layer (clean speech, unseen speakers)", "encoder layer",
                         "mean normalized entropy (0 = sure, 1 = uniform)", height=330, traces=[
        go.Scatter(x=layers, y=ssl, mode="lines+markers", name="pretrained (ssl-hubert)",
                   line={"color": PALETTE[0]}),
        go.Scatter(x=layers, y=random, mode="lines+markers", name="random-weight twin",
                   line={"color": PALETTE[5], "dash": "dash"}),
    ])


class UnitExitExplorer:
    """Noise dropdown + SNR slider -> the exit histogram of the pretrained encoder and of its random twin at their
    clean-calibrated ``ssl_entropy`` thresholds, and both mean exit layers against SNR.

    Everything is read from the shipped profiles (``ssl-hubert[-random][-noisy]``); only the mix to listen to is
    made on the fly (the same seeded mixing the profiles heard).
    """

    def __init__(self, clip: int = 0, criterion: str = "ssl_entropy"):
        from ..daisy import report
        from ..ssl import NAME, RANDOM_NAME, held_out_clips, load_ssl_profile

        numbers = report()
        self.criterion = criterion
        self.thresholds = {NAME: numbers["threshold"], RANDOM_NAME: numbers["threshold_random"]}
        self.clean = {n: load_ssl_profile(n) for n in (NAME, RANDOM_NAME)}
        self.noisy = {n: load_ssl_profile(f"{n}-noisy") for n in (NAME, RANDOM_NAME)}
        self.names = (NAME, RANDOM_NAME)
        self.clips = held_out_clips()
        self.clip = clip
        self.levels = [None] + list(NOISY_SNRS)
        self.error: str | None = None
        self.profiles: dict[str, ExitProfile] | None = None
        self._mixes: dict[tuple, list[torch.Tensor]] = {}

        self.noise_dropdown, self.snr_slider = noise_controls(self.levels)
        self.player_box = W.Box()
        self.readout = W.HTML()
        self.readout.add_class("eekit-readout")
        K = self.clean[NAME].num_exits
        x = [str(k + 1) for k in range(K)]
        self.histogram = figure_widget("Where clips exit", "exit layer", "clips (%)", height=330, width=460, traces=[
            go.Bar(x=x, y=[0] * K, marker={"color": PALETTE[0]}, name="pretrained"),
            go.Bar(x=x, y=[0] * K, marker={"color": PALETTE[5]}, name="random twin"),
        ])
        self.histogram.update_yaxes(range=[0, 100])
        self.curve = figure_widget("Mean exit layer vs. noise", "SNR (dB; clean at the right)", "mean exit layer",
                                   height=330, width=500, traces=[
            go.Scatter(x=[], y=[], mode="lines+markers", name="pretrained", line={"color": PALETTE[0]}),
            go.Scatter(x=[], y=[], mode="lines+markers", name="random twin",
                       line={"color": PALETTE[5], "dash": "dash"}),
            go.Scatter(x=[], y=[], mode="markers", name="current setting",
                       marker={"color": PALETTE[7], "size": 13, "symbol": "diamond"}),
        ])
        self.curve.update_yaxes(range=[0.8, K + 0.2])
        self.noise_dropdown.observe(self._on_change, names="value")
        self.snr_slider.observe(self._on_change, names="value")
        self._update()
        self.widget = W.VBox([W.HBox([self.noise_dropdown, self.snr_slider]), self.player_box, self.readout,
                              W.HBox([self.histogram, self.curve])])

    # --------------------------------------------------------------------------------------------- public
    def set(self, noise: str | None = None, snr_db="keep") -> dict[str, ExitProfile] | None:
        """Move the controls from Python (``snr_db=None`` is clean); returns the profiles now shown."""
        move_noise_controls(self.noise_dropdown, self.snr_slider, self.levels, noise, snr_db)
        return self.profiles

    def profile_at(self, name: str, noise: str, snr_db) -> ExitProfile:
        """The shipped profile of encoder ``name`` for one setting (clean: the clean held-out profile)."""
        return self.clean[name] if snr_db is None else noise_slice(self.noisy[name], noise, snr_db)

    def mean_exit_layer(self, name: str, noise: str, snr_db) -> float:
        profile = self.profile_at(name, noise, snr_db)
        return float(profile.exit_index(self.criterion, self.thresholds[name]).mean()) + 1

    def summary(self) -> str:
        if self.profiles is None:
            return f"error: {self.error}"
        parts = [f"{'pretrained' if i == 0 else 'random twin'}: mean exit layer "
                 f"{self.mean_exit_layer(n, self.noise_dropdown.value, self.snr_db):.2f}"
                 for i, n in enumerate(self.names)]
        return f"{self._setting()}: " + ", ".join(parts)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------------------------------ internals
    @property
    def snr_db(self):
        return self.levels[self.snr_slider.value]

    def _setting(self) -> str:
        return "clean" if self.snr_db is None else f"{self.noise_dropdown.value} noise at {self.snr_db} dB"

    def _mix(self, noise: str, snr_db) -> torch.Tensor:
        if snr_db is None:
            return self.clips.waveforms[self.clip]
        key = (noise, snr_db)
        if key not in self._mixes:  # the profiles' own mixing: the whole set, seeded, so clip i hears the same noise
            names = data.NOISE_NAMES if noise == "all" else noise
            self._mixes[key] = self.clips.with_noise(snr_db, names).waveforms
        return self._mixes[key][self.clip]

    def _on_change(self, change) -> None:
        self._update()

    def _update(self) -> None:
        noise, snr = self.noise_dropdown.value, self.snr_db
        try:
            profiles = {n: self.profile_at(n, noise, snr) for n in self.names}
            points = {n: p.at(self.criterion, self.thresholds[n]) for n, p in profiles.items()}
            xs = sorted(NOISY_SNRS)
            clean_x = max(xs) + 10
            curves = {n: [self.mean_exit_layer(n, noise, s) for s in xs] + [self.mean_exit_layer(n, noise, None)]
                      for n in self.names}
        except Exception as err:  # shown in the readout; a dashboard must never die on a control change
            self.error = f"{type(err).__name__}: {err}"
            self.profiles = None
            self.readout.value = error_html("Cannot evaluate", self.error)
            self.player_box.children = []
            clear_figure(self.histogram)
            clear_figure(self.curve)
            return
        self.error = None
        self.profiles = profiles
        word, speaker = self.clips.words[self.clip], self.clips.speakers[self.clip]
        self.player_box.children = [W.HTML(f"clip {self.clip}: <b>{html.escape(word)}</b> (speaker {speaker}), "
                                           f"{html.escape(self._setting())} &nbsp;"), audio_player(self._mix(noise, snr))]
        with self.histogram.batch_update():
            for i, n in enumerate(self.names):
                self.histogram.data[i].y = 100 * points[n].exit_fractions
        with self.curve.batch_update():
            for i, n in enumerate(self.names):
                self.curve.data[i].x = xs + [clean_x]
                self.curve.data[i].y = curves[n]
            self.curve.data[2].x = [clean_x if snr is None else snr]
            self.curve.data[2].y = [points[self.names[0]].mean_exit + 1]
            self.curve.layout.xaxis.tickvals = xs + [clean_x]
            self.curve.layout.xaxis.ticktext = [str(s) for s in xs] + ["clean"]
        rename_trace(self.curve, 0, "pretrained" + ("" if noise == "all" else f" ({noise})"))
        self.readout.value = (html.escape(self.summary()) + f" · {self.criterion} <= "
                              f"{self.thresholds[self.names[0]]:g} (pretrained), "
                              f"{self.thresholds[self.names[1]]:g} (random twin)")
