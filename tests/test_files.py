"""eekit.files: atomic writes leave the old file on failure; an output folder has one owner at a time."""

import os
import subprocess
import sys

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
