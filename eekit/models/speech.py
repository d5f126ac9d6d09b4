"""Early-exit speech encoders for the speech track: a small conformer with an exit after every layer.

``conformer_ctc()`` recognizes connected digits with a CTC head per layer (Wright et al. 2023, arXiv 2309.09546:
exits trained from scratch; HuBERT-EE: CTC exits on a speech encoder). ``conformer_kws()`` classifies isolated
digits (keyword spotting) with a pooled classifier per layer. Both take raw 8 kHz waveforms and compute their own
log-mel features with torchaudio, so checkpoints carry their preprocessing; SpecAugment masks are applied in
training mode only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, cast

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from .. import validate

__all__ = ["SpeechEarlyExit", "SpeechState", "conformer_ctc", "conformer_kws", "BLANK", "DIGITS", "greedy_ctc", "speech_batch_loss"]

BLANK = 0  # CTC blank; character alphabet[i] is class i + 1
DIGITS = "0123456789"  # connected digits: digit d is class d + 1


def greedy_ctc(log_probs: torch.Tensor, length: int, alphabet: str = DIGITS) -> str:
    """Best-path CTC decoding of one utterance ``[T, C]``: collapse repeats, drop blanks; class i+1 is
    ``alphabet[i]`` (digits by default)."""
    best = log_probs[:length].argmax(-1).tolist()
    out: list[str] = []
    prev = BLANK
    for c in best:
        if c != prev and c != BLANK:
            out.append(alphabet[c - 1])
        prev = c
    return "".join(out)


def speech_batch_loss(model: Any, batch: Any, label_smoothing: float = 0.0
                      ) -> tuple[list[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """Every exit's output on one speech batch and the loss of one exit's output, for a model of ``task`` "ctc"
    (``batch = (waves, lengths, targets, target_lengths)``, CTC loss) or "kws" (``(waves, lengths, labels)``,
    cross-entropy): the loss the speech model kinds (:class:`SpeechEarlyExit`, the wrapped wav2vec 2.0) share."""
    if model.task == "ctc":
        waves, lengths, targets, target_lengths = batch
        outputs, frames = model(waves, lengths)
        return outputs, lambda out: F.ctc_loss(out.transpose(0, 1), targets, frames, target_lengths, blank=BLANK,
                                               zero_infinity=True)
    if model.task == "kws":
        waves, lengths, labels = batch
        outputs, _ = model(waves, lengths)
        return outputs, lambda out: F.cross_entropy(out, labels, label_smoothing=label_smoothing)
    raise ValueError(f"{model.task} heads learn without labels (eekit.speech_encoders.fit_unit_heads); train() "
                     "trains ctc or kws heads")


class LogMel(nn.Module):
    """Waveform ``[B, S]`` -> normalized log-mel frames ``[B, T, n_mels]`` (10 ms hop), SpecAugment when training."""

    def __init__(self, sample_rate: int = 8000, n_mels: int = 40, freq_mask: int = 8, time_mask: int = 10):
        super().__init__()
        self.hop = sample_rate // 100
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=256, hop_length=self.hop, n_mels=n_mels)
        self.freq_mask = torchaudio.transforms.FrequencyMasking(freq_mask)
        self.time_mask = torchaudio.transforms.TimeMasking(time_mask)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if waves.ndim != 2:
            raise ValueError(f"expected waveforms [B, samples] at 8 kHz, got shape {tuple(waves.shape)}")
        feats = (self.mel(waves) + 1e-6).log()  # [B, n_mels, T]
        frames = lengths // self.hop + 1
        mask = torch.arange(feats.shape[-1], device=feats.device)[None, :] < frames[:, None]  # [B, T]
        m = mask[:, None, :].to(feats.dtype)
        mean = (feats * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True)
        std = (((feats - mean) ** 2 * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True)).sqrt()
        feats = ((feats - mean) / (std + 1e-5)) * m
        if self.training:
            feats = self.time_mask(self.freq_mask(feats))
        return feats.transpose(1, 2), frames


class Subsample(nn.Module):
    """Two stride-2 convolutions over time and frequency: 4x fewer frames (40 ms each), then a projection."""

    def __init__(self, n_mels: int, d_model: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU())
        self.proj = nn.Linear(32 * ((n_mels + 3) // 4), d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x[:, None])  # [B, 32, T/4, F/4]
        x = self.proj(x.permute(0, 2, 1, 3).flatten(2))
        lengths = ((lengths - 1) // 2 + 1 - 1) // 2 + 1
        return x, lengths.clamp(max=x.shape[1])


class PooledClassifier(nn.Module):
    """Mean over the valid frames, then a linear layer: one label per utterance (keyword spotting)."""

    def __init__(self, d_model: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(x.dtype)
        return cast(torch.Tensor, self.linear((x * m).sum(1) / m.sum(1).clamp_min(1)))


@dataclass
class SpeechState:
    """Where a batch of utterances stands inside the encoder: hidden frames ``h [T, B, D]`` (torchaudio's conformer
    layout), the valid-frame ``mask [B, T]`` and the valid frame counts ``frames [B]``."""

    h: torch.Tensor
    mask: torch.Tensor
    frames: torch.Tensor


def conformer_begin(frontend: LogMel, subsample: Subsample, inputs: tuple[torch.Tensor, torch.Tensor]
                    ) -> SpeechState:
    """Waveforms and their lengths -> the subsampled frames before the first conformer layer (the speech model
    kinds that share this encoder, task models and the self-supervised one, start the same way)."""
    waves, lengths = inputs
    x, frames = frontend(waves, lengths)
    x, frames = subsample(x, frames)
    mask = torch.arange(x.shape[1], device=x.device)[None, :] < frames[:, None]
    return SpeechState(x.transpose(0, 1), mask, frames)


def conformer_advance(layers: nn.ModuleList, state: SpeechState, k: int) -> SpeechState:
    """Run conformer layer ``k`` on the valid frames."""
    return SpeechState(layers[k](state.h, ~state.mask), state.mask, state.frames)


class SpeechEarlyExit(nn.Module):
    """Log-mel -> 4x subsampling -> conformer layers, an exit head after each layer.

    ``forward(waves, lengths)`` returns every exit's output and the frame lengths: for ``task="ctc"`` log-probs
    ``[B, T, 1 + len(alphabet)]`` (blank + 10 digits by default; sentences use letters, space and apostrophe), for ``task="kws"`` logits ``[B, 10]``. ``forward_to(waves, lengths, k)``
    runs layers ``0..k`` only. The backbone (``stages``) is what two-stage training freezes. It satisfies the model
    contract (:class:`~eekit.models.contract.ExitModel`) with inputs ``(waves, lengths)``: compaction drops
    utterances but keeps the padded length, so every utterance sees the padding it would see in the full batch
    (torchaudio's conformer convolution does not mask padded frames).
    """

    def __init__(self, task: str = "ctc", d_model: int = 64, num_layers: int = 6, num_heads: int = 4,
                 ffn_dim: int = 256, kernel_size: int = 15, dropout: float = 0.1, n_mels: int = 40,
                 alphabet: str = DIGITS):
        super().__init__()
        if task not in ("ctc", "kws"):
            raise ValueError(f"task must be 'ctc' (connected digits) or 'kws' (isolated digits), got {task!r}")
        if not isinstance(alphabet, str) or not alphabet or len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet must be a non-empty string of distinct characters (e.g. '0123456789'), "
                             f"got {alphabet!r}")
        self.task = task
        self.alphabet = alphabet
        self.output_kind = "ctc" if task == "ctc" else "classification"
        self.input_kind = "waveforms"
        self.frontend = LogMel(n_mels=n_mels)
        self.subsample = Subsample(n_mels, d_model)
        conformer = torchaudio.models.Conformer(d_model, num_heads, ffn_dim, num_layers, kernel_size, dropout=dropout)
        self.layers = conformer.conformer_layers
        if task == "ctc":
            self.exits = nn.ModuleList(nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, len(alphabet) + 1))
                                       for _ in range(num_layers))
        else:
            self.exits = nn.ModuleList(PooledClassifier(d_model, 10) for _ in range(num_layers))
        self.exit_names = [f"layer {k + 1}" for k in range(num_layers)]

    @property
    def num_exits(self) -> int:
        return len(self.layers)

    @property
    def stages(self) -> nn.ModuleList:
        """Everything but the exit heads."""
        return nn.ModuleList([self.frontend, self.subsample, self.layers])

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.stages.parameters()

    def check_input(self, x: Any) -> None:
        """Float waveforms ``[N, S]`` or ``(waves [N, S], lengths [N])`` with ``1 <= lengths <= S``."""
        validate.waveforms(f"a speech model ({self.task})", x)

    def batch_loss(self, batch: Any, label_smoothing: float = 0.0
                   ) -> tuple[list[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
        return speech_batch_loss(self, batch, label_smoothing)

    # the model contract: one conformer layer at a time
    def begin(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> SpeechState:
        """Waveforms ``[B, S]`` and their lengths ``[B]`` -> subsampled frames before the first layer."""
        return conformer_begin(self.frontend, self.subsample, inputs)

    def advance(self, state: SpeechState, k: int) -> SpeechState:
        return conformer_advance(self.layers, state, k)

    def exit_output(self, state: SpeechState, k: int) -> torch.Tensor:
        x = state.h.transpose(0, 1)
        if self.task == "ctc":
            return cast(torch.Tensor, self.exits[k](x).log_softmax(-1))
        return cast(torch.Tensor, self.exits[k](x, state.mask))

    def lengths(self, state: SpeechState) -> torch.Tensor | None:
        """Valid frames per utterance for CTC outputs; ``None`` for keyword spotting (one label per utterance)."""
        return state.frames if self.task == "ctc" else None

    def select(self, state: SpeechState, keep: torch.Tensor) -> SpeechState:
        return SpeechState(state.h[:, keep], state.mask[keep], state.frames[keep])

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor, upto: int | None = None
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        state = self.begin((waves, lengths))
        outputs = []
        last = self.num_exits - 1 if upto is None else upto
        for k in range(last + 1):
            state = self.advance(state, k)
            if upto is None or k == upto:
                outputs.append(self.exit_output(state, k))
        return outputs, state.frames

    def forward_to(self, waves: torch.Tensor, lengths: torch.Tensor, k: int) -> torch.Tensor:
        """Only exit ``k``'s output (layers ``0..k``, no other head)."""
        if not 0 <= k < self.num_exits:
            raise ValueError(f"exit index must be in 0..{self.num_exits - 1}, got {k}")
        return self.forward(waves, lengths, upto=k)[0][0]


def conformer_ctc(**kwargs: Any) -> SpeechEarlyExit:
    """Connected-digit recognizer: 6 conformer layers (d=64), a CTC exit after each."""
    return SpeechEarlyExit("ctc", **kwargs)


def conformer_kws(**kwargs: Any) -> SpeechEarlyExit:
    """Isolated-digit classifier (keyword spotting): the same encoder, a pooled classifier after each layer."""
    return SpeechEarlyExit("kws", **kwargs)
