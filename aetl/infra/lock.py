"""One process per run dir, and output folders checked before anything is written to them.

A job holds an exclusive lock on `<run dir>/.lock` (filelock: flock on POSIX, msvcrt on
Windows) while it runs; `<run dir>/.owner` names the holder for the line that refuses a
second process. The operating system drops the lock when the process ends, however it
ends, so a killed run never blocks its resume.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from pathlib import Path
from tempfile import mkstemp
from typing import Iterator

from filelock import FileLock, Timeout

from aetl.errors import AetlError

LOCK, OWNER = ".lock", ".owner"
_HELD: dict[Path, FileLock] = {}  # run dirs this process holds, and their locks


def claim(root: str | Path) -> bool:
    """Hold root for this process until it exits (or `release`); refuse it while another
    process holds it. Returns whether this call took it (False: this process held it already)."""
    root = _canonical(root)
    if root in _HELD:
        return False
    fix = "choose another run dir (hydra.run.dir)"
    writable(root, fix)
    lock = FileLock(root / LOCK)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        raise AetlError(f"{root} is in use by {holder_of(root)}; wait for it to finish, or choose another run "
                        "dir (hydra.run.dir)") from None
    except OSError as err:
        raise AetlError(cannot_write(root / LOCK, err, fix)) from None
    _HELD[root] = lock
    note = f"process {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})\n"
    with contextlib.suppress(OSError):  # the lock holds without the note
        (root / OWNER).write_text(note)
    return True


def release(root: str | Path) -> None:
    lock = _HELD.pop(_canonical(root), None)
    if lock is not None:
        lock.release()


@contextlib.contextmanager
def owned(root: str | Path) -> Iterator[None]:
    """Hold root while the block runs (a hold this process had already is kept)."""
    took = claim(root)
    try:
        yield
    finally:
        if took:
            release(root)


def running(root: str | Path) -> str | None:
    """Who holds root now ('process 12 on node7 (since ...)'), or None when no process does."""
    root = Path(root)
    if not (root / LOCK).is_file() or _canonical(root) in _HELD:
        return None
    lock = FileLock(root / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return holder_of(root)
    except OSError:
        return None  # a run dir this process may not write: its state is unknown
    lock.release()
    return None


def _canonical(root: str | Path) -> Path:
    """One spelling per folder (Hydra's job sees the run dir as an absolute path)."""
    return Path(os.path.realpath(os.path.expanduser(str(root))))


def holder_of(root: Path) -> str:
    try:
        return (root / OWNER).read_text().strip() or "another process"
    except OSError:
        return "another process"


def writable(folder: str | Path, fix: str) -> None:
    """Write a byte in folder, or in its nearest existing parent when it is still to be made
    (nothing is left behind): a read-only, full or misnamed location is one line naming it
    and the fix, before anything is written there."""
    folder = Path(folder).expanduser().absolute()
    place = next(p for p in (folder, *folder.parents) if p.exists())
    if not place.is_dir():
        raise AetlError(f"cannot write to {folder}: {place} is a file; {fix}")
    try:
        fd, probe = mkstemp(prefix=".aetl-write-check-", dir=place)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise AetlError(cannot_write(folder, err, fix)) from None


def cannot_write(path: Path, err: OSError, fix: str) -> str:
    full = err.errno in (errno.ENOSPC, errno.EDQUOT)
    return f"cannot write to {path} ({err.strerror or err}); {'free some space or ' if full else ''}{fix}"
