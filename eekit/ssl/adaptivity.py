"""Does the label-free exit earn its keep? The controls that tell a data-adaptive exit from a cheaper model.

DAISY's claim is that a layer's unit entropy says when an utterance has been understood. Three things can fake it:
depth may not matter for the task (then any exit is "within a point"), the score may measure something else (how
much of a clip is silence), and one threshold may not carry over to other audio. :func:`measure` runs every control
on the shipped ``ssl-hubert`` encoder and writes ``ssl-hubert-adaptivity.json``; ``python -m eekit report ssl-daisy``
reads it back as its ``adaptivity`` block (no model run). Rerun with ``python -m eekit report ssl-daisy --measure``.
``ssl-hubert-clean`` (pretrained with clean read sentences added) gets the same controls, same seeds, in
``ssl-hubert-clean-adaptivity.json``, measured by its training recipe (``python -m eekit train ssl-hubert-clean``).

Every control is measured for two exit scores, one threshold each, both set once on the same clean unlabelled
calibration clips (:func:`eekit.ssl.calibration_clips`, :data:`eekit.daisy.CALIBRATION_BUDGET`):

* ``speech`` (the kit's exit): unit entropy averaged over the speech frames (:func:`eekit.daisy.speech_entropy`);
  the detector runs on the audio as heard, noise included, as it would in use;
* ``all_frames`` (DAISY's): the same entropy averaged over every frame.

Controls: (1) ``tasks``: per-layer task scores, the adaptive exit against the static exit of the same mean depth
(interpolated between the two nearest layers) and against random exits with the same depth distribution (the exit
layers shuffled across utterances, :data:`RANDOM_DRAWS` seeded draws); (2) ``noise_grid``: mean exit layer, clean
and at every SNR of :data:`SNRS`, for seeded white, pink and brown noise, babble of unseen speakers and each kit
noise recording; (3) ``placement``: 0 dB kit noise only on the speech frames, only in the silence, or everywhere
(the same noise samples, gated); ``padding``: clips padded with 0, 1 or 2 s of their own room tone; ``speech_share_r``;
(4) ``transfer``: layers saved and unit agreement with the last layer on FSDD's unseen takes and on padded clips.
Unit agreement is measured on the speech frames (every frame of a clip without speech), for both scores.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import data, validate
from ..criteria import CRITERIA
from ..files import claim_folder, write_text
from ..profile import ExitProfile
from ..train import machine
from . import probes
from .clips import calibration_clips, held_out_clips
from .daisy import BATCH_SIZE, CALIBRATION_BUDGET, speech_entropy, speech_mask
from .pretraining import CLEAN_NAME, NAME, load_encoder, load_ssl_profile
from .units import FRAMES_PER_UNIT, HOP, speech_frames

__all__ = ["measure", "load", "colored_noise", "babble_noise", "clip_scores", "static_same_cost",
           "random_same_cost", "SNRS", "COLORS", "PADDING_S", "PLACEMENTS", "SCORES", "RESULT_FILE", "result_file",
           "ENCODERS"]

SNRS = (20, 10, 5, 0)
COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # generated noise: power spectrum ~ 1 / f ** exponent
BABBLE_TALKERS = 6
PADDING_S = (0, 1, 2)
PLACEMENTS = ("speech_only", "silence_only", "everywhere")
PLACEMENT_SNR = 0
SCORES = ("speech", "all_frames")  # the kit's exit score first, DAISY's second
RANDOM_DRAWS = 20
ENCODERS = (NAME, CLEAN_NAME)  # the pretrained encoders whose controls are measured


def result_file(name: str = NAME) -> str:
    """The file an encoder's controls are stored in, ``<name>-adaptivity.json``."""
    return f"{validate.one_of('encoder', name, ENCODERS)}-adaptivity.json"


RESULT_FILE = result_file(NAME)
NOISE_SECONDS = 60


# ------------------------------------------------------------------------------------------------ the noises

def colored_noise(color: str, samples: int, seed: int = 0) -> torch.Tensor:
    """Seeded Gaussian noise shaped to a ``1 / f ** COLORS[color]`` power spectrum (white, pink, brown), unit RMS."""
    if color not in COLORS:
        raise ValueError(f"unknown noise colour {color!r}; known: {list(COLORS)}")
    white = torch.randn(samples, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    spectrum = torch.fft.rfft(white)
    freqs = torch.fft.rfftfreq(samples, dtype=torch.float64)
    freqs[0] = freqs[1]  # no infinite DC gain
    x = torch.fft.irfft(spectrum / freqs.pow(COLORS[color] / 2), n=samples)
    return ((x - x.mean()) / x.std()).float()


def babble_noise(samples: int, talkers: int = BABBLE_TALKERS, seed: int = 0) -> torch.Tensor:
    """Babble: ``talkers`` overlapping streams of words (silences trimmed, each word at unit RMS) by Speech Commands
    test speakers none of whose clips is measured here (not in the held-out or calibration clips' speakers)."""
    used = set(held_out_clips().speakers) | set(calibration_clips().speakers)
    pool = data.load_speech_commands("test")
    words = [data.trim_silence(w) for w, s in zip(pool.waveforms, pool.speakers) if s not in used]
    words = [w / w.pow(2).mean().sqrt() for w in words if w.abs().max() > 0]
    if len(words) < talkers:
        raise ValueError(f"babble needs at least {talkers} words of unmeasured speakers, found {len(words)}")
    rng = np.random.default_rng(seed)
    mix = torch.zeros(samples)
    for _ in range(talkers):
        stream = torch.cat([words[i] for i in rng.integers(len(words), size=samples // 2000 + 1)])
        mix += stream[:samples]
    return mix / mix.pow(2).mean().sqrt()


def _noises(seed: int) -> dict[str, torch.Tensor]:
    samples = NOISE_SECONDS * data.FSDD_SAMPLE_RATE
    out = {color: colored_noise(color, samples, seed) for color in COLORS}
    out["babble"] = babble_noise(samples, seed=seed)
    out.update({name: data.load_noise(name) for name in data.NOISE_NAMES})
    return out


def _sample_mask(frames: torch.Tensor, samples: int) -> torch.Tensor:
    """Encoder-frame bools -> sample bools (frame ``i`` covers samples ``[320 i - 160, 320 i + 160)``)."""
    width = HOP * FRAMES_PER_UNIT
    index = ((torch.arange(samples) + width // 2) // width).clamp_max(len(frames) - 1)
    return frames[index]


def _placed(waves, noises: list[torch.Tensor], placement: str, snr_db: float, seed: int) -> list[torch.Tensor]:
    """Kit noise at ``snr_db`` dB of the whole clip, then kept only on the speech frames, only in the silence, or
    everywhere: the same noise samples in all three."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, wave in enumerate(waves):
        noise = data.mix_noise(wave, noises[i % len(noises)], snr_db, gen) - wave
        speech = _sample_mask(speech_frames(wave), len(wave))
        keep = {"speech_only": speech, "silence_only": ~speech, "everywhere": torch.ones_like(speech)}[placement]
        out.append(wave + noise * keep)
    return out


def _padded(waves, seconds: float) -> list[torch.Tensor]:
    """Each clip with ``seconds`` of its own room tone (its non-speech samples, tiled) split before and after it."""
    if seconds == 0:
        return list(waves)
    out = []
    for wave in waves:
        room = wave[~_sample_mask(speech_frames(wave), len(wave))]
        if len(room) < HOP:
            room = torch.zeros(HOP)
        need = int(seconds * data.FSDD_SAMPLE_RATE)
        tone = room.repeat(need // len(room) + 1)[:need]
        out.append(torch.cat([tone[: need // 2], wave, tone[need // 2 :]]))
    return out


# ------------------------------------------------------------------------------------------------ scoring

def clip_scores(model, waves, batch_size: int = BATCH_SIZE) -> dict[str, np.ndarray]:
    """One encoder pass over ``waves``: both exit scores ``[N, L]`` (``speech``, ``all_frames``), the unit
    agreement of every layer with the last one ``[N, L]`` (on the speech frames; on every frame for a clip without
    speech) and each clip's speech-frame share ``[N]``."""
    parts: dict[str, list] = {k: [] for k in ("speech", "all_frames", "agreement", "speech_share")}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(waves), batch_size):
            chunk = list(waves[start : start + batch_size])
            padded = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
            lengths = torch.tensor([len(w) for w in chunk])
            log_probs, frames = model.unit_log_probs(padded, lengths)
            T = log_probs.shape[2]
            real = torch.arange(T)[None, :] < frames[:, None]
            speech = speech_mask(padded, lengths, T) & real
            parts["speech"].append(speech_entropy(log_probs, speech).T)
            parts["all_frames"].append(CRITERIA["ssl_entropy"].scores(log_probs, lengths=frames).T)
            use = torch.where(speech.any(-1, keepdim=True), speech, real)  # [B, T]
            best = log_probs.argmax(-1)
            same = ((best == best[-1:]) & use).sum(-1) / use.sum(-1)  # [L, B]
            parts["agreement"].append(same.T)
            parts["speech_share"].append(speech.sum(-1) / frames)
    return {k: torch.cat(v).numpy().astype(np.float64) for k, v in parts.items()}


def _profile(scored: dict, score: str) -> ExitProfile:
    """A label-free ``"units"`` profile: errors are 1 - unit agreement with the last layer."""
    N, L = scored[score].shape
    return ExitProfile(predictions=np.zeros((N, L), np.int8), errors=1 - scored["agreement"],
                       totals=np.ones(N), cost=np.arange(1, L + 1, dtype=np.float64), full_cost=float(L),
                       exit_names=[f"layer {k + 1}" for k in range(L)], kind="units", cost_unit="layers",
                       scores={"ssl_entropy": scored[score].astype(np.float32)})


def _exits(scored: dict, score: str, threshold: float) -> np.ndarray:
    """Exit layer (1-based) of every clip."""
    return _profile(scored, score).exit_index("ssl_entropy", threshold) + 1


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; 0.0 when either side is constant (no linear relation to measure)."""
    if np.std(x) == 0 or np.std(y) == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


# ------------------------------------------------------------------------------------------------ controls

def static_same_cost(by_layer, mean_exit: float) -> float:
    """The static exit that spends the same mean number of layers ``mean_exit`` (1-based): the per-layer score
    interpolated linearly between the two nearest fixed depths."""
    by_layer = np.asarray(by_layer, dtype=float)
    position = float(np.clip(mean_exit, 1, len(by_layer))) - 1
    low = int(math.floor(position))
    high = min(low + 1, len(by_layer) - 1)
    return float(by_layer[low] + (position - low) * (by_layer[high] - by_layer[low]))


def random_same_cost(errors: np.ndarray, totals: np.ndarray, exits: np.ndarray, draws: int = RANDOM_DRAWS,
                     seed: int = 0) -> float:
    """Accuracy (1 - error rate) when the exit layers ``exits`` (0-based) are shuffled across the utterances: the
    same depth distribution, no link to the utterance. The mean over ``draws`` seeded shuffles."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(exits))
    return float(np.mean([1 - errors[rows, rng.permutation(exits)].sum() / totals.sum() for _ in range(draws)]))


def _task(profile: ExitProfile, scored: dict, thresholds: dict, metric: str) -> dict:
    """One task at each score's threshold: adaptive vs static vs random at the same cost. DER tasks report DER."""
    flip = (lambda a: 1 - a) if metric == "der" else (lambda a: a)
    by_layer = [flip(float(a)) for a in profile.exit_accuracy]
    out = {"metric": metric, "by_layer": [round(a, 4) for a in by_layer],
           "best_minus_layer_1": round(max(a - by_layer[0] for a in by_layer) if metric != "der"
                                       else max(by_layer[0] - a for a in by_layer), 4),
           "test_samples": profile.num_samples}
    for score in SCORES:
        p = ExitProfile(predictions=profile.predictions, errors=profile.errors, totals=profile.totals,
                        cost=profile.cost, full_cost=profile.full_cost, exit_names=profile.exit_names, kind="units",
                        cost_unit="layers", scores={"ssl_entropy": scored[score].astype(np.float32)})
        exits = p.exit_index("ssl_entropy", thresholds[score])
        point = p.at("ssl_entropy", thresholds[score])
        result = {"at_exit": round(flip(point.accuracy), 4),
                  "at_static_same_cost": round(static_same_cost(by_layer, point.mean_exit + 1), 4),
                  "at_random_same_cost": round(flip(random_same_cost(p.errors, p.totals, exits)), 4),
                  "layers_saved_at_exit": round(point.savings, 4),
                  "mean_exit_layer": round(point.mean_exit + 1, 3)}
        sign = -1 if metric == "der" else 1  # points by which the adaptive exit is better (positive: better)
        result["gain_vs_static_points"] = round(100 * sign * (result["at_exit"] - result["at_static_same_cost"]), 2)
        result["gain_vs_random_points"] = round(100 * sign * (result["at_exit"] - result["at_random_same_cost"]), 2)
        if score == SCORES[0]:
            out.update(result)
        else:
            out["daisy_all_frames"] = result
    return out


def measure(out_dir: str | Path | None = None, force: bool = False, progress: bool = True, seed: int = 0,
            checkpoint_dir: str | Path | None = None, name: str = NAME) -> dict:
    """Run every control on encoder ``name`` (of :data:`ENCODERS`; the shipped one, or ``checkpoint_dir``'s run; a
    few minutes on one core) and write ``<out_dir>/<name>-adaptivity.json`` (``out_dir`` ``None``: the shipped file;
    replacing an existing file needs ``force``)."""
    import json

    shipped = data.DATA_DIR / "checkpoints"
    path = Path(result_file(name))
    out_dir = shipped if out_dir is None else validate.writable_dir("output folder", out_dir)
    path = Path(out_dir) / path
    validate.no_overwrite([path], force)
    with claim_folder(out_dir):  # no second command writes here meanwhile
        result = _measure(seed, checkpoint_dir, progress, name)
        write_text(path, json.dumps(result, indent=1) + "\n")
    if Path(out_dir).resolve() == shipped.resolve():
        data.update_manifest([path])
    return result


def _measure(seed: int, checkpoint_dir, progress: bool, name: str = NAME) -> dict:
    """Every control of :func:`measure`, as the dict it stores."""
    from datetime import datetime, timezone


    start = time.perf_counter()
    model, _ = load_encoder(name, checkpoint_dir)
    score = lambda waves: clip_scores(model, waves)  # noqa: E731
    calibration = score(calibration_clips().waveforms)
    thresholds = {s: float(_profile(calibration, s).calibrate("ssl_entropy", budget=CALIBRATION_BUDGET).threshold)
                  for s in SCORES}
    exits = lambda scored, s: _exits(scored, s, thresholds[s])  # noqa: E731
    mean_exit = lambda scored, s: round(float(exits(scored, s).mean()), 3)  # noqa: E731
    held = held_out_clips().waveforms
    clean = score(held)
    result: dict = {"scores": {"speech": "unit entropy averaged over the speech frames (the kit's exit score)",
                               "all_frames": "unit entropy averaged over every frame (DAISY's)"},
                    "thresholds": {s: round(t, 4) for s, t in thresholds.items()},
                    "no_speech_rule": "an utterance without a speech frame scores 0 and leaves at layer 1"}

    tasks = {}
    names = list(probes.TASKS) + list(probes.NOISY_TASKS)
    for task in tqdm(names, disable=not progress, desc="tasks", unit="task"):
        if task in probes.TASKS:
            profile = load_ssl_profile(f"{name}-{task}", checkpoint_dir)
        else:
            profile = probes.task_profile(model, task, meta={"model": name})
        tasks[task] = _task(profile, score(probes.task_data(task)[1].waveforms), thresholds,
                            probes.TASK_METRICS[task])
    result["tasks"] = tasks

    noises = _noises(seed)
    grid = {s: {} for s in SCORES}
    for name, noise in tqdm(noises.items(), disable=not progress, desc="noise grid", unit="noise"):
        row = {s: {"clean": mean_exit(clean, s)} for s in SCORES}
        for snr in SNRS:
            gen = torch.Generator().manual_seed(seed)
            scored = score([data.mix_noise(w, noise, snr, gen) for w in held])
            for s in SCORES:
                row[s][str(snr)] = mean_exit(scored, s)
        for s in SCORES:
            grid[s][name] = row[s]
    result["noise_grid"] = grid[SCORES[0]]
    result["noise_grid_all_frames"] = grid[SCORES[1]]

    kit = [data.load_noise(n) for n in data.NOISE_NAMES]
    clips: dict = {"clean": {s: exits(clean, s).tolist() for s in SCORES},
                   "speech_share": [round(float(v), 3) for v in clean["speech_share"]]}
    placement = {s: {} for s in SCORES}
    for where in PLACEMENTS:
        scored = score(_placed(held, kit, where, PLACEMENT_SNR, seed))
        clips[where] = {s: exits(scored, s).tolist() for s in SCORES}
        for s in SCORES:
            placement[s][where] = round(float(np.mean(clips[where][s])), 3)
    result["placement"] = placement[SCORES[0]]
    result["placement_all_frames"] = placement[SCORES[1]]

    padding = {s: {} for s in SCORES}
    padded_scored = {}
    for seconds in PADDING_S:
        scored = clean if seconds == 0 else score(_padded(held, seconds))
        padded_scored[seconds] = scored
        clips[f"padded_{seconds}s"] = {s: exits(scored, s).tolist() for s in SCORES}
        for s in SCORES:
            e = np.asarray(clips[f"padded_{seconds}s"][s])
            padding[s][str(seconds)] = {"mean_exit_layer": round(float(e.mean()), 3),
                                        "mean_abs_shift": round(float(np.abs(e - clips["clean"][s]).mean()), 3)}
    result["padding"] = padding[SCORES[0]]
    result["padding_all_frames"] = padding[SCORES[1]]
    result["speech_share_r"] = round(_pearson(clips["clean"]["speech"], clean["speech_share"]), 4)
    result["speech_share_r_all_frames"] = round(_pearson(clips["clean"]["all_frames"], clean["speech_share"]), 4)

    corpora = {"speech_commands_calibration": calibration, "speech_commands_held_out": clean,
               "fsdd_unseen_takes": score(data.load_fsdd("test").waveforms),
               "padded_2s": padded_scored[2]}
    transfer = {s: {} for s in SCORES}
    for corpus, scored in corpora.items():
        for s in SCORES:
            point = _profile(scored, s).at("ssl_entropy", thresholds[s])
            transfer[s][corpus] = {"layers_saved": round(point.savings, 4), "unit_agreement": round(point.accuracy, 4),
                                   "clips": len(scored[s])}
    result["transfer"] = transfer[SCORES[0]]
    result["transfer_all_frames"] = transfer[SCORES[1]]
    result["clips"] = clips
    result["measurement_seconds"] = round(time.perf_counter() - start, 1)
    result["encoder"] = name
    result["command"] = _command(name)
    result["machine"] = machine()
    result["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return result


def _command(name: str) -> str:
    """The command that remeasures ``name``'s controls (ssl-hubert-clean's are part of its training recipe)."""
    return "python -m eekit report ssl-daisy --measure" if name == NAME else f"python -m eekit train {name}"


def load(checkpoint_dir: str | Path | None = None, name: str = NAME) -> dict:
    """The stored measurement of encoder ``name`` (shipped and checksum-verified, or ``checkpoint_dir``'s own run)."""
    path = data.checkpoint_file(result_file(name), checkpoint_dir, _command(name))
    return data.read_json(Path(path))
