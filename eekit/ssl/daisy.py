"""DAISY's exit signal (Lin et al. 2024, arXiv 2406.05464), measured on eekit's self-supervised encoder.

DAISY exits a self-supervised speech encoder at the first layer whose *own* uncertainty about its masked-unit
targets is low: a linear unit head per layer, scored by the entropy of its unit posterior (``ssl_entropy`` per
utterance, ``ssl_batch_entropy`` for DAISY's batch mode). No task head and no label takes part in the decision.

* :func:`fit_unit_head` gives the random-weight twin a last-layer unit head (a linear probe on its frozen
  features, trained with the pretraining loss), so the twin can go through every measurement;
* :func:`fit_exit_heads` trains one linear head per layer (the last included) on the frozen encoder, with
  cross-entropy toward the pretrained head's unit predictions (its argmax unit per frame) on unmasked speech: DAISY
  trains its heads "toward the model's own unit predictions", with no task labels. (Matching the soft posterior
  instead copies the last layer's flatness into every head: on a mid-training checkpoint entropy fell only from
  0.65 to 0.59 over six layers, against 0.40 to 0.19 with these targets.)
* :func:`unit_profile` caches every layer's unit posterior scores as an :class:`~eekit.profile.ExitProfile` of kind
  ``"units"``: "accuracy" there is the fraction of frames whose unit agrees with the last layer's, a label-free
  quantity, so :meth:`ExitProfile.calibrate` picks one threshold on clean unlabelled speech;
* :func:`speech_entropy` is the kit's exit score: the same entropy averaged over the utterance's *speech* frames
  only (:func:`eekit.units.speech_frames`, the detector that decides which frames get a unit). DAISY averages over
  every frame; on one-second clips that are mostly a volunteer's room, that score measured how much silence a clip
  had (:mod:`eekit.adaptivity` measures both). An utterance with no speech frame scores
  :data:`NO_SPEECH_SCORE` (0, "sure"): it leaves at layer 1, as there is nothing for deeper layers to resolve;
* :func:`noisy_unit_profile` stacks the same clips under every noise and SNR (:data:`NOISE_CHOICES` x
  :data:`NOISY_SNRS`) into one profile; :func:`noise_slice` takes one (noise, SNR) block back out.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import data
from ..criteria import CRITERIA, normalized_entropy
from ..models.ssl import MaskedUnitEncoder, span_mask
from .pretraining import PretrainConfig
from .units import encoder_frames, speech_frames
from ..profile import ExitProfile

__all__ = ["speech_entropy", "speech_mask", "NO_SPEECH_SCORE", "fit_unit_head", "fit_exit_heads", "unit_profile", "noisy_unit_profile", "noise_slice", "layer_outputs",
           "UNIT_CRITERIA", "NOISE_CHOICES", "NOISY_SNRS", "BATCH_SIZE"]

UNIT_CRITERIA = ("ssl_entropy", "ssl_batch_entropy")
NOISE_CHOICES = ("all",) + data.NOISE_NAMES  # "all": the six noises round-robin over the clips
NOISY_SNRS = (20, 10, 5, 0)
BATCH_SIZE = 16  # DAISY's batch mode decides per batch of this many utterances (dataset order)
NO_SPEECH_SCORE = 0.0  # the exit score of an utterance without a speech frame: it leaves at the first layer


def speech_mask(waves: torch.Tensor, lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[B, num_frames]`` bools: the encoder frames of each padded wave ``[B, S]`` that hold speech
    (:func:`eekit.units.speech_frames` on the wave's real samples; padding is never speech)."""
    out = torch.zeros(len(waves), num_frames, dtype=torch.bool)
    for b, (wave, n) in enumerate(zip(waves, lengths.tolist())):
        speech = speech_frames(wave[:n])[:num_frames]
        out[b, : len(speech)] = speech
    return out


def speech_entropy(log_probs: torch.Tensor, speech: torch.Tensor) -> torch.Tensor:
    """The kit's exit score ``[L, B]``: each layer's normalized unit entropy ``log_probs [L, B, T, K]`` averaged
    over the speech frames ``speech [B, T]`` only; :data:`NO_SPEECH_SCORE` for an utterance with none (never NaN)."""
    entropy = normalized_entropy(log_probs.float())  # [L, B, T]
    weight = speech.to(entropy.dtype)[None]
    count = weight.sum(-1)
    return torch.where(count > 0, (entropy * weight).sum(-1) / count.clamp_min(1), NO_SPEECH_SCORE)


def layer_outputs(model: MaskedUnitEncoder, dataset, batch_size: int = BATCH_SIZE, progress: bool = False):
    """Yield ``(hidden [L, B, T, D], unit log-probs [L, B, T, K], frames [B], batch)`` over ``dataset`` in order."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=dataset.collate)
    with torch.no_grad():
        for batch in tqdm(loader, disable=not progress, desc="encoding", unit="batch"):
            hidden, frames = model.hidden(batch[0], batch[1])
            yield torch.stack(hidden), model.heads_log_probs(hidden), frames, batch


def fit_unit_head(model: MaskedUnitEncoder, clips, unmasked_weight: float = 0.1, epochs: int = 30,
                  seed: int = 0, progress: bool = False) -> list[float]:
    """Train only ``model.unit_head`` on the frozen encoder with the pretraining loss (one seed-fixed span mask per
    clip, features cached once): the random twin's last-layer unit head. Returns the loss per epoch."""
    config = PretrainConfig()
    gen = torch.Generator().manual_seed(seed)
    feats, targets, masked = [], [], []
    model.eval()
    loader = DataLoader(clips, batch_size=64, shuffle=False, collate_fn=clips.collate)
    with torch.no_grad():
        for waves, lengths, units in loader:
            frames = encoder_frames(lengths)
            mask = span_mask(frames, units.shape[1], config.mask_prob, config.mask_span, gen)
            hidden, _ = model.hidden(waves, lengths, mask)
            valid = units >= 0
            feats.append(hidden[-1][valid])
            targets.append(units[valid])
            masked.append(mask[valid])
    x, y, m = torch.cat(feats), torch.cat(targets), torch.cat(masked)
    weight = torch.where(m, 1.0 / m.sum(), unmasked_weight / (~m).sum()).clamp_min(0)
    return _fit(model.unit_head, x, lambda out, idx: (F.cross_entropy(out, y[idx], reduction="none")
                                                      * weight[idx]).sum() * len(x) / len(idx),
                epochs, seed, progress)


def _fit(head: torch.nn.Module, x: torch.Tensor, loss_fn, epochs: int, seed: int, progress: bool,
         batch_size: int = 1024, lr: float = 3e-3) -> list[float]:
    """Adam over shuffled minibatches of cached frames ``x``; ``loss_fn(head(x[idx]), idx)``."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    head.train()
    history = []
    for _ in tqdm(range(epochs), disable=not progress, desc="unit head", unit="epoch"):
        total = 0.0
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(head(x[idx]), idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(round(total / len(x), 4))
    head.eval()
    return history


def fit_exit_heads(model: MaskedUnitEncoder, dataset, epochs: int = 20, seed: int = 0, progress: bool = False
                   ) -> list[list[float]]:
    """DAISY's exits: every layer's unit head learns, on the frozen encoder and unmasked speech, the unit the
    pretrained head (``model.unit_head``, on the last layer) predicts for each frame (cross-entropy; no labels).
    ``dataset`` yields unit targets (:class:`~eekit.ssl.UnitClips`): only frames that have one (speech frames, see
    :func:`eekit.units.speech_frames`) are used. Returns each head's loss per epoch."""
    hidden, target = [], []
    with torch.no_grad():
        for h, _, _, batch in layer_outputs(model, dataset, batch_size=64):
            hidden.append(h[:, batch[2] >= 0])  # [L, n, D]: the frames that have a unit (speech)
            target.append(model.unit_head(hidden[-1][-1]).argmax(-1))  # [n]
    hidden, target = torch.cat(hidden, 1), torch.cat(target)
    return [_fit(head, hidden[k], lambda out, idx: F.cross_entropy(out, target[idx]), epochs, seed + k, progress)
            for k, head in enumerate(model.exit_heads)]


def unit_profile(model: MaskedUnitEncoder, dataset, batch_size: int = BATCH_SIZE, progress: bool = False,
                 meta: dict | None = None) -> ExitProfile:
    """Every layer's unit posterior on ``dataset`` (unmasked), as a ``"units"`` profile: predictions are the argmax
    unit per frame ``[N, L, T]`` (-1 past the end), errors the fraction of frames whose unit differs from the last
    layer's (label-free), scores :data:`UNIT_CRITERIA` (batch-wide over batches of ``batch_size``)."""
    units, errors, scores = [], [], {n: [] for n in UNIT_CRITERIA}
    for _, log_probs, frames, _ in layer_outputs(model, dataset, batch_size, progress):
        for n in UNIT_CRITERIA:
            scores[n].append(CRITERIA[n].scores(log_probs, lengths=frames).T)
        best = log_probs.argmax(-1)  # [L, B, T]
        valid = torch.arange(best.shape[-1])[None, :] < frames[:, None]  # [B, T]
        differ = ((best != best[-1:]) & valid).sum(-1) / frames  # [L, B]
        errors.append(differ.T)
        units.append(torch.where(valid, best, -1).permute(1, 0, 2))  # [B, L, T]
    T = max(u.shape[-1] for u in units)
    predictions = torch.cat([F.pad(u, (0, T - u.shape[-1]), value=-1) for u in units]).numpy().astype(np.int16)
    L = model.num_exits
    return ExitProfile(predictions=predictions, errors=torch.cat(errors).numpy().astype(np.float32),
                       totals=np.ones(len(predictions), np.float32), cost=np.arange(1, L + 1, dtype=np.float64),
                       full_cost=float(L), exit_names=list(model.exit_names), kind="units", cost_unit="layers",
                       scores={n: torch.cat(v).numpy().astype(np.float32) for n, v in scores.items()},
                       meta={**(meta or {}), "batch_size": batch_size})


def noisy_unit_profile(model: MaskedUnitEncoder, clips, progress: bool = False, meta: dict | None = None,
                       seed: int = 0) -> ExitProfile:
    """``clips`` under every noise of :data:`NOISE_CHOICES` at every SNR of :data:`NOISY_SNRS` (seeded mixing,
    ``clips.with_noise``), stacked block after block into one profile; ``meta["blocks"]`` lists the blocks."""
    if len(clips) % BATCH_SIZE:
        raise ValueError(f"use a multiple of {BATCH_SIZE} clips, so no batch straddles two noise blocks")
    blocks, parts = [], []
    for noise in tqdm(NOISE_CHOICES, disable=not progress, desc="noises", unit="noise"):
        for snr in NOISY_SNRS:
            noisy = clips.with_noise(snr, data.NOISE_NAMES if noise == "all" else noise, seed=seed)
            parts.append(unit_profile(model, noisy))
            blocks.append({"noise": noise, "snr_db": snr})
    return ExitProfile.concat(parts, meta={**(meta or {}), "blocks": blocks, "block_size": len(clips),
                                           "batch_size": BATCH_SIZE})


def noise_slice(noisy: ExitProfile, noise: str, snr_db: float) -> ExitProfile:
    """The block of a :func:`noisy_unit_profile` for one ``noise`` (or ``"all"``) at one SNR (dB)."""
    blocks = noisy.meta.get("blocks")
    if blocks is None:
        raise ValueError("not a noisy unit profile: its meta has no 'blocks'")
    for i, b in enumerate(blocks):
        if b["noise"] == noise and float(b["snr_db"]) == float(snr_db):
            rows = slice(i * noisy.meta["block_size"], (i + 1) * noisy.meta["block_size"])
            return noisy.rows(rows, meta={**{k: v for k, v in noisy.meta.items() if k != "blocks"}, **b})
    raise ValueError(f"no block for noise {noise!r} at {snr_db} dB; noises {list(NOISE_CHOICES)}, "
                     f"SNRs {list(NOISY_SNRS)} dB")


# ------------------------------------------------------------------------------------------------ the report

CALIBRATION_BUDGET = 0.75  # the one threshold: the best unit agreement that spends <= 75 % of the layers ...
# ... on clean unlabelled clips of unseen speakers (``ssl-hubert-calibration``), disjoint from the held-out clips
TASK_MAX_DROP = 0.01  # per-task thresholds (DAISY's practice), for comparison: within 1 point of the last layer


def mean_exit_by_snr(clean: ExitProfile, noisy: ExitProfile, criterion: str, threshold: float) -> dict[str, float]:
    """Mean exit layer (1-based) on the clean clips and on the same clips under every shipped noise round-robin at
    each of :data:`NOISY_SNRS` dB."""
    out = {"clean": round(float(clean.exit_index(criterion, threshold).mean()) + 1, 3)}
    for snr in NOISY_SNRS:
        out[str(snr)] = round(float(noise_slice(noisy, "all", snr).exit_index(criterion, threshold).mean()) + 1, 3)
    return out
