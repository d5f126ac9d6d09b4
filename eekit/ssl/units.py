"""Acoustic units: HuBERT's pretraining targets, k-means clusters of MFCC frames (iteration 1) or of the
iteration-1 encoder's hidden states (iteration 2).

HuBERT (Hsu et al. 2021, arXiv 2106.07447) learns by predicting, at masked frames, which cluster a frame falls in.
The clusters need no labels: k-means (k-means++ seeding, then Lloyd iterations, in torch). Iteration 1 clusters
39-d MFCC + deltas + delta-deltas, each utterance mean- and variance-normalized (CMVN, as the encoder's log-mel
frontend normalizes every utterance, so the targets do not depend on loudness or microphone gain the encoder never
sees), then standardized over the pretraining corpus. Iteration 2 clusters a middle layer of the iteration-1
encoder, as HuBERT does: on unseen Speech Commands speakers iteration 1's MFCC units were predicted at masked
frames only 12-15 % of the time (with or without CMVN, with or without speed perturbation), iteration 2's 43-44 %.

Only **speech frames** get a unit (:func:`speech_frames`, an energy detector; the rest get :data:`NO_UNIT` and no
loss). HuBERT's LibriSpeech is nearly all speech; a Speech Commands clip is one second of a volunteer's room around a
short word. With units on every frame, the encoder learned units for room noise, named added noise confidently and
exited *earlier* under noise, the opposite of DAISY; with speech-only units noise is the unfamiliar thing again.

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

from .. import validate
from ..data import FSDD_SAMPLE_RATE
from ..models.ssl import ENCODER_PREFIXES, MaskedUnitEncoder

__all__ = ["mfcc_frames", "encoder_frames", "speech_frames", "kmeans", "UnitCodebook", "HOP", "FRAMES_PER_UNIT",
           "NO_UNIT", "SPEECH_WITHIN_DB", "SPEECH_ABOVE_FLOOR_DB"]

HOP = 80  # 10 ms at 8 kHz, the log-mel hop of eekit's speech frontend
FRAMES_PER_UNIT = 4  # the conformer's subsampling: one encoder frame (and one unit) per 40 ms
NO_UNIT = -100  # the unit of a frame that has none (not speech, or padding): cross-entropy's ignore_index
SPEECH_WITHIN_DB = 30.0  # a speech frame is within this many dB of the clip's loudest 40 ms frame ...
SPEECH_ABOVE_FLOOR_DB = 6.0  # ... and this many dB above its noise floor (its 10th-percentile frame)


def encoder_frames(num_samples: int | torch.Tensor) -> int | torch.Tensor:
    """How many 40 ms frames the conformer makes of ``num_samples`` samples (8 kHz); elementwise on a tensor of
    lengths."""
    return -(-(num_samples // HOP + 1) // FRAMES_PER_UNIT)


@lru_cache(maxsize=2)
def _mfcc(sample_rate: int) -> torchaudio.transforms.MFCC:
    return torchaudio.transforms.MFCC(sample_rate, n_mfcc=13,
                                      melkwargs={"n_fft": 256, "hop_length": HOP, "n_mels": 40})


def mfcc_frames(wave: torch.Tensor, sample_rate: int = 8000) -> torch.Tensor:
    """One waveform ``[S]`` -> ``[encoder_frames(S), 39]``: 13 MFCCs with deltas and delta-deltas, normalized over
    the utterance (zero mean, unit variance per coefficient, as the encoder's frontend does), 40 ms frames."""
    validate.waveform("wave", wave)
    validate.sample_rate("sample_rate", sample_rate, FSDD_SAMPLE_RATE)  # HOP and the encoder's frames assume 8 kHz
    mfcc = _mfcc(sample_rate)(wave)  # [13, T], T = S // 80 + 1
    d1 = torchaudio.functional.compute_deltas(mfcc)
    feats = torch.cat([mfcc, d1, torchaudio.functional.compute_deltas(d1)])  # [39, T]
    feats = (feats - feats.mean(1, keepdim=True)) / (feats.std(1, keepdim=True, unbiased=False) + 1e-5)
    n = encoder_frames(len(wave))
    padded = torch.cat([feats[:, :1].expand(-1, 2), feats, feats[:, -1:].expand(-1, FRAMES_PER_UNIT)], 1)
    return padded[:, : FRAMES_PER_UNIT * n].reshape(39, n, FRAMES_PER_UNIT).mean(-1).T.contiguous()


def speech_frames(wave: torch.Tensor) -> torch.Tensor:
    """Which 40 ms encoder frames of ``wave [S]`` hold speech, ``[encoder_frames(S)]`` bools: an energy detector
    (frame power within :data:`SPEECH_WITHIN_DB` of the clip's loudest frame and :data:`SPEECH_ABOVE_FLOOR_DB` above
    its 10th-percentile frame). Speech Commands clips are one second of a volunteer's room around a half-second
    word; HuBERT's LibriSpeech is nearly all speech, so its units name speech sounds, never the room."""
    validate.waveform("wave", wave)
    n, width = encoder_frames(len(wave)), HOP * FRAMES_PER_UNIT
    frames = torch.nn.functional.pad(wave, (width // 2, n * width))[: n * width].reshape(n, width)
    power = 10 * torch.log10(frames.pow(2).mean(1) + 1e-10)
    return (power > power.max() - SPEECH_WITHIN_DB) & (power > torch.quantile(power, 0.1) + SPEECH_ABOVE_FLOOR_DB)


def kmeans(x: torch.Tensor, k: int, iters: int = 50, seed: int = 0) -> torch.Tensor:
    """``k`` centroids of the rows of ``x [N, D]``: k-means++ seeding, then Lloyd iterations (an empty cluster is
    re-seeded at the point farthest from its centroid). Seeded, so always the same codebook."""
    k = validate.whole("k (number of centroids)", k, 1)
    iters = validate.whole("iters (Lloyd iterations)", iters, 0)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 2 or len(x) < k:
        got = f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"k-means needs a float tensor of at least k={k} rows of [N, D] features, got {got}")
    validate.finite("k-means features", x)
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
    """Standardization statistics and k-means centroids: ``units(wave)`` gives a clip's unit per 40 ms frame.

    Iteration 1 clusters MFCC frames (:func:`mfcc_frames`); HuBERT's iteration 2 clusters the hidden states of a
    ``teacher`` encoder (the iteration-1 model) at layer ``teacher_layer``, each clip run alone in eval mode, so a
    frame's unit never depends on what else is in a batch. The teacher's weights travel with the codebook. With
    ``speech_only``, k-means sees only :func:`speech_frames` and every other frame's unit is :data:`NO_UNIT`."""

    mean: torch.Tensor  # [D] (D = 39 for MFCC, the encoder width for a teacher)
    std: torch.Tensor  # [D]
    centroids: torch.Tensor  # [K, D] in standardized units
    teacher: "MaskedUnitEncoder | None" = None
    teacher_layer: int | None = None
    speech_only: bool = False

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """``[encoder_frames(len(wave)), D]``: MFCC + deltas, or the teacher's hidden states at its layer."""
        if self.teacher is None:
            return mfcc_frames(wave)
        validate.waveform("wave", wave)
        with torch.inference_mode():
            hidden, frames = self.teacher.eval().hidden(wave[None], torch.tensor([len(wave)]))
        return hidden[self.teacher_layer - 1][0, : int(frames[0])].clone()

    @classmethod
    def fit(cls, waves, num_units: int = 100, iters: int = 50, seed: int = 0, teacher=None,
            teacher_layer: int | None = None, speech_only: bool = False) -> "UnitCodebook":
        """k-means on every frame (or every speech frame) of ``waves``: of their MFCCs, or of ``teacher``'s layer
        ``teacher_layer``."""
        num_units = validate.whole("num_units", num_units, 2)
        waves = list(waves)
        if not waves:
            raise ValueError("a codebook needs at least one waveform [samples] to cluster, got none")
        if (teacher is None) != (teacher_layer is None):
            raise ValueError("give both teacher and teacher_layer (iteration 2) or neither (MFCC units)")
        if teacher is not None and not 1 <= teacher_layer <= len(teacher.layers):
            raise ValueError(f"teacher_layer must be 1..{len(teacher.layers)}, got {teacher_layer}")
        book = cls(torch.zeros(0), torch.zeros(0), torch.zeros(0), teacher, teacher_layer, speech_only)
        feats = torch.cat([book.features(w)[speech_frames(w)] if speech_only else book.features(w) for w in waves])
        book.mean, book.std = feats.mean(0), feats.std(0).clamp_min(1e-5)
        book.centroids = kmeans((feats - book.mean) / book.std, num_units, iters, seed)
        return book

    @property
    def num_units(self) -> int:
        return len(self.centroids)

    @property
    def targets(self) -> str:
        """What the units cluster, in words (for cards and plots)."""
        what = ("k-means on MFCC + deltas" if self.teacher is None else
                f"k-means on layer {self.teacher_layer} of the iteration-1 encoder")
        return what + (", speech frames only" if self.speech_only else "")

    def units(self, wave: torch.Tensor) -> torch.Tensor:
        """The nearest centroid of each 40 ms frame, ``[encoder_frames(len(wave))]`` (:data:`NO_UNIT` where a
        ``speech_only`` codebook finds no speech)."""
        z = (self.features(wave) - self.mean) / self.std
        units = torch.cdist(z, self.centroids).argmin(1)
        return torch.where(speech_frames(wave), units, NO_UNIT) if self.speech_only else units

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"mean": self.mean, "std": self.std, "centroids": self.centroids,
                 "speech_only": torch.tensor(self.speech_only)}
        if self.teacher is not None:
            state["teacher_layer"] = torch.tensor(self.teacher_layer)
            state.update({f"teacher.{k}": v for k, v in self.teacher.encoder_state().items()})
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "UnitCodebook":
        teacher = layer = None
        if "teacher_layer" in state:
            teacher = MaskedUnitEncoder()
            missing, unexpected = teacher.load_state_dict(
                {k[8:]: v for k, v in state.items() if k.startswith("teacher.")}, strict=False)
            if unexpected or any(k.startswith(ENCODER_PREFIXES) for k in missing):
                raise ValueError(f"the codebook's teacher encoder is incomplete: missing {missing}, unexpected "
                                 f"{unexpected}")
            teacher, layer = teacher.eval(), int(state["teacher_layer"])
        mean, std, centroids = state["mean"], state["std"], state["centroids"]
        if centroids.ndim != 2 or len(centroids) < 2 or not mean.shape == std.shape == (centroids.shape[1],):
            raise ValueError(f"a codebook needs centroids [K >= 2, D] and mean, std [D], got {tuple(centroids.shape)}, "
                             f"{tuple(mean.shape)}, {tuple(std.shape)}")
        validate.values("codebook centroids", centroids)
        validate.values("codebook mean", mean)
        validate.values("codebook std", std, 0, low_open=True)
        return cls(mean, std, centroids, teacher, layer, bool(state.get("speech_only", False)))
