"""Speech dashboards: what each conformer layer hears, and DAISY's noise-adaptive exits.

* :func:`ctc_layers_figure` - one utterance's greedy CTC labels frame by frame at every layer (a static figure);
* :func:`audio_player` - an ``ipywidgets.Audio`` player for a waveform (wav bytes written with soundfile);
* :class:`NoiseExplorer` - noise type and SNR controls -> the mix to listen to, the exit histogram at a fixed
  threshold, and the mean exit layer across SNRs.
"""

from __future__ import annotations

import html
import io

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from tqdm.auto import tqdm

from .. import data, validate
from ..models.speech import BLANK
from ..profile import ExitProfile
from .base import Dashboard
from .style import PALETTE, clear_figure, error_html, figure_widget, rename_trace, update_figure
from ..zoo import get_recipe, load_profile, operating_point, RECIPES
from ..zoo.noise import noisy_run

__all__ = ["ctc_layers_figure", "audio_player", "noise_controls", "NoiseExplorer"]


def audio_player(wave: torch.Tensor, sample_rate: int = data.FSDD_SAMPLE_RATE) -> W.Audio:
    """A player widget for a mono waveform (peak-normalized so quiet and noisy mixes play at the same level)."""
    import soundfile

    if not isinstance(wave, torch.Tensor) or wave.ndim != 1 or len(wave) == 0:
        raise ValueError(f"wave must be a non-empty 1-D tensor of mono samples, got "
                         f"{tuple(wave.shape) if isinstance(wave, torch.Tensor) else type(wave).__name__}")
    validate.finite("wave", wave)
    x = wave.detach().float().numpy()
    x = x / max(float(np.abs(x).max()), 1e-9) * 0.9
    buffer = io.BytesIO()
    soundfile.write(buffer, x, sample_rate, format="WAV", subtype="PCM_16")
    return W.Audio(value=buffer.getvalue(), format="wav", autoplay=False, loop=False)


def noise_controls(levels: list) -> tuple[W.Dropdown, W.SelectionSlider]:
    """The noise dashboards' controls: a dropdown of every shipped noise (or "all six, in turn": value ``"all"``)
    and an SNR slider whose value ``i`` means ``levels[i]`` dB (``None``: clean). Whatever the order of ``levels``,
    the slider runs as the plots' x axes do: SNR rising left to right, noisiest at the left, clean at the right;
    it starts at clean (or the highest SNR)."""
    style = {"description_width": "initial"}
    dropdown = W.Dropdown(options=[("all six, in turn", "all")] + [(n, n) for n in data.NOISE_NAMES],
                          value="all", description="noise", style=style)
    order = sorted(range(len(levels)), key=lambda i: (levels[i] is None, levels[i] or 0))
    slider = W.SelectionSlider(options=[("clean" if levels[i] is None else f"{levels[i]} dB", i) for i in order],
                               value=order[-1], description="SNR (dB)", style=style, continuous_update=False)
    return dropdown, slider


def move_noise_controls(dropdown: W.Dropdown, slider: W.SelectionSlider, levels: list, noise: str | None,
                        snr_db="keep") -> None:
    """Set :func:`noise_controls` from Python, refusing a noise or SNR the controls cannot show
    (``snr_db=None`` is clean, ``"keep"`` leaves the slider alone)."""
    if noise is not None:
        choices = [value for _, value in dropdown.options]
        if noise not in choices:
            raise ValueError(f"noise must be one of {choices}, got {noise!r}")
        dropdown.value = noise
    if snr_db != "keep":
        if snr_db not in levels:
            raise ValueError(f"SNR {snr_db!r} is not on the slider; choose from {levels} (None = clean)")
        slider.value = levels.index(snr_db)


def ctc_layers_figure(log_probs: list[torch.Tensor], frames: int, exit_names: list[str], reference: str,
                      frame_ms: float = 40.0) -> go.FigureWidget:
    """Heat map of one utterance: for every layer (rows) and frame (columns), the most likely CTC label and its
    probability (colour). Blank frames are pale; digits are written in the cells."""
    best = torch.stack([lp[:frames].max(-1).values.exp() for lp in log_probs]).numpy()  # [K, T]
    labels = torch.stack([lp[:frames].argmax(-1) for lp in log_probs]).numpy()
    text = np.where(labels == BLANK, "", (labels - 1).astype(str))
    z = np.where(labels == BLANK, 0.0, best)  # colour = confidence of a digit; blanks stay at 0
    fig = figure_widget(f"What each layer hears (reference: {reference})", f"time ({frame_ms:g} ms frames)",
                        "exit layer", height=320, traces=[
        go.Heatmap(z=z, x=np.arange(frames) * frame_ms / 1000, y=exit_names, text=text, texttemplate="%{text}",
                   colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "P(digit)"}, name="greedy CTC label"),
    ])
    fig.update_xaxes(title="time (s)")
    return fig


class NoiseExplorer(Dashboard):
    """Noise dropdown + SNR slider -> a player for the mix, where utterances exit at a fixed threshold, and the
    mean exit layer against SNR (DAISY: clean speech exits early, noisy speech late).

    Each noisy setting runs the model once per process (:func:`~eekit.zoo.noisy_run`: a few seconds on one core),
    so the runs a lesson has already made are reused, not repeated; clean speech is the shipped profile. The
    threshold defaults to the model card's operating point for ``criterion`` (calibrated on clean speech, DAISY's
    setting: one fixed rule, whatever the noise).
    """

    def __init__(self, model_name: str = "speech-fsdd", criterion: str = "ctc_entropy", threshold: float | None = None,
                 snrs: tuple = (None, 20, 15, 10, 5, 0), utterance: int = 0):
        if get_recipe(model_name).dataset != "fsdd-strings":
            raise ValueError(f"the noise explorer needs a connected-digit recognizer; choose from "
                             f"{[n for n, r in RECIPES.items() if r.dataset == 'fsdd-strings']}, got {model_name!r}")
        self.model_name = model_name
        self.criterion = criterion
        self.threshold = float(operating_point(model_name, criterion).threshold if threshold is None else threshold)
        self.snrs = list(snrs)
        self.clean = data.load_digit_strings("test")
        self.utterance = utterance
        self.clean_profile = load_profile(model_name)
        self.error: str | None = None
        self.profile: ExitProfile | None = None

        self.levels = [None] + [s for s in self.snrs if s is not None]  # slider position -> SNR (None: clean)
        self.noise_dropdown, self.snr_slider = noise_controls(self.levels)
        self.player_box = W.Box()
        self._make_readout()
        K = self.clean_profile.num_exits
        self.histogram = figure_widget("Where utterances exit", "exit layer", "utterances (%)", height=320, width=420,
                                       traces=[go.Bar(x=[f"{k + 1}" for k in range(K)], y=[0] * K,
                                                      marker={"color": PALETTE[2]}, name="exits")])
        self.histogram.update_yaxes(range=[0, 100])
        self.curve = figure_widget("Mean exit layer vs. noise", "SNR (dB; clean at the right)", "mean exit layer",
                                   height=320, width=520, traces=[
            go.Scatter(x=[], y=[], mode="lines+markers", name="this noise", line={"color": PALETTE[0]}),
            go.Scatter(x=[], y=[], mode="markers", name="current setting",
                       marker={"color": PALETTE[5], "size": 14, "symbol": "diamond"}),
        ])
        self.noise_dropdown.observe(self._on_change, names="value")
        self.snr_slider.observe(self._on_change, names="value")
        self._update()
        self.widget = W.VBox([W.HBox([self.noise_dropdown, self.snr_slider]), self.player_box, self.readout,
                              W.HBox([self.histogram, self.curve])])

    # --------------------------------------------------------------------------------------------- public
    def set(self, noise: str | None = None, snr_db="keep") -> ExitProfile | None:
        """Move the controls from Python (``snr_db=None`` is clean); returns the profile now shown."""
        move_noise_controls(self.noise_dropdown, self.snr_slider, self.levels, noise, snr_db)
        return self.profile

    def profile_at(self, noise: str, snr_db) -> ExitProfile:
        return self._run(noise, snr_db)[1]

    def _run(self, noise: str, snr_db) -> tuple[data.DigitStrings, ExitProfile]:
        """The utterances as the model heard them and their profile (``noise="all"``: every noise in turn)."""
        if snr_db is None:
            return self.clean, self.clean_profile
        return noisy_run(self.model_name, snr_db, None if noise == "all" else noise)

    def mean_exit_layer(self, noise: str, snr_db) -> float:
        return float(self.profile_at(noise, snr_db).exit_index(self.criterion, self.threshold).mean()) + 1

    def summary(self) -> str:
        if self.profile is None:
            return f"error: {self.error}"
        p = self.profile.at(self.criterion, self.threshold)
        return (f"{self._setting()}: mean exit layer {p.mean_exit + 1:.2f}, digit error rate {1 - p.accuracy:.2%} "
                f"(final layer {1 - self.profile.final_accuracy:.2%}), layers saved {p.savings:.1%}")


    # ------------------------------------------------------------------------------------------ internals
    @property
    def snr_db(self) -> float | None:
        return self.levels[self.snr_slider.value]

    def _setting(self) -> str:
        snr = self.snr_db
        return "clean" if snr is None else f"{self.noise_dropdown.value} noise at {snr} dB"

    def _on_change(self, change) -> None:
        self._update()

    def _update(self) -> None:
        noise, snr = self.noise_dropdown.value, self.snr_db
        try:
            profile = self.profile_at(noise, snr)
            point = profile.at(self.criterion, self.threshold)
            xs = sorted(s for s in self.snrs if s is not None)  # left to right: noisiest first, clean last
            # a few seconds per SNR not yet run on one core; the bar shows only when runs take over a second
            ys = [self.mean_exit_layer(noise, s) for s in tqdm(
                xs, delay=1, leave=False, unit="SNR",
                desc=f"running the model on {noise if noise != 'all' else 'every'} noise at each SNR")]
            clean_x = max(xs) + 10
        except Exception as err:  # shown in the readout; a dashboard must never die on a control change
            self.error = f"{type(err).__name__}: {err}"
            self.profile = None
            self.readout.value = error_html("Cannot evaluate", self.error)
            self.player_box.children = []  # never the previous setting's mix and numbers under the error
            clear_figure(self.histogram)
            clear_figure(self.curve)
            return
        self.error = None
        self.profile = profile
        wave = self._run(noise, snr)[0].waveforms[self.utterance]  # exactly what the profile heard
        self.player_box.children = [W.HTML(f"utterance {self.utterance}: <b>{self.clean.labels[self.utterance]}</b>, "
                                           f"{self._setting()} &nbsp;"), audio_player(wave)]
        update_figure(self.histogram, {0: {"y": 100 * point.exit_fractions}})
        update_figure(self.curve, {0: {"x": xs + [clean_x], "y": ys + [self.mean_exit_layer("all", None)]},
                                   1: {"x": [clean_x if snr is None else snr], "y": [point.mean_exit + 1]}},
                      {"xaxis.tickvals": xs + [clean_x], "xaxis.ticktext": [str(s) for s in xs] + ["clean"]})
        rename_trace(self.curve, 0, f"{noise} noise" if noise != "all" else "all noises")
        self.readout.value = html.escape(self.summary()) + f" · {self.criterion} <= {self.threshold:g}"
