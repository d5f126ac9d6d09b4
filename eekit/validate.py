"""Shared checks of user input: one function per kind of check, one wording for every entry point.

Every public function of eekit that takes numbers, names, lists, tensors or paths from a user checks them here, so a
mistake fails the same way wherever it is made: a ``ValueError`` whose message says what was wrong *and what is
accepted* (``"epochs must be a whole number >= 1, got 0"``). Nothing here fixes input silently.

The kinds: numbers (:func:`number`, :func:`whole`), types (:func:`instance`), choices (:func:`one_of`), lists of
names (:func:`names`),
tensors (:func:`finite`, :func:`image_batch`, :func:`log_probs`, :func:`model_input`) and output files
(:func:`writable_dir`, :func:`no_overwrite`).
"""

from __future__ import annotations

import math
import numbers
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence, cast

import numpy as np
import torch

__all__ = ["number", "whole", "instance", "one_of", "names", "finite", "values", "waveform", "sample_rate",
           "image_batch", "log_probs", "exit_threshold", "model_input", "writable_dir", "no_overwrite", "IMAGE_RANGE"]

IMAGE_RANGE = (0.0, 1.0)  # what eekit's image models take: floats in [0, 1], as ImageDataset returns them


# ---------------------------------------------------------------------------------------------------- numbers


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool, integer: bool) -> str:
    kind = "a whole number" if integer else "a finite number"
    lo = None if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = None if high is None else f"{'<' if high_open else '<='} {high:g}"
    if lo and hi:
        if integer and not (low_open or high_open):
            return f"{kind} in {low:g}..{high:g}"
        return f"{kind} {lo} and {hi}"
    return f"{kind} {lo or hi}" if (lo or hi) else kind


def number(name: str, value: Any, low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, accepted: str | None = None) -> float:
    """``value`` as a float after checking that it is a finite real number within the bounds (``*_open``: strict).
    ``accepted`` words the bounds for the reader (e.g. "a fraction in [0, 1] (0.01 = 1 point)")."""
    accepted = accepted or _bounds(low, high, low_open, high_open, integer=False)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {accepted}, got {value!r} ({type(value).__name__})")
    v = float(value)
    if (not math.isfinite(v) or (low is not None and (v <= low if low_open else v < low))
            or (high is not None and (v >= high if high_open else v > high))):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return v


def whole(name: str, value: Any, low: int | None = None, high: int | None = None, *, accepted: str | None = None
          ) -> int:
    """``value`` as an int after checking that it is a whole number in ``low..high`` (a float like 3.0 is fine)."""
    accepted = accepted or _bounds(low, high, False, False, integer=True)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {accepted}, got {value!r} ({type(value).__name__})")
    # int(): numbers.Real has no __int__ in typeshed, every finite real number here has one
    if not math.isfinite(float(value)) or float(value) != int(cast(Any, value)):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    v = int(cast(Any, value))
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return v


# ---------------------------------------------------------------------------------------------------- choices


def instance(name: str, value: Any, kind: type | tuple[type, ...], example: str) -> Any:
    """``value`` if it is a ``kind``; otherwise an error naming the kind and how to get one (``example``)."""
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be {example}, got {type(value).__name__}")
    return value


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``; otherwise an error listing them."""
    choices = list(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable / incomparable
        ok = False
    if not ok:
        raise ValueError(f"unknown {name} {value!r}; known: {choices}")
    return value


def names(name: str, value: Any, known: Sequence[str] | None = None, example: str | None = None) -> tuple[str, ...]:
    """A non-empty list of names (strings), each one of ``known`` if given. A bare string is refused: iterating it
    would silently give its letters."""
    hint = f", e.g. [{example!r}]" if example else (f", e.g. [{known[0]!r}]" if known else "")
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a list of names{hint}, got the string {value!r}; wrap it in a list")
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a list of names{hint}, got {value!r}") from None
    if not items:
        raise ValueError(f"{name} must be a non-empty list of names{hint}, got an empty list")
    bad = [v for v in items if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{name} must be a list of names (strings){hint}, got {bad[0]!r} in it")
    if known is not None:
        unknown = sorted(set(items) - set(known))
        if unknown:
            raise ValueError(f"unknown {name} {unknown}; known: {list(known)}")
    return items


# ---------------------------------------------------------------------------------------------------- tensors


def finite(name: str, x: Any, allow_neg_inf: bool = False) -> None:
    """Refuse NaN and infinities (a NaN input must never come out as a confident answer). ``allow_neg_inf``:
    log-probabilities may hold ``-inf`` (probability 0)."""
    t = torch.as_tensor(x)
    if not (t.is_floating_point() or t.is_complex()):
        return
    bad = torch.isnan(t) | (t == math.inf) if allow_neg_inf else ~torch.isfinite(t)
    n = int(bad.sum())
    if n:
        accepted = "finite numbers or -inf" if allow_neg_inf else "finite numbers"
        raise ValueError(f"{name} holds {n} non-finite value(s) (NaN or inf) out of {t.numel()}; "
                         f"only {accepted} are accepted")


def values(name: str, x: Any, low: float | None = None, high: float | None = None, *, low_open: bool = False,
           nonempty: bool = True) -> None:
    """An array (numpy or torch) of finite numbers within the bounds (``low_open``: strictly above ``low``), e.g. a
    profile's costs (> 0) or a sample's error count (>= 0); the message names the first bad value and its index."""
    accepted = _bounds(low, high, low_open, False, integer=False)
    try:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be an array of numbers ({accepted}), got {type(x).__name__}") from None
    if nonempty and t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty array of {accepted.replace('a finite number', 'finite numbers')}"
                         f", got an empty one of shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must hold numbers, got dtype {t.dtype}")
    t = t.double()
    bad = ~torch.isfinite(t)
    if low is not None:
        bad |= (t <= low) if low_open else (t < low)
    if high is not None:
        bad |= t > high
    if bool(bad.any()):
        i = tuple(int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(f"every value of {name} must be {accepted}; {int(bad.sum())} of {t.numel()} are not, e.g. "
                         f"{float(t[i])!r} at index {i if len(i) != 1 else i[0]}")


def waveform(name: str, x: Any) -> None:
    """One waveform ``[samples]`` with at least one sample, every sample finite (speech features are computed clip
    by clip)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 1 or len(x) == 0:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected one non-empty waveform [samples], got {shape}")
    finite(name, x)


def sample_rate(name: str, value: Any, expected: int, hint: str = "") -> int:
    """Audio at the rate a feature or model was built for (another rate would be silently wrong, not refused).
    ``hint``: another way out than resampling, for the message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != expected:
        raise ValueError(f"{name} must be {expected} Hz audio, got {value!r} Hz; resample it first with "
                         f"torchaudio.functional.resample(wave, {value!r}, {expected}){hint}")
    return expected


def exit_threshold(criterion: str, threshold: float, low: float, num_exits: int) -> float:
    """A whole-number-of-exits threshold (patience, fixed exit) that this model's ``num_exits`` exits can meet."""
    if threshold > num_exits - 1:
        raise ValueError(f"threshold for {criterion!r} must be in [{low:g}, {num_exits - 1}] for this "
                         f"{num_exits}-exit model, got {threshold:g}")
    return threshold


def image_batch(name: str, x: Any, channels: int | None = None) -> None:
    """A float image batch ``[N, C, H, W]`` with values in :data:`IMAGE_RANGE` (eekit's models normalize inside)."""
    low, high = IMAGE_RANGE
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of float images [N, C, H, W] in [{low:g}, {high:g}], "
                         f"got {type(x).__name__}")
    if not x.is_floating_point():
        hint = " (uint8 images: divide by 255)" if x.dtype == torch.uint8 else ""
        raise ValueError(f"{name} must be float images [N, C, H, W] in [{low:g}, {high:g}], got dtype {x.dtype}{hint}")
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty batch of images [N, C, H, W], got shape {tuple(x.shape)}"
                         + (" (one image [C, H, W]: use x[None]; grayscale [N, H, W]: use x[:, None])"
                            if x.ndim == 3 else ""))
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s) [N, {channels}, H, W] for this model, got shape "
                         f"{tuple(x.shape)}")
    lo, hi = (float(v) for v in torch.aminmax(x))  # one pass; a NaN or inf shows up in the extremes
    if not (math.isfinite(lo) and math.isfinite(hi)):
        finite(name, x)  # names how many values are bad
    if lo < low - 1e-6 or hi > high + 1e-6:
        hint = " (0..255 pixels: divide by 255)" if hi > 1.5 else ""
        raise ValueError(f"{name} must hold pixel values in [{low:g}, {high:g}], got values in [{lo:g}, {hi:g}]{hint}")


def log_probs(name: str, x: torch.Tensor, dim: int = -1) -> None:
    """Log-probabilities along ``dim`` (what ``log_softmax`` returns): every row's ``exp`` sums to 1. Raw logits
    are refused: scoring them as probabilities would call a guess certain."""
    finite(name, x, allow_neg_inf=True)
    x = x.float()
    if x.numel() == 0:
        return
    total = torch.logsumexp(x, dim).flatten()
    worst = float(total[total.abs().argmax()])
    if abs(worst) > 1e-3 or float(x.max()) > 1e-4:
        raise ValueError(f"{name} must be log-probabilities (log_softmax over the last dimension, each frame's "
                         f"exp summing to 1), got a frame whose exp sums to {math.exp(min(worst, 700)):.3g} "
                         f"(raw logits? apply .log_softmax(-1) first)")


def model_input(model: Any, x: Any) -> None:
    """What real early exit (``runtime.infer``) can take: a model that satisfies
    :class:`~eekit.models.contract.ExitModel`, and an input its kind accepts (the model's own ``check_input``: for an
    image model a float batch ``[N, C, H, W]`` with the model's channels, in [0, 1] when the model normalizes its own
    input, as eekit's CNNs do; for a speech model float waveforms ``[N, S]`` or ``(waves [N, S], lengths [N])`` with
    ``1 <= lengths <= S``)."""
    check = getattr(model, "check_input", None)
    if not callable(check) or not isinstance(getattr(model, "input_kind", None), str):
        raise ValueError(f"model must be an eekit early-exit model (an EarlyExitNet such as "
                         f"zoo.load_pretrained('cnn-mnist') or models.attach_exits(...), or a speech model), got "
                         f"{type(model).__name__}")
    check(x)


def waveforms(who: str, x: Any) -> None:
    """Speech input: float waveforms ``[N, samples]``, optionally with their lengths ``(waves, lengths [N])``,
    ``1 <= lengths <= samples``; ``who`` names the model in the message (e.g. "a speech model (ctc)")."""
    accepted = f"{who} takes float waveforms [N, samples] or (waves [N, samples], lengths [N])"
    waves, lengths = (x[0], x[1]) if isinstance(x, (tuple, list)) and len(x) == 2 else (x, None)
    if not isinstance(waves, torch.Tensor) or not waves.is_floating_point() or waves.ndim != 2 or not len(waves):
        got = f"{waves.dtype} {tuple(waves.shape)}" if isinstance(waves, torch.Tensor) else type(waves).__name__
        raise ValueError(f"{accepted}, got {got}")
    finite("waveforms", waves)
    if lengths is not None:
        lengths = torch.as_tensor(lengths)
        if (lengths.shape != (len(waves),) or lengths.is_floating_point() or bool((lengths < 1).any())
                or bool((lengths > waves.shape[1]).any())):
            raise ValueError(f"{accepted}: lengths must be {len(waves)} whole numbers in 1..{waves.shape[1]}, "
                             f"got {lengths.tolist()[:8]}")


def float_batch(x: Any) -> None:
    """A non-empty float batch ``[N, ...]`` of finite values (a model that does not normalize its own input)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2 or not len(x):
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a non-empty float batch [N, ...], got {got}")
    finite("x", x)


# ---------------------------------------------------------------------------------------------------- files


def writable_dir(name: str, path: str | Path) -> Path:
    """A folder we may write into: it exists (or its parent does, and it is created now), is not a file, and a file
    can be written in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a file; give a folder (it is created if its parent exists)")
    if not path.exists() and not path.parent.is_dir():
        raise ValueError(f"{name} {str(path)!r}: its parent folder {str(path.parent)!r} does not exist; give an "
                         f"existing folder or a new one inside an existing folder")
    try:  # try now, so that a run of minutes or hours does not fail only when it saves its results
        path.mkdir(exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ValueError(f"{name} {str(path)!r} cannot be written ({err.strerror or err}); give a folder you may "
                         f"write into") from err
    return path


def no_overwrite(files: Iterable[str | Path], force: bool, flag: str = "--force") -> None:
    """Refuse to replace existing files unless ``force``: shipped checkpoints must never be overwritten by accident."""
    existing = [str(f) for f in files if Path(f).exists()]
    if existing and not force:
        raise ValueError(f"refusing to overwrite {', '.join(existing)}; choose another output folder or pass "
                         f"{flag} to replace them")


# ---------------------------------------------------------------------------------------------------- speech


def layers(name: str, value: Any, num_layers: int) -> tuple[int, ...]:
    """Transformer layer numbers (1-based) to put exits after: a non-empty increasing list of whole numbers in
    ``1..num_layers`` (the layers the encoder has)."""
    accepted = f"a non-empty increasing list of layer numbers in 1..{num_layers} (this encoder has {num_layers} layers)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be {accepted}, e.g. [2, 4, {num_layers}]; got {value!r}")
    items = list(value)
    if not items:
        raise ValueError(f"{name} must be {accepted}; got an empty list")
    ok = all(not isinstance(v, bool) and isinstance(v, numbers.Integral) and 1 <= int(v) <= num_layers for v in items)
    if not ok or items != sorted(set(items)):
        raise ValueError(f"{name} must be {accepted}; got {items}")
    return tuple(int(v) for v in items)
