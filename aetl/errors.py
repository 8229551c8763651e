"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("aetl")


class AetlError(Exception):
    """A problem with the user's input (config, path, image, checkpoint), not a bug."""


class Interrupted(BaseException):
    """A signal stopped the run after its checkpoint was saved. A BaseException, like
    KeyboardInterrupt, so that a multirun's per-job error handling does not swallow it."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


def debug_enabled() -> bool:
    return os.environ.get("AETL_DEBUG", "") not in ("", "0")


def reports_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an AetlError raised by a Hydra task into one line and exit status 2.

    In a multirun a failed job (bad input or a bug) is logged to its run.log and the
    sweep goes on, so one bad combination does not cost the others; `aetl report`
    lists it. AETL_DEBUG=1 shows the traceback behind an AetlError. A run that a
    signal stopped (after saving checkpoints/last.pt) exits with 128 + the signal's
    number, and a sweep stops with it.
    """

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Interrupted as stopped:  # checkpointed and logged already
            raise SystemExit(stopped.exit_status) from None
        except Exception as raised:
            err = user_error(raised)
            if in_multirun() and not debug_enabled():
                if err is None:
                    log.exception("job failed: %s", raised)
                else:
                    log.error("job failed: %s", err)
                return None
            if err is None or debug_enabled():
                log.error("job failed: %s: %s", type(raised).__name__, raised)  # for run.log: Hydra prints the rest
                raise
            log.error("%s", err)  # the log reaches both the console (stderr) and run.log
            discard_unused_run_dir()
            raise SystemExit(2) from None

    return wrapper


# Optional packages: the pip extra that brings each, and what needs it.
EXTRAS = {
    "skimage": ("photos", "the photos, textures and mnist_m domains and style transfer's sample images need "
                          "scikit-image"),
}


def user_error(err: BaseException) -> AetlError | None:
    """The AetlError behind err, also when Hydra's instantiate wrapped it; a missing optional
    package becomes one naming the extra that installs it."""
    while err is not None:
        if isinstance(err, AetlError):
            return err
        if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] in EXTRAS:
            extra, need = EXTRAS[err.name.split(".")[0]]
            return AetlError(f'{need}: pip install "aetl[{extra}]"')
        if isinstance(err, OSError) and err.filename is not None:
            return AetlError(os_error(err))
        err = err.__cause__
    return None


def os_error(err: OSError) -> str:
    """One line for a file the job could not write (or read): the path, the reason, the fix."""
    if err.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT):
        fix = "choose a writable location (hydra.run.dir, cache_dir, ...) or free some space"
    elif err.errno in (errno.EACCES, errno.EPERM):
        fix = "fix its permissions or choose another location"
    else:
        fix = "check the path"
    return f"cannot use {err.filename} ({err.strerror or err}); {fix}"


HYDRA_ONLY = {".hydra", "run.log", ".lock", ".owner"}  # what a job that failed before its first output leaves


def discard_unused_run_dir() -> None:
    """Remove the run dir Hydra made for a single run that failed before writing anything of
    its own (its error is on the console): a bad input leaves no empty run dir behind."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or in_multirun():
        return  # a sweep's failed job keeps its dir: `aetl report` lists it with the reason
    root = Path(HydraConfig.get().runtime.output_dir)
    try:
        if not (root.is_dir() and {p.name for p in root.iterdir()} <= HYDRA_ONLY):
            return
        shutil.rmtree(root)
        day = root.parent  # outputs/DATE/TIME: the DATE and outputs folders it made, if nothing else is there
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", day.name) and not any(day.iterdir()):
            day.rmdir()
            if day.parent.name == "outputs" and not any(day.parent.iterdir()):
                day.parent.rmdir()
    except OSError:
        pass  # an empty dir left behind is a nuisance, not a failure


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
