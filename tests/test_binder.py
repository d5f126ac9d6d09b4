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


# ------------------------------------------------ threads, the news toast and the console command (no Docker)
def cpus(tmp_path, cpu_max: str | None = None, v1: tuple[str, str] | None = None) -> int:
    """binder/cpus against a fake cgroup folder."""
    if cpu_max is not None:
        (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(v1[0] + "\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(v1[1] + "\n")
    out = subprocess.run([str(ROOT / "binder" / "cpus")], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "EEKIT_CGROUP_ROOT": str(tmp_path)})
    return int(out.stdout)


def test_threads_follow_the_containers_cpu_quota_not_the_hosts_cores(tmp_path):
    import os

    cores = len(os.sched_getaffinity(0))
    cases = [({}, cores),  # no quota at all
             ({"cpu_max": "100000 100000"}, 1),
             ({"cpu_max": "150000 100000"}, 1),  # 1.5 CPUs: one thread that never waits for a second
             ({"cpu_max": "max 100000"}, cores),
             ({"cpu_max": "9900000 100000"}, cores),  # a quota above the cores it may run on
             ({"v1": ("50000", "100000")}, 1),
             ({"v1": ("-1", "100000")}, cores)]
    for i, (cgroup, expected) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        assert cpus(tmp_path / str(i), **cgroup) == expected, cgroup


def test_binder_start_and_make_lab_pin_torch_threads_and_silence_the_news():
    start = ROOT / "binder" / "start"
    assert start.stat().st_mode & 0o111
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([str(start), "sh", "-c", "echo $OMP_NUM_THREADS"], capture_output=True, text=True,
                         check=True, env=env).stdout.strip()
    assert out == subprocess.run([str(ROOT / "binder" / "cpus")], capture_output=True, text=True,
                                 env=env).stdout.strip()
    lab = re.search(r"^lab:.*?(?=^\S)", (ROOT / "Makefile").read_text(), re.M | re.S).group(0)
    assert "OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$$(binder/cpus)}" in lab and "binder/overrides.json" in lab
    import json

    news = json.loads((ROOT / "binder" / "overrides.json").read_text())["@jupyterlab/apputils-extension:notification"]
    assert news == {"fetchNews": "false", "checkForUpdates": False}
    post = (ROOT / "binder" / "postBuild").read_text()
    assert 'cp binder/overrides.json "$settings/overrides.json"' in post and "share/jupyter/lab/settings" in post


def test_console_command_eekit_is_the_module_command_line(capsys):
    import importlib
    import tomllib

    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["eekit"]
    module, function = target.split(":")
    main = getattr(importlib.import_module(module), function)
    assert main is importlib.import_module("eekit.__main__").main
    assert main(["report", "no-such-model"]) == 2  # bad input: exit status 2 and one line, as python -m eekit
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
