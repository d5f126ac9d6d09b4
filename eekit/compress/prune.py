"""Iterative magnitude pruning with short retraining: the second half of FreeML's SparseComp.

Each round takes the largest layer (in MCU bytes) that is not *fragile*, cuts its density until its bytes shrink
by at least ``step`` (10 % in FreeML), zeroes the smallest-magnitude weights, and retrains the whole network for a
few hundred steps with the pruned weights held at zero (a mask parametrization, so :func:`eekit.train.train` runs
unchanged). A round that costs the final exit more than ``fragile_drop`` on the validation images is undone and
the layer is marked fragile (FreeML: 5 points; never pruned again). It stops when the model fits ``target_bytes``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

__all__ = ["Mask", "prunable_layers", "magnitude_mask", "set_density", "strip_masks", "PruneStep", "prune_to_target"]


class Mask(nn.Module):
    """A weight parametrization ``w * mask``: pruned weights stay exactly zero while the rest trains."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Linear and Conv2d, by name: the layers that hold weights."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


def magnitude_mask(weight: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` fraction of ``weight``'s entries with the largest magnitude (at least one)."""
    keep = max(1, int(round(density * weight.numel())))
    threshold = weight.detach().abs().flatten().kthvalue(weight.numel() - keep + 1).values
    magnitude = weight.detach().abs()
    return ((magnitude >= threshold) & (magnitude > 0)).float()


def set_density(layer: nn.Module, density: float) -> None:
    """Prune ``layer`` to ``density`` by magnitude (replacing any mask it has)."""
    weight = layer.weight.detach().clone()  # the masked weight: pruned entries are already 0
    mask = magnitude_mask(weight, density)
    if parametrize.is_parametrized(layer, "weight"):
        with torch.no_grad():
            layer.parametrizations.weight.original.copy_(weight)
            layer.parametrizations.weight[0].mask.copy_(mask)
    else:
        parametrize.register_parametrization(layer, "weight", Mask(mask))


def strip_masks(model: nn.Module) -> nn.Module:
    """Bake the masks into the weights (zeros stay zeros) so the state dict is a plain one."""
    for layer in prunable_layers(model).values():
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return model


def density(layer: nn.Module) -> float:
    w = layer.weight.detach()
    return float((w != 0).float().mean())


@dataclass
class PruneStep:
    """One step of the compression history (accuracies are fractions, per exit, on the test split)."""

    step: int
    action: str  # "low-rank", "prune <layer>", "undo <layer> (fragile)", ...
    bytes_mcu: int
    bytes_freeml: int
    accuracy_per_exit: list[float]
    densities: dict[str, float] = field(default_factory=dict)
    kept: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def prune_to_target(model: nn.Module, target_bytes: int, layer_bytes: Callable[[nn.Module], int],
                    model_bytes: Callable[[nn.Module], tuple[int, int]], retrain: Callable[[nn.Module, int], None],
                    validate: Callable[[nn.Module], float], evaluate: Callable[[nn.Module], list[float]],
                    step: float = 0.1, fragile_drop: float = 0.05, max_rounds: int = 60, first_step: int = 1,
                    skip: tuple[str, ...] = (), progress: bool = True) -> list[PruneStep]:
    """Prune ``model`` in place until ``model_bytes(model)[0] <= target_bytes``; returns one :class:`PruneStep`
    per round. ``layer_bytes`` prices one layer on the MCU, ``model_bytes`` gives (MCU bytes, FreeML bytes),
    ``retrain(model, round)`` fine-tunes, ``validate`` returns the final exit's validation accuracy and
    ``evaluate`` every exit's test accuracy (recorded, never used for decisions)."""
    layers = {n: m for n, m in prunable_layers(model).items() if n not in skip}
    for layer in layers.values():  # a mask on every layer from the start: undoing a round is a state-dict copy
        if not parametrize.is_parametrized(layer, "weight"):
            parametrize.register_parametrization(layer, "weight", Mask((layer.weight.detach() != 0).float()))
    fragile: set[str] = set()
    history: list[PruneStep] = []
    reference = validate(model)
    bar = tqdm(total=max_rounds, disable=not progress, desc="pruning", unit="round")
    for r in range(first_step, first_step + max_rounds):
        mcu, freeml = model_bytes(model)
        if mcu <= target_bytes:
            break
        candidates = [n for n in layers if n not in fragile and density(layers[n]) > 0.02]
        if not candidates:
            break
        name = max(candidates, key=lambda n: layer_bytes(layers[n]))
        layer, before = layers[name], layer_bytes(layers[name])
        backup = copy.deepcopy(model.state_dict())
        d = density(layer)
        while d > 0.01:  # cut the density until the layer's bytes shrink by >= step
            d *= 1 - step / 2
            set_density(layer, d)
            if layer_bytes(layer) <= (1 - step) * before:
                break
        retrain(model, r)
        accuracy = validate(model)
        kept = reference - accuracy < fragile_drop  # what this round cost, against the last kept round
        if not kept:  # FreeML's fragile-layer rule: undo the round, never prune this layer again
            fragile.add(name)
            model.load_state_dict(backup)
        else:
            reference = accuracy
        mcu, freeml = model_bytes(model)
        history.append(PruneStep(r, f"prune {name} to {d:.1%}" if kept else f"undo {name} (fragile: "
                                 f"validation {accuracy:.1%})", mcu, freeml, evaluate(model),
                                 {n: round(density(m), 4) for n, m in layers.items()}, kept))
        bar.update(1)
        bar.set_postfix(bytes=mcu, layer=name, val=f"{accuracy:.3f}")
    bar.close()
    return history
