"""Early-exit networks: backbone stages, each followed by an exit.

An :class:`EarlyExitNet` is ``stages[0] -> exit 0 -> stages[1] -> exit 1 -> ... -> stages[K-1] -> exit K-1``.
The last exit is the model's ordinary classifier. Exits come in two flavours:

* :class:`ExitHeads` - one small head per exit (BranchyNet, Shallow-Deep Networks);
* :class:`SharedExitHead` - a single head for every exit point (FreeML's gNet): it sees the pooled features of all
  exit points, with the ones not computed yet filled with zeros, so one set of weights answers at any depth.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from .. import validate

__all__ = ["EarlyExitNet", "FeatureState", "ExitHeads", "SharedExitHead", "SharedPlusFinal", "Normalize",
           "pooled_head", "attach_exits"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as a layer so that checkpoints carry their own preprocessing."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"expected images [N, {self.mean.shape[1]}, H, W] with values in [0, 1], got shape {tuple(x.shape)}"
            )
        return (x - self.mean) / self.std


def pooled_head(in_channels: int, num_classes: int, hidden: int = 0, pool_size: int = 1,
                pool: str = "avg") -> nn.Sequential:
    """Pool to ``pool_size`` x ``pool_size`` + (optional hidden layer) + linear: a cheap exit for conv features
    ``[N, C, H, W]``. Shallow-Deep Networks' heads keep a 4x4 spatial layout and use max pooling (``pool="max"``):
    early features are local, and averaging them over the whole image throws most of them away."""
    if pool not in ("avg", "max"):
        raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
    features = in_channels * pool_size * pool_size
    pooling = nn.AdaptiveAvgPool2d(pool_size) if pool == "avg" else nn.AdaptiveMaxPool2d(pool_size)
    layers: list[nn.Module] = [pooling, nn.Flatten(1)]
    if hidden:
        layers += [nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)]
    else:
        layers += [nn.Linear(features, num_classes)]
    return nn.Sequential(*layers)


class ExitHeads(nn.Module):
    """One head per exit. ``forward(k, features)`` applies head ``k`` to the newest features."""

    needs_history = False  # only the last stage's output is needed

    def __init__(self, heads: Sequence[nn.Module]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def __len__(self) -> int:
        return len(self.heads)

    def forward(self, k: int, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return cast(torch.Tensor, self.heads[k](features[-1]))


class SharedExitHead(nn.Module):
    """FreeML's gNet: one linear classifier over the pooled features of *all* exit points.

    Each exit point's features are max-pooled to ``pool_size`` and flattened; exit points deeper than ``k`` are
    zero-filled. Train it with a random exit index per batch (``eekit.train``) so it answers from any prefix.
    """

    needs_history = True  # reads the features of every exit point reached so far

    def __init__(self, channels: Sequence[int], num_classes: int, pool_size: int = 2, dropout: float = 0.2):
        super().__init__()
        self.channels = list(channels)
        self.pool = nn.AdaptiveMaxPool2d(pool_size)
        self.sizes = [c * pool_size * pool_size for c in self.channels]
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(sum(self.sizes), num_classes)

    def __len__(self) -> int:
        return len(self.channels)

    def forward(self, k: int, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != k + 1:
            raise ValueError(f"exit {k} needs the features of exit points 0..{k}, got {len(features)}")
        pooled = [self.pool(f).flatten(1) for f in features]
        batch = pooled[0].shape[0]
        missing = sum(self.sizes[k + 1 :])
        if missing:
            pooled.append(pooled[0].new_zeros(batch, missing))
        return cast(torch.Tensor, self.linear(self.dropout(torch.cat(pooled, dim=1))))


@dataclass
class FeatureState:
    """Where a batch stands inside an :class:`EarlyExitNet`: the newest features ``h`` and, for heads that read
    every exit point (``needs_history``), the features of all exit points reached so far."""

    h: torch.Tensor
    features: list[torch.Tensor] = field(default_factory=list)


class EarlyExitNet(nn.Module):
    """A backbone cut into ``stages`` with an exit after each; ``forward`` returns every exit's output.

    ``exit_names`` label the exits for plots and reports (default ``exit1 ... exitK``). It satisfies the model
    contract (:class:`~eekit.models.contract.ExitModel`): ``begin``, ``advance``, ``exit_output``, ``select``.
    """

    output_kind = "classification"
    input_kind = "images"

    def __init__(self, stages: Sequence[nn.Module], exits: ExitHeads | SharedExitHead | SharedPlusFinal, exit_names: Sequence[str] | None = None):
        super().__init__()
        if len(stages) != len(exits):
            raise ValueError(f"{len(stages)} stages but {len(exits)} exits: every stage needs exactly one exit after it")
        if len(stages) < 1:
            raise ValueError("an early-exit network needs at least one stage")
        self.stages = nn.ModuleList(stages)
        self.exits = exits
        self.exit_names = list(exit_names or [f"exit{k + 1}" for k in range(len(stages))])
        if len(self.exit_names) != len(stages):
            raise ValueError(f"{len(self.exit_names)} exit names for {len(stages)} exits")

    @property
    def num_exits(self) -> int:
        return len(self.stages)

    @property
    def shared_head(self) -> bool:
        """Whether the early exits share one head (FreeML's gNet, :class:`SharedPlusFinal`)."""
        return bool(getattr(self.exits, "shared_head", False))

    def check_input(self, x: torch.Tensor) -> None:
        """A float image batch ``[N, C, H, W]`` with this model's channels, in [0, 1] when the model normalizes its
        own input (eekit's CNNs do); otherwise any non-empty float batch of finite values."""
        # the input's normalization comes before the first convolution: the walk stops there
        normalizes, conv = False, None
        for m in self.stages[0].modules():
            if isinstance(m, Normalize):
                normalizes = True
            elif isinstance(m, torch.nn.Conv2d):
                conv = m
                break
        if normalizes:  # normalizes inside: takes [0, 1] pixels
            validate.image_batch("x", x, channels=conv.in_channels if conv is not None else None)
        else:
            validate.float_batch(x)

    def batch_loss(self, batch: Any, label_smoothing: float = 0.0) -> tuple[list[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
        """Every exit's output on ``batch = (images, labels)`` and the loss of one exit's output (cross-entropy)."""
        images, labels = batch
        return self(images), lambda out: F.cross_entropy(out, labels, label_smoothing=label_smoothing)

    # the model contract: one block at a time
    def begin(self, x: torch.Tensor) -> FeatureState:
        return FeatureState(x)

    def advance(self, state: FeatureState, k: int) -> FeatureState:
        """Run stage ``k``; keep earlier features only if the heads read them."""
        h = self.stages[k](state.h)
        return FeatureState(h, state.features + [h] if getattr(self.exits, "needs_history", True) else [h])

    def exit_output(self, state: FeatureState, k: int) -> torch.Tensor:
        return cast(torch.Tensor, self.exits(k, state.features))

    def lengths(self, state: FeatureState) -> None:
        return None  # one label per image

    def select(self, state: FeatureState, keep: torch.Tensor) -> FeatureState:
        """The rows ``keep`` of every tensor in ``state``; the newest features are copied once even when the list of
        exit-point features holds them too (without history it holds only them: half of the compaction's copying)."""
        h = state.h[keep]
        return FeatureState(h, [h if f is state.h else f[keep] for f in state.features])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        state, outputs = self.begin(x), []
        for k in range(self.num_exits):
            state = self.advance(state, k)
            outputs.append(self.exit_output(state, k))
        return outputs

    def forward_to(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Only exit ``k``'s output, computing stages ``0..k`` and no other head (the single-exit cost)."""
        if not 0 <= k < self.num_exits:
            raise ValueError(f"exit index must be in 0..{self.num_exits - 1}, got {k}")
        state = self.begin(x)
        for j in range(k + 1):
            state = self.advance(state, j)
        return self.exit_output(state, k)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the stages (frozen in two-stage training)."""
        return self.stages.parameters()


# ---------------------------------------------------------------------------------------------- attach to a model


def _chain_of_children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's top-level children in order, with a Flatten inserted before the first Linear that follows
    a spatial layer (what torchvision's ResNet/VGG ``forward`` does with ``torch.flatten``)."""
    chain: list[tuple[str, nn.Module]] = []
    flattened = False
    for name, child in model.named_children():
        if isinstance(child, nn.Linear) and not flattened and chain:
            chain.append((f"{name}_flatten", nn.Flatten(1)))
            flattened = True
        if isinstance(child, (nn.Flatten,)):
            flattened = True
        chain.append((name, child))
    return chain


def attach_exits(
    model: nn.Module,
    exit_after: Sequence[str],
    num_classes: int,
    example_input: torch.Tensor,
    shared_head: bool = False,
    head_hidden: int = 0,
) -> EarlyExitNet:
    """Cut ``model`` after the named top-level children and put an exit after each cut.

    Works for models whose ``forward`` is a plain chain of their children (``nn.Sequential``, torchvision ResNets,
    VGG, ...). The model's own classifier becomes the last exit. The weights are shared with ``model``, not copied.
    ``example_input`` (a small batch) is used to size the heads and to check that the cut model computes exactly
    what ``model`` computes; a model that is not a chain gets a clear error instead of wrong results.
    """
    chain = _chain_of_children(model)
    names = [n for n, _ in chain if not n.endswith("_flatten")]
    if not exit_after:
        raise ValueError(f"exit_after is empty; name one or more of the model's top-level children: {names}")
    unknown = [n for n in exit_after if n not in names]
    if unknown:
        raise ValueError(f"no top-level layer named {unknown} in {type(model).__name__}; choose from {names}")
    positions = [names.index(n) for n in exit_after]
    if positions != sorted(set(positions)):
        raise ValueError(f"exit_after must name distinct layers in forward order, got {list(exit_after)}")
    if positions[-1] == len(names) - 1:
        raise ValueError(f"{exit_after[-1]!r} is the model's last layer; it already is the final exit")

    stages, current = [], []
    cuts = set(exit_after)
    for name, module in chain:
        current.append((name, module))
        if name in cuts:
            stages.append(nn.Sequential(OrderedDict(current)))
            current = []
    stages.append(nn.Sequential(OrderedDict(current)))

    was_training = model.training
    model.eval()
    heads: list[nn.Module] = []
    channels: list[int] = []
    with torch.no_grad():
        x = example_input
        for i, stage in enumerate(stages[:-1]):
            try:
                x = stage(x)
            except RuntimeError as err:
                raise ValueError(f"stage ending at {exit_after[i]!r} failed on the example input: {err}") from err
            if x.ndim != 4:
                raise ValueError(
                    f"exit after {exit_after[i]!r} needs conv features [N, C, H, W], got shape {tuple(x.shape)}"
                )
            channels.append(x.shape[1])
            heads.append(pooled_head(x.shape[1], num_classes, head_hidden))
        reference = model(example_input)
        try:
            final = stages[-1](x)
        except RuntimeError:
            final = None
    model.train(was_training)
    if final is None or final.shape != reference.shape or not torch.allclose(final, reference, atol=1e-5, rtol=1e-4):
        raise ValueError(
            f"{type(model).__name__}'s forward is not a plain chain of its children, so it cannot be cut at "
            f"{list(exit_after)}; wrap the parts you want in an nn.Sequential and attach exits to that"
        )
    if final.shape[-1] != num_classes:
        raise ValueError(f"the model's own classifier has {final.shape[-1]} outputs but num_classes={num_classes}")

    if shared_head:
        # the final exit keeps the model's own classifier; the shared head serves the early exit points
        exits: ExitHeads | SharedExitHead | SharedPlusFinal = SharedPlusFinal(SharedExitHead(channels, num_classes))
    else:
        exits = ExitHeads(heads + [nn.Identity()])
    return EarlyExitNet(stages, exits, exit_names=list(exit_after) + ["final"])


class SharedPlusFinal(nn.Module):
    """A shared head (FreeML's gNet) for the early exit points; the last exit is the model's own classifier,
    ``final`` applied to the last stage's output (the identity when the last stage already ends in it)."""

    needs_history = True
    shared_head = True  # EarlyExitNet.shared_head

    def __init__(self, shared: SharedExitHead, final: nn.Module | None = None):
        super().__init__()
        self.shared = shared
        self.final = final if final is not None else nn.Identity()

    def __len__(self) -> int:
        return len(self.shared) + 1

    def forward(self, k: int, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if k == len(self.shared):
            return cast(torch.Tensor, self.final(features[-1]))
        return cast(torch.Tensor, self.shared(k, features[: k + 1]))
