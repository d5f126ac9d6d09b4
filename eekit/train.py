"""Training recipes for early-exit networks.

* **joint**: all exits trained together from scratch with a weighted sum of per-exit losses; the weighting is
  ``uniform``, ``increasing`` (deeper exits weigh more, as in PABEE) or ``sdn`` (Shallow-Deep Networks' schedule:
  early exit ``i`` weighs ``min(C_i, 0.01 + epoch * C_i / epochs)``, the final exit 1);
* **two-stage** (HuBERT-EE, DeeBERT): train the backbone with only the final exit, then freeze it and train the
  early heads;
* **self-distillation** (optional): early exits also match the final exit's softened output;
* **random-exit** (FreeML's gNet): a frozen backbone, one shared head, a random exit point per batch.

Everything is seeded; progress bars come from ``tqdm.auto`` so they render as widgets in notebooks. A long run
given a ``checkpoint`` file saves its whole state after every epoch and resumes from it bit for bit, so a run cut
off (a session that ends, a laptop that sleeps) loses at most one epoch.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import data, files, validate
from .memory import memory_returned
from .models.exits import EarlyExitNet

__all__ = ["TrainConfig", "LOSS_WEIGHTINGS", "OPTIMIZERS", "exit_loss_weights", "train", "seed_everything", "machine"]

LOSS_WEIGHTINGS = ("uniform", "increasing", "sdn", "final-only", "early-only", "random-exit")
# "adam" adds weight_decay to the gradient (L2, as torch.optim.Adam); "adamw" decays the weights directly
# (decoupled, Loshchilov & Hutter 2019), so the decay does not shrink with Adam's per-weight step size
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (kept in each checkpoint's model card)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    optimizer: str = "sgd"  # one of OPTIMIZERS: "sgd" (nesterov), "adam" or "adamw"; all on a one-cycle schedule
    loss_weights: str = "sdn"
    label_smoothing: float = 0.0
    distill: float = 0.0  # weight of the self-distillation term for early exits (0 = off)
    temperature: float = 3.0
    freeze_backbone: bool = False  # train only the exits (stage two of two-stage training)
    length_batches: bool = False  # batches of similar-length utterances (long sentences); needs a Transcripts set
    clip_norm: float = 0.0  # clip the gradient norm to this (0 = off)
    speed_perturb: tuple[float, ...] = ()  # play each training utterance at one of these speeds (needs Transcripts)
    seed: int = 0

    def __post_init__(self):
        validate.one_of("loss_weights", self.loss_weights, LOSS_WEIGHTINGS)
        validate.one_of("optimizer", self.optimizer, OPTIMIZERS)
        validate.whole("epochs", self.epochs, 1)
        validate.whole("batch_size", self.batch_size, 1)
        validate.number("lr (learning rate)", self.lr, 0, low_open=True)
        validate.number("distill (weight of self-distillation)", self.distill, 0, 1)
        validate.number("weight_decay", self.weight_decay, 0)
        validate.number("momentum", self.momentum, 0, 1, high_open=True)
        validate.number("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        validate.number("temperature (of self-distillation)", self.temperature, 0, low_open=True)
        validate.instance("freeze_backbone", self.freeze_backbone, bool, "True or False")
        validate.whole("seed", self.seed, 0)
        validate.instance("length_batches", self.length_batches, bool, "True or False")
        validate.number("clip_norm (gradient norm clip, 0 = off)", self.clip_norm, 0)
        self.speed_perturb = data.speed_factors(self.speed_perturb) if self.speed_perturb not in ((), []) else ()


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weights init, dropout) and return a generator for data shuffling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def exit_loss_weights(scheme: str, num_exits: int, epoch: int = 0, epochs: int = 1) -> list[float]:
    """The weight of each exit's loss in ``scheme`` at ``epoch`` (0-based) of ``epochs``."""
    K = num_exits
    if scheme == "uniform":
        return [1.0] * K
    if scheme == "increasing":
        return [(k + 1) / K for k in range(K)]
    if scheme == "sdn":
        caps = [0.15 * (i + 1) for i in range(K - 1)]  # SDN's C = 0.15, 0.3, 0.45, ... for the early exits
        return [min(c, 0.01 + epoch * c / max(epochs, 1)) for c in caps] + [1.0]
    if scheme == "final-only":
        return [0.0] * (K - 1) + [1.0]
    if scheme == "early-only":
        return [1.0] * (K - 1) + [0.0]
    raise ValueError(f"no fixed weights for {scheme!r}; known: {list(LOSS_WEIGHTINGS)}")


def _forward(model: nn.Module, batch, config: TrainConfig):
    """Run one batch; returns every exit's output and the loss function of one exit's output: the model kind's own
    ``batch_loss`` (images: ``(images, labels)``; speech batches come from the dataset's ``collate``)."""
    loss = getattr(model, "batch_loss", None)
    if not callable(loss):
        raise ValueError(f"train() needs an eekit early-exit model (an EarlyExitNet, a speech model), whose "
                         f"batch_loss gives the loss; got {type(model).__name__}")
    return loss(batch, config.label_smoothing)


def _exit_losses(outputs, loss_fn, weights, config: TrainConfig) -> torch.Tensor:
    total = outputs[0].new_zeros(())
    teacher = outputs[-1].detach()
    for k, (out, w) in enumerate(zip(outputs, weights)):
        if w == 0:
            continue
        loss = loss_fn(out)
        if config.distill and k < len(outputs) - 1:
            T = config.temperature
            kd = F.kl_div(F.log_softmax(out / T, -1), F.softmax(teacher / T, -1), reduction="batchmean") * T * T
            loss = (1 - config.distill) * loss + config.distill * kd
        total = total + w * loss
    return total


@memory_returned  # a kernel that trained would keep the freed activations and gradients: 170 MB in lesson 01
def train(
    model: EarlyExitNet | nn.Module,
    train_set: Dataset,
    config: TrainConfig,
    progress: bool = True,
    device: str | torch.device | None = None,
    checkpoint: str | Path | None = None,
) -> list[dict]:
    """Train ``model`` in place with ``config``; returns per-epoch history (loss, seconds). ``device`` moves the
    model there first (default: train where the model is); batches follow the model.

    ``checkpoint``: a file that holds the run's state (weights, optimizer, schedule, random generators, history)
    after every epoch. If it exists, training continues after its last epoch, exactly as an uninterrupted run would
    (on the same machine kind); one written with another ``config`` is refused. A finished run's file stays: the
    caller removes it once its results are safe.

    With ``freeze_backbone`` the stages stay in eval mode (BatchNorm statistics frozen) and only the exits learn;
    the backbone is trainable again when this returns (or raises).
    """
    validate.instance("config", config, TrainConfig, "a TrainConfig (e.g. TrainConfig(epochs=5))")
    if getattr(model, "output_kind", None) == "ctc" and (config.distill or config.loss_weights == "random-exit"):
        raise ValueError("self-distillation and random-exit training are for classifiers; CTC exits train jointly "
                         "or two-stage")
    if len(train_set) < config.batch_size:
        raise ValueError(f"train_set has {len(train_set)} samples, fewer than one batch (batch_size="
                         f"{config.batch_size}); give at least {config.batch_size} samples or a smaller batch_size")
    if device is not None:
        model.to(device)
    frozen = []
    if config.freeze_backbone:
        frozen = [p for p in model.backbone_parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
    try:
        return _train(model, train_set, config, progress, None if checkpoint is None else Path(checkpoint))
    finally:
        for p in frozen:  # two-stage training: the next phase (or the learner) gets a trainable backbone back
            p.requires_grad_(True)


def _train(model: EarlyExitNet | nn.Module, train_set: Dataset, config: TrainConfig, progress: bool,
           checkpoint: Path | None) -> list[dict]:
    generator = seed_everything(config.seed)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    for option, on in (("length_batches", config.length_batches), ("speed_perturb", config.speed_perturb)):
        if on and not isinstance(train_set, data.Transcripts):
            raise ValueError(f"{option}={on!r} needs a data.Transcripts set (utterances), got "
                             f"{type(train_set).__name__}")
    if config.speed_perturb:
        train_set = train_set.speed_perturbed(config.speed_perturb)
    collate = getattr(train_set, "collate", None)
    if config.length_batches:
        loader = DataLoader(train_set, batch_sampler=train_set.length_batches(config.batch_size, generator),
                            collate_fn=collate)
    else:
        loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, generator=generator,
                            drop_last=True, collate_fn=collate)
    steps = config.epochs * len(loader)
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=True,
                              weight_decay=config.weight_decay)
    else:
        adam = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        opt = adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if steps >= 8:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.25)
    else:  # too few steps for a warm-up and a decay (tiny demo subsets): constant learning rate
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)

    history: list[dict] = []
    if checkpoint is not None and checkpoint.exists():
        history = _resume(checkpoint, config, model, opt, sched, generator)
    bar = tqdm(total=steps, initial=len(history) * len(loader), disable=not progress, desc="training", unit="batch")
    for epoch in range(len(history), config.epochs):
        model.train()
        if config.freeze_backbone:
            model.stages.eval()
        start, running, count = time.perf_counter(), 0.0, 0
        for batch in loader:
            batch = [b.to(device) if isinstance(b, torch.Tensor) else b for b in batch]
            if config.loss_weights == "random-exit":
                # FreeML's gNet recipe: one random exit point per batch, deeper features zero-filled by the head
                images, targets = batch
                k = int(torch.randint(model.num_exits, (1,), generator=generator))
                loss = F.cross_entropy(model.forward_to(images, k), targets, label_smoothing=config.label_smoothing)
            else:
                weights = exit_loss_weights(config.loss_weights, model.num_exits, epoch, config.epochs)
                outputs, loss_fn = _forward(model, batch, config)
                loss = _exit_losses(outputs, loss_fn, weights, config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_norm:
                torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
            opt.step()
            sched.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}; lower lr (now {config.lr})")
            size = len(batch[0])
            running += loss.item() * size
            count += size
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running / count:.3f}")
        history.append({"epoch": epoch + 1, "loss": running / count, "seconds": time.perf_counter() - start})
        if checkpoint is not None:
            _save_state(checkpoint, config, model, opt, sched, generator, history)
    bar.close()
    model.eval()
    return history


def _save_state(path: Path, config: TrainConfig, model: nn.Module, opt, sched, generator: torch.Generator,
                history: list[dict]) -> None:
    state = {"config": asdict(config), "history": history, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "schedule": sched.state_dict(), "rng": torch.get_rng_state(), "generator": generator.get_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}
    files.write_atomic(path, lambda p: torch.save(state, p))  # a run killed while saving keeps the last epoch's


def _resume(path: Path, config: TrainConfig, model: nn.Module, opt, sched, generator: torch.Generator) -> list[dict]:
    """Load a checkpoint written by :func:`_save_state` into the fresh run; returns the epochs it holds."""
    state = data.read_torch(path)
    saved = {**asdict(TrainConfig()), **state.get("config", {})}  # a setting added since it was saved: its default
    if saved != asdict(config):
        changed = sorted(k for k in asdict(config) if saved.get(k) != getattr(config, k))
        raise ValueError(f"{path} holds a run with other settings ({', '.join(changed)} differ); accepted: the "
                         "checkpoint of this same config. Delete it, or pass another checkpoint file, to start over")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"])
    generator.set_state(state["generator"])
    if state["cuda_rng"]:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return list(state["history"])


def machine() -> dict:
    """Where a run trained, for its card: CPU, cores, torch threads and versions."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}
