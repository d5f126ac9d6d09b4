"""Acoustic units: the targets of HuBERT's first iteration, k-means clusters of MFCC frames.

HuBERT (Hsu et al. 2021, arXiv 2106.07447) learns by predicting, at masked frames, which cluster a frame's MFCCs
fall in. The clusters need no labels: k-means (k-means++ seeding, then Lloyd iterations, in torch) on 39-d MFCC +
deltas + delta-deltas, standardized over the pretraining corpus.

Frames are computed **at the encoder's frame rate**: the conformer turns 10 ms log-mel frames into 40 ms frames
(two stride-2 convolutions), so its frame ``i`` is centred on log-mel frame ``4 i``. :func:`mfcc_frames` averages
the 10 ms MFCC frames ``4i-2 .. 4i+1`` (edges repeated), which gives exactly the encoder's frame count
``ceil((samples // 80 + 1) / 4)`` for every length.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torchaudio

__all__ = ["mfcc_frames", "encoder_frames", "kmeans", "UnitCodebook", "HOP", "FRAMES_PER_UNIT"]

HOP = 80  # 10 ms at 8 kHz, the log-mel hop of eekit's speech frontend
FRAMES_PER_UNIT = 4  # the conformer's subsampling: one encoder frame (and one unit) per 40 ms


def encoder_frames(num_samples: int) -> int:
    """How many 40 ms frames the conformer makes of ``num_samples`` samples (8 kHz)."""
    return -(-(num_samples // HOP + 1) // FRAMES_PER_UNIT)


@lru_cache(maxsize=2)
def _mfcc(sample_rate: int) -> torchaudio.transforms.MFCC:
    return torchaudio.transforms.MFCC(sample_rate, n_mfcc=13,
                                      melkwargs={"n_fft": 256, "hop_length": HOP, "n_mels": 40})


def mfcc_frames(wave: torch.Tensor, sample_rate: int = 8000) -> torch.Tensor:
    """One waveform ``[S]`` -> ``[encoder_frames(S), 39]``: 13 MFCCs with deltas and delta-deltas, 40 ms frames."""
    if wave.ndim != 1 or len(wave) == 0:
        raise ValueError(f"expected one non-empty waveform [samples], got shape {tuple(wave.shape)}")
    mfcc = _mfcc(sample_rate)(wave)  # [13, T], T = S // 80 + 1
    d1 = torchaudio.functional.compute_deltas(mfcc)
    feats = torch.cat([mfcc, d1, torchaudio.functional.compute_deltas(d1)])  # [39, T]
    n = encoder_frames(len(wave))
    padded = torch.cat([feats[:, :1].expand(-1, 2), feats, feats[:, -1:].expand(-1, FRAMES_PER_UNIT)], 1)
    return padded[:, : FRAMES_PER_UNIT * n].reshape(39, n, FRAMES_PER_UNIT).mean(-1).T.contiguous()


def kmeans(x: torch.Tensor, k: int, iters: int = 50, seed: int = 0) -> torch.Tensor:
    """``k`` centroids of the rows of ``x [N, D]``: k-means++ seeding, then Lloyd iterations (an empty cluster is
    re-seeded at the point farthest from its centroid). Seeded, so always the same codebook."""
    if x.ndim != 2 or len(x) < k:
        raise ValueError(f"k-means needs at least k={k} rows of [N, D] features, got shape {tuple(x.shape)}")
    gen = torch.Generator().manual_seed(seed)
    x = x.double()
    centroids = x[torch.randint(len(x), (1,), generator=gen)]
    nearest = torch.cdist(x, centroids).squeeze(1) ** 2
    for _ in range(k - 1):  # k-means++: the next centroid drawn with probability ~ squared distance
        pick = torch.multinomial(nearest / nearest.sum(), 1, generator=gen)
        centroids = torch.cat([centroids, x[pick]])
        nearest = torch.minimum(nearest, ((x - x[pick]) ** 2).sum(1))
    for _ in range(iters):
        dist = torch.cdist(x, centroids)
        assign = dist.argmin(1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        new = sums / counts.clamp_min(1)[:, None]
        for c in torch.nonzero(counts == 0).flatten().tolist():
            new[c] = x[dist.gather(1, assign[:, None]).squeeze(1).argmax()]
        if torch.allclose(new, centroids):
            break
        centroids = new
    return centroids.float()


@dataclass
class UnitCodebook:
    """Standardization statistics and k-means centroids: ``units(wave)`` gives a clip's unit per 40 ms frame."""

    mean: torch.Tensor  # [39]
    std: torch.Tensor  # [39]
    centroids: torch.Tensor  # [K, 39] in standardized units

    @classmethod
    def fit(cls, waves, num_units: int = 100, iters: int = 50, seed: int = 0) -> "UnitCodebook":
        feats = torch.cat([mfcc_frames(w) for w in waves])
        mean, std = feats.mean(0), feats.std(0).clamp_min(1e-5)
        return cls(mean, std, kmeans((feats - mean) / std, num_units, iters, seed))

    @property
    def num_units(self) -> int:
        return len(self.centroids)

    def units(self, wave: torch.Tensor) -> torch.Tensor:
        """The nearest centroid of each 40 ms frame, ``[encoder_frames(len(wave))]``."""
        z = (mfcc_frames(wave) - self.mean) / self.std
        return torch.cdist(z, self.centroids).argmin(1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "std": self.std, "centroids": self.centroids}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "UnitCodebook":
        return cls(state["mean"], state["std"], state["centroids"])
