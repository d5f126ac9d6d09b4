"""A run killed (SIGKILL) at any moment leaves the old complete set of files or the new complete set, never a mix.

Three writers, each killed at >= 30 points spread over its run: ``train`` (the command, in a forked child so that
each kill costs a second, plus a few real ``python -m eekit train`` processes), the compressed-model writer
(``compress``'s final writes, :func:`eekit.compress.pipeline.write_compressed`, into a run folder and into a
checkpoints folder whose checksum list is the data folder's) and the checksum-list update
(:func:`eekit.data.update_manifest`). Kill points: every write step of :mod:`eekit.files` (``EEKIT_CRASH_AT=n``:
before and after each temporary is written - there cut to half its size, a torn write -, after the journal, after
each rename) and seeded random moments over the whole run. After each kill every load must work and the files must be
exactly the old set or a new set that its checksum list vouches for.
"""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

from eekit import data, files
from eekit.__main__ import main
from eekit.compress import pipeline
from eekit.profile import ExitProfile
from eekit.zoo import load_card, load_pretrained, load_profile

pytestmark = pytest.mark.slow
SEED = 39


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def forked(work, crash_at: int | None = None, kill_after: float | None = None, trace: Path | None = None) -> int:
    """Run ``work(ready)`` in a forked child; ``crash_at``: the child kills itself at that write step;
    ``kill_after``: SIGKILL it that many seconds after it calls ``ready()``. Returns the wait status."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(r)
            torch.set_num_threads(1)
            files._crash_points = 0
            os.environ.pop("EEKIT_CRASH_AT", None)
            if crash_at is not None:
                os.environ["EEKIT_CRASH_AT"] = str(crash_at)
            if trace is not None:
                os.environ["EEKIT_CRASH_TRACE"] = str(trace)
            work(lambda: os.write(w, b"1"))
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code)
    os.close(w)
    if kill_after is not None:
        os.read(r, 1)
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)
    status = os.waitpid(pid, 0)[1]
    os.close(r)  # only now: the child may still write to the pipe until it ends
    return status


def points(work, tmp: Path) -> int:
    """How many write steps ``work`` passes (a complete traced run)."""
    trace = tmp / "trace.txt"
    assert forked(work, trace=trace) == 0
    n = len(trace.read_text().splitlines())
    trace.unlink()
    return n


def duration(work) -> float:
    """Seconds a complete run of ``work`` takes from its ``ready()``."""
    begin = time.perf_counter()
    assert forked(work) == 0
    return time.perf_counter() - begin


def restore(template: Path, folder: Path) -> None:
    """``folder`` back to the old set (file by file: the folder's identity stays)."""
    for p in folder.iterdir():
        p.unlink()
    for p in template.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())


def check(folder: Path, names: list[str], old: dict[str, str], loads, manifest: Path, root: Path) -> str:
    """After a kill: every load works (a half-done commit is finished by the first load), no journal is left, and
    the files are exactly the old set or all new and vouched for by the checksum list. Returns which."""
    for load in loads:
        load()
    assert not (folder / files.JOURNAL_NAME).exists()
    now = {n: sha(folder / n) for n in names}
    listed = data._manifest(root)
    keys = {n: (folder / n).resolve().relative_to(root.resolve()).as_posix() for n in names}
    if now == old:
        which = "old"
    else:
        assert all(now[n] != old[n] for n in names), f"a mix of old and new files: {now} vs {old}"
        which = "new"
    assert all(listed[keys[n]] == now[n] for n in names if n != data.MANIFEST), "the list does not match the set"
    no_temporaries_after_a_claim(folder, root)
    return which


def no_temporaries_after_a_claim(*folders: Path) -> None:
    """The next command to hold a folder removes a killed run's temporaries."""
    for folder in dict.fromkeys(folders):
        with files.claim_folder(folder):
            pass
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")], "temporaries left behind"


def kill_everywhere(work, folder: Path, template: Path, names, loads, manifest, root, tmp: Path, randoms: int,
                    restore=restore) -> dict:
    """Kill ``work`` at each of its write steps and at ``randoms`` seeded random moments; check after each."""
    restore(template, folder)
    steps = points(work, tmp)
    restore(template, folder)
    total = duration(work)
    old = {n: sha(template / n) for n in names}
    seen, rng = {"old": 0, "new": 0}, random.Random(SEED)
    kills = [("step", n) for n in range(1, steps + 1)] + [("time", rng.uniform(0, total)) for _ in range(randoms)]
    for kind, at in kills:
        restore(template, folder)
        status = forked(work, crash_at=at) if kind == "step" else forked(work, kill_after=at)
        assert status in (signal.SIGKILL, 0), f"the child failed (status {status}) at {kind} {at}"
        seen[check(folder, names, old, loads, manifest, root)] += 1
    assert seen["old"] and seen["new"], seen  # both outcomes happened: the kills did land before and after commit
    print(f"{len(kills)} kill points ({steps} write steps), {seen}")
    return {"kill_points": len(kills), "write_steps": steps, **seen}


# --------------------------------------------------------------------------------------------------------- train


def test_train_killed_anywhere_leaves_the_old_or_the_new_set(tmp_path):
    folder, template = tmp_path / "run", tmp_path / "old"
    assert main(["train", "cnn-mnist", "--subset", "64", "--epochs", "1", "--quiet", "--out", str(folder)]) == 0
    template.mkdir()
    names = ["cnn-mnist.pt", "cnn-mnist.profile.npz", "cnn-mnist.json", "SHA256SUMS"]
    for n in names:
        (template / n).write_bytes((folder / n).read_bytes())
    argv = ["train", "cnn-mnist", "--subset", "128", "--epochs", "1", "--quiet", "--force", "--out", str(folder)]

    def work(ready):
        ready()
        assert main(argv) == 0

    loads = [lambda: load_card("cnn-mnist", folder), lambda: load_pretrained("cnn-mnist", folder),
             lambda: load_profile("cnn-mnist", folder)]
    counts = kill_everywhere(work, folder, template, names, loads, folder / "SHA256SUMS", folder, tmp_path,
                             randoms=16)
    assert counts["kill_points"] >= 30 and counts["write_steps"] >= 15
    assert load_card("cnn-mnist", folder)["dataset"]["train_samples"] in (64, 128)

    # and a few real `python -m eekit train` processes, killed at seeded moments
    rng = random.Random(SEED)
    for _ in range(3):
        restore(template, folder)
        proc = subprocess.Popen([sys.executable, "-m", "eekit", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check(folder, names, {n: sha(template / n) for n in names}, loads, folder / "SHA256SUMS", folder)


# ------------------------------------------------------------------------------------------------------ compress


@pytest.mark.parametrize("where", ["run folder", "checkpoints"])
def test_compress_writes_killed_anywhere_leave_the_old_or_the_new_set(tmp_path, monkeypatch, where):
    qmodel, card = pipeline.load_compressed("cnn-mnist-shared"), pipeline.load_compressed_card("cnn-mnist-shared")
    profile = pipeline.load_compressed_profile("cnn-mnist-shared")
    root = tmp_path / "data"
    folder = root / "checkpoints" if where == "checkpoints" else tmp_path / "run"
    folder.mkdir(parents=True)
    if where == "checkpoints":  # the shipped layout: the checksum list is the data folder's, shared
        monkeypatch.setattr(data, "DATA_DIR", root)
        (root / "mnist.bin").write_bytes(b"another shipped file")
        data.update_manifest([root / "mnist.bin"], root)
    else:
        root = folder
    pipeline.write_compressed("cnn-mnist-shared", folder, qmodel, {**card, "run": "old"}, profile)
    template = tmp_path / "old"
    template.mkdir()
    names = [f"cnn-mnist-shared-compressed{s}" for s in (".pt", ".profile.npz", ".json")]
    for n in names:
        (template / n).write_bytes((folder / n).read_bytes())
    manifest = root / "SHA256SUMS"
    old_manifest = manifest.read_bytes()
    new_q = {**qmodel, "thresholds": qmodel["thresholds"] + 1}
    new_profile = ExitProfile(**{**profile.__dict__, "meta": {"run": "new"}})

    def work(ready):
        ready()
        pipeline.write_compressed("cnn-mnist-shared", folder, new_q, {**card, "run": "new"}, new_profile)

    def restore_all(t, f):
        restore(t, f)
        manifest.write_bytes(old_manifest)

    path = lambda suffix: data.checkpoint_file(f"cnn-mnist-shared-compressed{suffix}", folder)  # noqa: E731
    loads = [lambda: data.read_torch(path(".pt")), lambda: data.read_json(path(".json")),
             lambda: ExitProfile.load(path(".profile.npz"))]
    counts = kill_everywhere(work, folder, template, names, loads, manifest, root, tmp_path, randoms=16,
                             restore=restore_all)
    assert counts["kill_points"] >= 30
    if where == "checkpoints":
        assert data.data_path("mnist.bin", root)  # the other entries of the shared list survive every kill


# ----------------------------------------------------------------------------------------------- the checksum list


def test_checksum_list_update_killed_anywhere_is_whole(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    rng = random.Random(SEED)
    paths = [root / f"f{i}.bin" for i in range(6)]
    for p in paths:
        p.write_bytes(rng.randbytes(3 << 20))
    data.update_manifest(paths, root)
    old_list = (root / "SHA256SUMS").read_bytes()
    for p in paths:  # new contents, not yet listed
        p.write_bytes(rng.randbytes(3 << 20))
    new_files = {p: p.read_bytes() for p in paths}

    def work(ready):
        ready()
        data.update_manifest(paths, root)

    steps = points(work, tmp_path)
    (root / "SHA256SUMS").write_bytes(old_list)
    total = duration(work)
    kills = [("step", n) for n in range(1, steps + 1)] + [("time", rng.uniform(0, total)) for _ in range(30)]
    seen = {"old": 0, "new": 0}
    for kind, at in kills:
        (root / "SHA256SUMS").write_bytes(old_list)
        status = forked(work, crash_at=at) if kind == "step" else forked(work, kill_after=at)
        assert status in (signal.SIGKILL, 0)
        now = (root / "SHA256SUMS").read_bytes()
        seen["old" if now == old_list else "new"] += 1
        for p in paths:
            assert p.read_bytes() == new_files[p]
            if now == old_list:  # the old list: each changed file is refused, named
                with pytest.raises(data.DataFileError, match=f"{p} is corrupted"):
                    data.data_path(p.name, root)
            else:
                assert data.data_path(p.name, root) == p
        no_temporaries_after_a_claim(root)
    print(f"checksum list: {len(kills)} kill points ({steps} write steps), {seen}")
    assert len(kills) >= 30 and seen["old"] and seen["new"], seen
