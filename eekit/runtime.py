"""Real early exit: the model stops computing for samples that are confident enough.

At batch size 1 :func:`infer` returns at the first confident exit. For a batch it keeps running only the samples
that have not left yet (*compaction*): after each exit the confident rows are written to the result and removed
from the batch, with an index array remembering where each remaining row came from. Results come back in input
order. The exit decision uses the same :meth:`Criterion.scores` as the cached profile, so both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .criteria import Criterion, get_criterion, passes
from .models.exits import EarlyExitNet

__all__ = ["InferenceResult", "infer", "infer_full"]


@dataclass
class InferenceResult:
    predictions: torch.Tensor  # [N] class index
    exit_index: torch.Tensor  # [N] exit each sample left at (0-based)
    logits: torch.Tensor  # [N, C] the answering exit's output


def _chunks(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``x`` in consecutive chunks of ``batch_size`` rows: bounded activation memory for thousands of inputs."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return list(torch.split(x, batch_size))


def infer(model: EarlyExitNet, x: torch.Tensor, criterion: str | Criterion, threshold: float,
          batch_size: int | None = None) -> InferenceResult:
    """Early-exit inference of a classification model on a batch ``x`` (batch size 1 included).

    ``batch_size`` runs ``x`` in chunks of that many rows (same results; memory bounded by one chunk's
    activations, which matters on a 2 GB Binder for thousands of images).
    """
    if batch_size is not None:
        parts = [infer(model, part, criterion, threshold) for part in _chunks(x, batch_size)]
        return InferenceResult(*(torch.cat([getattr(p, f) for p in parts])
                                 for f in ("predictions", "exit_index", "logits")))
    c = get_criterion(criterion, "classification")
    if c.needs_labels:
        raise ValueError("the oracle peeks at labels: it exists only in the cached profile, as an upper bound")
    threshold = c.check_threshold(threshold)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a non-empty batch [N, ...], got shape {tuple(x.shape)}")
    model.eval()
    K = model.num_exits
    N = x.shape[0]
    keep_history = getattr(model.exits, "needs_history", True)
    with torch.no_grad():
        remaining = torch.arange(N)  # original row of each row still in the batch
        features: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []  # exits so far, for the rows still in the batch (criteria like patience)
        pred = torch.empty(N, dtype=torch.long)
        exit_idx = torch.empty(N, dtype=torch.long)
        final_logits = None
        h = x
        for k, stage in enumerate(model.stages):
            h = stage(h)
            features = features + [h] if keep_history else [h]
            out = model.exits(k, features)
            outputs.append(out)
            if final_logits is None:
                final_logits = out.new_empty(N, out.shape[-1])
            if k == K - 1:
                done = torch.ones(len(remaining), dtype=torch.bool)
            else:
                scores = c.scores(torch.stack(outputs))[-1]  # this exit's score, causal in the exits so far
                done = passes(c, scores, threshold)
            rows = remaining[done]
            pred[rows] = out[done].argmax(-1)
            exit_idx[rows] = k
            final_logits[rows] = out[done]
            if bool(done.all()):
                break
            if bool(done.any()):  # compaction: drop the rows that left
                stay = ~done
                remaining = remaining[stay]
                h = h[stay]
                features = [f[stay] for f in features]
                outputs = [o[stay] for o in outputs]
    return InferenceResult(pred, exit_idx, final_logits)


def infer_full(model: EarlyExitNet, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """The plain model: every stage, only the final head (the baseline an early exit must beat).
    ``batch_size`` as in :func:`infer`."""
    if batch_size is not None:
        return torch.cat([infer_full(model, part) for part in _chunks(x, batch_size)])
    model.eval()
    with torch.no_grad():
        return model.forward_to(x, model.num_exits - 1).argmax(-1)

