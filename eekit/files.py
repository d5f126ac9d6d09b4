"""Writing output files so that a crash never leaves half of one, and two runs never share an output folder.

Every file eekit writes (weights, cards, profiles, reports, C sources, checksum lists) goes through
:func:`write_atomic`: the bytes go to a temporary name in the same folder, are flushed to disk, and only then renamed
over the final name. A rename within one folder is atomic on POSIX and Windows, so a reader (or a run killed with
SIGKILL at any moment) sees either the old complete file or the new complete file, never a 0-byte or truncated one.

A set of files (weights + profile + card + checksum list) is written as one with :class:`FileSet`: every file goes
to a temporary name first, then a journal listing the renames is written (atomically: this is the commit point), then
the renames run (the card after the files it describes, the checksum list last). A run killed before the journal leaves the old set (and stray temporaries, removed by
the next claim); a run killed after it leaves a journal that :func:`recover` replays (every load and every claim calls
it), so readers only ever see the old complete set or the new complete set.

:func:`claim_folder` takes an exclusive lock file in an output folder before the work starts, so a second command
writing to the same ``--out`` is refused at once with a clear message instead of silently replacing the first one's
files at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["write_atomic", "write_text", "write_bytes", "claim_folder", "FolderBusyError", "FileSet", "recover",
           "temp_dir", "LOCK_NAME", "JOURNAL_NAME"]

LOCK_NAME = ".eekit-lock"  # the lock file claim_folder creates inside a claimed folder
JOURNAL_NAME = ".eekit-commit.json"  # a FileSet's pending renames, present only while a commit is under way
_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what tempfile.mkstemp(prefix=".<name>.", suffix=".tmp") makes
_crash_points = 0
_UMASK = os.umask(0)
os.umask(_UMASK)


def _crash_point(label: str, half: Path | None = None) -> None:
    """Test hook for the crash-consistency test: with ``EEKIT_CRASH_AT=N`` the process SIGKILLs itself at the N-th
    point (``half``: first cut that file to half its size, a write torn in the middle); ``EEKIT_CRASH_TRACE=file``
    appends each point's label. Unset (always, outside tests), it does nothing."""
    global _crash_points
    at, trace = os.environ.get("EEKIT_CRASH_AT"), os.environ.get("EEKIT_CRASH_TRACE")
    if not at and not trace:
        return
    _crash_points += 1
    if trace:
        with open(trace, "a") as f:
            f.write(f"{_crash_points} {label}\n")
    if at and int(at) == _crash_points:
        if half is not None and half.exists():
            os.truncate(half, half.stat().st_size // 2)
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


class FolderBusyError(ValueError):
    """Another live eekit command holds the output folder."""


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` all at once: ``write(tmp)`` fills a temporary file beside it, which is then renamed into place.

    ``write`` receives the temporary path (e.g. ``lambda p: torch.save(state, p)``). If it raises, the temporary file
    is removed and ``path`` is left exactly as it was."""
    path = Path(path)
    tmp = _write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    _crash_point(f"renamed {path.name}")
    return path


def _write_temp(path: Path, write: Callable[[Path], None]) -> Path:
    """``write`` a temporary file beside ``path`` and flush it to disk; returns the temporary's path."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the final file gets what open() would have given it
        _crash_point(f"writing {path.name}", half=tmp)
        write(tmp)
        _crash_point(f"written {path.name}", half=tmp)
        with open(tmp, "rb+") as f:  # flush the data before the rename makes it visible
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_text(path: str | Path, text: str) -> Path:
    """:func:`write_atomic` for text (UTF-8, newlines as given)."""
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8", newline=""))


def write_bytes(path: str | Path, data: bytes) -> Path:
    """:func:`write_atomic` for bytes."""
    return write_atomic(path, lambda p: p.write_bytes(data))


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FileSet:
    """Files written as one set: :meth:`stage` each (weights first, the card last), then :meth:`commit`.

    Used as a context manager, the set commits when the block ends normally and leaves no trace when it raises."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []  # (temporary, final) in commit order

    def stage(self, path: str | Path, write: Callable[[Path], None]) -> Path:
        """Write ``path``'s new content to a temporary beside it (``write(tmp)``); returns the temporary, which can
        be read (e.g. hashed) before the commit."""
        path = Path(path)
        self.staged.append((_write_temp(path, write), path))
        return self.staged[-1][0]

    def commit(self) -> list[Path]:
        """Journal the renames (the commit point), run them in staging order, drop the journal."""
        if not self.staged:
            return []
        folder = self.staged[0][1].parent
        entries = [[os.path.relpath(tmp, folder), os.path.relpath(final, folder)] for tmp, final in self.staged]
        write_text(folder / JOURNAL_NAME, json.dumps(entries) + "\n")
        recover(folder)
        finals = [final for _, final in self.staged]
        self.staged = []
        return finals

    def discard(self) -> None:
        for tmp, _ in self.staged:
            tmp.unlink(missing_ok=True)
        self.staged = []

    def __enter__(self) -> "FileSet":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def recover(folder: str | Path) -> bool:
    """Finish a commit that a killed run left half done (replay its journal's renames); True if there was one.

    Cheap when there is nothing to do (one failed open), so every load calls it first."""
    folder = Path(folder)
    journal = folder / JOURNAL_NAME
    try:
        entries = json.loads(journal.read_text())
    except FileNotFoundError:
        return False
    except ValueError as err:  # cannot happen (the journal is written atomically), but never guess
        raise ValueError(f"{journal} is damaged ({err}); accepted: the JSON list of renames a commit writes. Delete "
                         "it and rerun the command that was writing this folder") from None
    for tmp, final in entries:
        with contextlib.suppress(FileNotFoundError):  # already renamed (by the writer or another reader)
            os.replace(folder / tmp, folder / final)
            _fsync_dir((folder / final).parent)
            _crash_point(f"renamed {Path(final).name}")
    journal.unlink(missing_ok=True)
    _fsync_dir(folder)
    return True


def _remove_stray_temps(folder: Path) -> None:
    """Temporaries of a run killed before its commit (only ever called by the folder's owner): files and staging
    folders alike are named like :func:`temp_dir`'s."""
    for p in folder.iterdir():
        if _TEMP.match(p.name):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def temp_dir(folder: str | Path, name: str) -> tempfile.TemporaryDirectory:
    """A scratch folder inside ``folder`` (same file system, so files staged in it move out with a rename), removed
    when done, and by the folder's next claim if the run is killed."""
    return tempfile.TemporaryDirectory(prefix=f".{name}.", suffix=".tmp", dir=folder)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _try_lock(folder: Path) -> int:
    """Create the lock (0: done) or return the live owner's process id. The pid is written to a temporary and linked
    in place, so the lock never exists empty; a stale lock is renamed away first (of two racing takeovers one rename
    fails), so a live owner's lock is never removed by mistake."""
    lock = folder / LOCK_NAME
    for _ in range(3):
        fd, mine = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", suffix=".tmp", dir=folder)  # removed if we are killed
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        try:
            os.link(mine, lock)  # atomic, fails if the lock exists
            return 0
        except (FileExistsError, FileNotFoundError):  # taken, or our temporary was swept by the owner: look again
            pass
        except OSError:  # a file system without hard links: an exclusive create (the pid follows at once)
            with contextlib.suppress(FileExistsError):
                with os.fdopen(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644), "w") as f:
                    f.write(f"{os.getpid()}\n")
                return 0
        finally:
            Path(mine).unlink(missing_ok=True)
        try:
            owner = int(lock.read_text().strip() or 0)
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            owner = 0
        if owner and owner != os.getpid() and _pid_alive(owner):
            return owner
        stale = folder / f"{LOCK_NAME}.stale.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(lock, stale)  # of two takeovers racing, only one moves this lock
            stale.unlink(missing_ok=True)
    return -1


_held: set[Path] = set()  # folders this process holds now, so a nested claim neither fails nor releases early


@contextlib.contextmanager
def claim_folder(folder: str | Path, wait: float = 0.0) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for the duration of a command, or refuse if another command holds it.

    The claim is a lock file created atomically (of two commands starting together, exactly one wins) holding the
    owner's process id. A lock left by a process that no longer exists (a killed run) is taken over. ``wait``: keep
    trying this many seconds (for short claims such as a checksum-list update) before refusing. On taking the folder
    a commit left half done is finished (:func:`recover`) and a killed run's temporaries are removed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _held:  # a nested claim by the same command (e.g. a recipe that runs a measurement): already ours
        yield folder
        return
    deadline = time.monotonic() + wait
    while (owner := _try_lock(folder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if owner:
        who = f"process {owner}" if owner > 0 else "several processes at once"
        raise FolderBusyError(f"{folder} is in use by another eekit command ({who}); wait for it to finish or "
                              f"choose another --out folder")
    lock = folder / LOCK_NAME
    _held.add(key)
    try:
        recover(folder)
        _remove_stray_temps(folder)
        yield folder
    finally:
        _held.discard(key)
        lock.unlink(missing_ok=True)
