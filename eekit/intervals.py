"""How sure is an error rate measured on a handful of voices? A bootstrap over whole groups (speakers).

One speaker's sentences share a voice, a microphone and a reading style, so they are not independent samples:
resampling single sentences would make an error rate look far surer than it is. The group bootstrap draws whole
speakers with replacement and pools their errors, so the interval reflects how much the rate moves with *which*
voices happen to be in the test set. With 8 test speakers, as in the sentence models, it is wide.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import validate

__all__ = ["group_bootstrap", "DRAWS", "LEVEL"]

DRAWS = 10_000  # resampled test sets; the interval's ends move by about 0.1 point between seeds at this size
LEVEL = 0.95


def group_bootstrap(errors: Any, totals: Any, groups: Any, level: float = LEVEL, draws: int = DRAWS,
                    seed: int = 0, minus: Any = None) -> tuple[float, float]:
    """Central ``level`` interval of the pooled error rate ``sum(errors) / sum(totals)`` when whole ``groups`` are
    drawn with replacement (as many as there are), ``draws`` times, seeded. ``errors`` and ``totals`` hold one
    number per sample (a sentence's character edits and reference length), ``groups`` its group (speaker).

    ``minus``: a second system's errors on the same samples; the interval is then of the *difference* of the two
    rates, both measured on each drawn set of groups (paired), which is far narrower than two separate intervals
    when the systems find the same voices hard. An interval that holds 0 means the test set cannot tell them apart."""
    validate.values("errors", errors, 0)
    validate.values("totals", totals, 0, low_open=True)
    errors, totals, groups = np.asarray(errors, dtype=float), np.asarray(totals, dtype=float), np.asarray(groups)
    if not errors.ndim == totals.ndim == groups.ndim == 1 or not len(errors) == len(totals) == len(groups):
        raise ValueError(f"errors, totals and groups must be flat and of one length (one entry per sample), got "
                         f"shapes {errors.shape}, {totals.shape} and {groups.shape}")
    if minus is not None:
        validate.values("minus (the other system's errors)", minus, 0)
        if np.shape(minus) != errors.shape:
            raise ValueError(f"minus must hold the other system's errors on the same {len(errors)} samples, got "
                             f"shape {np.shape(minus)}")
        errors = errors - np.asarray(minus, dtype=float)
    level = validate.number("level", level, 0, 1, low_open=True, high_open=True)
    draws = validate.whole("draws", draws, 1)
    seed = validate.whole("seed", seed, 0)
    names, index = np.unique(groups, return_inverse=True)
    per_errors = np.bincount(index, weights=errors, minlength=len(names))
    per_totals = np.bincount(index, weights=totals, minlength=len(names))
    picks = np.random.default_rng(seed).integers(0, len(names), size=(draws, len(names)))
    rates = per_errors[picks].sum(1) / per_totals[picks].sum(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(rates, [tail, 100 - tail])
    return float(low), float(high)
