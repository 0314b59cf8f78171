"""Tiny datasets and configs for fast trainer tests (`--weights none`, 40 px photos, 32 px crops)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.conftest import make_photo
from trainer.config import LRFindConfig, TrainerConfig


def tiny_tree(root: Path, classes=("alpha", "beta", "gamma"), n: int = 8, split: bool = False) -> Path:
    """`n` generated photos per class (each class its own colour family), flat or train/val."""
    for c, name in enumerate(classes):
        for i in range(n):
            sub = ("val" if i < 2 else "train") if split else ""
            make_photo(root / sub / name / f"{i}.jpg", size=(40 + i % 3, 40), seed=c * 97 + i)
    return root


def tiny_config(**changes) -> TrainerConfig:
    cfg = TrainerConfig(resize=40, crop=32, weights="none", batch_size=8, head_epochs=1, epochs=2,
                        precision="fp32", device="cpu", threads=1, cache_dir=None, decode_workers=2,
                        lr_find=LRFindConfig(iterations=8, head_iterations=12))
    return dataclasses.replace(cfg, **changes)
