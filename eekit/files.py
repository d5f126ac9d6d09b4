"""Writing output files so that a crash never leaves half of one, and two runs never share an output folder.

Every file eekit writes (weights, cards, profiles, reports, C sources, checksum lists) goes through
:func:`write_atomic`: the bytes go to a temporary name in the same folder, are flushed to disk, and only then renamed
over the final name. A rename within one folder is atomic on POSIX and Windows, so a reader (or a run killed with
SIGKILL at any moment) sees either the old complete file or the new complete file, never a 0-byte or truncated one.

A set of files (weights + profile + card) is kept consistent by writing the card last: see the callers.

:func:`claim_folder` takes an exclusive lock file in an output folder before the work starts, so a second command
writing to the same ``--out`` is refused at once with a clear message instead of silently replacing the first one's
files at the end.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["write_atomic", "write_text", "write_bytes", "claim_folder", "FolderBusyError", "LOCK_NAME"]

LOCK_NAME = ".eekit-lock"  # the lock file claim_folder creates inside a claimed folder


class FolderBusyError(ValueError):
    """Another live eekit command holds the output folder."""


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` all at once: ``write(tmp)`` fills a temporary file beside it, which is then renamed into place.

    ``write`` receives the temporary path (e.g. ``lambda p: torch.save(state, p)``). If it raises, the temporary file
    is removed and ``path`` is left exactly as it was."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # flush the data before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@contextlib.contextmanager
def claim_folder(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for the duration of a command, or refuse if another command holds it.

    The claim is a lock file created with ``O_EXCL`` (atomic: of two commands starting together, exactly one wins)
    holding the owner's process id. A lock left by a process that no longer exists (a killed run) is taken over."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    for _ in range(2):  # the second try follows the removal of a stale lock
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and owner != os.getpid() and _pid_alive(owner):
                raise FolderBusyError(
                    f"{folder} is in use by another eekit command (process {owner}); wait for it to finish or "
                    f"choose another --out folder") from None
            lock.unlink(missing_ok=True)  # stale: its owner was killed
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        break
    else:
        raise FolderBusyError(f"{folder}: could not claim {LOCK_NAME}; another command keeps taking it")
    try:
        yield folder
    finally:
        lock.unlink(missing_ok=True)
