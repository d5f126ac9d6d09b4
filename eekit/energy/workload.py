"""What one inference of a trained early-exit model costs at each depth, and what it answers there."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import validate, zoo
from ..profile import ExitProfile
from ..costs import exit_costs

__all__ = ["Workload", "load_workload"]


@dataclass(frozen=True)
class Workload:
    """What one inference costs at each depth, and what the model answers there.

    ``stage_macs[k]`` / ``head_macs[k]``: MACs of backbone stage ``k`` and of exit head ``k`` (one sample);
    ``state_words[k]``: activations after stage ``k`` (what a checkpoint saves); ``head_params``: weights of the
    early heads (their memory overhead on the device); ``profile``: the model's exits on its test split.
    """

    name: str
    stage_macs: np.ndarray
    head_macs: np.ndarray
    state_words: np.ndarray
    head_params: int
    profile: ExitProfile
    shared_head: bool = False

    def __post_init__(self):
        validate.instance("profile", self.profile, ExitProfile, "an eekit ExitProfile (e.g. zoo.load_profile(name))")
        K = self.profile.num_exits
        for attr in ("stage_macs", "head_macs", "state_words"):
            try:
                value = np.asarray(getattr(self, attr), dtype=np.float64)
            except (TypeError, ValueError):
                value = None
            if value is None or value.shape != (K,) or not np.isfinite(value).all() or (value < 0).any():
                raise ValueError(f"{attr} needs {K} finite, non-negative values (one per exit), "
                                 f"got {getattr(self, attr)!r}")
            object.__setattr__(self, attr, value)
        if self.stage_macs[0] + self.head_macs[0] <= 0:
            raise ValueError(f"workload {self.name!r}: its first exit costs 0 MACs (stage_macs[0] + head_macs[0]); "
                             f"a real model needs > 0 MACs to answer (an inference that costs nothing could run "
                             f"infinitely often)")
        validate.whole("head_params", self.head_params, 0)

    @property
    def num_exits(self) -> int:
        return self.profile.num_exits

    @property
    def correct(self) -> np.ndarray:
        """``[K, N]``: whether exit k answers test sample n correctly."""
        return (self.profile.errors == 0).T

    def head_bytes(self, bytes_per_weight: int = 2) -> int:
        """Memory the early heads add (16-bit weights by default)."""
        return int(self.head_params * bytes_per_weight)


def load_workload(name: str) -> Workload:
    """The workload of a shipped checkpoint (e.g. ``cnn-mnist``, ``cnn-mnist-shared``): MACs counted with
    ``torch.utils.flop_counter`` on the real model, exits from its shipped test-split profile."""
    import torch

    recipe = zoo.RECIPES.get(name)
    if recipe is None or recipe.is_speech:
        image = [n for n, r in zoo.RECIPES.items() if not r.is_speech]
        raise ValueError(f"no energy workload for {name!r}: the simulator takes the shipped image models {image}")
    model = zoo.load_pretrained(name)
    example = torch.zeros(1, *recipe.input_shape)
    costs = exit_costs(model, example)
    words = []
    with torch.no_grad():
        x = example
        for stage in model.stages:
            x = stage(x)
            words.append(x.numel())
    early = model.exits.shared if model.shared_head else model.exits.heads[:-1]
    return Workload(name=name, stage_macs=costs.stage_flops / 2, head_macs=costs.head_flops / 2,
                    state_words=np.array(words, dtype=np.float64),
                    head_params=sum(p.numel() for p in early.parameters()), profile=zoo.load_profile(name),
                    shared_head=model.shared_head)
