"""What every cache entry promises, sealed when it is built and verified when it is opened.

An entry is a folder of files (an image cache entry's images.npy, labels.npy and entry.json; a
source-model cache entry's source.pt and spec.json). `seal` writes `checksum.json` beside them:
each file's size, its SHA-256 digest, the digest of a fixed sample of its blocks, and for a
.npy file what it promises (dtype, shape, and for labels the range of its values). `verify`
checks them on every open, in this order, before any byte is used:
- every file is there, with its size; a .npy file's header says the promised dtype and shape,
  so no size read from the file is believed before it is compared (nothing is allocated from it);
- the promised value ranges (labels);
- the whole file's digest: for a file under FULL_BYTES on every open; for a larger one (a
  large images.npy) on its first open after it was sealed or changed, and on every other open
  the digest of SAMPLES blocks spread over it (1 MiB, whatever the file's size).
  `verified.json` keeps the size, modification and change times and inode the file had when
  its digest last matched; any write to the file changes its change time (st_ctime, which no
  user can set back), so a changed file is hashed whole again.
So a warm load reads a few MiB more, while bytes flipped in place, a truncated or replaced file,
labels out of range and edited metadata are all found. A mismatch is returned as one line
naming the entry and what differs; the cache that owns the entry warns and builds it again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SEAL = "checksum.json"
STAMPS = "verified.json"
FORMAT = 1
BLOCK = 1 << 16  # bytes of each sampled block
SAMPLES = 16  # blocks sampled on every open of a large file (1 MiB)
FULL_BYTES = 4 * 2**20  # files smaller than this are hashed whole on every open
CHUNK = 1 << 22


def digest(path: Path) -> str:
    h = hashlib.sha256()  # (SHA extensions make it the fastest of hashlib's on most CPUs)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sample_digest(path: Path, size: int) -> str:
    """The digest of SAMPLES blocks spread evenly over the file (its first and last included)."""
    h = hashlib.sha256()
    starts = sorted({int(s) for s in np.linspace(0, max(0, size - BLOCK), SAMPLES)}) if size else []
    with open(path, "rb") as f:
        for start in starts:
            f.seek(start)
            h.update(f.read(BLOCK))
    return h.hexdigest()


def array_promise(array: np.ndarray, value_range: tuple[int, int] | None = None) -> dict:
    """What a .npy file promises: its dtype and shape, and optionally that every value is in
    [lo, hi)."""
    promise = {"dtype": np.dtype(array.dtype).str, "shape": list(array.shape)}
    if value_range is not None:
        promise["range"] = list(value_range)
    return promise


def seal(entry: Path, names: Sequence[str], promises: dict[str, dict] | None = None) -> None:
    """Write entry/checksum.json for the files `names` (and entry/verified.json)."""
    files = {}
    for name in names:
        path = entry / name
        size = path.stat().st_size
        files[name] = {"size": size, "sha256": digest(path), "sample": sample_digest(path, size),
                       **({"promise": promises[name]} if promises and name in promises else {})}
    (entry / SEAL).write_text(json.dumps({"format": FORMAT, "files": files}, indent=1))
    _stamp(entry, {name: _stat(entry / name) for name in names})


def verify(entry: Path, names: Sequence[str]) -> str | None:
    """None when every file of `names` is as entry/checksum.json says; else what differs (one
    line, without the entry's name). An entry without checksum.json says so ('no checksum')."""
    record = _record(entry)
    if isinstance(record, str):
        return record
    files = record["files"]
    missing = [n for n in names if n not in files]
    if missing:
        return f"its checksum does not cover {missing[0]}"
    stamps = _stamps(entry)
    verified = {}
    for name in names:
        problem = _check_file(entry / name, files[name], stamps.get(name))
        if problem:
            return problem
        verified[name] = _stat(entry / name)
    if verified != {n: stamps.get(n) for n in names}:
        _stamp(entry, verified)
    return None


NO_CHECKSUM = "it has no checksum (an older aetl wrote it)"


def _record(entry: Path) -> dict | str:
    try:
        record = json.loads((entry / SEAL).read_text())
    except FileNotFoundError:
        return NO_CHECKSUM
    except (OSError, ValueError) as err:
        return f"its {SEAL} is unreadable ({type(err).__name__})"
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return f"its {SEAL} is not one this aetl reads"
    files = record.get("files")
    if not isinstance(files, dict) or not all(_well_formed(f) for f in files.values()):
        return f"its {SEAL} is damaged"
    return record


def _well_formed(record: Any) -> bool:
    return (isinstance(record, dict) and isinstance(record.get("size"), int) and not isinstance(record["size"], bool)
            and record["size"] >= 0 and isinstance(record.get("sha256"), str) and isinstance(record.get("sample"), str)
            and isinstance(record.get("promise", {}), dict))


def _check_file(path: Path, record: dict, stamp: list | None) -> str | None:
    try:
        size = path.stat().st_size
    except OSError:
        return f"{path.name} is missing"
    if size != record["size"]:
        return f"{path.name} is {size} bytes where its checksum says {record['size']} (truncated or replaced)"
    promise = record.get("promise")
    if promise:
        problem = _check_promise(path, promise)
        if problem:
            return problem
    whole = size < FULL_BYTES or stamp != _stat(path)
    if not whole and sample_digest(path, size) != record["sample"]:
        return f"{path.name}'s bytes differ from its checksum"
    if whole and digest(path) != record["sha256"]:
        return f"{path.name}'s bytes differ from its checksum"
    return None


def _check_promise(path: Path, promise: dict) -> str | None:
    """A .npy file's header (dtype, shape) against the promise before any array is made, then
    its value range (labels: small, read whole)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except (OSError, ValueError, SyntaxError) as err:
        return f"{path.name} has no valid .npy header ({type(err).__name__})"
    if list(shape) != promise.get("shape") or dtype.str != promise.get("dtype"):
        return (f"{path.name} holds {dtype.str} {list(shape)} where the entry promises {promise.get('dtype')} "
                f"{promise.get('shape')}")
    value_range = promise.get("range")
    if value_range:
        values = np.load(path)  # its shape matched the promise: small (labels), and no size believed
        lo, hi = value_range
        if values.size and (int(values.min()) < lo or int(values.max()) >= hi):
            return (f"{path.name} holds values in [{int(values.min())}, {int(values.max())}] outside the promised "
                    f"[{lo}, {hi})")
    return None


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _stamps(entry: Path) -> dict:
    try:
        stamps = json.loads((entry / STAMPS).read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _stamp(entry: Path, stamps: dict) -> None:
    """Best effort: a cache aetl can read but not write is verified whole on every open."""
    tmp = entry / f".{STAMPS}.{os.getpid()}"
    try:
        tmp.write_text(json.dumps(stamps))
        os.replace(tmp, entry / STAMPS)
    except OSError:
        tmp.unlink(missing_ok=True)
