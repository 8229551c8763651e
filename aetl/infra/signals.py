"""Stopping cleanly on a signal: SIGTERM, SIGINT (Ctrl-C) and SIGUSR2 (what SLURM and
submitit send before a time limit or a preemption) let the training loop finish its step and
write last.pt; outside a step they stop the job at once (it resumes from the last.pt it has)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

from aetl.errors import Interrupted
from aetl.infra.rundir import resume_hint

log = logging.getLogger(__name__)

# SIGUSR2 (what SLURM sends before a time limit) exists on POSIX only.
SIGUSR2 = getattr(signal, "SIGUSR2", None)


class StopSignals:
    """While active, SIGTERM, SIGINT and SIGUSR2 ask the loop to checkpoint and stop at its
    next step instead of killing the process mid-write. Outside the loop (loading data,
    evaluating) they stop at once: the run resumes from the last.pt it has. A second
    Ctrl-C always stops at once."""

    SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, SIGUSR2) if s is not None)

    def __init__(self, run_root: Path, quiet: bool = False) -> None:
        self.run_root = run_root
        self.quiet = quiet  # log nothing (the ranks other than 0)
        self.received: int | None = None
        self.in_loop = False  # inside deferred(): the loop decides when to stop
        self.previous: dict[int, Any] = {}

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """While the loop trains: a signal only sets `received`, and the loop stops after its step."""
        self.in_loop = True
        try:
            yield
        finally:
            self.in_loop = False

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # Python only allows handlers there
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if SIGUSR2 is not None and self.received == SIGUSR2 and signum == signal.SIGTERM:
            return  # a requeue (SIGUSR2 to submitit) is pending: a SIGTERM with it must not cancel it
        self.received = signum
        if not self.in_loop:
            self.stop(None if self.quiet else f"stopped by {signal.Signals(signum).name}; "
                                              f"{resume_hint(self.run_root)}")

    def stop(self, message: str | None) -> None:
        """After the checkpoint: hand SIGUSR2 to submitit's handler when it has one (it requeues
        the job and exits), else raise Interrupted. message=None: log nothing (ranks > 0)."""
        signum = self.received
        assert signum is not None
        previous = self.previous.get(signum)
        self.__exit__()
        if message:
            log.warning("%s", message)
        if SIGUSR2 is not None and signum == SIGUSR2 and callable(previous):
            previous(signum, None)
        raise Interrupted(signum, message or "stopped")
