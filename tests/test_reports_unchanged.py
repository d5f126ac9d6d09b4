"""Moving code must not change a number: every shipped model's ``report --json`` equals the copy taken before the
architecture refactor (tests/data/reports-before/, written by ``python -m eekit report <name> --json``).

Exact equality: every field is recomputed from shipped files (cards, profiles) with seeded code; the only
``*_seconds`` fields are copied from the cards, so no timing field needs excluding or a tolerance.
"""

import contextlib
import io
import json
from pathlib import Path

import pytest

from eekit.__main__ import main

BEFORE = Path(__file__).parent / "data" / "reports-before"
SLOW = {"speech-fsdd", "speech-fsdd-two-stage", "wav2vec2-fsdd"}  # noise runs: several seconds each
NAMES = sorted(p.stem for p in BEFORE.glob("*.json"))


def test_every_shipped_report_has_a_before_copy():
    assert set(NAMES) >= {"cnn-mnist", "cnn-mnist-two-stage", "cnn-mnist-shared", "cnn-cifar10", "cnn-cifar10-wide",
                          "cnn-cifar10-two-stage", "speech-fsdd", "speech-fsdd-two-stage", "wav2vec2-fsdd", "kws-fsdd",
                          "ssl-daisy", "compress", "speech-recipes"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NAMES])
def test_report_json_unchanged(name):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", name, "--json"]) == 0
    assert json.loads(out.getvalue()) == json.loads((BEFORE / f"{name}.json").read_text())
