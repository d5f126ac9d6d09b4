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


def small_noise_runs(monkeypatch, count: int = 30):
    """Make :func:`eekit.zoo.noisy_run` use the first ``count`` clean test utterances, with caches of its own for
    this test (the real ones keep every run of the process: a 30-utterance run must never leak out), and count the
    model runs: returns a list that grows by one entry per run."""
    from functools import lru_cache

    from eekit import data
    from eekit.zoo import load_pretrained
    from eekit.zoo import noise

    small = data.load_digit_strings("test").subset(count)
    monkeypatch.setattr(noise, "_recognizer", lambda name, split: (load_pretrained(name), small))
    runs = []
    profile_speech = noise.profile_speech

    def counted(*args, **kwargs):
        runs.append(kwargs.get("meta"))
        return profile_speech(*args, **kwargs)

    monkeypatch.setattr(noise, "profile_speech", counted)
    monkeypatch.setattr(noise, "_mix", lru_cache(maxsize=4)(noise._mix.__wrapped__))
    monkeypatch.setattr(noise, "_profile", lru_cache(maxsize=None)(noise._profile.__wrapped__))
    return runs


def check_sentence_card_against(card: dict, command: str) -> None:
    """Fail unless ``command`` (a ``python -m eekit train sentences ...`` line, maybe after ``VAR=value`` settings),
    parsed by the kit's own parser under today's defaults, asks for the model, the training phases and the
    pre-trained start that ``card`` records."""
    import json
    import shlex
    from dataclasses import asdict

    from eekit import sentences
    from eekit.__main__ import build_parser
    from eekit.train import TrainConfig

    words = [w for w in shlex.split(command) if "=" not in w or w.startswith("-")]
    assert words[:4] == ["python", "-m", "eekit", "train"], command
    args = build_parser().parse_args(words[3:])
    assert args.model == "sentences" and sentences.model_name(args.recipe, args.labels) == card["name"]
    as_json = lambda config: json.loads(json.dumps(asdict(config)))  # noqa: E731 (tuples as lists, as in a card)
    assert [{**as_json(TrainConfig()), **p} for p in card["phases"]] == [as_json(p) for p in sentences.cli_phases(args)]
    encoder = sentences._encoder(args.recipe, args.encoder)
    assert card["init_from"].startswith(f"{encoder}.pt (shipped); " if encoder else "scratch ("), card["init_from"]
