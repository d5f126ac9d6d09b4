"""Shipped checkpoints and the recipes that made them.

Each entry has a recipe (model builder, data, training phases); ``python -m eekit train <name>`` reruns it.
A trained model is shipped in ``data/checkpoints/`` as three files, all in ``data/SHA256SUMS``:

* ``<name>.pt`` - the weights (a plain state dict, loaded with ``weights_only=True``);
* ``<name>.json`` - the model card: per-exit accuracy and MFLOPs, parameters, the recipe, training time, machine;
* ``<name>.profile.npz`` - the exit profile on the test split, so notebooks open without running the model.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
from torchvision.transforms import v2

from . import data
from .evaluate import profile_model
from .models import branchy_lenet, resnet_ee
from .models.exits import EarlyExitNet
from .profile import ExitProfile
from .train import TrainConfig, train

__all__ = ["Recipe", "RECIPES", "load_pretrained", "load_profile", "load_card", "run_recipe", "report", "CHECKPOINT_DIR"]

CHECKPOINT_DIR = "checkpoints"
SHIPPED_CRITERION = "max_prob"  # the criterion the cards' early-exit numbers use
SHIPPED_MAX_DROP = 0.01  # ... at the cheapest threshold within 1 accuracy point of the final exit


@dataclass(frozen=True)
class Recipe:
    """How to build, feed and train one early-exit model."""

    name: str
    description: str
    builder: Callable[..., EarlyExitNet]
    builder_kwargs: dict
    dataset: str  # "mnist" or "cifar10"
    phases: tuple[TrainConfig, ...]
    augment: Callable[[], Callable] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One sample's shape ``(C, H, W)``."""
        return {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}[self.dataset]

    def build(self) -> EarlyExitNet:
        return self.builder(**self.builder_kwargs)

    def _loader(self):
        return {"mnist": data.load_mnist, "cifar10": data.load_cifar10}[self.dataset]

    def test_set(self):
        """The test split only (evaluation needs no training images)."""
        return self._loader()("test")

    def datasets(self):
        """(augmented training split, test split)."""
        transform = self.augment() if self.augment else None
        return self._loader()("train", transform=transform), self.test_set()


def _mnist_augment():
    return v2.RandomAffine(degrees=10, translate=(0.1, 0.1))


def _cifar_augment():
    return v2.Compose([v2.RandomCrop(32, padding=4, padding_mode="reflect"), v2.RandomHorizontalFlip()])


_MNIST = dict(builder=branchy_lenet, builder_kwargs={}, dataset="mnist", augment=_mnist_augment)
_MNIST_CFG = dict(epochs=20, batch_size=64, lr=0.05, weight_decay=5e-4)
_CIFAR = dict(builder=resnet_ee, builder_kwargs={"width": 24}, dataset="cifar10", augment=_cifar_augment)
_CIFAR_CFG = dict(epochs=10, batch_size=256, lr=0.2, weight_decay=5e-4, label_smoothing=0.1)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("cnn-mnist", "B-LeNet on MNIST, all exits trained jointly from scratch (uniform loss weights)",
               phases=(TrainConfig(loss_weights="uniform", **_MNIST_CFG),), **_MNIST),
        Recipe("cnn-mnist-two-stage", "B-LeNet on MNIST, two-stage: backbone with the final exit only, then the "
               "early heads on the frozen backbone (HuBERT-EE / DeeBERT)",
               phases=(TrainConfig(loss_weights="final-only", **_MNIST_CFG),
                       TrainConfig(loss_weights="early-only", freeze_backbone=True, **_MNIST_CFG)), **_MNIST),
        Recipe("cnn-mnist-shared", "B-LeNet on MNIST with one shared exit head (FreeML's gNet): backbone with the "
               "final exit only, then the shared head on the frozen backbone with a random exit point per batch",
               phases=(TrainConfig(loss_weights="final-only", **_MNIST_CFG),
                       TrainConfig(loss_weights="random-exit", freeze_backbone=True, **{**_MNIST_CFG, "epochs": 10})),
               **{**_MNIST, "builder_kwargs": {"shared_head": True}}),
        Recipe("cnn-cifar10", "ResNet-9-style CNN (width 24) on CIFAR-10 with 5 exits, trained jointly from scratch "
               "with the Shallow-Deep Networks loss schedule and self-distillation from the final exit",
               phases=(TrainConfig(loss_weights="sdn", distill=0.5, **_CIFAR_CFG),), **_CIFAR),
        Recipe("cnn-cifar10-two-stage", "The same CNN trained two-stage: backbone with the final exit only, then the "
               "early heads on the frozen backbone (HuBERT-EE / DeeBERT)",
               phases=(TrainConfig(loss_weights="final-only", **_CIFAR_CFG),
                       TrainConfig(loss_weights="early-only", freeze_backbone=True,
                                   **{**_CIFAR_CFG, "epochs": 5, "lr": 0.05})), **_CIFAR),
    ]
}


def _recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]


def _shipped(name: str, suffix: str) -> Path:
    _recipe(name)
    try:
        return data.data_path(f"{CHECKPOINT_DIR}/{name}{suffix}")
    except data.DataFileError as err:
        raise data.DataFileError(f"{err} (train it with `python -m eekit train {name}`)") from None


def load_card(name: str) -> dict:
    """The model card of a shipped checkpoint."""
    return json.loads(_shipped(name, ".json").read_text())


def load_pretrained(name: str) -> EarlyExitNet:
    """The shipped model ``name``, checksum-verified, in eval mode."""
    model = _recipe(name).build()
    state = torch.load(_shipped(name, ".pt"), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def load_profile(name: str) -> ExitProfile:
    """The shipped exit profile of ``name`` on its test split (no model run needed)."""
    return ExitProfile.load(_shipped(name, ".profile.npz"))


def report(name: str, criterion: str = SHIPPED_CRITERION, max_drop: float = SHIPPED_MAX_DROP) -> dict:
    """The headline numbers of a shipped model, recomputed from its test-split profile (fractions in [0, 1])."""
    profile = load_profile(name)
    point = profile.calibrate(criterion, max_drop=max_drop)
    return {
        "model": name,
        "exit_names": profile.exit_names,
        "exit_accuracy": [round(float(a), 4) for a in profile.exit_accuracy],
        "exit_mflops": [round(float(c), 4) for c in profile.cost],
        "full_model_mflops": round(profile.full_cost, 4),
        "final_accuracy": round(profile.final_accuracy, 4),
        "criterion": criterion,
        "max_drop": max_drop,
        "threshold": round(point.threshold, 4),
        "ee_accuracy": round(point.accuracy, 4),
        "flops_saved": round(point.savings, 4),
        "exit_fractions": [round(float(f), 4) for f in point.exit_fractions],
    }


def _machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}


def run_recipe(name: str, out_dir: str | Path, subset: int | None = None, epochs: int | None = None,
               progress: bool = True) -> dict:
    """Train ``name`` from scratch and write its weights, card and profile into ``out_dir``; returns the card.

    ``subset`` trains on that many samples and ``epochs`` overrides every phase's epochs (quick demos; the card
    records both). Writing into ``data/checkpoints`` also refreshes ``data/SHA256SUMS``.
    """
    recipe = _recipe(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.phases[0].seed)
    model = recipe.build()
    train_set, test_set = recipe.datasets()
    if subset:
        train_set = train_set.subset(subset)
    phases = [TrainConfig(**{**p.__dict__, "epochs": epochs or p.epochs}) for p in recipe.phases]
    start = time.perf_counter()
    history = [train(model, train_set, cfg, progress=progress) for cfg in phases]
    seconds = time.perf_counter() - start
    for p in model.parameters():
        p.requires_grad_(True)
    torch.save(model.state_dict(), out_dir / f"{name}.pt")

    profile = profile_model(model, test_set, meta={"model": name, "split": "test"})
    profile.save(out_dir / f"{name}.profile.npz")
    point = profile.calibrate(SHIPPED_CRITERION, max_drop=SHIPPED_MAX_DROP)
    command = f"python -m eekit train {name}" + (f" --subset {subset}" if subset else "") + (
        f" --epochs {epochs}" if epochs else "")
    card = {
        "name": name,
        "description": recipe.description,
        "model": {"builder": recipe.builder.__name__, "kwargs": recipe.builder_kwargs,
                  "exit_names": profile.exit_names, "params": int(profile.params[-1])},
        "dataset": {"name": recipe.dataset, "train_samples": len(train_set), "test_samples": len(test_set)},
        "exit_accuracy": [round(float(a), 4) for a in profile.exit_accuracy],
        "exit_mflops": [round(float(c), 4) for c in profile.cost],
        "exit_params": [int(p) for p in profile.params],
        "full_model_mflops": round(profile.full_cost, 4),
        "final_accuracy": round(profile.final_accuracy, 4),
        "early_exit": {"criterion": SHIPPED_CRITERION, "max_drop": SHIPPED_MAX_DROP,
                       "threshold": round(point.threshold, 4), "accuracy": round(point.accuracy, 4),
                       "flops_saved": round(point.savings, 4)},
        "recipe": {"command": command, "phases": [p.__dict__ for p in phases],
                   "loss_per_epoch": [[round(h["loss"], 4) for h in hist] for hist in history]},
        "training_seconds": round(seconds, 1),
        "machine": _machine(),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    if out_dir.resolve() == (data.DATA_DIR / CHECKPOINT_DIR).resolve():
        data.write_manifest()
    return card
