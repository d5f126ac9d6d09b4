"""The copy real inference runs on (:func:`inference_copy`), once per set of weights: eval mode, batch norm folded
into the convolution before it (``torch.nn.utils.fusion.fuse_conv_bn_eval``), and a few exact rewrites that save
memory traffic (:func:`_fast_layers`: max pools before ReLU, faster kernels for the same maxima, heads that read
the pooled map where it lies, channels-last convolutions). CPU kernels, not the contract: they live apart from it
(:mod:`eekit.models.contract`)."""

from __future__ import annotations

import copy
import operator
import weakref
from typing import Any, TypeVar, cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "inference_copy"]

M = TypeVar("M")  # the model kind inference_copy is given, and returns


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
        self.out: Any = (size, size) if isinstance(size, int) else tuple(cast(Any, size))

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
    Below :data:`PAIRWISE_FROM` values (batch 1) it calls ``max_pool2d`` on channels-last maps, which is faster
    there, but not on the default layout that :class:`FewChannelConv2d` leaves at batch 1 (``[1, 24, 32, 32]``:
    30 us against 14 us pairwise)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] % 2 or x.shape[-2] % 2 or (
                x.numel() < PAIRWISE_FROM and x.is_contiguous(memory_format=torch.channels_last)):
            return F.max_pool2d(x, 2)
        return _pair_max(x)


FEW_CHANNELS = 4  # convolutions with at most this many input channels (an image's first layer): FewChannelConv2d


class FewChannelConv2d(nn.Module):
    """A convolution of an image with few channels that runs single images in the default (NCHW) layout.

    Channels-last pays for every other convolution, but PyTorch convolves a single image with its own im2col
    kernel, which on channels-last weights with 3 input channels (27 products per output) runs at a third of its
    speed elsewhere: CIFAR-10's first convolution took 50 us at batch 1, 25 us in NCHW, and its first stage 164
    against 133 us (docs/performance.md). Batches keep channels-last, where oneDNN is faster in any case. The same
    products in another kernel: float rounding only."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv
        self.weight_nchw: torch.Tensor
        self.register_buffer("weight_nchw", conv.weight.detach().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and x.shape[0] == 1:
            return cast(torch.Tensor, self.conv._conv_forward(x.contiguous(), self.weight_nchw, self.conv.bias))
        return cast(torch.Tensor, self.conv(x))


class PooledLinear(nn.Module):
    """A head's ``pool -> Flatten(1) -> Linear`` as one module that never copies the pooled features.

    On channels-last activations the pooled map ``[N, C, p, p]`` lies in memory as ``[N, p, p, C]``, so
    ``Flatten(1)`` (channel-major order) has to copy it, and three module calls cost microseconds each: at batch 1
    a CIFAR-10 head took 14.5 us, 4 of them in the copy (docs/performance.md). Here the linear layer's weight is
    permuted once to the memory order, so the flattening is a view; the same products, summed in another order
    (float rounding only). Other layouts take the plain path with the original weight."""

    def __init__(self, pool: nn.Module, linear: nn.Linear, channels: int):
        super().__init__()
        self.pool, self.linear = pool, linear
        side = round((linear.in_features // channels) ** 0.5)
        if channels * side * side != linear.in_features:
            raise ValueError(f"a linear layer of {linear.in_features} inputs cannot read {channels} pooled channels")
        nhwc = linear.weight.detach().view(linear.out_features, channels, side, side).permute(0, 2, 3, 1)
        self.weight_nhwc: torch.Tensor
        self.register_buffer("weight_nhwc", nhwc.reshape(linear.out_features, -1).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x)
        if y.ndim == 4 and y.shape[-1] * y.shape[-2] > 1 and y.is_contiguous(memory_format=torch.channels_last):
            return F.linear(y.permute(0, 2, 3, 1).reshape(len(y), -1), self.weight_nhwc, self.linear.bias)
        return cast(torch.Tensor, self.linear(y.flatten(1)))


def _fuse_heads(model: nn.Module) -> None:
    """Every ``nn.Sequential`` that is exactly ``adaptive pool to p x p, Flatten(1), Linear`` (a
    :func:`~eekit.models.pooled_head` without a hidden layer) becomes :class:`PooledLinear`, in place."""
    for module in list(model.modules()):
        for name, child in module._modules.items():
            if not (isinstance(child, nn.Sequential) and len(child) == 3):
                continue
            pool, flat, linear = child
            size = getattr(pool, "output_size", None)
            side = size if isinstance(size, int) else size[0] if isinstance(size, tuple) and size[0] == size[1] else None
            if (isinstance(pool, (nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)) and side
                    and isinstance(flat, nn.Flatten) and (flat.start_dim, flat.end_dim) == (1, -1)
                    and isinstance(linear, nn.Linear) and linear.in_features % (side * side) == 0):
                module._modules[name] = PooledLinear(pool, linear, linear.in_features // (side * side))


def _is_pool2(m: nn.Module) -> bool:
    def pair(v: Any) -> bool:
        return v in (2, (2, 2))

    return (isinstance(m, nn.MaxPool2d) and pair(m.kernel_size) and (m.stride is None or pair(m.stride))
            and m.padding in (0, (0, 0)) and m.dilation in (1, (1, 1)) and not m.ceil_mode and not m.return_indices)


def _fast_layers(model: nn.Module) -> nn.Module:
    """Exact rewrites of ``model`` (a private copy): ``ReLU -> MaxPool2d`` becomes ``MaxPool2d -> ReLU`` (ReLU is
    monotonic, so the maxima are the same, and ReLU touches 4x fewer values); 2x2 max pools become
    :class:`PairMaxPool` and evenly dividing adaptive max pools :class:`WindowMaxPool` (the same maxima, faster
    kernels); pooled linear heads become :class:`PooledLinear` (no copy of the pooled map; float rounding only);
    4-d weights go channels-last, the layout oneDNN's convolutions run fastest in on CPUs (CIFAR-10's first stage
    at batch 256 takes half the time; docs/performance.md), and a convolution of the few-channel input image keeps
    NCHW weights for single images (:class:`FewChannelConv2d`)."""
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                relu, pool = module._modules[a], module._modules[b]
                if isinstance(relu, nn.ReLU) and isinstance(pool, nn.MaxPool2d) and not pool.return_indices:
                    module._modules[a], module._modules[b] = pool, relu
    _fuse_heads(model)
    for module in model.modules():
        for name, child in module._modules.items():
            if isinstance(child, nn.AdaptiveMaxPool2d) and not child.return_indices:
                module._modules[name] = WindowMaxPool(child)
            elif child is not None and _is_pool2(child):
                module._modules[name] = PairMaxPool()
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # nn.Module.to takes it; typeshed's overloads omit it
    for module in list(model.modules()):  # after the layout change, so that the NCHW weights stay NCHW
        for name, child in module._modules.items():
            if isinstance(child, nn.Conv2d) and child.in_channels <= FEW_CHANNELS:
                module._modules[name] = FewChannelConv2d(child)
    return model


class _Copy:
    """A folded copy and what it was made from: the model's tensors and their in-place version counters."""

    def __init__(self, model: nn.Module):
        self.tensors = [*model.parameters(), *model.buffers()]
        self.stamp = self.current()
        self.model = _fast_layers(fold_batchnorm(model))

    def current(self) -> tuple[int, ...]:
        # two passes in C (map) instead of a Python loop: batch-1 inference checks this on every call
        return (*map(_VERSION, self.tensors), *map(torch.Tensor.data_ptr, self.tensors))


_VERSION = operator.attrgetter("_version")
_COPIES: "weakref.WeakKeyDictionary[nn.Module, _Copy]" = weakref.WeakKeyDictionary()


def inference_copy(model: M) -> M:
    """The batch-norm-folded eval copy of ``model`` (:func:`fold_batchnorm`), cached: made again when one of the
    model's weights or buffers changes in place or moves (optimizer steps, ``load_state_dict``, ``.to(device)``),
    so real inference pays for folding once, not per call. Assigning a brand-new ``nn.Parameter`` object is not
    noticed: call ``inference_copy.cache_clear()`` after such surgery."""
    module = cast(nn.Module, model)  # any model kind is an nn.Module; typed M so the caller keeps its protocol
    cached = _COPIES.get(module)
    if cached is None or cached.current() != cached.stamp:
        cached = _COPIES[module] = _Copy(module)
    return cast(M, cached.model)


inference_copy.cache_clear = _COPIES.clear  # type: ignore[attr-defined]
