"""Real early exit: the model stops computing for samples that are confident enough.

At batch size 1 :func:`infer` returns at the first confident exit. For a batch it keeps running only the samples
that have not left yet (*compaction*): after each exit the confident rows are set aside and removed from the batch,
with an index array remembering where each remaining row came from. Results come back in input order. The exit
decision uses the same score function as the cached profile (:meth:`Criterion.scores`), so both agree.

Any model that satisfies the contract :class:`~eekit.models.contract.ExitModel` runs here: the image CNNs and the
speech encoders (CTC and keyword spotting; their input is ``(waves [N, S], lengths [N])``). Inference runs on a
batch-norm-folded copy (:func:`~eekit.models.fast.inference_copy`) under ``torch.inference_mode``; memoryless
criteria score only the newest exit; per-sample work is tensor work, never a Python loop over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any, cast

import numpy as np
import torch

from .criteria import Criterion, get_criterion
from .models.contract import ExitModel
from .models.fast import inference_copy
from .models.speech import greedy_ctc
from .validate import exit_threshold, model_input, whole

__all__ = ["InferenceResult", "infer", "infer_full", "default_device", "check_device"]


def default_device() -> str:
    """Where training and benchmarks run unless told: the GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | torch.device | None) -> torch.device:
    """``device`` (``None``: :func:`default_device`) as a ``torch.device`` that exists on this machine."""
    accepted = "cpu, cuda, cuda:N" + ("" if torch.cuda.is_available() else " (no CUDA GPU on this machine)")
    try:
        device = torch.device(device if device is not None else default_device())
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; accepted: {accepted}") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {str(device)!r} is not available here; accepted: {accepted}")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r} is not supported; accepted: {accepted}")
    return device


@dataclass
class InferenceResult:
    predictions: torch.Tensor  # [N] class index; CTC: [N, T] best label per frame
    exit_index: torch.Tensor  # [N] exit each sample left at (0-based)
    logits: torch.Tensor  # [N, C] the answering exit's output; CTC: log-probs [N, T, V]
    lengths: torch.Tensor | None = None  # CTC: [N] valid frames of each utterance

    def transcripts(self) -> list[str]:
        """CTC: the greedy (best-path) transcript of each utterance, as the cached profile decodes it."""
        if self.lengths is None:
            raise ValueError("transcripts exist for CTC outputs only; this result holds class predictions")
        return [greedy_ctc(lp, int(n)) for lp, n in zip(self.logits, self.lengths)]


def _inputs(model: ExitModel, x: Any) -> Any:
    """``x`` as the model's ``begin`` takes it; speech: ``(waves, lengths)``, a bare ``[N, S]`` is all full length."""
    if model.input_kind == "waveforms":
        if isinstance(x, torch.Tensor):
            x = (x, torch.full((x.shape[0],), x.shape[-1], dtype=torch.long, device=x.device))
        x = (x[0], torch.as_tensor(x[1], device=x[0].device))
    first = x[0] if isinstance(x, (tuple, list)) else x
    if not isinstance(first, torch.Tensor) or first.ndim < 2 or first.shape[0] < 1:
        shape = tuple(first.shape) if isinstance(first, torch.Tensor) else type(first).__name__
        raise ValueError(f"x must be a non-empty batch [N, ...], got shape {shape}")
    return x


def _chunks(inputs: Any, batch_size: int | None) -> list[Any]:
    """``inputs`` in consecutive chunks of ``batch_size`` rows (bounded activation memory for thousands of inputs).
    Speech chunks are cut to their longest utterance, the padding ``collate`` gives that batch."""
    if batch_size is not None:
        batch_size = whole("batch_size", batch_size, 1)
    if isinstance(inputs, torch.Tensor):
        return list(torch.split(inputs, batch_size)) if batch_size else [inputs]
    waves, lengths = inputs
    parts = zip(torch.split(waves, batch_size), torch.split(lengths, batch_size)) if batch_size else [inputs]
    return [(w[:, : int(n.max())], n) for w, n in parts]


def _criterion(model: ExitModel, criterion: str | Criterion, threshold: float) -> tuple[Criterion, float]:
    c = get_criterion(criterion, model.output_kind)  # "classification", "ctc" or "units"
    if c.needs_labels:
        raise ValueError("the oracle peeks at labels: it exists only in the cached profile, as an upper bound")
    threshold = c.check_threshold(threshold)
    if c.integer:  # patience / a fixed exit beyond the model's exits would silently mean "the last exit"
        exit_threshold(c.name, threshold, c.low, model.num_exits)
    return c, threshold


def infer(model: ExitModel, x: Any, criterion: str | Criterion, threshold: float,
          batch_size: int | None = None) -> InferenceResult:
    """Early-exit inference of ``model`` on a batch ``x`` (batch size 1 included): images ``[N, C, H, W]``, or for
    a speech model ``(waves [N, S], lengths [N])``.

    ``batch_size`` runs ``x`` in chunks of that many rows (same results; memory bounded by one chunk's
    activations, which matters on a 2 GB Binder for thousands of images).
    """
    model_input(model, x)  # kind, shape, dtype, range: what is accepted, said at one shared place
    c, threshold = _criterion(model, criterion, threshold)
    parts = _chunks(_inputs(model, x), batch_size)
    fast = inference_copy(model)
    with torch.inference_mode():
        return _concat([_early_exit(fast, part, c, threshold) for part in parts])


def _early_exit(model: ExitModel, inputs: Any, c: Criterion, threshold: float) -> InferenceResult:
    """One chunk: run block by block, set aside the rows that pass, compact the rest."""
    K = model.num_exits
    cut = float(np.float32(threshold))  # the threshold as torch compares it with float32 scores (and numpy, in
    # the cached profile): a Python comparison against it gives the same answer for every score
    state = model.begin(inputs)
    rows: torch.Tensor | None = None  # input row of each row still running (None: all, in order)
    history: list[torch.Tensor] = []  # earlier exits of the rows still running, for criteria with memory
    left: list[tuple[torch.Tensor | None, int, torch.Tensor, torch.Tensor | None]] = []
    for k in range(K):
        state = model.advance(state, k)
        out = model.exit_output(state, k)
        lengths = model.lengths(state)
        if k == K - 1:
            left.append((rows, k, out, lengths))
            break
        if not c.memoryless:
            history.append(out)
        # the criterion's own score function, as Criterion.scores calls it for the profile; the checks around it
        # (input shape, finite values) were made once on the model's input
        score = c.score_fn(torch.stack(history) if history else out[None], lengths=lengths)[-1]
        if len(score) == 1:  # one row (batch 1): one Python comparison instead of three tensor ops (~4 us)
            if c.confident(score.item(), cut):
                left.append((rows, k, out, lengths))
                break
            continue
        done = c.confident(score, threshold)
        n_done = int(done.sum())
        if n_done == len(done):  # everyone left (always the case at batch 1 when it passes)
            left.append((rows, k, out, lengths))
            break
        if n_done:  # compaction: set the confident rows aside, keep running the rest
            gone = done.nonzero().squeeze(1)
            keep = (~done).nonzero().squeeze(1)
            left.append((gone if rows is None else rows[gone], k, out[gone],
                         None if lengths is None else lengths[gone]))
            rows = keep if rows is None else rows[keep]
            state = model.select(state, keep)
            history = [h[keep] for h in history]
    return _in_input_order(left)


def _in_input_order(left: Any) -> InferenceResult:
    """The rows set aside at each exit, put back in input order."""
    if len(left) == 1:  # nobody left before the last exit that answered
        rows, k, out, lengths = left[0]
        exit_index = torch.full((out.shape[0],), k, dtype=torch.long, device=out.device)
        return _result(out, exit_index, lengths)
    n = sum(piece[2].shape[0] for piece in left)
    order = torch.cat([piece[0] for piece in left])
    exit_index = torch.cat([torch.full((len(piece[0]),), piece[1], dtype=torch.long, device=order.device)
                            for piece in left])
    outputs = _pad_cat([piece[2] for piece in left])
    inverse = torch.empty(n, dtype=torch.long, device=order.device)
    inverse[order] = torch.arange(n, device=order.device)
    lengths = None if left[0][3] is None else torch.cat([piece[3] for piece in left])[inverse]
    return _result(outputs[inverse], exit_index[inverse], lengths)


def _result(out: torch.Tensor, exit_index: torch.Tensor, lengths: torch.Tensor | None) -> InferenceResult:
    return InferenceResult(out.argmax(-1), exit_index, out, lengths)


def _pad_cat(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along rows; CTC outputs of different frame counts are zero-padded to the longest."""
    if outputs[0].ndim == 3:
        T = max(o.shape[1] for o in outputs)
        outputs = [torch.nn.functional.pad(o, (0, 0, 0, T - o.shape[1])) for o in outputs]
    return torch.cat(outputs)


def _concat(parts: list[InferenceResult]) -> InferenceResult:
    if len(parts) == 1:
        return parts[0]
    logits = _pad_cat([p.logits for p in parts])
    lengths = None if parts[0].lengths is None else torch.cat([cast(torch.Tensor, p.lengths) for p in parts])
    return InferenceResult(logits.argmax(-1), torch.cat([p.exit_index for p in parts]), logits, lengths)


def infer_full(model: ExitModel, x: Any, batch_size: int | None = None) -> InferenceResult:
    """The plain model: every block, only the final head (the baseline an early exit must beat), on the same
    folded copy as :func:`infer`; every sample's ``exit_index`` is the last exit. ``batch_size`` as in :func:`infer`.
    """
    model_input(model, x)  # the same checks as infer's, so both sides of a benchmark pay for them
    parts = _chunks(_inputs(model, x), batch_size)
    fast = inference_copy(model)
    with torch.inference_mode():
        return _concat([_final(fast, part) for part in parts])


def _final(model: ExitModel, inputs: Any) -> InferenceResult:
    state = model.begin(inputs)
    for k in range(model.num_exits):
        state = model.advance(state, k)
    out = model.exit_output(state, model.num_exits - 1)
    exit_index = torch.full((out.shape[0],), model.num_exits - 1, dtype=torch.long, device=out.device)
    return _result(out, exit_index, model.lengths(state))
