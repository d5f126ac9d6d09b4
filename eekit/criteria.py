"""Exit criteria: when is an exit's answer good enough to stop?

Every criterion turns the outputs of the exits reached so far into one **score per sample and exit**, and a
sample leaves at the first exit whose score passes the threshold (the last exit always answers). The same
:meth:`Criterion.scores` feeds the cached simulation (:mod:`eekit.profile`) and real inference
(:mod:`eekit.runtime`), which is why the two agree sample for sample.

Classification outputs are logits ``[K, N, C]`` (K exits). CTC outputs are log-probabilities ``[K, N, T, V]`` with
valid lengths ``[N]``; frames past a sample's length are ignored. ``"units"`` outputs (self-supervised unit
posteriors, DAISY) have the CTC shape, over acoustic units instead of digits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from . import validate

from .models.speech import BLANK

__all__ = ["Criterion", "CRITERIA", "get_criterion", "passes", "first_exit", "normalized_entropy"]


def normalized_entropy(log_probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Entropy divided by ``log(classes)``: 0 for a one-hot answer, 1 for a uniform one."""
    probs = log_probs.exp()
    # 0 * log 0 -> 0; only there: a NaN input must stay NaN, never become a confident 0
    entropy = -torch.where(log_probs == -math.inf, 0.0, probs * log_probs).sum(dim)
    return entropy / math.log(log_probs.shape[dim])


def _frame_mask(log_probs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``[N, T]`` mask of valid frames for ``log_probs [K, N, T, V]``."""
    N, T = log_probs.shape[1], log_probs.shape[2]
    if lengths is None:
        return torch.ones(N, T, dtype=torch.bool, device=log_probs.device)
    lengths = torch.as_tensor(lengths, device=log_probs.device)
    if lengths.shape != (N,) or (lengths < 1).any() or (lengths > T).any():
        raise ValueError(f"lengths must be [N={N}] integers in 1..T={T}, got {tuple(lengths.shape)} {lengths.tolist()[:8]}")
    return torch.arange(T, device=log_probs.device)[None, :] < lengths[:, None]


def _masked_frame_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames of ``values [K, N, T]``: ``[K, N]``."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp_min(1)


# ------------------------------------------------------------------------------------------- score functions


def _max_prob(out: torch.Tensor, **_: Any) -> torch.Tensor:
    return out.float().softmax(-1).amax(-1)


def _entropy(out: torch.Tensor, **_: Any) -> torch.Tensor:
    return normalized_entropy(out.float().log_softmax(-1))


def _margin(out: torch.Tensor, **_: Any) -> torch.Tensor:
    top2 = out.float().softmax(-1).topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def _patience(out: torch.Tensor, **_: Any) -> torch.Tensor:
    """PABEE: how many consecutive earlier exits agree with this one (0 at the first exit)."""
    preds = out.argmax(-1)  # [K, N]
    counts = torch.zeros_like(preds)
    for k in range(1, preds.shape[0]):
        counts[k] = torch.where(preds[k] == preds[k - 1], counts[k - 1] + 1, 0)
    return counts.float()


def _fixed(out: torch.Tensor, **_: Any) -> torch.Tensor:
    K, N = out.shape[0], out.shape[1]
    return torch.arange(K, dtype=torch.float32, device=out.device)[:, None].expand(K, N).clone()


def _oracle(out: torch.Tensor, labels: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
    if labels is None:
        raise ValueError("the oracle needs the true labels: it is an upper bound for analysis, not a real criterion")
    return (out.argmax(-1) == labels.to(out.device)[None, :]).float()


def _ctc_entropy(out: torch.Tensor, lengths: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
    """HuBERT-EE: CTC posterior entropy averaged over the valid frames of each utterance."""
    return _masked_frame_mean(normalized_entropy(out.float()), _frame_mask(out, lengths))


def _ctc_posterior(out: torch.Tensor, lengths: torch.Tensor | None = None, blank: int = BLANK, **_: Any) -> torch.Tensor:
    """Posterior-based confidence in the spirit of 2309.09546: the mean posterior of the greedy CTC path over the
    frames that emit a label (non-blank); an utterance decoded as all blanks uses every valid frame."""
    log_probs = out.float()
    best, best_idx = log_probs.max(-1)  # [K, N, T]
    mask = _frame_mask(log_probs, lengths)[None].expand_as(best)
    emitting = mask & (best_idx != blank)
    use = torch.where(emitting.any(-1, keepdim=True), emitting, mask)
    return _masked_frame_mean(best.exp(), use)


def _ctc_batch_entropy(out: torch.Tensor, lengths: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
    """DAISY: entropy averaged over all valid frames of *every utterance in the batch*; the whole batch exits together."""
    ent = normalized_entropy(out.float())  # [K, N, T]
    mask = _frame_mask(out, lengths).to(ent.dtype)
    batch_mean = (ent * mask).sum((1, 2)) / mask.sum().clamp_min(1)  # [K]
    return batch_mean[:, None].expand(ent.shape[0], ent.shape[1]).clone()


@dataclass(frozen=True)
class Criterion:
    """An exit rule: ``score_fn`` maps exits ``[K, N, ...]`` to float32 scores ``[K, N]``; a sample exits at the
    first exit whose score is ``>= threshold`` (``higher_is_confident``) or ``<= threshold`` (entropies)."""

    name: str
    description: str
    score_fn: Callable[..., torch.Tensor]
    higher_is_confident: bool
    low: float
    high: float
    kind: str = "classification"  # or "ctc"
    integer: bool = False
    needs_labels: bool = False
    batch_wide: bool = False  # decided for the whole batch at once (DAISY)
    default: float = 0.9
    memoryless: bool = True  # score k reads exit k's output alone, so real inference keeps no earlier exits

    def scores(self, outputs: Any, labels: torch.Tensor | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[K, N]`` for exits ``outputs`` (a list or a stacked tensor). Causal: score ``k`` only uses
        exits ``0..k``, so real inference can compute it as exits arrive."""
        out = torch.stack(list(outputs)) if isinstance(outputs, (list, tuple)) else outputs
        expected = 3 if self.kind == "classification" else 4
        if out.ndim != expected:
            shape = "[K, N, C] logits" if expected == 3 else "[K, N, T, V] CTC log-probabilities"
            raise ValueError(f"criterion {self.name!r} expects {shape}, got shape {tuple(out.shape)}")
        if self.kind == "classification":
            validate.finite(f"the exits' outputs (criterion {self.name!r})", out)
        else:  # entropies and posteriors of raw logits would call a guess certain
            validate.log_probs(f"the exits' outputs (criterion {self.name!r})", out)
        with torch.no_grad():
            return self.score_fn(out, labels=labels, lengths=lengths)

    def confident(self, scores: Any, threshold: Any) -> Any:
        """``scores`` (a tensor, an array or one float) against an already checked ``threshold``: ``>=`` for
        confidences, ``<=`` for entropies. The one place the direction is decided (:func:`passes`, real inference)."""
        return scores >= threshold if self.higher_is_confident else scores <= threshold

    def check_threshold(self, threshold: Any) -> float:
        if self.needs_labels:
            return 0.5
        if isinstance(threshold, (torch.Tensor, np.ndarray)) and threshold.ndim == 0:
            threshold = threshold.item()  # a 0-d tensor or array holding one number
        validate.number(f"threshold for {self.name!r}", threshold, self.low, self.high,
                        accepted=f"in [{self.low:g}, {self.high:g}]")
        if self.integer and float(threshold) != int(threshold):
            raise ValueError(f"threshold for {self.name!r} is a whole number of exits, got {threshold!r}")
        return float(threshold)


def passes(criterion: Criterion, scores: Any, threshold: Any) -> Any:
    """Boolean array of "this exit is confident enough" (numpy arrays and tensors alike). ``threshold`` is a number,
    or an array that broadcasts against ``scores`` (a whole sweep at once)."""
    if np.ndim(threshold) == 0:
        threshold = criterion.check_threshold(threshold)
    else:
        for value in np.unique(np.asarray(threshold, dtype=float)):  # every threshold, not just the extremes
            criterion.check_threshold(float(value))
    return criterion.confident(scores, threshold)


def first_exit(passed: Any) -> Any:
    """Index of the first passing exit along the last dim (``[..., K]`` -> ``[...]``); the last exit if none
    passes. Works on numpy arrays (the cached profile) and tensors (real inference) alike."""
    if isinstance(passed, np.ndarray):
        passed = passed.copy()
        passed[..., -1] = True
        return passed.argmax(-1)
    passed = passed.clone()
    passed[..., -1] = True
    return passed.to(torch.uint8).argmax(-1)


_K = 64  # largest patience / fixed exit accepted; the profile clips to its own exit count

CRITERIA: dict[str, Criterion] = {
    c.name: c
    for c in [
        Criterion("max_prob", "largest softmax probability >= threshold (softmax response; SDN)", _max_prob,
                  True, 0.0, 1.0, default=0.9),
        Criterion("entropy", "normalized entropy of the softmax <= threshold (BranchyNet)", _entropy,
                  False, 0.0, 1.0, default=0.2),
        Criterion("margin", "top-1 minus top-2 probability >= threshold", _margin, True, 0.0, 1.0, default=0.8),
        Criterion("patience", "exit after `threshold` consecutive exits agree on the class (PABEE)", _patience,
                  True, 1, _K, integer=True, default=2, memoryless=False),
        Criterion("fixed", "always exit at exit index `threshold` (0-based): a static shallower network", _fixed,
                  True, 0, _K, integer=True, default=0, memoryless=False),
        Criterion("oracle", "earliest exit that is correct: an UPPER BOUND that peeks at the labels", _oracle,
                  True, 0.0, 1.0, needs_labels=True, default=0.5),
        Criterion("ctc_entropy", "CTC entropy averaged over frames <= threshold (HuBERT-EE)", _ctc_entropy,
                  False, 0.0, 1.0, kind="ctc", default=0.1),
        Criterion("ctc_posterior", "mean posterior of the greedy path's emitting frames >= threshold (2309.09546)",
                  _ctc_posterior, True, 0.0, 1.0, kind="ctc", default=0.9),
        Criterion("ctc_batch_entropy", "CTC entropy averaged over every frame of the batch <= threshold (DAISY)",
                  _ctc_batch_entropy, False, 0.0, 1.0, kind="ctc", batch_wide=True, default=0.1),
        # DAISY's real signal: the same frame-averaged entropy, of a layer's self-supervised *unit* posterior
        # [K, N, T, units] (eekit.models.ssl), so no task head and no label is involved.
        Criterion("ssl_entropy", "unit-posterior entropy averaged over the utterance's frames <= threshold (DAISY, "
                  "self-supervised, no labels)", _ctc_entropy, False, 0.0, 1.0, kind="units", default=0.5),
        Criterion("ssl_batch_entropy", "unit-posterior entropy averaged over every frame of the batch <= threshold "
                  "(DAISY's batch mode)", _ctc_batch_entropy, False, 0.0, 1.0, kind="units", batch_wide=True,
                  default=0.5),
    ]
}


def get_criterion(name: str | Criterion, kind: str | None = None) -> Criterion:
    """Look up a criterion by name; ``kind`` ("classification", "ctc" or "units") restricts the choice."""
    if isinstance(name, Criterion):
        criterion = name
    elif isinstance(name, str) and name in CRITERIA:
        criterion = CRITERIA[name]
    else:
        valid = [n for n, c in CRITERIA.items() if kind is None or c.kind == kind]
        raise ValueError(f"unknown exit criterion {name!r}; valid criteria: {valid}")
    if kind is not None and criterion.kind != kind:
        valid = [n for n, c in CRITERIA.items() if c.kind == kind]
        raise ValueError(f"criterion {criterion.name!r} is for {criterion.kind} outputs; for {kind} use one of {valid}")
    return criterion
