"""Rerun a zoo recipe: train the model from scratch, then write its weights, model card and exit profile.

This is what ``python -m eekit train <name>`` runs. The recipes themselves (model, data, training phases) are
registered in :data:`eekit.zoo.registry.RECIPES`; the training loop is :func:`eekit.train.train`.

Shipped files are never replaced by accident: existing outputs are refused unless ``force=True``
(``--force``), and writing into ``data/checkpoints`` re-hashes only the files just written in
``data/SHA256SUMS``, so a shipped file corrupted earlier still fails its check. A run into any other folder keeps
that folder's own ``SHA256SUMS``. The three files are written as one set (:func:`eekit.data.write_run`): a run
killed at any moment leaves the old set or the new one, and the folder is claimed for the whole run.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from .. import data, validate
from ..files import claim_folder
from ..profile import ExitProfile
from ..runtime import check_device
from ..train import TrainConfig, machine, train
from .registry import RECIPES, TRAIN_ALWAYS, Runner, get_recipe, operating_point, register_runner, takes
from .reports import _saved_key, _unit_key

__all__ = ["run_recipe", "output_files"]


def output_files(name: str, out_dir: str | Path) -> list[Path]:
    """The three files a run of recipe ``name`` writes into ``out_dir``: weights, card, profile."""
    out_dir = Path(out_dir)
    return [out_dir / f"{name}.pt", out_dir / f"{name}.json", out_dir / f"{name}.profile.npz"]


def _exit_params(model, profile: ExitProfile) -> list[int]:
    if profile.params is not None:
        return [int(p) for p in profile.params]
    return [sum(p.numel() for p in model.parameters())] * profile.num_exits  # speech: the whole model, per exit


def run_recipe(name: str, out_dir: str | Path, subset: int | None = None, epochs: int | None = None,
               progress: bool = True, force: bool = False, device: str | None = None) -> dict:
    """Train ``name`` from scratch and write its weights, card and profile into ``out_dir``; returns the card.

    ``subset`` trains on that many samples and ``epochs`` overrides every phase's epochs (quick demos; the card
    records both). ``device``: where to train (default: cuda when available, else cpu); the weights are saved and
    profiled on the CPU. Existing output files are refused unless ``force``. Writing into ``data/checkpoints`` also
    records the new files' sha256 in ``data/SHA256SUMS`` (and only theirs).
    """
    recipe = get_recipe(name)
    if subset is not None:
        smallest = max(p.batch_size for p in recipe.phases)
        subset = validate.whole("subset (training samples)", subset, smallest)
    if epochs is not None:
        epochs = validate.whole("epochs", epochs, 1)
    out_dir = validate.writable_dir("output folder", out_dir)
    validate.no_overwrite(output_files(name, out_dir), force)
    device = check_device(device)
    with claim_folder(out_dir):  # a second command writing the same folder is refused now, not after training
        validate.no_overwrite(output_files(name, out_dir), force)  # again: the folder's last holder may have written
        return _run(recipe, name, out_dir, subset, epochs, progress, device)


def _run(recipe, name: str, out_dir: Path, subset: int | None, epochs: int | None, progress: bool, device) -> dict:
    smallest = max(p.batch_size for p in recipe.phases)
    torch.manual_seed(recipe.phases[0].seed)
    model = recipe.build()
    train_set, test_set = recipe.datasets()
    if subset is not None:
        validate.whole("subset (training samples)", subset, smallest, len(train_set))
        train_set = train_set.subset(subset)
    phases = [TrainConfig(**{**p.__dict__, "epochs": epochs or p.epochs}) for p in recipe.phases]
    start = time.perf_counter()
    history = [train(model, train_set, cfg, progress=progress, device=device) for cfg in phases]
    seconds = time.perf_counter() - start
    model.cpu()

    weights, card_file, profile_file = output_files(name, out_dir)
    profile = recipe.profile(model, test_set, meta={"model": name, "split": "test"})
    point = operating_point(name, profile=profile)
    command = f"python -m eekit train {name}" + (f" --subset {subset}" if subset else "") + (
        f" --epochs {epochs}" if epochs else "")
    unit, saved = _unit_key(profile), _saved_key(profile)
    card = {
        "name": name,
        "description": recipe.description,
        "model": {"builder": recipe.builder.__name__, "kwargs": recipe.builder_kwargs,
                  "exit_names": profile.exit_names, "params": sum(p.numel() for p in model.parameters())},
        "dataset": {"name": recipe.dataset, "train_samples": len(train_set), "test_samples": len(test_set)},
        "exit_accuracy": [round(float(a), 4) for a in profile.exit_accuracy],
        f"exit_{unit}": [round(float(c), 4) for c in profile.cost],
        "exit_params": _exit_params(model, profile),
        f"full_model_{unit}": round(profile.full_cost, 4),
        "final_accuracy": round(profile.final_accuracy, 4),
        "early_exit": {"criterion": recipe.criterion, "max_drop": recipe.max_drop,
                       "threshold": round(point.threshold, 4), "accuracy": round(point.accuracy, 4),
                       saved: round(point.savings, 4)},
        "recipe": {"command": command, "phases": [p.__dict__ for p in phases],
                   "loss_per_epoch": [[round(h["loss"], 4) for h in hist] for hist in history]},
        "training_seconds": round(seconds, 1),
        "machine": {**machine(), "device": str(device)},
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    state = model.state_dict()
    data.write_run(out_dir, {weights: lambda p: torch.save(state, p), profile_file: profile.write,
                             card_file: lambda p: p.write_text(json.dumps(card, indent=2) + "\n")})  # the card last
    return card


def _cli_train(args) -> str:
    """``python -m eekit train <recipe>``: the card's headline keys."""
    card = run_recipe(args.model, args.out, subset=args.subset, epochs=args.epochs, progress=not args.quiet,
                      force=args.force, device=args.device)
    keys = ("name", "exit_accuracy", "exit_mflops", "exit_layers", "final_accuracy", "early_exit", "training_seconds")
    return json.dumps({k: card[k] for k in keys if k in card}, indent=2)


for _name in RECIPES:
    register_runner(Runner("train", _name, _cli_train, takes(TRAIN_ALWAYS | {"subset", "epochs", "device"},
                                                              f"train {_name}")))
