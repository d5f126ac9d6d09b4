"""Checks for the lessons' coding exercises: the learner rebuilds a kernel the library hides, and the check compares
it with the library's own result on real shipped data.

A check prints one line (``✓ ...`` or ``✗ not yet: ...``) and never raises on a mismatch, so "run all" never stops
on an unfinished exercise. ``STRICT = True`` (set by ``tests/test_solutions.py``) makes a
mismatch raise instead, so the hidden reference solutions are tested in CI.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .runtime import infer
from .models.speech import greedy_ctc
from .criteria import first_exit, get_criterion, passes
from .energy import Capacitor, capacitor_for_energy

__all__ = ["check_first_exit", "check_exit_costs", "check_early_exit_accuracy", "check_entropy",
           "check_compaction", "check_greedy_ctc", "check_ctc_entropy", "check_capacitor", "check_unit_exit",
           "STRICT"]

STRICT = False


def _verdict(ok: bool, what: str, problem: str = "") -> None:
    if ok:
        print(f"✓ {what}: matches the library")
        return
    message = f"✗ not yet: {what}: {problem}"
    if STRICT:
        raise AssertionError(message)
    print(message)


def _call(fn: Callable, *args):
    """The learner's result, or the exception's one-line description (an unfinished stub returns None)."""
    try:
        result = fn(*args)
    except NotImplementedError:
        return None, "still a stub (raises NotImplementedError)"
    if result is None:
        return None, "your function returned None"
    return result, ""


def check_first_exit(first_exit: Callable, profile, thresholds=(0.5, 0.9, 0.99)) -> None:
    """``first_exit(scores [N, K], threshold) -> [N]`` against ``profile.exit_index("max_prob", t)``."""
    scores = profile.scores_for("max_prob")
    for t in thresholds:
        got, problem = _call(first_exit, scores.copy(), t)
        if got is None:
            return _verdict(False, "first_exit", problem)
        want = profile.exit_index("max_prob", t)
        got = np.asarray(got)
        if got.shape != want.shape or not np.array_equal(got, want):
            wrong = int((got != want).sum()) if got.shape == want.shape else len(want)
            return _verdict(False, "first_exit", f"at threshold {t}, {wrong} of {len(want)} samples differ")
    return _verdict(True, f"first_exit at thresholds {', '.join(map(str, thresholds))}")


def check_exit_costs(exit_cost_table: Callable, costs) -> None:
    """``exit_cost_table(stage_flops, head_flops) -> (cumulative MFLOPs per exit, plain-model MFLOPs)`` against
    :class:`eekit.costs.ExitCosts`."""
    got, problem = _call(exit_cost_table, costs.stage_flops.copy(), costs.head_flops.copy())
    if got is None:
        return _verdict(False, "exit_cost_table", problem)
    cumulative, full = got
    if not np.allclose(np.asarray(cumulative, float), costs.cumulative_mflops):
        return _verdict(False, "exit_cost_table", f"cumulative MFLOPs {np.round(cumulative, 2).tolist()}, expected "
                                                  f"{np.round(costs.cumulative_mflops, 2).tolist()}")
    if not math.isclose(float(full), costs.full_model_flops / 1e6, rel_tol=1e-9):
        return _verdict(False, "exit_cost_table", f"plain model {float(full):.2f} MFLOPs, expected "
                                                  f"{costs.full_model_flops / 1e6:.2f}")
    return _verdict(True, "exit_cost_table (cumulative cost, heads included, and the plain model)")


def check_early_exit_accuracy(early_exit_accuracy: Callable, profile, thresholds=(0.6, 0.8, 0.95)) -> None:
    """``early_exit_accuracy(predictions [N, K], labels [N], exit_index [N]) -> float`` against ``profile.at``."""
    for t in thresholds:
        exits = profile.exit_index("max_prob", t)
        got, problem = _call(early_exit_accuracy, profile.predictions.copy(), profile.labels.copy(), exits)
        if got is None:
            return _verdict(False, "early_exit_accuracy", problem)
        want = profile.at("max_prob", t).accuracy
        if not math.isclose(float(got), want, abs_tol=1e-6):
            return _verdict(False, "early_exit_accuracy", f"at threshold {t}: {float(got):.4f}, expected {want:.4f}")
    return _verdict(True, f"early_exit_accuracy at thresholds {', '.join(map(str, thresholds))}")


def check_entropy(entropy_score: Callable, profile) -> None:
    """``entropy_score(logits [N, C]) -> [N]`` (normalized: 0 certain, 1 uniform) against the ``entropy`` criterion
    on every exit of ``profile``."""
    want = profile.scores_for("entropy")  # [N, K]
    for k in range(profile.num_exits):
        got, problem = _call(entropy_score, torch.from_numpy(profile.logits[k].copy()))
        if got is None:
            return _verdict(False, "entropy_score", problem)
        got = torch.as_tensor(got).float().numpy()
        if got.shape != want[:, k].shape or not np.allclose(got, want[:, k], atol=1e-5):
            return _verdict(False, "entropy_score", f"exit {k + 1} differs (first values {got[:3]} vs "
                                                    f"{want[:3, k]})")
    return _verdict(True, "entropy_score on every exit")


def check_compaction(early_exit: Callable, model, images: torch.Tensor, threshold: float) -> None:
    """``early_exit(model, images, threshold) -> (predictions [N], exit_index [N])`` against
    :func:`eekit.runtime.infer` with max-prob."""
    want = infer(model, images, "max_prob", threshold)
    got, problem = _call(early_exit, model, images, threshold)
    if got is None:
        return _verdict(False, "early_exit", problem)
    predictions, exits = (torch.as_tensor(g).long() for g in got)
    # infer runs a batch-norm-folded copy: equal up to float rounding, so a score within 1e-4 of the threshold may
    # fall on either side; only such borderline images may differ
    differ = torch.nonzero((exits != want.exit_index) | (predictions != want.predictions)).flatten()
    if len(differ):
        with torch.no_grad():
            scores = torch.stack(model.eval()(images[differ])).float().softmax(-1).amax(-1)  # [K, D]
        borderline = ((scores - threshold).abs() < 1e-4).any(0)
        if not borderline.all():
            return _verdict(False, "early_exit", f"{int((~borderline).sum())} of {len(images)} images leave at a "
                                                 "different exit or with a different answer")
    return _verdict(True, f"early_exit with compaction on {len(images)} images")


def _speech_outputs(model, utterances, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every layer's CTC log-probabilities ``[K, N, T, C]`` and frame counts ``[N]`` of the first ``count``."""
    batch = [utterances[n] for n in range(min(count, len(utterances)))]
    waves, lengths, _, _ = type(utterances).collate(batch)
    model.eval()
    with torch.no_grad():
        outputs, frames = model(waves, lengths)
    return torch.stack(list(outputs)), frames


def check_greedy_ctc(decode: Callable, model, utterances, count: int = 16) -> None:
    """``decode(log_probs [T, C], frames) -> str`` against :func:`eekit.evaluate.greedy_ctc` on every layer's
    output for the first ``count`` utterances."""
    outputs, frames = _speech_outputs(model, utterances, count)
    for k in range(outputs.shape[0]):
        for n in range(outputs.shape[1]):
            got, problem = _call(decode, outputs[k, n].clone(), int(frames[n]))
            if got is None:
                return _verdict(False, "greedy decoding", problem)
            want = greedy_ctc(outputs[k, n], int(frames[n]))
            if got != want:
                return _verdict(False, "greedy decoding", f"utterance {n}, layer {k + 1}: {got!r}, expected {want!r}")
    return _verdict(True, f"greedy decoding of {outputs.shape[1]} utterances x {outputs.shape[0]} layers")


def check_ctc_entropy(utterance_entropy: Callable, model, utterances, count: int = 16) -> None:
    """``utterance_entropy(log_probs [N, T, C], frames [N]) -> [N]`` against the ``ctc_entropy`` criterion on every
    layer, for the first ``count`` utterances."""
    outputs, frames = _speech_outputs(model, utterances, count)
    want = get_criterion("ctc_entropy").scores(outputs, lengths=frames)
    for k in range(outputs.shape[0]):
        got, problem = _call(utterance_entropy, outputs[k].clone(), frames.clone())
        if got is None:
            return _verdict(False, "utterance_entropy", problem)
        got = torch.as_tensor(got).float()
        if got.shape != want[k].shape or not torch.allclose(got, want[k], atol=1e-5):
            return _verdict(False, "utterance_entropy", f"layer {k + 1}: {got[:3].tolist()} vs {want[k, :3].tolist()}")
    return _verdict(True, f"utterance_entropy on {outputs.shape[1]} utterances x {outputs.shape[0]} layers")


def check_unit_exit(exit_layer: Callable, log_probs: torch.Tensor, frames: torch.Tensor, threshold: float) -> None:
    """``exit_layer(log_probs [L, N, T, K], frames [N], threshold) -> [N]`` (0-based exit layer per utterance)
    against the ``ssl_entropy`` criterion and :func:`eekit.criteria.first_exit` (lesson 22, DAISY's signal)."""
    criterion = get_criterion("ssl_entropy", "units")
    want = first_exit(passes(criterion, criterion.scores(log_probs, lengths=frames).T, threshold))
    got, problem = _call(exit_layer, log_probs.clone(), frames.clone(), threshold)
    if got is None:
        return _verdict(False, "exit_layer", problem)
    got = torch.as_tensor(got).long()
    if got.shape != want.shape or not torch.equal(got, want.long()):
        return _verdict(False, "exit_layer", f"first utterances: {got[:6].tolist()} vs {want[:6].tolist()}")
    return _verdict(True, f"exit_layer on {log_probs.shape[1]} clips x {log_probs.shape[0]} layers")


def check_capacitor(usable_energy: Callable, capacitor_for: Callable) -> None:
    """``usable_energy(C, v_on, v_off) -> J`` and ``capacitor_for(joules, v_on, v_off) -> F`` against
    :class:`eekit.energy.Capacitor` and :func:`eekit.energy.capacitor_for_energy`."""
    for c, v_on, v_off in ((5e-3, 2.99, 2.8), (20e-3, 2.99, 2.8), (1e-3, 3.3, 1.8)):
        cap = Capacitor(capacitance_f=c, v_on=v_on, v_off=v_off, v_max=max(v_on, 3.05))
        got, problem = _call(usable_energy, c, v_on, v_off)
        if got is None:
            return _verdict(False, "usable_energy", problem)
        if not math.isclose(float(got), cap.usable_j, rel_tol=1e-9):
            return _verdict(False, "usable_energy", f"{c * 1e3:g} mF, {v_on} -> {v_off} V: {float(got) * 1e3:.4f} mJ, "
                                                    f"expected {cap.usable_j * 1e3:.4f} mJ")
        for joules in (2e-3, 10.5e-3):
            got, problem = _call(capacitor_for, joules, v_on, v_off)
            if got is None:
                return _verdict(False, "capacitor_for", problem)
            want = capacitor_for_energy(joules, like=cap)
            if not math.isclose(float(got), want, rel_tol=1e-9):
                return _verdict(False, "capacitor_for", f"{joules * 1e3:g} mJ between {v_on} and {v_off} V: "
                                                        f"{float(got) * 1e3:.3f} mF, expected {want * 1e3:.3f} mF")
    return _verdict(True, "usable_energy and capacitor_for")


def check_frame_lengths(frame_lengths: Callable, model, samples: torch.Tensor) -> None:
    """``frame_lengths(samples [N], conv [(kernel, stride), ...]) -> [N]``: how many frames a wav2vec 2.0 feature
    extractor makes of waveforms of ``samples`` samples (lesson 02), against what torchaudio's extractor in the
    wrapped ``model`` really makes of them."""
    extractor = model.encoder.feature_extractor
    conv = [(layer.kernel_size, layer.stride) for layer in extractor.conv_layers]
    with torch.no_grad():  # a few rows at a time: 300 waveforms x 32 channels would need gigabytes at once
        want = torch.cat([extractor(torch.zeros(len(part), int(part.max())), part)[1] for part in samples.split(8)])
    got, problem = _call(frame_lengths, samples.clone(), conv)
    if got is None:
        return _verdict(False, "frame_lengths", problem)
    got = torch.as_tensor(got).long()
    if got.shape != want.shape or not torch.equal(got, want):
        return _verdict(False, "frame_lengths", f"first utterances: {got[:4].tolist()} vs {want[:4].tolist()}")
    return _verdict(True, f"frame_lengths of {len(samples)} utterances")
