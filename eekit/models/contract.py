"""The model contract: what real early exit (:func:`eekit.runtime.infer`) needs from a model.

An early-exit model is driven step by step: ``begin`` turns the inputs into a *state* (the activations of the rows
still running, plus whatever a model needs beside them: frame masks for speech, earlier features for a shared
head), ``advance`` runs the next block, ``exit_output`` evaluates one exit on the state, and ``select`` keeps only
some rows (compaction: the rows that left are dropped). The image CNNs (:class:`~eekit.models.EarlyExitNet`) and the
speech encoders (:class:`~eekit.models.speech.SpeechEarlyExit`, CTC and keyword spotting) both satisfy it, so one
runtime serves both. Their ``forward`` is written with the same four calls, so training, the cached profile and
real inference run the very same code.

:func:`inference_copy` makes the copy inference runs on, once per set of weights: eval mode, batch norm folded into
the convolution before it (``torch.nn.utils.fusion.fuse_conv_bn_eval``), and a few exact rewrites that save
memory traffic (:func:`_fast_layers`: max pools before ReLU, faster kernels for the same maxima, channels-last
convolutions).
"""

from __future__ import annotations

import copy
import weakref
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["ExitModel", "fold_batchnorm", "inference_copy"]


@runtime_checkable
class ExitModel(Protocol):
    """A model with ``num_exits`` exits, run one block at a time.

    ``output_kind`` is ``"classification"`` (``exit_output`` gives logits ``[N, C]``) or ``"ctc"`` (log-probs
    ``[N, T, V]`` with valid frame counts ``lengths(state)``). ``select(state, keep)`` keeps rows ``keep`` (a
    boolean mask or index tensor over the current rows) of everything in the state, in that order.
    """

    output_kind: str

    @property
    def num_exits(self) -> int: ...

    def begin(self, inputs: Any) -> Any: ...

    def advance(self, state: Any, k: int) -> Any: ...

    def exit_output(self, state: Any, k: int) -> torch.Tensor: ...

    def lengths(self, state: Any) -> torch.Tensor | None: ...

    def select(self, state: Any, keep: torch.Tensor) -> Any: ...


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` in which every batch norm that directly follows a convolution inside an
    ``nn.Sequential`` is folded into that convolution and removed. In eval mode batch norm is a per-channel affine
    map, so the copy computes the same function up to float rounding, with one pass over the activations fewer per
    folded pair. ``model`` itself is not changed."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, norm = module._modules.get(a), module._modules[b]
            if isinstance(conv, _CONVS) and isinstance(norm, _NORMS) and norm.track_running_stats:
                with torch.no_grad():
                    module._modules[a] = fuse_conv_bn_eval(conv, norm)
                del module._modules[b]
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


PAIRWISE_FROM = 1 << 16  # pairwise maxima pay from this many input values (a batch of a few images) up; below it
# (batch 1) one max_pool2d call costs less than their extra launches: [1, 24, 32, 32] 26 vs 37 us, one thread


class WindowMaxPool(nn.Module):
    """``AdaptiveMaxPool2d`` computed as a plain max pool when the input divides evenly (as in eekit's heads):
    the same windows, so bitwise the same maxima, from a faster kernel."""

    def __init__(self, adaptive: nn.AdaptiveMaxPool2d):
        super().__init__()
        size = adaptive.output_size
        self.out = (size, size) if isinstance(size, int) else tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (oh, ow) = x.shape[-2:], self.out
        if oh is None or ow is None or h % oh or w % ow:
            return F.adaptive_max_pool2d(x, self.out)
        if (oh, ow) == (1, 1):
            return x.amax((-2, -1), keepdim=True)
        k = h // oh
        if k == w // ow and k & (k - 1) == 0 and x.numel() >= PAIRWISE_FROM:  # big batches: pairwise maxima,
            # log2(k) times (at batch 1 the one max_pool2d call costs less than its extra launches)
            while k > 1:
                x, k = _pair_max(x), k // 2
            return x
        return F.max_pool2d(x, (h // oh, w // ow))


def _pair_max(x: torch.Tensor) -> torch.Tensor:
    """Max over non-overlapping 2x2 windows of ``[N, C, H, W]`` (even H, W): columns first, then rows."""
    cols = torch.maximum(x[..., 0::2], x[..., 1::2])
    return torch.maximum(cols[:, :, 0::2], cols[:, :, 1::2])


class PairMaxPool(nn.Module):
    """``MaxPool2d(2)`` as two pairwise maxima, first across columns, then across rows (the same maxima, bitwise).
    On channels-last activations it runs about 2.8x faster than ``max_pool2d``, which always writes an index per
    output on CPUs; CIFAR-10's first stage spends a quarter of its time pooling at 32x32 (docs/performance.md).
    Below :data:`PAIRWISE_FROM` values (batch 1) it calls ``max_pool2d``, which is faster there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] % 2 or x.shape[-2] % 2 or x.numel() < PAIRWISE_FROM:
            return F.max_pool2d(x, 2)
        return _pair_max(x)


def _is_pool2(m: nn.Module) -> bool:
    def pair(v):
        return v in (2, (2, 2))

    return (isinstance(m, nn.MaxPool2d) and pair(m.kernel_size) and (m.stride is None or pair(m.stride))
            and m.padding in (0, (0, 0)) and m.dilation in (1, (1, 1)) and not m.ceil_mode and not m.return_indices)


def _fast_layers(model: nn.Module) -> nn.Module:
    """Exact rewrites of ``model`` (a private copy): ``ReLU -> MaxPool2d`` becomes ``MaxPool2d -> ReLU`` (ReLU is
    monotonic, so the maxima are the same, and ReLU touches 4x fewer values); 2x2 max pools become
    :class:`PairMaxPool` and evenly dividing adaptive max pools :class:`WindowMaxPool` (the same maxima, faster
    kernels); 4-d weights go channels-last, the layout oneDNN's convolutions run fastest in on CPUs (CIFAR-10's
    first stage at batch 256 takes half the time; docs/performance.md)."""
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                relu, pool = module._modules[a], module._modules[b]
                if isinstance(relu, nn.ReLU) and isinstance(pool, nn.MaxPool2d) and not pool.return_indices:
                    module._modules[a], module._modules[b] = pool, relu
    for module in model.modules():
        for name, child in module._modules.items():
            if isinstance(child, nn.AdaptiveMaxPool2d) and not child.return_indices:
                module._modules[name] = WindowMaxPool(child)
            elif _is_pool2(child):
                module._modules[name] = PairMaxPool()
    return model.to(memory_format=torch.channels_last)


class _Copy:
    """A folded copy and what it was made from: the model's tensors and their in-place version counters."""

    def __init__(self, model: nn.Module):
        self.tensors = [*model.parameters(), *model.buffers()]
        self.stamp = self.current()
        self.model = _fast_layers(fold_batchnorm(model))

    def current(self) -> list:
        return [(t._version, t.data_ptr()) for t in self.tensors]


_COPIES: "weakref.WeakKeyDictionary[nn.Module, _Copy]" = weakref.WeakKeyDictionary()


def inference_copy(model: nn.Module) -> nn.Module:
    """The batch-norm-folded eval copy of ``model`` (:func:`fold_batchnorm`), cached: made again when one of the
    model's weights or buffers changes in place or moves (optimizer steps, ``load_state_dict``, ``.to(device)``),
    so real inference pays for folding once, not per call. Assigning a brand-new ``nn.Parameter`` object is not
    noticed: call ``inference_copy.cache_clear()`` after such surgery."""
    cached = _COPIES.get(model)
    if cached is None or cached.current() != cached.stamp:
        cached = _COPIES[model] = _Copy(model)
    return cached.model


inference_copy.cache_clear = _COPIES.clear  # type: ignore[attr-defined]
