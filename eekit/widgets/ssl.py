"""Lesson 22's views of the self-supervised encoder: masked unit prediction and DAISY's label-free exits.

* :func:`masked_units_figure` - one clip: its k-means units, the masked frames and what the encoder predicts there;
* :func:`entropy_by_layer_figure` - mean unit entropy per layer, pretrained encoder vs. its random-weight twin;
* :class:`UnitExitExplorer` - noise dropdown + SNR slider -> where clips exit (both encoders, one threshold each)
  and the mean exit layer across SNRs, read from the shipped noisy profiles (no model run), with the mix to hear;
* :class:`ExitSignalExplorer` - what the exit signal tracks: a silence-padding slider and a noise-placement switch
  beside the exit histogram, for the kit's speech-frame score or DAISY's every-frame score (stored results);
* :func:`equal_cost_figure` - every task's adaptive exit against the static and the random exit of the same cost.
"""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch

from .. import data
from .. import validate
from ..ssl import HELD_OUT_CLIPS, NAME, RANDOM_NAME, held_out_clips, load_ssl_profile, thresholds
from ..ssl.adaptivity import PADDING_S, PLACEMENTS, SCORES, load
from ..ssl.daisy import NOISY_SNRS, UNIT_CRITERIA, noise_slice
from ..profile import ExitProfile
from .speech import audio_player, move_noise_controls, noise_controls
from .base import Dashboard
from .style import PALETTE, clear_figure, error_html, figure_widget, rename_trace, update_figure

__all__ = ["masked_units_figure", "entropy_by_layer_figure", "UnitExitExplorer", "ExitSignalExplorer",
           "equal_cost_figure"]


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
                         "unit entropy (0 sure, 1 uniform)", height=360, traces=[
        go.Scatter(x=layers, y=ssl, mode="lines+markers", name="pretrained (ssl-hubert)",
                   line={"color": PALETTE[0]}),
        go.Scatter(x=layers, y=random, mode="lines+markers", name="random-weight twin",
                   line={"color": PALETTE[5], "dash": "dash"}),
    ])


class UnitExitExplorer(Dashboard):
    """Noise dropdown + SNR slider -> the exit histogram of the pretrained encoder and of its random twin at their
    clean-calibrated ``ssl_entropy`` thresholds, and both mean exit layers against SNR.

    Everything is read from the shipped profiles (``ssl-hubert[-random][-noisy]``); only the mix to listen to is
    made on the fly (the same seeded mixing the profiles heard).
    """

    def __init__(self, clip: int = 0, criterion: str = "ssl_entropy"):
        self.clip = validate.whole("clip (index of a held-out clip)", clip, 0, HELD_OUT_CLIPS - 1)
        self.criterion = validate.one_of("criterion", criterion, UNIT_CRITERIA)
        self.thresholds = thresholds()  # the card's
        self.clean = {n: load_ssl_profile(n) for n in (NAME, RANDOM_NAME)}
        self.noisy = {n: load_ssl_profile(f"{n}-noisy") for n in (NAME, RANDOM_NAME)}
        self.names = (NAME, RANDOM_NAME)
        self.clips = held_out_clips()
        self.levels = sorted(NOISY_SNRS) + [None]  # SNR rises left to right, clean at the right
        self.error: str | None = None
        self.profiles: dict[str, ExitProfile] | None = None
        self._noises: dict[str, torch.Tensor] = {}
        self._mixes: dict[tuple, torch.Tensor] = {}
        self._curves: dict[tuple, list[float]] = {}

        self.noise_dropdown, self.snr_slider = noise_controls(self.levels)
        self.snr_slider.value = len(self.levels) - 1  # start clean
        self._noises = {n: data.load_noise(n) for n in data.NOISE_NAMES}  # once, so no slider move waits on a file
        self.player_box = W.Box()
        self._make_readout()
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
        if key not in self._mixes:  # the profiles' own seeded mixing (data.noisy_waves), replayed up to this clip
            names = data.NOISE_NAMES if noise == "all" else (noise,)
            noises = [self._noises[n] for n in names]
            gen = torch.Generator().manual_seed(0)
            for i in range(self.clip + 1):
                mixed = data.mix_noise(self.clips.waveforms[i], noises[i % len(noises)], snr_db, gen)
            self._mixes[key] = mixed
        return self._mixes[key]

    def _curve(self, name: str, noise: str) -> list[float]:
        """Mean exit layer at every SNR, ascending, then clean (cached: the profiles never change)."""
        key = (name, noise)
        if key not in self._curves:
            self._curves[key] = ([self.mean_exit_layer(name, noise, s) for s in sorted(NOISY_SNRS)]
                                 + [self.mean_exit_layer(name, noise, None)])
        return self._curves[key]

    def _on_change(self, change) -> None:
        self._update()

    def _update(self) -> None:
        noise, snr = self.noise_dropdown.value, self.snr_db
        try:
            profiles = {n: self.profile_at(n, noise, snr) for n in self.names}
            points = {n: p.at(self.criterion, self.thresholds[n]) for n, p in profiles.items()}
            xs = sorted(NOISY_SNRS)
            clean_x = max(xs) + 10
            curves = {n: self._curve(n, noise) for n in self.names}
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
        update_figure(self.histogram, {i: {"y": 100 * points[n].exit_fractions} for i, n in enumerate(self.names)})
        update_figure(self.curve, {**{i: {"x": xs + [clean_x], "y": curves[n]} for i, n in enumerate(self.names)},
                                   2: {"x": [clean_x if snr is None else snr],
                                       "y": [points[self.names[0]].mean_exit + 1]}},
                      {"xaxis.tickvals": xs + [clean_x], "xaxis.ticktext": [str(s) for s in xs] + ["clean"]})
        rename_trace(self.curve, 0, "pretrained" + ("" if noise == "all" else f" ({noise})"))
        self.readout.value = (html.escape(self.summary()) + f" · {self.criterion} <= "
                              f"{self.thresholds[self.names[0]]:g} (pretrained), "
                              f"{self.thresholds[self.names[1]]:g} (random twin)")


PLACEMENT_LABELS = {"none": "no noise", "speech_only": "0 dB noise on the speech only",
                    "silence_only": "0 dB noise in the silence only", "everywhere": "0 dB noise everywhere"}
SCORE_LABELS = {"speech": "speech frames (the kit)", "all_frames": "every frame (DAISY)"}


class ExitSignalExplorer(Dashboard):
    """What does the exit signal track? A silence-padding slider (0, 1, 2 s of each clip's own room tone) and a
    noise-placement switch (0 dB kit noise on the speech frames only, in the silence only, or everywhere) beside the
    exit histogram of the 320 held-out clips, for the kit's speech-frame score or DAISY's every-frame score, each
    at its own clean-calibrated threshold. Padding was measured on clean clips and placement on unpadded ones, so
    moving one control resets the other. Read from ``ssl-hubert-adaptivity.json`` (no model run)."""

    def __init__(self, score: str = "speech", result: dict | None = None):
        self.result = load() if result is None else validate.instance("result", result, dict,
                                                                       "the dict eekit.adaptivity.load() returns")
        if "clips" not in self.result:
            raise ValueError("result has no per-clip exits ('clips'); pass eekit.adaptivity.load() or None")
        self.padding = W.SelectionSlider(options=[(f"{s} s", s) for s in PADDING_S], value=0,
                                         description="room tone added", style={"description_width": "initial"})
        self.placement = W.ToggleButtons(options=[(PLACEMENT_LABELS[p], p) for p in ("none",) + PLACEMENTS],
                                         value="none", description="noise")
        self.score = W.ToggleButtons(options=[(SCORE_LABELS[s], s) for s in SCORES],
                                     value=validate.one_of("score", score, SCORES), description="exit score")
        self._make_readout()
        L = len(self.result["tasks"]["kws"]["by_layer"])
        x = [str(k + 1) for k in range(L)]
        self.histogram = figure_widget("Where the held-out clips exit", "exit layer", "clips (%)", height=360,
                                       width=620, traces=[
            go.Bar(x=x, y=[0] * L, marker={"color": "#bbbbbb"}, name="clean, unpadded"),
            go.Bar(x=x, y=[0] * L, marker={"color": PALETTE[0]}, name="this setting"),
        ])
        self.histogram.update_yaxes(range=[0, 100])
        self._busy = False
        self.padding.observe(self._on_padding, names="value")
        self.placement.observe(self._on_placement, names="value")
        self.score.observe(lambda _: self._update(), names="value")
        self._update()
        self.widget = W.VBox([self.score, self.placement, self.padding, self.readout, self.histogram])

    def set(self, placement: str | None = None, padding_s: float | None = None, score: str | None = None) -> dict:
        """Move the controls from Python; returns :meth:`numbers`."""
        if score is not None:
            self.score.value = validate.one_of("score", score, [v for _, v in self.score.options])
        if placement is not None:
            self.placement.value = validate.one_of("placement", placement, [v for _, v in self.placement.options])
        if padding_s is not None:
            self.padding.value = validate.one_of("padding_s (seconds)", padding_s,
                                                 [v for _, v in self.padding.options])
        return self.numbers()

    def condition(self) -> str:
        """The stored per-clip condition shown now."""
        if self.placement.value != "none":
            return self.placement.value
        return "clean" if self.padding.value == 0 else f"padded_{self.padding.value}s"

    def exits(self, condition: str | None = None) -> np.ndarray:
        """Exit layer (1-based) of every held-out clip under ``condition`` (default: the one shown)."""
        return np.asarray(self.result["clips"][condition or self.condition()][self.score.value])

    def numbers(self) -> dict:
        """Mean exit layer now and clean, and the mean per-clip move."""
        now, clean = self.exits(), self.exits("clean")
        return {"condition": self.condition(), "score": self.score.value, "mean_exit_layer": float(now.mean()),
                "clean_mean_exit_layer": float(clean.mean()), "mean_abs_shift": float(np.abs(now - clean).mean())}

    def summary(self) -> str:
        n = self.numbers()
        return (f"{SCORE_LABELS[n['score']]}, {n['condition']}: mean exit layer {n['mean_exit_layer']:.2f} "
                f"(clean {n['clean_mean_exit_layer']:.2f}); clips move {n['mean_abs_shift']:.2f} layers on average")


    def _on_padding(self, change) -> None:
        if not self._busy and change["new"] != 0 and self.placement.value != "none":
            self._busy = True
            self.placement.value = "none"
            self._busy = False
        self._update()

    def _on_placement(self, change) -> None:
        if not self._busy and change["new"] != "none" and self.padding.value != 0:
            self._busy = True
            self.padding.value = 0
            self._busy = False
        self._update()

    def _update(self) -> None:
        L = len(self.histogram.data[0].x)
        share = lambda e: 100 * np.bincount(e - 1, minlength=L) / len(e)  # noqa: E731
        update_figure(self.histogram, {0: {"y": share(self.exits("clean"))}, 1: {"y": share(self.exits())}})
        self.readout.value = html.escape(self.summary())


def equal_cost_figure(tasks: dict) -> go.FigureWidget:
    """Per task: how many points the adaptive exit (the kit's speech-frame score, and DAISY's every-frame score)
    and random exits of the same depth distribution are better than the static exit of the same mean depth (0)."""
    validate.instance("tasks", tasks, dict, "the 'tasks' block of eekit.adaptivity.load()")
    names = list(tasks)
    rel = lambda t, key: t[key] - t["at_static_same_cost"]  # noqa: E731
    sign = {n: -100 if tasks[n]["metric"] == "der" else 100 for n in names}
    x = [f"{n}<br>({tasks[n]['metric']})" for n in names]
    fig = figure_widget("Adaptive vs static vs random exits, same mean depth", "task (metric)",
                        "points better than static", height=420, width=900, traces=[
        go.Bar(x=x, y=[tasks[n]["gain_vs_static_points"] for n in names],
               name="adaptive: speech-frame score (the kit)", marker={"color": PALETTE[0]}),
        go.Bar(x=x, y=[tasks[n]["daisy_all_frames"]["gain_vs_static_points"] for n in names],
               name="adaptive: every-frame score (DAISY)", marker={"color": PALETTE[2]}),
        go.Bar(x=x, y=[round(sign[n] * rel(tasks[n], "at_random_same_cost"), 2) for n in names],
               name="random exits, same depths as the kit's", marker={"color": PALETTE[5]}),
    ])
    fig.update_xaxes(tickangle=0)
    fig.update_layout(legend={"orientation": "h", "y": -0.3})
    fig.add_hline(y=0, line_color="#444444", annotation_text="static exit, same mean depth",
                  annotation_position="bottom left")
    return fig
