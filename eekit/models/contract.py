"""The model contract: what real early exit (:func:`eekit.runtime.infer`) needs from a model.

An early-exit model is driven step by step: ``begin`` turns the inputs into a *state* (the activations of the rows
still running, plus whatever a model needs beside them: frame masks for speech, earlier features for a shared
head), ``advance`` runs the next block, ``exit_output`` evaluates one exit on the state, and ``select`` keeps only
some rows (compaction: the rows that left are dropped). The image CNNs (:class:`~eekit.models.EarlyExitNet`) and the
speech encoders (:class:`~eekit.models.speech.SpeechEarlyExit`, CTC and keyword spotting) both satisfy it, so one
runtime serves both. Their ``forward`` is written with the same four calls, so training, the cached profile and
real inference run the very same code.

The copy inference runs on (:func:`~eekit.models.fast.inference_copy`: batch norm folded, exact CPU kernel
rewrites) lives in :mod:`eekit.models.fast`, re-exported here.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from .fast import fold_batchnorm, inference_copy

__all__ = ["ExitModel", "fold_batchnorm", "inference_copy"]


@runtime_checkable
class ExitModel(Protocol):
    """A model with ``num_exits`` exits, run one block at a time.

    ``output_kind`` is ``"classification"`` (``exit_output`` gives logits ``[N, C]``) or ``"ctc"`` (log-probs
    ``[N, T, V]`` with valid frame counts ``lengths(state)``). What the model accepts belongs to its kind:
    ``input_kind``, and ``check_input(x)`` raising a ``ValueError`` that says what is accepted; so does its training
    loss, ``batch_loss(batch)`` -> (every exit's output, the loss of one exit's output). ``select(state, keep)`` keeps rows ``keep`` (a
    boolean mask or index tensor over the current rows) of everything in the state, in that order.
    """

    output_kind: str
    input_kind: str  # "images" or "waveforms": what ``begin`` takes (``check_input`` says it precisely)

    def check_input(self, x: Any) -> None: ...

    def batch_loss(self, batch: Any, label_smoothing: float = 0.0) -> tuple[Any, Any]: ...

    @property
    def num_exits(self) -> int: ...

    def begin(self, inputs: Any) -> Any: ...

    def advance(self, state: Any, k: int) -> Any: ...

    def exit_output(self, state: Any, k: int) -> torch.Tensor: ...

    def lengths(self, state: Any) -> torch.Tensor | None: ...

    def select(self, state: Any, keep: torch.Tensor) -> Any: ...
