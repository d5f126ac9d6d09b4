"""Run a model once over a data set and cache every exit's outputs as an :class:`ExitProfile`.

Image classifiers and keyword spotters cache logits (every classification criterion is then a lookup); CTC speech
models cache each exit's greedy transcript, its digit errors (``torchaudio.functional.edit_distance``) and the
sequence criteria's scores, since their outputs vary in length. The noise runs (:func:`noisy_run`) profile a
shipped speech recognizer on its test utterances mixed with noise, for DAISY's noise-adaptive exits.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import validate
from .costs import exit_costs, measure_latency
from .models.exits import EarlyExitNet
from .models.speech import greedy_ctc  # re-exported: lessons import it from here
from .profile import ExitProfile
from .criteria import CRITERIA

__all__ = ["collect_logits", "profile_model", "profile_speech", "greedy_ctc", "speech_outputs"]


def collect_logits(model: EarlyExitNet, dataset: Dataset, batch_size: int = 256, progress: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every exit's logits ``[K, N, C]`` and the labels ``[N]``, in dataset order."""
    model.eval()
    outputs, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for images, targets in tqdm(loader, disable=not progress, desc="profiling", unit="batch"):
            validate.model_input(model, images)  # NaN or 0..255 images must fail, not profile as confident
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
    return ExitProfile.from_logits(logits, labels, cost=costs.cumulative_mflops, full_cost=costs.full_model_flops / 1e6,
                                   exit_names=list(model.exit_names), params=costs.params,
                                   latency_ms=measure_latency(model, example) if latency else None,
                                   meta=dict(meta or {}))


# ------------------------------------------------------------------------------------------------------ speech


def speech_outputs(model, dataset, batch_size: int = 16, progress: bool = False):
    """Yield ``(outputs [K, B, ...], frame lengths, labels)`` batch by batch, in dataset order."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=dataset.collate)
    with torch.no_grad():
        for batch in tqdm(loader, disable=not progress, desc="profiling", unit="batch"):
            outputs, frames = model(batch[0], batch[1])
            yield torch.stack(outputs), frames, batch


def profile_speech(model, dataset, batch_size: int = 16, progress: bool = False, meta: dict | None = None
                   ) -> ExitProfile:
    """Profile a :class:`~eekit.models.speech.SpeechEarlyExit` on ``dataset``; cost is in encoder layers.

    CTC models: predictions are transcripts, errors digit edits, totals reference lengths (accuracy = 1 - DER),
    with the scores of ``ctc_entropy``, ``ctc_posterior`` and ``ctc_batch_entropy`` (over batches of
    ``batch_size``, DAISY's setting). Keyword spotters: logits, as for images.
    """
    import torchaudio.functional as AF

    K = model.num_exits
    cost = np.arange(1, K + 1, dtype=np.float64)
    common = dict(cost=cost, full_cost=float(K), exit_names=list(model.exit_names), cost_unit="layers",
                  meta={**(meta or {}), "batch_size": batch_size})
    if model.output_kind == "classification":  # keyword spotting: one label per utterance
        logits, labels = [], []
        for out, _, batch in speech_outputs(model, dataset, batch_size, progress):
            logits.append(out)
            labels.append(batch[2])
        return ExitProfile.from_logits(torch.cat(logits, 1), torch.cat(labels), **common)

    names = ("ctc_entropy", "ctc_posterior", "ctc_batch_entropy")
    hyps, errors, totals, scores = [], [], [], {n: [] for n in names}
    refs = dataset.labels
    i = 0
    for out, frames, _ in speech_outputs(model, dataset, batch_size, progress):
        for n in names:
            scores[n].append(CRITERIA[n].scores(out, lengths=frames).T)
        for b in range(out.shape[1]):
            ref = refs[i]
            row = [greedy_ctc(out[k, b], int(frames[b]), model.alphabet) for k in range(K)]
            hyps.append(row)
            errors.append([AF.edit_distance(list(ref), list(h)) for h in row])
            totals.append(len(ref))
            i += 1
    return ExitProfile(
        predictions=np.array(hyps, dtype=str), errors=np.array(errors, dtype=np.float32),
        totals=np.array(totals, dtype=np.float32), kind="ctc",
        scores={n: torch.cat(v).numpy().astype(np.float32) for n, v in scores.items()},
        labels=np.array(refs, dtype=str), **common)
