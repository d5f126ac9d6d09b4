"""The code passes the linter configured in pyproject.toml (``[tool.ruff]``); ``make lint`` runs the same check."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", str(ROOT)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_passes_on_the_core():
    """`make lint`'s type check: mypy --strict on the files the Makefile's TYPED names (the core)."""
    typed = re.search(r"^TYPED\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", *typed], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
