"""Folder datasets: discovery, the stratified split, and the decode-once pixel cache.

Layouts (DESIGN.md): `root/<class>/*`, or `root/train/<class>/*` + `root/val/<class>/*`. Without `val/`,
each class is split with a fixed seed (stratified). Every photo is decoded ONCE, through the shared
preprocessing in `sorter.preprocess`, into a uint8 array; arrays can be kept in an on-disk cache keyed
by a fingerprint of the files and the geometry, so repeated runs (lr-find, fit, evaluate, bench) skip
decoding altogether. Files that cannot be decoded are reported once (one warning) and skipped.

- training photos: `preprocess(path, resize, resize)`: a resize x resize square that augmentation
  crops from (see trainer.augment);
- validation photos: `preprocess(path, resize, crop)`: exactly the eval transform that the sorter and
  the exported model see (normalisation is applied later, in trainer.augment.normalize).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sorter.errors import UserError
from sorter.preprocess import PreprocessError, preprocess

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif"}
# bump when the cached pixels would change for the same files and geometry (2: camera JPEGs with an MPF
# preview are decoded from it)
CACHE_VERSION = 2


class DataError(UserError):
    """The dataset folder cannot be used as it is."""


@dataclass
class Split:
    paths: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class FolderDataset:
    root: Path
    classes: list[str]
    train: Split
    val: Split
    split_from_train: bool  # True when val/ was absent and val is a seeded split of the photos


def _files(folder: Path) -> list[Path]:
    """The non-hidden regular files directly in `folder`, sorted (symlinks to files are fine)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _read_classes(folder: Path, what: str) -> dict[str, list[Path]]:
    dirs = _class_dirs(folder)
    if not dirs:
        raise DataError(f"{what} {folder} has no class folders (expected {folder}/<class>/<photos>)")
    out = {}
    for d in dirs:
        files = _files(d)
        if not files:
            raise DataError(f"class folder '{d.name}' in {folder} holds no photos")
        out[d.name] = files
    return out


def stratified_split(per_class: list[list[Path]], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (into the concatenation of `per_class`) of a seeded per-class train/val split.

    Each class with at least two photos gives round(n * fraction) of them, at least one, to val."""
    rng = random.Random(seed)
    train_idx, val_idx, offset = [], [], 0
    for files in per_class:
        idx = list(range(offset, offset + len(files)))
        rng.shuffle(idx)
        n_val = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        val_idx += sorted(idx[:n_val])
        train_idx += sorted(idx[n_val:])
        offset += len(files)
    return train_idx, val_idx


def discover(root: str | os.PathLike, val_fraction: float = 0.2, seed: int = 0) -> FolderDataset:
    """Find classes and photos under `root`; raise DataError (one line) for an unusable layout."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    has_train, has_val = (root / "train").is_dir(), (root / "val").is_dir()
    if has_val and not has_train:
        raise DataError(f"{root} has val/ but no train/ folder")
    train_cls = _read_classes(root / "train" if has_train else root, "dataset folder")
    classes = sorted(train_cls)
    if len(classes) < 2:
        raise DataError(f"{root} has only one class ({classes[0]}): a classifier needs at least two")
    index = {c: i for i, c in enumerate(classes)}
    train, val = Split(), Split()
    if has_val:
        val_cls = _read_classes(root / "val", "validation folder")
        stray = sorted(set(val_cls) - set(classes))
        if stray:
            raise DataError(f"class '{stray[0]}' is in {root / 'val'} but not in {root / 'train'}")
        for c in classes:
            train.paths += train_cls[c]
            train.labels += [index[c]] * len(train_cls[c])
        for c in sorted(val_cls):
            val.paths += val_cls[c]
            val.labels += [index[c]] * len(val_cls[c])
        missing = sorted(set(classes) - set(val_cls))
        if missing:
            log.warning("classes without validation photos: %s", ", ".join(missing))
    else:
        per_class = [train_cls[c] for c in classes]
        paths = [p for files in per_class for p in files]
        labels = [index[c] for c in classes for _ in train_cls[c]]
        t_idx, v_idx = stratified_split(per_class, val_fraction, seed)
        train = Split([paths[i] for i in t_idx], [labels[i] for i in t_idx])
        val = Split([paths[i] for i in v_idx], [labels[i] for i in v_idx])
    return FolderDataset(root, classes, train, val, split_from_train=not has_val)


def data_fingerprint(ds: FolderDataset) -> str:
    """Provenance: sha256 (first 16 hex) of every photo's path relative to the root, its split and size."""
    h = hashlib.sha256()
    for split, s in (("train", ds.train), ("val", ds.val)):
        for p, y in sorted(zip(s.paths, s.labels)):
            h.update(f"{split}\t{ds.classes[y]}\t{p.relative_to(ds.root).as_posix()}\t{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def list_others(folder: str | os.PathLike, limit: int, seed: int) -> list[Path]:
    """Up to `limit` photo files (by extension) anywhere under `folder`, a seeded sample, sorted."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"others folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise DataError(f"others folder {folder} holds no photos")
    if len(files) > limit:
        files = sorted(random.Random(seed).sample(files, limit))
    return files


# ----------------------------------------------------------------------------------------------------
# Decode once: a cache of uint8 arrays


@dataclass
class Decoded:
    """Pixels of the photos that decoded (`keep` indexes the input paths), and why the others did not."""
    pixels: np.ndarray         # (N, side, side, 3) uint8, RGB
    keep: list[int]            # indices into the input list of the photos in `pixels`
    failed: dict[str, str]     # path -> one-line reason


def _cache_key(paths: list[Path], resize: int, crop: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION} resize={resize} crop={crop}\n".encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _decode_one(args: tuple[Path, int, int]) -> np.ndarray | str:
    path, resize, crop = args
    try:
        return preprocess(path, resize, crop)
    except PreprocessError as e:
        return str(e)


def _save_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def decode_all(paths: list[Path], resize: int, crop: int, cache_dir: str | os.PathLike | None = None,
               workers: int = 0, desc: str = "decode") -> Decoded:
    """Every photo through `sorter.preprocess.preprocess(path, resize, crop)`, once.

    With `cache_dir`, results are stored as NAME.npy + NAME.json keyed by a fingerprint of the paths,
    sizes, mtimes and geometry, and reused by later calls. Decoding runs in a thread pool (Pillow
    releases the GIL while decoding and resizing)."""
    cache = Path(cache_dir).expanduser() if cache_dir else None
    if cache is not None:
        key = _cache_key(paths, resize, crop)
        npy, meta = cache / f"{key}.npy", cache / f"{key}.json"
        if npy.is_file() and meta.is_file():
            try:
                info = json.loads(meta.read_text())
                pixels = np.load(npy, mmap_mode=None)
                if pixels.shape[0] == len(info["keep"]):
                    return Decoded(pixels, info["keep"], info["failed"])
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is simply rebuilt
    workers = workers or os.cpu_count() or 1
    out: list[np.ndarray | str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(_decode_one, [(p, resize, crop) for p in paths], chunksize=8)
        for r in tqdm(jobs, total=len(paths), desc=desc, unit="photo", leave=False):
            out.append(r)
    keep = [i for i, r in enumerate(out) if not isinstance(r, str)]
    failed = {str(paths[i]): r for i, r in enumerate(out) if isinstance(r, str)}
    pixels = np.stack([out[i] for i in keep]) if keep else np.zeros((0, crop, crop, 3), np.uint8)
    if cache is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            _save_atomic(npy, lambda f: np.save(f, pixels))
            _save_atomic(meta, lambda f: f.write(json.dumps({"keep": keep, "failed": failed}).encode()))
        except OSError as e:
            log.warning("cannot write the decode cache in %s: %s", cache, e.strerror or e)
    return Decoded(pixels, keep, failed)


def report_failures(failed: dict[str, str], shown: int = 10) -> None:
    """One warning per unreadable file (the first `shown`), then one summary line for the rest."""
    for path, why in list(failed.items())[:shown]:
        log.warning("skipped %s: %s", path, why)
    if len(failed) > shown:
        log.warning("skipped %d more unreadable files", len(failed) - shown)


@dataclass
class Arrays:
    """A split decoded into memory: uint8 pixels (N, H, W, 3), int64 labels (N,), and the paths kept."""
    pixels: np.ndarray
    labels: np.ndarray
    paths: list[Path]


def load_split(split: Split, resize: int, crop: int, classes: list[str], cache_dir=None, workers: int = 0,
               desc: str = "decode") -> Arrays:
    """Decode a split; report unreadable files once; refuse a class left with no readable photo."""
    dec = decode_all(split.paths, resize, crop, cache_dir, workers, desc)
    report_failures(dec.failed)
    labels = np.asarray([split.labels[i] for i in dec.keep], dtype=np.int64)
    present = set(labels.tolist())
    lost = sorted({split.labels[i] for i in range(len(split))} - present)
    if lost:
        raise DataError(f"class '{classes[lost[0]]}' has no readable photos ({desc})")
    return Arrays(dec.pixels, labels, [split.paths[i] for i in dec.keep])


@dataclass
class LoadedData:
    classes: list[str]
    train: Arrays           # resize x resize squares, for augmentation
    val: Arrays             # exactly the eval transform: preprocess(path, resize, crop)
    fingerprint: str
    others: np.ndarray | None = None  # uint8 squares of other species' photos (open-set), or None


def load_dataset(root, resize: int, crop: int, val_fraction: float = 0.2, seed: int = 0, cache_dir=None,
                 workers: int = 0, others: str | None = None, others_max: int = 1500) -> LoadedData:
    """Discover, split and decode a dataset folder (and an optional others folder) once."""
    ds = discover(root, val_fraction, seed)
    train = load_split(ds.train, resize, resize, ds.classes, cache_dir, workers, "decode train")
    val = load_split(ds.val, resize, crop, ds.classes, cache_dir, workers, "decode val") if len(ds.val) else \
        Arrays(np.zeros((0, crop, crop, 3), np.uint8), np.zeros(0, np.int64), [])
    other_px = None
    if others:
        files = list_others(others, others_max, seed)
        dec = decode_all(files, resize, resize, cache_dir, workers, "decode others")
        if dec.failed:
            log.warning("others: skipped %d unreadable files", len(dec.failed))
        other_px = dec.pixels
    return LoadedData(ds.classes, train, val, data_fingerprint(ds), other_px)
