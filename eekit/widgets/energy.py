"""The energy dashboard: pick a harvester, a capacitor, a policy and a threshold; watch a batteryless device run.

Every change reruns :func:`eekit.energy.simulate` (a fraction of a second for an hour of a repeated 1 kHz RF trace)
and redraws the capacitor voltage with the answers marked, the exit histogram, and where each policy lands on the
accuracy-vs-answers-per-hour plane. Drive it from Python with ``dashboard.set(...)``, as the tests do.
"""

from __future__ import annotations


import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from .. import data, energy, validate
from .base import Dashboard
from .style import PALETTE, clear_figure, error_html, figure_widget, update_figure

__all__ = ["EnergyDashboard", "HARVESTERS"]

# label -> (trace factory, simulated seconds); a trace shorter than the simulated time repeats
HARVESTERS = {
    "RF: walking near a reader (Mementos trace 1, 25 s, repeated), 1 h": (lambda: data.load_trace("rf-1"), 3600.0),
    "RF: a weaker walk (Mementos trace 10, 40 s, repeated), 1 h": (lambda: data.load_trace("rf-10"), 3600.0),
    "solar: June night and sunrise (NREL, 5 cm² at 15%), 00:00-08:00": (lambda: data.load_trace("solar-2023jun"), 8 * 3600.0),
    "solar: January night and sunrise, 00:00-08:00": (lambda: data.load_trace("solar-2023jan"), 8 * 3600.0),
    "synthetic: constant 0.5 mW, 1 h": (lambda: energy.synthetic_trace("constant", 60, power_w=0.5e-3), 3600.0),
    "synthetic: 2 mW on/off, 60 s period, 1 h": (
        lambda: energy.synthetic_trace("square", 600, power_w=2e-3, period_s=60), 3600.0),
    "synthetic: random on/off 2 mW, 1 h": (
        lambda: energy.synthetic_trace("telegraph", 3600, power_w=2e-3, period_s=60), 3600.0),
}

POLICY_LABELS = {
    "full": "full model, checkpointed",
    "threshold": "multi-exit, confidence threshold",
    "energy_aware": "energy-aware exit choice",
    "anytime": "anytime, shared head (FreeML)",
}


class EnergyDashboard(Dashboard):
    """Harvester, capacitor (mF), policy and threshold controls -> voltage timeline, exit histogram, policy map.

    ``workload`` serves the per-layer-head policies and ``shared_workload`` the ``anytime`` policy (defaults: the
    shipped ``cnn-mnist`` and ``cnn-mnist-shared`` models).
    """

    def __init__(self, workload: energy.Workload | None = None, shared_workload: energy.Workload | None = None,
                 harvester: str | None = None, capacitance_mf: float = 5.0, policy: str = "threshold",
                 threshold: float = 0.9, mcu: energy.MCU | None = None):
        if harvester is not None:
            validate.one_of("harvester", harvester, HARVESTERS)
        validate.one_of("policy", policy, energy.POLICIES)
        self.workload = workload or energy.load_workload("cnn-mnist")
        self.shared_workload = shared_workload or energy.load_workload("cnn-mnist-shared")
        self.mcu = mcu or energy.MCU()
        self._traces: dict[str, data.PowerTrace] = {}
        self._compare_cache: dict[tuple, dict[str, energy.SimResult]] = {}
        self.result: energy.SimResult | None = None
        self.error: str | None = None
        self._paused = False
        K = self.workload.num_exits

        style = {"description_width": "initial"}
        self.harvester_dropdown = W.Dropdown(options=list(HARVESTERS), value=harvester or next(iter(HARVESTERS)),
                                             description="harvester", style=style, layout=W.Layout(width="580px"))
        self.capacitor_slider = W.FloatLogSlider(value=capacitance_mf, base=10, min=0, max=2, step=0.05,
                                                 description="capacitor (mF)", style=style, readout_format=".3g",
                                                 continuous_update=False)
        self.policy_dropdown = W.Dropdown(options=[(v, k) for k, v in POLICY_LABELS.items()], value=policy,
                                          description="policy", style=style)
        self.threshold_slider = W.FloatSlider(value=threshold, min=0.1, max=1.0, step=0.01, readout_format=".2f",
                                              description="max-prob threshold", style=style, continuous_update=False)
        self._make_readout()

        # one name per exit in every plot and the readout: its number and its layer
        exits = [f"exit {k + 1} ({name.replace(' (final)', ', final')})"
                 for k, name in enumerate(self.workload.profile.exit_names)]
        self.timeline = figure_widget("Capacitor voltage and answers", "time (s)", "voltage (V)", height=340,
                                      width=980, traces=[
            go.Scattergl(x=[], y=[], mode="lines", name="capacitor voltage", line={"color": PALETTE[0], "width": 1}),
            *[go.Scattergl(x=[], y=[], mode="markers", name=f"answer at {name}",
                           marker={"color": PALETTE[1 + k], "size": 6, "symbol": "triangle-down"})
              for k, name in enumerate(exits)],
        ])
        self.histogram = figure_widget("Where inferences exit", "exit", "answers (%)", height=320, width=380, traces=[
            go.Bar(x=exits, y=[0] * K, marker={"color": PALETTE[2]}, name="exits"),
        ])
        self.histogram.update_yaxes(range=[0, 100])
        self.policies = figure_widget("Policies on this harvester and capacitor", "answers per hour",
                                      "accuracy of the answers (%)", height=320, width=580, traces=[
            go.Scatter(x=[], y=[], mode="markers+text", text=[], textposition="top center", name="each policy",
                       marker={"color": PALETTE[0], "size": 10}),
            go.Scatter(x=[], y=[], mode="markers", name="current policy",
                       marker={"color": PALETTE[5], "size": 16, "symbol": "diamond"}),
        ])

        for control in (self.harvester_dropdown, self.capacitor_slider, self.policy_dropdown, self.threshold_slider):
            control.observe(self._on_change, names="value")
        self._update()
        self.widget = W.VBox([
            W.HBox([self.harvester_dropdown, self.capacitor_slider]),
            W.HBox([self.policy_dropdown, self.threshold_slider]),
            self.readout,
            self.timeline,
            W.HBox([self.histogram, self.policies]),
        ])

    # --------------------------------------------------------------------------------------------- public
    def set(self, harvester: str | None = None, capacitance_mf: float | None = None, policy: str | None = None,
            threshold: float | None = None) -> energy.SimResult | None:
        """Move the controls from Python, as a user would; returns the new simulation result (None on error).
        A value no control can take is refused with the accepted ones (a slider would silently clamp it)."""
        if harvester is not None:
            validate.one_of("harvester", harvester, HARVESTERS)
        if policy is not None:
            validate.one_of("policy", policy, energy.POLICIES)
        c, t = self.capacitor_slider, self.threshold_slider
        if capacitance_mf is not None:
            validate.number("capacitance_mf (the capacitor slider)", capacitance_mf, 10**c.min, 10**c.max)
        if threshold is not None:
            validate.number("threshold (the threshold slider)", threshold, t.min, t.max)
        self._paused = True  # one rerun for all the changes, not one per control
        try:
            if harvester is not None:
                self.harvester_dropdown.value = harvester
            if capacitance_mf is not None:
                self.capacitor_slider.value = capacitance_mf
            if policy is not None:
                self.policy_dropdown.value = policy
            if threshold is not None:
                self.threshold_slider.value = threshold
        finally:
            self._paused = False
        self._update()
        return self.result

    def summary(self) -> str:
        return self.result.summary() if self.result is not None else f"error: {self.error}"


    # ------------------------------------------------------------------------------------------ internals
    def _trace(self, label: str) -> data.PowerTrace:
        if label not in self._traces:
            self._traces[label] = HARVESTERS[label][0]()
        return self._traces[label]

    def _run(self, policy: str) -> energy.SimResult:
        label = self.harvester_dropdown.value
        cap = self._capacitor()
        workload = self.shared_workload if policy == "anytime" else self.workload
        return energy.simulate(self._trace(label), workload, policy, capacitor=cap, mcu=self.mcu,
                               threshold=self.threshold_slider.value, duration_s=HARVESTERS[label][1])

    def _capacitor(self) -> energy.Capacitor:
        return energy.Capacitor(capacitance_f=self.capacitor_slider.value * 1e-3)

    def _compare(self) -> dict[str, energy.SimResult | str]:
        key = (self.harvester_dropdown.value, self.capacitor_slider.value, self.threshold_slider.value)
        if key not in self._compare_cache:
            results = {}
            for policy in energy.POLICIES:
                try:
                    results[policy] = self._run(policy)
                except ValueError as err:
                    results[policy] = str(err)
            self._compare_cache = {key: results}  # keep one: memory stays flat however long it is played with
        return self._compare_cache[key]

    def _on_change(self, change) -> None:
        if not self._paused:
            self._update()

    def _update(self) -> None:
        self.threshold_slider.disabled = self.policy_dropdown.value != "threshold"
        results: dict = {}
        try:
            results = self._compare()
            result = results[self.policy_dropdown.value]
            if isinstance(result, str):
                raise ValueError(result)
        except Exception as err:  # shown in the readout; a dashboard must never die on a control change
            self.error = f"{type(err).__name__}: {err}" if not isinstance(err, ValueError) else str(err)
            self.result = None
            self.readout.value = error_html("Cannot run", self.error)
            clear_figure(self.timeline)  # never the previous setting's run under the error
            clear_figure(self.histogram)
            self._draw_policies(None, results)  # the policies that did run on this setting
            return
        self.error = None
        self.result = result
        self._draw(result, results)

    def _draw(self, result: energy.SimResult, results: dict) -> None:
        stride = max(1, len(result.timeline_s) // 4000)  # enough points for the eye, few enough for the browser
        t, v = result.timeline_s[::stride], result.timeline_v[::stride]
        cap = self._capacitor()  # the axis spans brown-out to full charge with a margin; answers ride just above
        margin = (cap.v_max - cap.v_off) / 4
        lines = {0: {"x": t, "y": v}}
        for k in range(self.workload.num_exits):
            when = result.answer_s[result.exit_index == k][:2000]
            lines[1 + k] = {"x": when, "y": np.full(len(when), cap.v_max + 0.4 * margin)}
        update_figure(self.timeline, lines, {"yaxis.range": [cap.v_off - margin, cap.v_max + margin]})
        counts = result.exit_counts
        update_figure(self.histogram, {0: {"y": 100 * counts / max(counts.sum(), 1)}})
        self._draw_policies(result, results)
        lat = result.latency_s
        w = self.shared_workload if result.policy == "anytime" else self.workload
        self.readout.value = (
            f"<b>{result.inferences}</b> answers ({result.inferences_per_hour:.1f} per hour) · "
            f"<b>accuracy</b> {f'{100 * result.accuracy:.2f}%' if result.inferences else 'n/a (no answers)'} · "
            f"<b>latency</b> median {np.median(lat) if len(lat) else float('nan'):.2f} s, "
            f"95th percentile {np.percentile(lat, 95) if len(lat) else float('nan'):.2f} s · "
            f"<b>power failures</b> {result.power_failures} · "
            f"<b>energy</b> harvested {1e3 * result.energy['harvested']:.1f} mJ, used {1e3 * result.consumed_j:.1f} mJ, "
            f"wasted {1e3 * result.wasted_j:.1f} mJ · <b>exit-head memory</b> {w.head_bytes():,} bytes"
        )

    def _draw_policies(self, result: energy.SimResult | None, results: dict) -> None:
        """Every policy that ran on this setting, and the current one (none when it failed)."""
        ok = {p: r for p, r in results.items() if not isinstance(r, str)}
        update_figure(self.policies, {
            0: {"x": [r.inferences_per_hour for r in ok.values()], "y": [100 * r.accuracy for r in ok.values()],
                "text": [p for p in ok]},
            1: {"x": [result.inferences_per_hour] if result is not None else [],
                "y": [100 * result.accuracy] if result is not None else []}})
