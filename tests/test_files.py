"""eekit.files: atomic writes leave the old file on failure; an output folder has one owner at a time."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eekit.files import LOCK_NAME, FolderBusyError, claim_folder, write_atomic, write_text


def test_write_atomic_replaces_whole_file(tmp_path):
    target = tmp_path / "card.json"
    write_text(target, "old\n")
    write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json"]  # no temporary left behind


def test_write_atomic_failure_keeps_old_file(tmp_path):
    target = tmp_path / "weights.pt"
    write_text(target, "old")

    def broken(p):
        p.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]


def test_claim_folder_refuses_a_live_owner(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f"{sleeper.pid}\n")
        with pytest.raises(FolderBusyError, match="in use by another eekit command"):
            with claim_folder(tmp_path):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()


def test_claim_folder_takes_over_a_stale_lock_and_releases(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{dead.pid}\n")
    with claim_folder(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()


def test_fileset_commits_all_or_nothing(tmp_path):
    from eekit.files import JOURNAL_NAME, FileSet

    (tmp_path / "a.pt").write_text("old a")
    (tmp_path / "a.json").write_text("old card")
    with pytest.raises(RuntimeError):
        with FileSet() as fs:
            fs.stage(tmp_path / "a.pt", lambda p: p.write_text("new a"))
            raise RuntimeError("killed before the card")
    assert (tmp_path / "a.pt").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.pt"]
    with FileSet() as fs:
        tmp = fs.stage(tmp_path / "a.pt", lambda p: p.write_text("new a"))
        assert tmp.read_text() == "new a" and (tmp_path / "a.pt").read_text() == "old a"  # not visible yet
        fs.stage(tmp_path / "a.json", lambda p: p.write_text("new card"))
    assert (tmp_path / "a.pt").read_text() == "new a" and (tmp_path / "a.json").read_text() == "new card"
    assert not (tmp_path / JOURNAL_NAME).exists()


def test_recover_finishes_a_journaled_commit_and_a_claim_removes_stray_temporaries(tmp_path):
    import json

    from eekit.files import JOURNAL_NAME, recover

    (tmp_path / "w.pt").write_text("old")
    (tmp_path / ".w.pt.abcd1234.tmp").write_text("new")  # staged, journaled, then the run was killed
    (tmp_path / ".card.json.zzzz9999.tmp").write_text("half")  # staged, never journaled
    (tmp_path / JOURNAL_NAME).write_text(json.dumps([[".w.pt.abcd1234.tmp", "w.pt"]]))
    assert recover(tmp_path) and (tmp_path / "w.pt").read_text() == "new"
    assert not recover(tmp_path)  # nothing left to do
    with claim_folder(tmp_path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


def test_claim_folder_stale_takeover_has_one_winner(tmp_path):
    """Two commands finding the same stale lock: exactly one takes the folder, the other is refused."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{dead.pid}\n")
    script = ("import sys, time\nfrom eekit.files import claim_folder, FolderBusyError\n"
              "try:\n    with claim_folder(sys.argv[1]):\n        print('won', flush=True); time.sleep(3)\n"
              "except FolderBusyError as e:\n    print('refused', flush=True)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(3)]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["refused", "refused", "won"]


@pytest.mark.slow  # a real `train` command
def test_a_second_command_writing_the_same_out_is_refused_at_once(tmp_path, capsys):
    from eekit.__main__ import main

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    argv = ["train", "cnn-mnist", "--subset", "2048", "--epochs", "3", "--quiet", "--out", str(tmp_path)]
    first = subprocess.Popen([sys.executable, "-m", "eekit", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    deadline = time.monotonic() + 120
    while not (tmp_path / LOCK_NAME).exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert main(argv + ["--force"]) == 2  # the second, while the first trains
    assert first.poll() is None, "the first finished too soon for this test to mean anything"
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"{tmp_path} is in use by another eekit command (process {first.pid}); wait for it to finish or choose " \
           "another --out folder" in err
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert json.loads(out)["name"] == "cnn-mnist"
    assert json.loads((tmp_path / "cnn-mnist.json").read_text())["dataset"]["train_samples"] == 2048  # the first's
    assert not (tmp_path / LOCK_NAME).exists()  # released


def test_a_nested_claim_by_the_same_command_keeps_the_outer_one(tmp_path):
    """A recipe that claims its folder and then runs a measurement claiming it again must still hold it after."""
    with claim_folder(tmp_path):
        with claim_folder(tmp_path):
            pass
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()
