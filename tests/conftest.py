"""Shared fixtures. Tests that need the real photos in ../shared/data use `shared_data` and skip
with a clear reason where the folder is absent (a fresh machine elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BIRDSORT_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: birds10/{train,val}/<Species>/*.jpg, unknown/<Species>/*.jpg, birds-pretrain/..."""
    root = SHARED / "data"
    if not (root / "birds10" / "val").is_dir():
        pytest.skip(f"real bird photos not found at {root} (set BIRDSORT_SHARED to the shared folder)")
    return root


@pytest.fixture(scope="session")
def shared_models() -> Path:
    root = SHARED / "models"
    if not (root / "resnet18-birds175.pt").is_file():
        pytest.skip(f"stand-in backbone not found at {root}")
    return root


def make_photo(path: Path, size=(64, 48), seed: int = 0, fmt: str | None = None, mode: str = "RGB") -> Path:
    """Write a generated photo (smooth colour field plus noise, unique per seed)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 255, 3)
    img = (base + 60 * np.sin(xx[..., None] / (3 + seed % 7)) + 40 * np.cos(yy[..., None] / 5)
           + rng.normal(0, 12, (h, w, 3)))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)
    return path


def build_tree(root: Path, tree: dict) -> Path:
    """Build a folder tree from a dict: {"a": {"b.jpg": b"..." | callable(path) | None}}.

    bytes/str values are written as they are; a callable is called with the path; None makes a photo.
    """
    for name, value in tree.items():
        p = root / name
        if isinstance(value, dict):
            p.mkdir(parents=True, exist_ok=True)
            build_tree(p, value)
        elif isinstance(value, (bytes, str)):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(value.encode() if isinstance(value, str) else value)
        elif callable(value):
            value(p)
        else:
            make_photo(p, seed=abs(hash(str(p))) % 10_000)
    return root
