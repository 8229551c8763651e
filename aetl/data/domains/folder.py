"""A user's own images: one sub-folder per class, or a single folder of unlabelled images.

Files are decoded on every core (aetl.data.domains.decode) straight into the array `alloc`
gives (a memory-mapped file of the image cache, or memory). `fingerprint` names the
files with their sizes and modification times: the image cache decodes a folder again
when it changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from aetl.data.domains import Domain
from aetl.data.domains.decode import decode_into
from aetl.errors import AetlError
from aetl.infra.schema import Natural

log = logging.getLogger(__name__)
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
IGNORED = {"__macosx", "thumbs.db", "desktop.ini", "$recycle.bin", "system volume information"}  # besides .hidden
COPY_CHUNK = 4096  # images per copy when compacting: bounded memory for any folder
Alloc = Callable[[tuple[int, ...]], np.ndarray]  # shape -> an uint8 array to fill


def load(root: str, size: Natural, skip_bad: bool = True, alloc: Alloc = lambda shape: np.empty(shape, np.uint8)) -> Domain:
    """Every image under root, resized to size x size; unreadable entries and files, and
    oversized files, are skipped and named (skip_bad=false: refused)."""
    found = listing(root)
    folder, files = found.folder, found.files
    paths = [folder / name for _, name, _ in files]
    decoded = alloc((len(files), 3, size, size))
    bad, colour = decode_into(paths, size, decoded)
    problems = sorted([*found.problems, *((files[i][1], bad[i]) for i in bad)])
    notes = []
    if problems:
        what = f"{len(problems)} unreadable entr{'y' if len(problems) == 1 else 'ies'} in {folder}: {_first(problems)}"
        if not skip_bad:
            raise AetlError(f"{what}; remove or fix them, or set skip_bad=true to skip them")
        notes.append(f"skipped {what}")
        log.warning("%s", notes[-1])
    keep = np.array([i for i in range(len(files)) if i not in bad], dtype=np.int64)
    if not len(keep):
        raise AetlError(f"none of the {len(files)} images in {folder} could be read; check the files")
    images = decoded
    if len(keep) < len(files) or not colour:  # drop the failed rows; grey folders keep one channel
        images = alloc((len(keep), 3 if colour else 1, size, size))
        for at in range(0, len(keep), COPY_CHUNK):
            images[at:at + COPY_CHUNK] = decoded[keep[at:at + COPY_CHUNK], : images.shape[1]]
    labels, classes = _without_empty([files[i][0] for i in keep], found.classes, folder, notes)
    return Domain("folder", images, labels, classes, notes)


def _without_empty(labels: list[int], classes: list[str], folder: Path, notes: list[str]) -> tuple[np.ndarray, list]:
    """The labels renumbered over the classes left with images (a class whose every image was
    unreadable is dropped, and named)."""
    held = sorted({c for c in labels if c >= 0})
    if len(held) == len(classes):
        return np.array(labels, dtype=np.int64), classes
    lost = [c for k, c in enumerate(classes) if k not in held]
    notes.append(f"classes with no readable image in {folder}, left out: {', '.join(lost)}")
    log.warning("%s", notes[-1])
    renumber = {old: new for new, old in enumerate(held)}
    return np.array([renumber.get(c, -1) for c in labels], dtype=np.int64), [classes[k] for k in held]


def fingerprint(root: str, **_: object) -> str:
    """A hash of every image file's path, size and modification time under root."""
    found = listing(root)
    lines = "\n".join(f"{label}\t{name}\t{size}\t{mtime}" for label, name, (size, mtime) in found.files)
    return hashlib.sha256(f"{found.folder}\n{lines}".encode()).hexdigest()[:16]


@dataclass
class Listing:
    """A folder's classes (sub-folders holding images; none: unlabelled), its image files in
    order as (label, path relative to the folder, (size, modification time in ns)), and the
    entries that could not be read (path, why). Plain strings, not Paths: a folder of 100,000
    files is listed in a fraction of a second."""

    folder: Path
    classes: list[str]
    files: list[tuple[int, str, tuple[int, int]]]
    problems: list[tuple[str, str]]


def listing(root: str) -> Listing:
    """What `root` holds, without what operating systems and archivers leave beside images
    (IGNORED, hidden files and folders); sub-folders with no images are named in a warning."""
    folder = Path(str(root)).expanduser()
    if not folder.is_dir():
        raise AetlError(f"image folder {folder} does not exist; set data.<source|target>.root to a folder of images")
    problems: list[tuple[str, str]] = []
    try:
        subfolders = sorted(name for name, kind in _entries(folder, "", problems) if kind == "dir")
        groups = [(sub, _images_in(folder, sub, problems)) for sub in subfolders]
    except OSError as err:
        raise AetlError(f"cannot read image folder {folder} ({err.strerror or err}); fix its permissions") from None
    empty = [sub for sub, found in groups if not found]
    if empty and len(empty) < len(groups):
        log.warning("sub-folders of %s with no images, not classes: %s", folder, ", ".join(empty[:10]))
    groups = [(sub, found) for sub, found in groups if found]
    classes = [sub for sub, _ in groups]
    labelled = [(k, found) for k, (_, found) in enumerate(groups)] if groups else \
        [(-1, _images_in(folder, "", problems))]
    files = [(label, name, stat) for label, found in labelled for name, stat in found]
    if not files:
        raise AetlError(f"no images in {folder} (looked for {', '.join(sorted(EXTENSIONS))}){_also(problems)}; "
                        "add images or fix the path")
    return Listing(folder, classes, files, problems)


def _entries(folder: Path, sub: str, problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(name, "dir" | "file" | "other") of what sub holds, ignored names left out; an entry that
    cannot be looked at (a symlink loop, a dangling link, no permission) goes to problems."""
    found = []
    with os.scandir(folder / sub) as entries:
        for e in entries:
            if _ignored(e.name):
                continue
            try:
                kind = "dir" if e.is_dir() else "file" if e.is_file() else "other"
                if kind == "other" and e.is_symlink():
                    raise FileNotFoundError("a link to nothing")
            except OSError as err:
                problems.append((f"{sub}/{e.name}" if sub else e.name, err.strerror or str(err)))
                continue
            found.append((e.name, kind))
    return found


def _images_in(folder: Path, sub: str, problems: list[tuple[str, str]]) -> list[tuple[str, tuple[int, int]]]:
    found, prefix = [], f"{sub}/" if sub else ""
    try:
        entries = _entries(folder, sub, problems)
    except OSError as err:  # a class folder that cannot be opened
        problems.append((sub, err.strerror or str(err)))
        return []
    for name, kind in entries:
        if name[name.rfind("."):].lower() not in EXTENSIONS:
            continue
        if kind != "file":
            problems.append((prefix + name, "not a regular file"))
            continue
        try:
            stat = os.stat(folder / sub / name)
        except OSError as err:
            problems.append((prefix + name, err.strerror or str(err)))
            continue
        found.append((prefix + name, (stat.st_size, stat.st_mtime_ns)))
    return sorted(found)


def _ignored(name: str) -> bool:
    """What operating systems and archivers leave in folders, and hidden entries."""
    return name.startswith(".") or name.lower() in IGNORED


def _first(problems: list[tuple[str, str]], shown: int = 3) -> str:
    text = ", ".join(f"{name} ({why})" for name, why in problems[:shown])
    return text + (f" and {len(problems) - shown} more" if len(problems) > shown else "")


def _also(problems: list[tuple[str, str]]) -> str:
    return f", and {len(problems)} unreadable entr{'y' if len(problems) == 1 else 'ies'}: {_first(problems)}" \
        if problems else ""
