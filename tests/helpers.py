"""Test helpers shared by several test modules (pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import numpy as np

from eekit.profile import ExitProfile


def synthetic_profile(samples: int = 10_000, exits: int = 5, classes: int = 10, seed: int = 0) -> ExitProfile:
    """A profile with the shape of a real one (deeper exits more accurate), for widget and simulator tests."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, samples)
    logits = rng.normal(size=(exits, samples, classes)).astype(np.float32)
    for k in range(exits):
        logits[k, np.arange(samples), labels] += 1.0 + k
    preds = logits.argmax(-1).T
    cost = np.linspace(1, exits, exits) * 20.0
    return ExitProfile(preds, (preds != labels[:, None]).astype(np.float32), np.ones(samples, np.float32),
                       cost, float(cost[-1] * 0.97), [f"exit{k + 1}" for k in range(exits)],
                       logits=logits, labels=labels)
