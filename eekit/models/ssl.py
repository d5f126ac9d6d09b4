"""A self-supervised speech encoder in miniature: HuBERT's masked unit prediction on eekit's conformer.

The encoder is exactly the speech models' (:class:`~eekit.models.speech.SpeechEarlyExit`: ``frontend`` log-mel,
``subsample`` 4x, ``layers`` conformer), under the same attribute names, so :meth:`MaskedUnitEncoder.encoder_state`
loads into ``conformer_ctc()`` / ``conformer_kws()`` unchanged. On top: a learned mask embedding that replaces the
40 ms frames chosen by :func:`span_mask` (HuBERT masks spans after the feature extractor), a unit head predicting the
k-means unit of every frame (:mod:`eekit.units`), and DAISY's exit heads: one linear unit head per layer (the last
included), trained afterwards on the frozen encoder toward the pretrained head's unit predictions (no task labels).
"""

from __future__ import annotations

from typing import Any, Callable, cast

import torch
import torchaudio
from torch import nn

from .. import validate
from .speech import LogMel, SpeechEarlyExit, SpeechState, Subsample, conformer_advance, conformer_begin

__all__ = ["MaskedUnitEncoder", "span_mask", "ENCODER_PREFIXES"]

ENCODER_PREFIXES = ("frontend.", "subsample.", "layers.")  # the parts shared with SpeechEarlyExit


def span_mask(frames: torch.Tensor, num_frames: int, mask_prob: float = 0.8, span: int = 5,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """HuBERT / wav2vec 2.0 span masking: ``int(mask_prob * T / span + u)`` spans of ``span`` frames start at
    distinct random valid frames (u uniform in [0, 1)); spans may overlap, so about half the frames end up masked
    at the defaults. Returns ``[B, num_frames]`` bools (True = masked), at least one masked frame per utterance."""
    if not 0 < mask_prob <= 1 or span < 1:
        raise ValueError(f"mask_prob must be in (0, 1] and span >= 1, got {mask_prob}, {span}")
    mask = torch.zeros(len(frames), num_frames, dtype=torch.bool)
    for b, T in enumerate(frames.tolist()):
        count = max(1, int(mask_prob * T / span + float(torch.rand((), generator=generator))))
        starts = torch.randperm(max(T - span + 1, 1), generator=generator)[:count]
        for s in starts.tolist():
            mask[b, s : min(s + span, T)] = True
    return mask


def _unit_head(d_model: int, num_units: int) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, num_units))


class MaskedUnitEncoder(nn.Module):
    """Conformer encoder + mask embedding + unit head (pretraining) + one unit head per layer (DAISY's exits).

    ``hidden(waves, lengths, mask)`` gives every layer's frames ``[B, T, D]``; ``forward`` the last layer's unit
    logits (what pretraining trains); ``unit_log_probs`` every layer's exit-head unit log-posterior
    ``[L, B, T, K]``, what DAISY scores with ``ssl_entropy``. The frontend never applies SpecAugment here: masking is the task.
    It satisfies the model contract (:class:`~eekit.models.contract.ExitModel`) with its exit heads' unit
    log-posteriors as outputs (``output_kind`` "units"), so real early exit runs DAISY's label-free exit.
    """

    output_kind = "units"
    input_kind = "waveforms"

    def __init__(self, num_units: int = 100, d_model: int = 64, num_layers: int = 6, num_heads: int = 4,
                 ffn_dim: int = 256, kernel_size: int = 15, dropout: float = 0.1, n_mels: int = 40):
        super().__init__()
        self.frontend = LogMel(n_mels=n_mels)
        self.subsample = Subsample(n_mels, d_model)
        conformer = torchaudio.models.Conformer(d_model, num_heads, ffn_dim, num_layers, kernel_size, dropout=dropout)
        self.layers = conformer.conformer_layers
        self.mask_embedding = nn.Parameter(torch.empty(d_model).uniform_())  # HuBERT initializes it uniformly
        self.unit_head = _unit_head(d_model, num_units)
        self.exit_heads = nn.ModuleList(_unit_head(d_model, num_units) for _ in range(num_layers))
        self.num_units = num_units
        self.exit_names = [f"layer {k + 1}" for k in range(num_layers)]

    @property
    def num_exits(self) -> int:
        return len(self.layers)

    def train(self, mode: bool = True) -> "MaskedUnitEncoder":
        super().train(mode)
        self.frontend.train(False)  # no SpecAugment: the masked-prediction task does its own masking
        return self

    def hidden(self, waves: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor | None = None
               ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every layer's output ``[B, T, D]`` and the frame lengths; ``mask [B, T]`` frames get the mask embedding."""
        x, frames = self.frontend(waves, lengths)
        x, frames = self.subsample(x, frames)
        if mask is not None:
            if mask.shape != x.shape[:2]:
                raise ValueError(f"mask must be [B, T] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        padding = torch.arange(x.shape[1])[None, :] >= frames[:, None]
        h, out = x.transpose(0, 1), []
        for layer in self.layers:
            h = layer(h, padding)
            out.append(h.transpose(0, 1))
        return out, frames

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The last layer's unit logits ``[B, T, K]`` and the frame lengths."""
        hidden, frames = self.hidden(waves, lengths, mask)
        return self.unit_head(hidden[-1]), frames

    def heads_log_probs(self, hidden: list[torch.Tensor]) -> torch.Tensor:
        """Unit log-posteriors ``[L, B, T, K]`` of every layer's exit head on precomputed ``hidden`` states."""
        return torch.stack([head(h).log_softmax(-1) for head, h in zip(self.exit_heads, hidden)])

    def unit_log_probs(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DAISY's exits on unmasked speech: ``[L, B, T, K]`` unit log-posteriors and the frame lengths."""
        hidden, frames = self.hidden(waves, lengths)
        return self.heads_log_probs(hidden), frames

    # the model contract: one conformer layer at a time, as SpeechEarlyExit (no mask embedding: unmasked speech)
    def check_input(self, x: Any) -> None:
        """Float waveforms ``[N, S]`` or ``(waves [N, S], lengths [N])`` with ``1 <= lengths <= S``."""
        validate.waveforms("the self-supervised encoder", x)

    def batch_loss(self, batch: Any, label_smoothing: float = 0.0
                   ) -> tuple[list[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
        raise ValueError("the self-supervised encoder learns without labels (eekit.ssl: masked unit prediction, "
                         "DAISY's exit heads); train() trains ctc or kws models")

    def begin(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> SpeechState:
        return conformer_begin(self.frontend, self.subsample, inputs)

    def advance(self, state: SpeechState, k: int) -> SpeechState:
        return conformer_advance(self.layers, state, k)

    def exit_output(self, state: SpeechState, k: int) -> torch.Tensor:
        return cast(torch.Tensor, self.exit_heads[k](state.h.transpose(0, 1)).log_softmax(-1))

    def lengths(self, state: SpeechState) -> torch.Tensor:
        return state.frames

    def select(self, state: SpeechState, keep: torch.Tensor) -> SpeechState:
        return SpeechState(state.h[:, keep], state.mask[keep], state.frames[keep])

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The encoder's weights under :class:`SpeechEarlyExit`'s names (load with ``strict=False``: the exits are
        the only keys left missing)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(ENCODER_PREFIXES)}

    def load_into(self, model: SpeechEarlyExit) -> SpeechEarlyExit:
        """Copy this encoder into a speech early-exit model (its exit heads keep their own weights)."""
        missing, unexpected = model.load_state_dict(self.encoder_state(), strict=False)
        if unexpected or any(not k.startswith("exits.") for k in missing):
            raise ValueError(f"encoder does not fit {type(model).__name__}: missing {missing}, unexpected {unexpected}")
        return model
