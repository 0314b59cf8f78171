"""Find the photos waiting in the inbox, grouped with their siblings.

Files sharing a folder and a stem form a group that travels together: `IMG_1.JPG`, `IMG_1.CR2`,
`IMG_1.xmp` and `IMG_1.CR2.xmp`. The group's primary (the file classified) is its most readily decodable
image: JPEG, then PNG, TIFF, WebP..., then a RAW (classified from its embedded preview).

Left alone: hidden files and folders, partial downloads (.part, .crdownload, .tmp ...), the library
itself when it lies inside the inbox, files that changed within the last `settle` seconds (the whole
group waits), and anything that is not a photo or a sidecar. Symbolic links are never followed and never
moved: each is reported as skipped. One `os.scandir` pass: O(files), one stat per candidate.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

# decodable images, in order of preference as the group's primary
IMAGE_SUFFIXES = [".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"]
RAW_SUFFIXES = {
    ".3fr", ".ari", ".arw", ".bay", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".fff", ".iiq", ".k25",
    ".kdc", ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl", ".sr2",
    ".srf", ".srw", ".x3f",
}
LATE_SUFFIXES = [".heic", ".heif", ".hif", ".avif"]  # only when nothing else in the group decodes
SIDECAR_SUFFIX = ".xmp"
PARTIAL_SUFFIXES = {".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", ".!ut", ".opdownload"}

_RANK = {s: i for i, s in enumerate(IMAGE_SUFFIXES)}
_RANK.update({s: 100 for s in RAW_SUFFIXES})
_RANK.update({s: 200 + i for i, s in enumerate(LATE_SUFFIXES)})


def is_photo_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in _RANK


def stem_of(name: str) -> str | None:
    """The group stem of a photo or sidecar name, None for other files. `IMG_1.CR2.xmp` -> `IMG_1`."""
    base, ext = os.path.splitext(name)
    ext = ext.lower()
    if ext == SIDECAR_SUFFIX:
        inner, inner_ext = os.path.splitext(base)
        return inner if inner and inner_ext.lower() in _RANK else base
    return base if ext in _RANK and base else None


@dataclass
class Group:
    folder: Path
    stem: str
    files: list[Path]                                      # photos first (primary first), then sidecars
    stats: dict[Path, tuple[int, int]] = field(default_factory=dict)  # path -> (size, mtime_ns) at scan

    @property
    def primary(self) -> Path:
        return self.files[0]

    @property
    def photos(self) -> list[Path]:
        return [f for f in self.files if f.suffix.lower() != SIDECAR_SUFFIX]

    @property
    def sidecars(self) -> list[Path]:
        return [f for f in self.files if f.suffix.lower() == SIDECAR_SUFFIX]


@dataclass
class Skipped:
    path: Path
    reason: str
    size: int = 0
    mtime_ns: int = 0


@dataclass
class ScanResult:
    groups: list[Group]
    skipped: list[Skipped]
    waiting: int = 0        # files not settled yet (taken by a later run)


def _sort_key(p: Path) -> tuple[int, str]:
    name = p.name
    ext = os.path.splitext(name)[1].lower()
    return (_RANK.get(ext, 1000), name)


def scan(inbox: Path, library: Path | None = None, settle: float = 0.0, now: float | None = None) -> ScanResult:
    inbox = Path(inbox)
    now = time.time() if now is None else now
    lib_id = None
    if library is not None:
        try:
            st = os.stat(library)
            lib_id = (st.st_dev, st.st_ino)
        except OSError:
            pass
    buckets: dict[tuple[str, str], list[tuple[Path, os.stat_result]]] = {}
    skipped: list[Skipped] = []
    waiting = 0
    young: set[tuple[str, str]] = set()
    stack = [inbox]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            skipped.append(Skipped(folder, f"cannot read folder: {e.strerror}"))
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue  # hidden files and folders, our own temporary files
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    st = entry.stat(follow_symlinks=False)
                    skipped.append(Skipped(path, "symbolic link: never followed or moved", st.st_size, st.st_mtime_ns))
                    continue
                if entry.is_dir(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    if (st.st_dev, st.st_ino) != lib_id:
                        stack.append(path)
                    continue
                if os.path.splitext(name)[1].lower() in PARTIAL_SUFFIXES:
                    continue
                stem = stem_of(name)
                if stem is None:
                    continue  # not a photo or a sidecar: not ours to move
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished while scanning
            if not entry.is_file(follow_symlinks=False):
                skipped.append(Skipped(path, "not a regular file", st.st_size, st.st_mtime_ns))
                continue
            key = (str(folder), stem.casefold())
            buckets.setdefault(key, []).append((path, st))
            if now - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 < settle:
                young.add(key)
    groups = []
    for key, members in buckets.items():
        files = sorted((p for p, _ in members), key=_sort_key)
        if files[0].suffix.lower() == SIDECAR_SUFFIX:
            continue  # a sidecar without its photo: wait for the photo
        if key in young:
            waiting += len(files)
            continue
        stem = stem_of(files[0].name)
        groups.append(Group(Path(key[0]), stem, files, {p: (st.st_size, st.st_mtime_ns) for p, st in members}))
    groups.sort(key=lambda g: (str(g.folder), g.stem))
    skipped.sort(key=lambda s: str(s.path))
    return ScanResult(groups, skipped, waiting)
