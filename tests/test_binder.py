"""The Binder configuration, linted by repo2docker itself (``--no-build`` prints the Dockerfile, no Docker needed)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dockerfile():
    exe = shutil.which("repo2docker") or str(Path(sys.executable).with_name("repo2docker"))
    if not Path(exe).exists():
        pytest.fail("repo2docker is not installed: `make test` installs it from requirements.txt")
    result = subprocess.run([exe, "--no-build", "--debug", str(ROOT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def test_python_version_matches_runtime_txt(dockerfile):
    assert "python=3.11" in dockerfile


def test_cpu_only_torch_with_the_same_versions_as_requirements(dockerfile):
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    binder = (ROOT / "binder" / "requirements.txt").read_text()
    main = (ROOT / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in binder
    for package in ("torch", "torchvision", "torchaudio"):
        version = re.search(rf"^{package}==([\d.]+)$", main, re.M).group(1)
        assert f"{package}=={version}+cpu" in binder
    assert "-e ." not in binder  # a local reference would rebuild the dependency layer on every commit


def test_libsndfile_and_postbuild_install_eekit(dockerfile):
    assert "libsndfile1" in dockerfile
    assert "./binder/postBuild" in dockerfile
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "set -euo pipefail" in post and "pip install --no-cache-dir --no-deps -e ." in post
    assert (ROOT / "binder" / "postBuild").stat().st_mode & 0o111
