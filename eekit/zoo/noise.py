"""The noise runs: a shipped speech recognizer on its test utterances mixed with noise (DAISY's question).

They load a shipped model, so they live in the zoo, above :mod:`eekit.evaluate` (which stays model + data -> profile).
"""

from __future__ import annotations

from functools import lru_cache

from .. import data, validate
from ..evaluate import profile_speech
from ..profile import ExitProfile
from .registry import RECIPES, load_pretrained, load_profile

__all__ = ["noisy_run", "noisy_profile", "mean_exit_layer_by_snr", "SNR_LEVELS"]

SNR_LEVELS = (None, 20, 10, 5, 0)  # DAISY's question: clean, then noisier and noisier (dB)


@lru_cache(maxsize=2)
def _recognizer(name: str, split: str):
    """A connected-digit recognizer and its clean ``split`` utterances, loaded once per process."""
    recipe = RECIPES.get(name)
    if recipe is None or recipe.dataset != "fsdd-strings":
        raise ValueError(f"{name!r} is not a shipped connected-digit recognizer; choose from "
                         f"{[n for n, r in RECIPES.items() if r.dataset == 'fsdd-strings']}")
    return load_pretrained(name), data.load_digit_strings(split)


def noisy_run(name: str, snr_db: float | None, noise: str | None = None, split: str = "test"):
    """Speech model ``name`` on its ``split`` utterances mixed with noise at ``snr_db`` dB (every shipped noise
    round-robin, or just ``noise``; ``None`` dB = clean): the utterances it heard (:class:`~eekit.data.DigitStrings`)
    and their profile.

    Each setting runs the model once per process (a few seconds on one core): a lesson's runs and its dashboard's
    are the same runs. The profiles (tens of kB) are all kept; the mixes (15 MB for the 300 test utterances) only
    the last few, since remixing one takes well under a second."""
    key = (name, None if snr_db is None else validate.number("snr_db (dB)", snr_db),
           None if noise is None else validate.one_of("noise", noise, data.NOISE_NAMES), split)
    profile = _profile(*key)  # first: it says so if ``name`` is not a recognizer
    return _mix(*key), profile


def noisy_profile(name: str, snr_db: float | None, noise: str | None = None, split: str = "test") -> ExitProfile:
    """The profile half of :func:`noisy_run`."""
    return noisy_run(name, snr_db, noise, split)[1]


@lru_cache(maxsize=4)
def _mix(name: str, snr_db: float | None, noise: str | None, split: str) -> data.DigitStrings:
    return _recognizer(name, split)[1].with_noise(snr_db, noise if noise else data.NOISE_NAMES)


@lru_cache(maxsize=None)
def _profile(name: str, snr_db: float | None, noise: str | None, split: str) -> ExitProfile:
    model = _recognizer(name, split)[0]
    return profile_speech(model, _mix(name, snr_db, noise, split),
                          meta={"model": name, "split": split, "snr_db": snr_db, "noise": noise or "all"})


def mean_exit_layer_by_snr(name: str, criterion: str, threshold: float) -> dict[str, float]:
    """DAISY's finding, measured: the mean exit layer (1-based) at each SNR of :data:`SNR_LEVELS`."""
    out = {}
    for snr in SNR_LEVELS:
        profile = load_profile(name) if snr is None else noisy_profile(name, snr)
        out["clean" if snr is None else str(snr)] = round(float(profile.exit_index(criterion, threshold).mean()) + 1, 3)
    return out
