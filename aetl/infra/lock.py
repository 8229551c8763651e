"""One process per run dir, and output folders checked before anything is written to them.

A job holds an exclusive lock on `<run dir>/.lock` (flock on POSIX; filelock's msvcrt lock on
Windows) while it runs; `<run dir>/.owner` names the holder for the line that refuses a
second process. The operating system drops the lock when the process ends, however it
ends, so a killed run never blocks its resume. A process that ends normally (finished or
failed) removes both files: a finished run dir holds only what the run made. It removes them
while it still holds the lock, and a process that takes the lock checks that the file it
locked is still the one at `.lock` (else it was removed under it, and it tries the new one),
so removing never lets two processes in.
"""

from __future__ import annotations

import atexit
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

try:
    import fcntl
except ImportError:  # Windows: filelock's lock, whose file stays
    fcntl = None

LOCK, OWNER = ".lock", ".owner"


class RunLock:
    """The run dir's lock: flock on a file that its last holder removes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.fallback = FileLock(path) if fcntl is None else None

    def acquire(self) -> bool:
        """Take it now, or return False while another process holds it."""
        if self.fallback is not None:
            try:
                self.fallback.acquire(timeout=0)
            except Timeout:
                return False
            return True
        for _ in range(100):  # each retry follows a holder that removed the file as it finished
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            if not _flock(fd):
                os.close(fd)
                return False
            if _same_file(fd, self.path):
                self.fd = fd
                return True
            os.close(fd)
        return False

    def release(self, remove: bool = True) -> None:
        """Let go; with remove, the lock and owner files go first (while still held)."""
        if self.fallback is not None:
            self.fallback.release()
            return
        if self.fd is None:
            return
        if remove:
            for name in (OWNER, LOCK):
                with contextlib.suppress(OSError):
                    (self.path.parent / name).unlink()
        os.close(self.fd)  # closing drops the flock
        self.fd = None


def _flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


_HELD: dict[Path, RunLock] = {}  # run dirs this process holds, and their locks


def claim(root: str | Path) -> bool:
    """Hold root for this process until it exits (or `release`); refuse it while another
    process holds it. Returns whether this call took it (False: this process held it already)."""
    root = _canonical(root)
    if root in _HELD:
        return False
    fix = "choose another run dir (hydra.run.dir)"
    writable(root, fix)
    lock = RunLock(root / LOCK)
    try:
        root.mkdir(parents=True, exist_ok=True)
        took = lock.acquire()
    except OSError as err:
        raise AetlError(cannot_write(root / LOCK, err, fix)) from None
    if not took:
        raise AetlError(f"{root} is in use by {holder_of(root)}; wait for it to finish, or choose another run "
                        "dir (hydra.run.dir)")
    _HELD[root] = lock
    note = f"process {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})\n"
    with contextlib.suppress(OSError):  # the lock holds without the note
        (root / OWNER).write_text(note)
    return True


def release(root: str | Path) -> None:
    """Let root go, and remove its lock and owner files."""
    lock = _HELD.pop(_canonical(root), None)
    if lock is not None:
        lock.release()


@atexit.register
def _release_all() -> None:
    """A process that ends normally (a run finished or failed, a refused command) leaves no lock
    file behind, also in the run dirs the command line claimed before Hydra ran the job."""
    for root in list(_HELD):
        release(root)


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
    """Who holds root now ('process 12 on node7 (since ...)'), or None when no process does.
    Only looks: it neither makes nor removes a file."""
    root = Path(root)
    if not (root / LOCK).is_file() or _canonical(root) in _HELD:
        return None
    if fcntl is None:
        lock = FileLock(root / LOCK)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return holder_of(root)
        except OSError:
            return None
        lock.release()
        return None
    try:
        fd = os.open(root / LOCK, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None  # gone (its holder finished), or a run dir this process may not read
    try:
        return None if _flock(fd) else holder_of(root)
    except OSError:
        return None  # its state is unknown
    finally:
        os.close(fd)


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
