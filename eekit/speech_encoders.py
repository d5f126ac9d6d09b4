"""Train and profile the exits of a wrapped speech encoder (:func:`eekit.models.wav2vec2.wrap_wav2vec2`).

The wrapper is a model kind and lives in ``eekit/models/``; what trains and measures it uses the floors above the
models (training, DAISY's unit heads, profiles), so it lives here, above them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from . import validate
from .evaluate import profile_speech
from .models.wav2vec2 import Wav2Vec2Exits
from .train import train
from .ssl.daisy import _fit, layer_outputs, unit_profile
from .ssl.units import kmeans

__all__ = ["train_two_stage", "fit_unit_heads", "profile_exits"]



def _check_data(model: Wav2Vec2Exits, dataset, what: str) -> None:
    validate.instance("model", model, Wav2Vec2Exits, "a Wav2Vec2Exits from wrap_wav2vec2(...)")
    rate = getattr(dataset, "sample_rate", None)
    if rate is None:
        raise ValueError(f"{what} must be an eekit speech dataset with a sample_rate (e.g. "
                         f"data.load_digit_strings('train')), got {type(dataset).__name__}")
    validate.sample_rate(what, rate, model.sample_rate, hint=f", or wrap the encoder with sample_rate={rate}")


def train_two_stage(model: Wav2Vec2Exits, train_set, heads, backbone=None, progress: bool = True) -> list[dict]:
    """HuBERT-EE's two-stage recipe: optionally train the encoder with the last exit only (``backbone``, a
    :class:`~eekit.train.TrainConfig`; skip it for a pretrained encoder), then freeze it and train the early exits
    (``heads``). Returns each phase's history. CTC heads only (units: :func:`fit_unit_heads`)."""
    _check_data(model, train_set, "train_set")
    if model.output_kind != "ctc":
        raise ValueError("train_two_stage trains CTC heads on labelled utterances; unit heads are label-free: "
                         "use fit_unit_heads(model, clips)")
    history = []
    if backbone is not None:
        history.append(train(model, train_set, replace(backbone, loss_weights="final-only", freeze_backbone=False),
                             progress))
    history.append(train(model, train_set, replace(heads, loss_weights="early-only" if backbone is not None else
                                                   "uniform", freeze_backbone=True), progress))
    return history


def fit_unit_heads(model: Wav2Vec2Exits, dataset, epochs: int = 20, seed: int = 0, progress: bool = False
                   ) -> list[list[float]]:
    """DAISY's exits without a pretraining head: k-means (``num_classes`` units, :func:`eekit.units.kmeans`) on the
    last exit's frames of ``dataset`` (no labels read), then every exit's unit head learns that unit per frame on
    the frozen encoder (cross-entropy, :func:`eekit.daisy._fit`). Returns each head's loss per epoch."""
    _check_data(model, dataset, "dataset")
    if model.output_kind != "units":
        raise ValueError("fit_unit_heads trains unit heads; wrap the encoder with head='units'")
    hidden = []
    for h, _, frames, _ in layer_outputs(model, dataset, batch_size=16):
        valid = torch.arange(h.shape[2])[None, :] < frames[:, None]  # [B, T]
        hidden.append(h[:, valid])  # [K, n, D]
    hidden = torch.cat(hidden, 1)
    last = hidden[-1]
    mean, std = last.mean(0), last.std(0).clamp_min(1e-5)
    centroids = kmeans((last - mean) / std, model.num_classes, seed=seed)
    target = torch.cdist((last - mean) / std, centroids).argmin(1)
    return [_fit(head, hidden[k], lambda out, idx: F.cross_entropy(out, target[idx]), epochs, seed + k, progress)
            for k, head in enumerate(model.exits)]


def profile_exits(model: Wav2Vec2Exits, dataset, batch_size: int = 16, progress: bool = False,
                  meta: dict | None = None):
    """The cached :class:`~eekit.profile.ExitProfile` of ``model`` on ``dataset``, cost in transformer layers (exit
    ``k`` costs ``exit_after[k]`` layers; the plain model runs up to the last exit): CTC heads through
    :func:`eekit.evaluate.profile_speech` (digit errors), unit heads through :func:`eekit.daisy.unit_profile`
    (label-free agreement with the last exit)."""
    _check_data(model, dataset, "dataset")
    meta = {"model": "wav2vec2-exits", "exit_after": list(model.exit_after), **(meta or {})}
    make = profile_speech if model.output_kind == "ctc" else unit_profile
    profile = make(model, dataset, batch_size=batch_size, progress=progress, meta=meta)
    return replace(profile, cost=np.asarray(model.exit_after, dtype=np.float64),
                   full_cost=float(model.exit_after[-1]))
