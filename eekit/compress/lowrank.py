"""Low-rank factorization: the first half of FreeML's SparseComp.

A Linear ``W [out, in]`` becomes ``in -> r -> out`` (truncated SVD); a conv ``W [out, in, k, k]`` becomes a
``k x k`` conv to ``r`` channels followed by a ``1 x 1`` conv (the SVD of ``W`` reshaped to ``[out, in*k*k]``).
The rank is a knob: the smallest ``r`` that keeps a fraction ``energy`` of the squared singular values.
As in FreeML, only layers bigger than ``max_layer_bytes`` (fp32) are factorized, largest first.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["rank_for_energy", "factorize_linear", "factorize_conv", "lowrank", "apply_ranks", "FREEML_MAX_LAYER_BYTES"]

FREEML_MAX_LAYER_BYTES = 80_000  # SparseComp factorizes every layer over 80,000 fp32 bytes


def rank_for_energy(weight: torch.Tensor, energy: float) -> int:
    """The smallest rank keeping ``energy`` (a fraction in (0, 1]) of ``weight``'s squared singular values."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy is a fraction in (0, 1], got {energy}")
    s = torch.linalg.svdvals(weight.detach().flatten(1).double())
    kept = (s**2).cumsum(0) / (s**2).sum()
    return int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype) - 1e-12)) + 1


def _split(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    U, S, Vh = torch.linalg.svd(weight.detach().flatten(1).double(), full_matrices=False)
    root = S[:rank].sqrt()
    return (root[:, None] * Vh[:rank]).float(), (U[:, :rank] * root).float()


def factorize_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """``Linear(in, out)`` as ``Linear(in, rank, bias=False) -> Linear(rank, out)`` (truncated SVD)."""
    first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features)
    a, b = _split(layer.weight, rank)
    with torch.no_grad():
        first.weight.copy_(a)
        second.weight.copy_(b)
        second.bias.copy_(layer.bias if layer.bias is not None else torch.zeros(layer.out_features))
    return nn.Sequential(first, second)


def factorize_conv(layer: nn.Conv2d, rank: int) -> nn.Sequential:
    """``Conv2d(in, out, k)`` as ``Conv2d(in, rank, k, bias=False) -> Conv2d(rank, out, 1)``."""
    if layer.groups != 1 or layer.stride != (1, 1) or layer.dilation != (1, 1):
        raise ValueError(f"only plain stride-1 convs are factorized, got {layer}")
    first = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, padding=layer.padding, bias=False)
    second = nn.Conv2d(rank, layer.out_channels, 1)
    a, b = _split(layer.weight, rank)
    with torch.no_grad():
        first.weight.copy_(a.view_as(first.weight))
        second.weight.copy_(b.view_as(second.weight))
        second.bias.copy_(layer.bias if layer.bias is not None else torch.zeros(layer.out_channels))
    return nn.Sequential(first, second)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def lowrank(model: nn.Module, energy: float = 0.6, max_layer_bytes: int = FREEML_MAX_LAYER_BYTES,
            skip: tuple[str, ...] = ()) -> dict[str, int]:
    """Factorize, in place, every Linear / Conv2d of ``model`` over ``max_layer_bytes`` fp32 bytes (largest
    first) whose rank at ``energy`` saves parameters. Returns ``{layer name: rank}`` (see :func:`apply_ranks`)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and n not in skip]
    layers.sort(key=lambda nm: -nm[1].weight.numel())
    ranks = {}
    for name, layer in layers:
        w = layer.weight
        if 4 * w.numel() <= max_layer_bytes:
            continue
        rank = rank_for_energy(w, energy)
        out, inner = w.shape[0], w[0].numel()
        if rank * (out + inner) >= out * inner:
            continue  # the factors would be bigger than the layer
        _replace(model, name, factorize_linear(layer, rank) if isinstance(layer, nn.Linear)
                 else factorize_conv(layer, rank))
        ranks[name] = rank
    return ranks


def apply_ranks(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Give a fresh model the factorized structure ``ranks`` describes, so a compressed state dict loads into it."""
    for name, rank in ranks.items():
        layer = model.get_submodule(name)
        _replace(model, name, factorize_linear(layer, rank) if isinstance(layer, nn.Linear)
                 else factorize_conv(layer, rank))
    return model
