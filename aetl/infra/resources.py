"""What the machine has: the memory a run may still take, on the host (within a cgroup's
limit where the job runs under one: a container, a SLURM job) or on a GPU."""

from __future__ import annotations

import os
from pathlib import Path


def available_memory(device_type: str = "cpu") -> int | None:
    """Bytes free for this process: a GPU's free memory, else the host's available memory, or
    what is left of the cgroup limit when that is less. None when nothing says."""
    if device_type == "cuda":
        import torch

        return torch.cuda.mem_get_info()[0]
    found = [b for b in (_host_available(), _cgroup_room()) if b is not None]
    return min(found) if found else None


def _host_available() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_room() -> int | None:
    """The cgroup's memory limit less what it uses (v2: memory.max, v1: memory.limit_in_bytes)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            room = _room(base / "memory.max", base / "memory.current")
        elif "memory" in controllers.split(","):  # v1
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            room = _room(base / "memory.limit_in_bytes", base / "memory.usage_in_bytes")
            room = room if room is not None else _room(Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                                                       Path("/sys/fs/cgroup/memory/memory.usage_in_bytes"))
        else:
            continue
        if room is not None:
            return room
    return None


def _room(limit_file: Path, usage_file: Path) -> int | None:
    try:
        limit = limit_file.read_text().strip()
        usage = int(usage_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:  # no limit (v1 says so with a huge number)
        return None
    return max(0, int(limit) - usage)
