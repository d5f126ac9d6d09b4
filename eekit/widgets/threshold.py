"""The threshold explorer: slide an exit criterion's threshold and watch accuracy, cost and exits move.

It only reads an :class:`~eekit.profile.ExitProfile`, so every move is a vectorized lookup, never a model run.
Drive it from Python (``explorer.set(threshold=0.8)``, ``explorer.point``) exactly as the sliders do; that is
how its callbacks are tested.
"""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from ..criteria import get_criterion
from ..profile import ExitProfile, OperatingPoint, Sweep
from .base import Dashboard
from .style import (PALETTE, clear_figure, figure_widget, rename_trace, snap_threshold,
                    threshold_slider_settings, update_figure)

__all__ = ["ThresholdExplorer"]


class ThresholdExplorer(Dashboard):
    """Criterion dropdown + threshold slider -> accuracy-vs-cost curve with the current point, exit histogram
    and a readout (accuracy, mean MFLOPs, savings).

    ``criteria`` limits the dropdown (default: every criterion the profile supports, the oracle included and
    labelled as an upper bound).
    """

    def __init__(self, profile: ExitProfile, criterion: str = "max_prob", threshold: float | None = None,
                 criteria: list[str] | None = None, title: str | None = None):
        self.profile = profile
        names = criteria or profile.criteria()
        for name in names:
            get_criterion(name, profile.kind)
        if criterion not in names:
            raise ValueError(f"criterion {criterion!r} is not among this explorer's criteria {names}")
        self._sweeps: dict[str, Sweep] = {}
        self.error: str | None = None
        unit = profile.cost_unit

        self.criterion_dropdown = W.Dropdown(options=[(self._label(n), n) for n in names], value=criterion,
                                             description="criterion", style={"description_width": "initial"})
        self.threshold_slider = W.FloatSlider(description="threshold", continuous_update=True, readout_format=".3f",
                                              style={"description_width": "initial"},
                                              layout=W.Layout(width="420px"))
        self._make_readout()
        full = profile.full_cost
        self.curve = figure_widget(title or "Accuracy vs. compute, all thresholds",
                                   f"mean cost per sample ({unit})", "accuracy (%)", width=580, traces=[
            go.Scatter(x=[], y=[], mode="lines", name="this criterion", line={"color": PALETTE[0]}),
            go.Scatter(x=list(profile.cost), y=list(100 * profile.exit_accuracy), mode="markers+text",
                       name="single exit (static)", marker={"color": PALETTE[1], "size": 8},
                       text=list(profile.exit_names), textposition="top center"),
            go.Scatter(x=[full], y=[100 * profile.final_accuracy], mode="markers", name="full model",
                       marker={"color": PALETTE[7], "symbol": "x", "size": 10}),
            go.Scatter(x=[full], y=[100 * profile.final_accuracy], mode="markers", name="current threshold",
                       marker={"color": PALETTE[5], "size": 14, "symbol": "diamond"}),
        ])
        self.histogram = figure_widget("Where samples exit", "exit", "samples (%)", height=330, width=380, traces=[
            go.Bar(x=list(profile.exit_names), y=[0] * profile.num_exits, marker={"color": PALETTE[2]}, name="exits"),
        ])
        self.histogram.update_yaxes(range=[0, 100])

        self.point: OperatingPoint | None = None
        self._configure_slider(criterion, threshold)
        self.criterion_dropdown.observe(self._on_criterion, names="value")
        self.threshold_slider.observe(self._on_threshold, names="value")
        self._update()

        self.widget = W.VBox([
            W.HBox([self.criterion_dropdown, self.threshold_slider]),
            self.readout,
            W.HBox([self.curve, self.histogram]),
        ])

    # --------------------------------------------------------------------------------------------- public
    @property
    def criterion(self) -> str:
        return self.criterion_dropdown.value

    @property
    def threshold(self) -> float:
        """The slider's value; snapped to a whole number for patience and fixed-exit criteria."""
        return snap_threshold(self.criterion, self.threshold_slider.value)

    def set(self, criterion: str | None = None, threshold: float | None = None) -> OperatingPoint | None:
        """Move the controls from Python, as a user would; returns the new operating point."""
        if criterion is not None:
            self.criterion_dropdown.value = criterion
        if threshold is not None:
            self.threshold_slider.value = threshold
        return self.point

    def summary(self) -> str:
        """One line with the current numbers (printed under the dashboard so static renders show them too)."""
        if self.point is None:
            return f"error: {self.error}"
        return self.point.summary(self.profile.cost_unit)


    # ------------------------------------------------------------------------------------------ internals
    def _label(self, name: str) -> str:
        return "oracle (upper bound)" if get_criterion(name).needs_labels else name

    def _configure_slider(self, criterion: str, threshold: float | None = None) -> None:
        c = get_criterion(criterion)
        settings = threshold_slider_settings(self.profile, c)
        low, high = settings["min"], settings["max"]
        value = c.default if threshold is None else threshold
        slider = self.threshold_slider
        with slider.hold_trait_notifications():
            slider.min, slider.max = -1e9, 1e9  # widen first so min <= max holds while changing both
            slider.min, slider.max = low, high
            slider.step, slider.readout_format = settings["step"], settings["readout_format"]
            slider.value = min(max(value, low), high)
            slider.disabled = c.needs_labels

    def _sweep(self, criterion: str) -> Sweep:
        if criterion not in self._sweeps:
            self._sweeps[criterion] = self.profile.sweep(criterion)
        return self._sweeps[criterion]

    def _clear(self) -> None:
        self.point = None
        clear_figure(self.curve, [0, 3])  # no stale curve or point under the error (static exits stay)
        clear_figure(self.histogram)

    def _on_criterion(self, change) -> None:
        try:
            self._configure_slider(change["new"])
        except Exception as err:  # a dashboard must never die on a control change
            self.error = f"{type(err).__name__}: {err}"
        self._update()

    def _on_threshold(self, change) -> None:
        self._update()

    def _update(self) -> None:
        found = self._guarded("Cannot evaluate", lambda: (self.profile.at(self.criterion, self.threshold),
                                                          self._sweep(self.criterion)), self._clear)
        if found is None:
            return
        point, sweep = found
        self.point = point
        order = np.argsort(sweep.mean_cost)
        fractions = 100 * point.exit_fractions
        update_figure(self.curve, {0: {"x": sweep.mean_cost[order], "y": 100 * sweep.accuracy[order]},
                                   3: {"x": [point.mean_cost], "y": [100 * point.accuracy]}})
        rename_trace(self.curve, 0, self._label(self.criterion))
        update_figure(self.histogram, {0: {"y": fractions}})
        unit = self.profile.cost_unit
        bound = " <i>(oracle: an upper bound that peeks at labels)</i>" if get_criterion(self.criterion).needs_labels else ""
        self.readout.value = (
            f"<b>accuracy</b> {100 * point.accuracy:.2f}% (full model {100 * self.profile.final_accuracy:.2f}%) · "
            f"<b>mean cost</b> {point.mean_cost:.3g} {unit} of {self.profile.full_cost:.3g} · "
            f"<b>saved</b> {round(100 * point.savings, 1) + 0.0:.1f}% · <b>mean exit</b> {point.mean_exit + 1:.2f}{bound}"
        )
