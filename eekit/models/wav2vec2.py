"""Bring your own speech encoder: exits on torchaudio's wav2vec 2.0, HuBERT and WavLM models.

torchaudio builds all three as one class, :class:`torchaudio.models.Wav2Vec2Model` (``wav2vec2_model``,
``hubert_base``, ``wavlm_base``, ... or a ``torchaudio.pipelines`` bundle's ``get_model()``): a convolutional
feature extractor over the raw waveform, then a transformer. :func:`wrap_wav2vec2` puts an exit after chosen
transformer layers without copying a weight, and the result is an eekit
:class:`~eekit.models.contract.ExitModel`, so the kit's training (two-stage, :mod:`eekit.speech_encoders`), profiles, sweeps,
calibration, dashboards and real early exit (:func:`eekit.runtime.infer`) all apply unchanged.

Two kinds of exit heads (LayerNorm + Linear on every frame):

* ``head="ctc"``: a CTC head per exit, blank + 10 digits (HuBERT-EE: CTC exits on a self-supervised encoder);
  criteria ``ctc_entropy``, ``ctc_posterior``, ``ctc_batch_entropy``.
* ``head="units"``: DAISY's label-free exits, a unit head per exit trained by :func:`eekit.speech_encoders.fit_unit_heads` toward the
  k-means unit of the last exit's frames (HuBERT's iteration-2 targets); criteria ``ssl_entropy``,
  ``ssl_batch_entropy``. No task label takes part.

Padding: the transformer's attention never looks at padded frames (the additive mask torchaudio builds from the
lengths; WavLM, whose torchaudio attention refuses that mask, gets the key padding mask it does take). The feature
extractor's group norm (Base models) normalizes over the padded waveform, as in torchaudio and fairseq, so an
utterance's features depend a little on its batch; compaction keeps the padded length, so real early exit computes
exactly what the profile computed for the same batches.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, cast

import torch
import torchaudio
from torch import nn
from torchaudio.models import Wav2Vec2Model
from torchaudio.models.wav2vec2.wavlm_attention import WavLMSelfAttention

from .. import validate
from .speech import DIGITS, speech_batch_loss

__all__ = ["Wav2Vec2Exits", "Wav2Vec2State", "wrap_wav2vec2", "small_wav2vec2", "wav2vec2_ctc",
           "ACCEPTED_MODELS", "HEADS", "ENCODER_RATE"]

ACCEPTED_MODELS = ("a torchaudio.models.Wav2Vec2Model: wav2vec 2.0, HuBERT or WavLM, from torchaudio.models' builders "
                   "(wav2vec2_model, wav2vec2_base, hubert_base, wavlm_base, ...) or a torchaudio.pipelines bundle's "
                   "get_model(), e.g. torchaudio.pipelines.HUBERT_BASE.get_model()")
HEADS = ("ctc", "units")
ENCODER_RATE = 16_000  # every torchaudio.pipelines wav2vec 2.0 / HuBERT / WavLM bundle hears 16 kHz audio
CTC_CLASSES = 11  # blank + the digits 0-9 (eekit.models.speech.BLANK = 0, digit d is class d + 1)


@dataclass
class Wav2Vec2State:
    """Where a batch stands inside the transformer: frames ``h [B, T, D]``, the valid frame counts ``frames [B]``,
    the attention mask torchaudio's layers take (``[B, 1, T, T]`` additive, or WavLM's key padding mask ``[B, T]``)
    and WavLM's relative position bias ``[B, heads, T, T]`` once its first layer has made it."""

    h: torch.Tensor
    frames: torch.Tensor
    mask: torch.Tensor | None
    position_bias: torch.Tensor | None = None


@contextmanager
def _without_onednn() -> Iterator[None]:
    """PyTorch's own convolutions instead of oneDNN's, which keeps a compiled convolution per input length (about
    8 MB each, up to 1,024 of them): a profile of variable-length speech grew by 8 MB per batch of 16 utterances.
    PyTorch's were also faster here (22.5 against 25.4 s for 50 batches, one thread)."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]  # a flag; typeshed types it as its descriptor
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


def _head(d_model: int, outputs: int) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, outputs))


class Wav2Vec2Exits(nn.Module):
    """A :class:`torchaudio.models.Wav2Vec2Model` with an exit after each layer of ``exit_after`` (1-based).

    ``forward(waves, lengths)`` returns every exit's log-probs ``[B, T, V]`` and the frame lengths, like the kit's
    conformer (:class:`~eekit.models.speech.SpeechEarlyExit`); ``stages`` (the encoder) is what two-stage training
    freezes. Waveforms arrive at ``sample_rate`` and are resampled inside to the encoder's ``encoder_rate``
    (``torchaudio.transforms.Resample``), so the kit's 8 kHz digits feed a 16 kHz HuBERT. Layers after the last
    exit are never run. Build it with :func:`wrap_wav2vec2`.
    """

    def __init__(self, encoder: Wav2Vec2Model, exit_after: Sequence[int], head: str = "ctc",
                 num_classes: int = CTC_CLASSES, sample_rate: int = 8000, encoder_rate: int = ENCODER_RATE):
        super().__init__()
        if isinstance(getattr(encoder, "wav2vec2", None), Wav2Vec2Model):  # HuBERTPretrainModel and the like
            raise ValueError(f"encoder must be {ACCEPTED_MODELS}; got a {type(encoder).__name__}, which holds one: "
                             f"pass its .wav2vec2")
        validate.instance("encoder", encoder, Wav2Vec2Model, ACCEPTED_MODELS)
        layers = encoder.encoder.transformer.layers
        self.exit_after = validate.layers("exit_after", exit_after, len(layers))
        self.task = validate.one_of("head", head, HEADS)
        self.output_kind = self.task  # "ctc" or "units": which criteria apply (eekit.criteria)
        self.alphabet = DIGITS  # what the CTC heads spell (class i + 1 is alphabet[i])
        self.input_kind = "waveforms"
        self.sample_rate = validate.whole("sample_rate (Hz) of the waveforms you feed", sample_rate, 1000, 192_000)
        self.encoder_rate = validate.whole("encoder_rate (Hz) the encoder was trained on", encoder_rate, 1000, 192_000)
        self.num_classes = validate.whole("num_classes (outputs of each exit head)", num_classes, 2)
        self.encoder = encoder
        self.resample = (torchaudio.transforms.Resample(self.sample_rate, self.encoder_rate)
                         if self.sample_rate != self.encoder_rate else nn.Identity())
        self.wavlm = isinstance(layers[0].attention, WavLMSelfAttention)
        d_model = encoder.encoder.feature_projection.projection.out_features
        self.exits = nn.ModuleList(_head(d_model, self.num_classes) for _ in self.exit_after)
        self.exit_names = [f"layer {n}" for n in self.exit_after]

    @property
    def num_exits(self) -> int:
        return len(self.exit_after)

    @property
    def stages(self) -> nn.ModuleList:
        """Everything but the exit heads (what two-stage training freezes)."""
        return nn.ModuleList([self.encoder])

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return cast(Iterator[nn.Parameter], self.encoder.parameters())  # a torchaudio module: untyped

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames of waveforms of ``lengths`` samples at ``sample_rate`` (what ``begin`` computes)."""
        if self.sample_rate != self.encoder_rate:
            lengths = torch.ceil(lengths * self.encoder_rate / self.sample_rate).long()
        for layer in self.encoder.feature_extractor.conv_layers:
            lengths = torch.div(lengths - layer.kernel_size, layer.stride, rounding_mode="floor") + 1
        return lengths.clamp_min(0)

    # the model contract: one group of transformer layers at a time
    def begin(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> Wav2Vec2State:
        """Waveforms ``[B, S]`` at ``sample_rate`` and their lengths ``[B]`` -> frames before the first layer."""
        waves, lengths = inputs
        waves = self.resample(waves)
        if self.sample_rate != self.encoder_rate:  # the valid samples after resampling, as Resample counts them
            lengths = torch.ceil(lengths * self.encoder_rate / self.sample_rate).long().clamp(max=waves.shape[1])
        with _without_onednn():
            x, frames = self.encoder.feature_extractor(waves, lengths)
        # torchaudio's Encoder._preprocess, with masked_fill for its in-place boolean indexing (which the ONNX
        # exporter writes with the traced length baked in): padded frames zeroed, then the additive mask
        x = self.encoder.encoder.feature_projection(x)
        padded = torch.arange(x.shape[1], device=x.device)[None, :] >= frames[:, None]  # [B, T]
        x = x.masked_fill(padded[..., None], 0.0)
        if self.wavlm:  # torchaudio's WavLM attention takes a key padding mask, not the additive [B, 1, T, T] one
            mask = padded
        else:
            mask = (-10000.0 * padded[:, None, None, :].to(x.dtype)).expand(-1, 1, x.shape[1], -1)
        return Wav2Vec2State(self.encoder.encoder.transformer._preprocess(x), frames, mask)

    def advance(self, state: Wav2Vec2State, k: int) -> Wav2Vec2State:
        """Run the transformer layers from the previous exit up to exit ``k``'s layer."""
        h, bias = state.h, state.position_bias
        for layer in self.encoder.encoder.transformer.layers[self.exit_after[k - 1] if k else 0: self.exit_after[k]]:
            if self.wavlm:
                h, bias = layer(h, None, position_bias=bias, key_padding_mask=state.mask)
            else:
                h, bias = layer(h, state.mask, position_bias=bias)
        return Wav2Vec2State(h, state.frames, state.mask, bias)

    def exit_output(self, state: Wav2Vec2State, k: int) -> torch.Tensor:
        return cast(torch.Tensor, self.exits[k](state.h).log_softmax(-1))

    def lengths(self, state: Wav2Vec2State) -> torch.Tensor:
        return state.frames

    def select(self, state: Wav2Vec2State, keep: torch.Tensor) -> Wav2Vec2State:
        """Rows ``keep`` of everything; the padded length stays, so every utterance sees what it saw in the batch."""
        bias = state.position_bias
        if bias is not None:  # WavLM's [B, heads, T, T] (or [B * heads, T, T], batch-major)
            B, T = state.h.shape[0], bias.shape[-1]
            bias = bias[keep] if bias.ndim == 4 else bias.view(B, -1, T, T)[keep].flatten(0, 1)
        mask = None if state.mask is None else state.mask[keep]
        return Wav2Vec2State(state.h[keep], state.frames[keep], mask, bias)

    def check_input(self, x: Any) -> None:
        """Float waveforms ``[N, S]`` or ``(waves [N, S], lengths [N])`` with ``1 <= lengths <= S``."""
        validate.waveforms(f"a speech model ({self.task})", x)

    def batch_loss(self, batch: Any, label_smoothing: float = 0.0
                   ) -> tuple[list[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
        return speech_batch_loss(self, batch, label_smoothing)

    def hidden(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every exit's frames ``[B, T, D]`` (before its head) and the frame lengths."""
        self.check_input((waves, lengths))  # lengths that do not fit the batch fail here, clearly
        state, out = self.begin((waves, lengths)), []
        for k in range(self.num_exits):
            state = self.advance(state, k)
            out.append(state.h)
        return out, state.frames

    def heads_log_probs(self, hidden: list[torch.Tensor]) -> torch.Tensor:
        """Every exit head's log-posteriors ``[K, B, T, V]`` on precomputed :meth:`hidden` frames (what
        :func:`eekit.daisy.unit_profile` reads)."""
        return torch.stack([head(h).log_softmax(-1) for head, h in zip(self.exits, hidden)])

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        hidden, frames = self.hidden(waves, lengths)
        return list(self.heads_log_probs(hidden).unbind(0)), frames

    def forward_to(self, waves: torch.Tensor, lengths: torch.Tensor, k: int) -> torch.Tensor:
        """Only exit ``k``'s output (0-based; the layers up to it, no other head)."""
        k = validate.whole("exit index", k, 0, self.num_exits - 1)
        state = self.begin((waves, lengths))
        for j in range(k + 1):
            state = self.advance(state, j)
        return self.exit_output(state, k)


def wrap_wav2vec2(encoder: Wav2Vec2Model, exit_after: Sequence[int], head: str = "ctc",
                  num_classes: int | None = None, sample_rate: int = 8000, encoder_rate: int = ENCODER_RATE,
                  seed: int = 0) -> Wav2Vec2Exits:
    """Exits after transformer layers ``exit_after`` (1-based, increasing) of ``encoder``; the heads start from
    ``seed``. ``num_classes``: CTC classes (default blank + 10 digits) or units (default 50). The encoder's weights
    are shared, not copied."""
    if num_classes is None:
        num_classes = CTC_CLASSES if head == "ctc" else 50
    torch.manual_seed(seed)
    return Wav2Vec2Exits(encoder, exit_after, head, num_classes, sample_rate, encoder_rate)


def small_wav2vec2(num_layers: int = 6, d_model: int = 64, kind: str = "wav2vec2", seed: int = 0) -> Wav2Vec2Model:
    """A small random-initialised wav2vec 2.0 (or ``kind="wavlm"``) from torchaudio's own builder, for 8 kHz audio:
    six 32-channel convolutions with a stride of 320 samples (40 ms frames, the kit's conformer's rate), ``d_model``
    wide transformer layers with 4 heads. The same architecture as HUBERT_BASE at about 1/300 of its size; wrap it
    with ``encoder_rate=8000``. No download."""
    validate.one_of("kind", kind, ("wav2vec2", "wavlm"))
    torch.manual_seed(seed)
    conv = [(32, 10, 5)] + [(32, 3, 2)] * 3 + [(32, 2, 2)] * 3  # strides 5 x 2^6 = 320 samples
    common = dict(extractor_mode="group_norm", extractor_conv_layer_config=conv, extractor_conv_bias=False,
                  encoder_embed_dim=d_model, encoder_projection_dropout=0.1, encoder_pos_conv_kernel=16,
                  encoder_pos_conv_groups=4, encoder_num_layers=num_layers, encoder_num_heads=4,
                  encoder_attention_dropout=0.1, encoder_ff_interm_features=4 * d_model,
                  encoder_ff_interm_dropout=0.0, encoder_dropout=0.1, encoder_layer_norm_first=False,
                  encoder_layer_drop=0.0, aux_num_out=None)
    if kind == "wavlm":
        return torchaudio.models.wavlm_model(encoder_num_buckets=32, encoder_max_distance=64, **common)
    return torchaudio.models.wav2vec2_model(**common)


def wav2vec2_ctc(num_layers: int = 6, d_model: int = 64, seed: int = 0) -> Wav2Vec2Exits:
    """The shipped ``wav2vec2-fsdd`` model: :func:`small_wav2vec2` (8 kHz) with a CTC exit after every layer."""
    return wrap_wav2vec2(small_wav2vec2(num_layers, d_model, seed=seed), list(range(1, num_layers + 1)),
                         encoder_rate=8000, seed=seed)
