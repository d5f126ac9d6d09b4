"""Export an exit: the sub-network up to exit ``k`` of any eekit model as one ONNX graph.

``python -m eekit export-onnx <model> --exit K --out FILE`` (or :func:`export_onnx` for a model in hand, such as a
wrapped wav2vec 2.0 encoder) writes the blocks ``0..K`` and exit ``K``'s head: images ``[N, C, H, W]`` ->
logits ``[N, C]``; speech ``(waves [N, S], lengths [N])`` -> log-probs ``[N, T, V]`` and frame lengths ``[N]``.
The batch is a dynamic axis; a speech graph's number of samples ``S`` is fixed when it is written (``--seconds``,
default :data:`SECONDS`): pad shorter utterances with zeros and pass their true lengths, as a batch of that length
would be padded.

What ONNX cannot express is the early exit itself: stopping *some rows* of a batch after an exit depends on the
data, and an ONNX graph runs every node for every row. The kit's runtime (:func:`eekit.runtime.infer`) does it in
Python between blocks (score, set the confident rows aside, compact the rest); an ONNX deployment does the same
with one graph per exit (or one per block) and the criterion in the host code.

torchaudio's spectrogram calls ``torch.stft`` with complex output, which the ONNX exporter cannot write; for export
it is replaced by the same discrete Fourier transform as a strided convolution with fixed cosine and sine kernels
(:class:`DftSpectrogram`): the same numbers up to float rounding.
"""

from __future__ import annotations

import argparse
import copy
import math
import warnings
from pathlib import Path

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from . import validate
from .files import write_atomic
from .models.contract import ExitModel
from .zoo import load_pretrained

__all__ = ["ExitSubnet", "DftSpectrogram", "export_onnx", "run_onnx", "add_command", "OPSET", "SECONDS", "TOLERANCE"]

OPSET = 17
SECONDS = 6.0  # speech graphs take waveforms zero-padded to this many seconds (the longest test utterance: 4.6 s)
TOLERANCE = 5e-3  # largest |ONNX - PyTorch| accepted on any logit or log-prob (tests/test_onnx_export.py). Measured
# on 100 inputs per model: images at most 1.2e-5; the conformer 3.4e-4 (its spectrogram runs as a convolution in ONNX,
# as an FFT in PyTorch); wav2vec2-fsdd 2.0e-3 at its last exit, growing layer by layer (1.7e-4 at the first): float32
# rounding of two convolution kernels, carried through 7 convolutions and 6 transformer layers


class ExitSubnet(nn.Module):
    """``model``'s blocks ``0..k`` and exit ``k``'s head as one ``forward`` (what gets exported)."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k
        self.speech = _is_speech(model)

    def forward(self, *inputs: torch.Tensor):
        state = self.model.begin(inputs if self.speech else inputs[0])
        for j in range(self.k + 1):
            state = self.model.advance(state, j)
        out = self.model.exit_output(state, self.k)
        lengths = self.model.lengths(state)
        return out if lengths is None else (out, lengths)


class DftSpectrogram(nn.Module):
    """A power spectrogram as a strided convolution (the DFT with the window folded into cosine and sine kernels):
    what ``torchaudio.transforms.Spectrogram`` computes (centred, reflect-padded, one-sided, power 2), in operators
    ONNX has."""

    def __init__(self, spec: torchaudio.transforms.Spectrogram):
        super().__init__()
        if (spec.power != 2.0 or not spec.center or not spec.onesided or spec.normalized or spec.pad
                or spec.pad_mode != "reflect"):
            raise ValueError("only power-2, centred, one-sided, unnormalized spectrograms with reflect padding can "
                             "be exported (eekit's speech models use exactly that)")
        n_fft, win = spec.n_fft, spec.window.double()
        if len(win) < n_fft:  # torch.stft centres a shorter window in the frame
            left = (n_fft - len(win)) // 2
            win = F.pad(win, (left, n_fft - len(win) - left))
        n = torch.arange(n_fft, dtype=torch.float64)
        f = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        angle = 2 * math.pi * f[:, None] * n[None, :] / n_fft
        kernels = torch.cat([torch.cos(angle) * win, -torch.sin(angle) * win])[:, None, :]
        self.register_buffer("kernels", kernels.float())
        self.n_fft, self.hop, self.bins = n_fft, spec.hop_length, len(f)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        x = F.pad(waves[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        y = F.conv1d(x, self.kernels, stride=self.hop)  # [B, 2 * bins, frames]
        return y[:, : self.bins] ** 2 + y[:, self.bins :] ** 2


def _exportable(model: nn.Module) -> nn.Module:
    """An eval copy of ``model`` with every torchaudio spectrogram replaced by :class:`DftSpectrogram`."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for name, child in module._modules.items():
            if isinstance(child, torchaudio.transforms.Spectrogram):
                module._modules[name] = DftSpectrogram(child)
    return model


def _is_speech(model: nn.Module) -> bool:
    """Speech models (conformer, wrapped wav2vec 2.0) take waveforms and lengths; image models take images."""
    return getattr(model, "input_kind", None) == "waveforms"


def _example(model: nn.Module, seconds: float) -> tuple:
    """A small input the exporter traces with: two utterances padded to ``seconds``, or two images (28 x 28 for one
    channel as MNIST, 32 x 32 for three as CIFAR-10; pass ``example`` for other sizes)."""
    gen = torch.Generator().manual_seed(0)
    if _is_speech(model):
        samples = round(seconds * getattr(model, "sample_rate", 8000))
        return (0.1 * torch.randn(2, samples, generator=gen), torch.tensor([samples, samples * 3 // 4]))
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    side = 28 if first.in_channels == 1 else 32
    return (torch.rand(2, first.in_channels, side, side, generator=gen),)


def export_onnx(model: nn.Module, k: int, path: str | Path, force: bool = False, seconds: float = SECONDS,
                example=None) -> Path:
    """Write ``model``'s sub-network up to exit ``k`` (0-based) to ``path`` as ONNX (opset :data:`OPSET`),
    atomically; an existing file is refused unless ``force``. Speech graphs take waveforms padded to ``seconds``
    (with their true lengths); the batch is free. ``example``: an input to trace with instead (default: two images,
    or two utterances of ``seconds``). Returns the path."""
    if not isinstance(model, ExitModel):
        raise ValueError(f"model must be an eekit early-exit model (zoo.load_pretrained(name), attach_exits(...), "
                         f"wrap_wav2vec2(...)), got {type(model).__name__}")
    k = validate.whole("exit index", k, 0, model.num_exits - 1,
                       accepted=f"a whole number in 0..{model.num_exits - 1} (0 = the first exit)")
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a folder; give a file name such as model-exit{k}.onnx")
    if not path.parent.is_dir():
        raise ValueError(f"--out {str(path)!r}: its folder {str(path.parent)!r} does not exist; give a file in an "
                         f"existing folder")
    validate.no_overwrite([path], force)
    seconds = validate.number("seconds (padded length of the exported speech input)", seconds, 0, 60,
                              low_open=True)
    subnet = ExitSubnet(_exportable(model), k).eval()
    inputs = tuple(example) if example is not None else _example(model, seconds)
    if subnet.speech:
        names, outputs = ["waves", "lengths"], ["log_probs", "frames"]
        # the number of samples is fixed at the traced length: the exporter bakes the time axis into the
        # attention's reshapes and the padding masks, so a dynamic one gives wrong shapes at run time
        axes = {"waves": {0: "batch"}, "lengths": {0: "batch"},
                "log_probs": {0: "batch", 1: "frames"}, "frames": {0: "batch"}}
    else:
        names, outputs = ["images"], ["logits"]
        axes = {"images": {0: "batch"}, "logits": {0: "batch"}}

    def write(tmp: Path) -> None:
        # dynamo=False: torch 2.9's default (dynamo) exporter needs the extra onnxscript package; the TorchScript
        # exporter ships with torch and writes these models (convolutions, attention, LayerNorm, CTC heads) as is
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes on shape arithmetic and the exporter's deprecation note
            torch.onnx.export(subnet, inputs, str(tmp), dynamo=False, opset_version=OPSET, input_names=names,
                              output_names=outputs, dynamic_axes=axes, do_constant_folding=True)

    return write_atomic(path, write)


def run_onnx(path: str | Path, *inputs: torch.Tensor) -> list[torch.Tensor]:
    """Run an exported exit in ONNX Runtime (CPU) on ``inputs``; returns its outputs as tensors."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(o) for o in session.run(None, feed)]


# ------------------------------------------------------------------------------------------------ command line


def _handler(args) -> int:
    model = load_pretrained(args.model)
    if args.seconds is not None and not _is_speech(model):
        raise ValueError(f"--seconds does not apply to {args.model} (an image model; its input is one image)")
    seconds = SECONDS if args.seconds is None else args.seconds
    path = export_onnx(model, args.exit, args.out, force=args.force, seconds=seconds)
    print(f"wrote {path}: {args.model} up to exit {args.exit} ({model.exit_names[args.exit]}) of "
          f"{model.num_exits}, ONNX opset {OPSET}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """``python -m eekit export-onnx <model> --exit K --out FILE [--force]``."""
    p = sub.add_parser("export-onnx", help="write a shipped model's sub-network up to one exit as ONNX",
                       description="Write the blocks up to exit K and its head as one ONNX graph (the exit decision "
                       "itself stays in the host code: see eekit.onnx_export).")
    p.add_argument("model", help="a shipped model, e.g. cnn-mnist, cnn-cifar10, speech-fsdd, wav2vec2-fsdd")
    p.add_argument("--exit", type=int, required=True, help="exit index, 0-based: 0 is the first exit")
    p.add_argument("--out", required=True, help="the .onnx file to write (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--seconds", type=float, default=None, help=f"speech models only: the padded input length in "
                   f"seconds (default {SECONDS:g})")
    p.set_defaults(func=_handler)
