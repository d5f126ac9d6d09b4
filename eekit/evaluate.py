"""Run a classification model once over a data set and cache every exit's outputs as an :class:`ExitProfile`."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .costs import exit_costs, measure_latency
from .models.exits import EarlyExitNet
from .profile import ExitProfile

__all__ = ["collect_logits", "profile_model"]


def collect_logits(model: EarlyExitNet, dataset: Dataset, batch_size: int = 256, progress: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every exit's logits ``[K, N, C]`` and the labels ``[N]``, in dataset order."""
    model.eval()
    outputs, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for images, targets in tqdm(loader, disable=not progress, desc="profiling", unit="batch"):
            outputs.append(torch.stack(model(images)))
            labels.append(targets)
    return torch.cat(outputs, dim=1), torch.cat(labels)


def profile_model(model: EarlyExitNet, dataset: Dataset, batch_size: int = 256, latency: bool = False,
                  progress: bool = False, meta: dict | None = None) -> ExitProfile:
    """Cache predictions, errors and per-exit cumulative cost (MFLOPs, heads included) of ``model`` on ``dataset``.

    ``latency=True`` also measures per-exit milliseconds at batch size 1 on this CPU (slower to build).
    """
    logits, labels = collect_logits(model, dataset, batch_size, progress)
    example = dataset[0][0].unsqueeze(0)
    costs = exit_costs(model, example)
    predictions = logits.argmax(-1).T.numpy()  # [N, K]
    errors = (predictions != labels.numpy()[:, None]).astype(np.float32)
    return ExitProfile(
        predictions=predictions,
        errors=errors,
        totals=np.ones(len(labels), dtype=np.float32),
        cost=costs.cumulative_mflops,
        full_cost=costs.full_model_flops / 1e6,
        exit_names=list(model.exit_names),
        logits=logits.numpy().astype(np.float32),
        labels=labels.numpy(),
        params=costs.params,
        latency_ms=measure_latency(model, example) if latency else None,
        meta=dict(meta or {}),
    )
