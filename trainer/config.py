"""The trainer's settings: one typed dataclass, loaded from `[trainer]` of config.toml by
`sorter.config.load_section` (unknown keys / wrong types -> ConfigError naming the key); flags override.

Defaults here equal those in config.toml, which documents each key for users.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from sorter.config import load_section
from sorter.errors import ConfigError


@dataclass
class LRFindConfig:
    start_lr: float = 1e-5        # first LR of the exponential sweep
    end_lr: float = 1.0           # last LR of the sweep (the test usually stops earlier, at divergence)
    iterations: int = 24          # mini-batches in the sweep (whole-network stage; each costs a train step)
    head_iterations: int = 100    # mini-batches in the head-only sweep (on cached features: nearly free)
    smoothing: float = 0.95       # exponential smoothing factor of the loss (debiased); 0 = raw loss
    diverge: float = 4.0          # stop when the smoothed loss exceeds this multiple of the best one
    rule: str = "valley"          # suggestion rule: valley | steep | minimum
    min_lr: float = 1e-4          # suggestions are clipped to [min_lr, max_lr] (learning rate units)
    max_lr: float = 1.0           # upper clip of the suggestion


@dataclass
class TrainerConfig:
    # --- data (pixels) ---
    resize: int = 160             # shorter side (px) photos are resized to; the eval transform's resize
    crop: int = 144               # centre-crop side (px) at evaluation/export
    train_crop_ratio: float = 0.78  # side of the random training crops as a share of `crop` (0.78 x 144 = 112 px)
    val_fraction: float = 0.2     # share of each class held out for validation when DATA has no val/ folder
    seed: int = 0                 # seed for the split, initialisation, augmentation and batch order
    cache_dir: str | None = "~/.cache/birdsort/trainer"  # on-disk cache of decoded photos; "" or None = memory only
    decode_workers: int = 0       # processes decoding photos once into the cache; 0 = one per CPU core
    # --- augmentation (training only) ---
    scale_min: float = 0.35       # random resized crop: smallest share of the photo's area kept
    scale_max: float = 1.0        # ... largest share
    ratio_min: float = 0.75       # ... aspect ratio range of the crop box (width/height)
    ratio_max: float = 1.3333333  # ...
    flip: bool = True             # random horizontal flips (birds look the same mirrored)
    jitter: float = 0.1           # brightness/contrast/saturation jitter amplitude (0 = off; share of value)
    # --- model ---
    weights: str = "imagenet"     # imagenet | none | PATH (ResNet-18 state_dict or trainer checkpoint)
    # --- optimisation ---
    batch_size: int = 32          # photos per training step
    head_epochs: int = 4          # stage 1: epochs on the new head with the backbone frozen (cached features)
    epochs: int = 16             # stage 2: epochs on the whole network
    head_lr: float | None = None  # stage 1 peak LR; None = from the LR finder
    lr: float | None = None       # stage 2 peak LR of the head group; None = from the LR finder
    group_decay: float = 0.5      # stage 2 discriminative LRs: each earlier layer group gets this x the next one's
    optimizer: str = "sgd"        # sgd (Nesterov momentum) | adamw
    momentum: tuple[float, float] = (0.95, 0.85)  # OneCycle momentum (SGD) / beta1 (AdamW) cycle: max, min
    weight_decay: float = 5e-4    # L2 weight decay (decoupled for adamw); not applied to biases and BN
    label_smoothing: float = 0.1  # share of the target spread uniformly over the classes
    pct_start: float = 0.25       # OneCycle: share of the steps spent warming the LR up
    div_factor: float = 25.0      # OneCycle: initial LR = peak / div_factor
    final_div_factor: float = 1e3  # OneCycle: final LR = initial / final_div_factor
    # --- open set: outlier exposure on photos of other species (optional) ---
    others: str | None = None     # folder of photos of other species (no labels); None = off
    others_weight: float = 0.5    # weight of the cross-entropy-to-uniform loss on those photos
    others_per_batch: int = 16    # others photos added to each training batch
    others_max: int = 1500        # at most this many others photos are sampled (seeded) and cached
    # --- machine ---
    device: str = "auto"          # auto | cpu | cuda
    precision: str = "auto"       # auto (bf16 where the CPU/GPU supports it, else fp32) | bf16 | fp32
    threads: int = 0              # torch CPU threads; 0 = one per core
    lr_find: LRFindConfig = field(default_factory=LRFindConfig)

    def validate(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"config key 'trainer.{key}' {why}")

        if self.crop < 8 or self.resize < self.crop:
            raise bad("crop", f"must be at least 8 and at most resize ({self.resize}), got {self.crop}")
        if not 0.25 <= self.train_crop_ratio <= 1.0:
            raise bad("train_crop_ratio", f"must be between 0.25 and 1, got {self.train_crop_ratio}")
        if not 0.0 < self.val_fraction < 1.0:
            raise bad("val_fraction", "must be between 0 and 1")
        if not 0.0 < self.scale_min <= self.scale_max <= 1.0:
            raise bad("scale_min", "and scale_max must satisfy 0 < scale_min <= scale_max <= 1")
        if not 0.0 < self.ratio_min <= self.ratio_max:
            raise bad("ratio_min", "must be positive and at most ratio_max")
        if not 0.0 <= self.jitter < 1.0:
            raise bad("jitter", "must be in [0, 1)")
        if self.batch_size < 2:
            raise bad("batch_size", "must be at least 2")
        if self.head_epochs < 0 or self.epochs < 0 or self.head_epochs + self.epochs == 0:
            raise bad("epochs", "and head_epochs must not be negative, and not both 0")
        for key in ("head_lr", "lr"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                raise bad(key, "must be positive (or unset for the LR finder)")
        if not 0.0 < self.group_decay <= 1.0:
            raise bad("group_decay", "must be in (0, 1]")
        if self.optimizer not in ("sgd", "adamw"):
            raise bad("optimizer", f"must be sgd or adamw, got {self.optimizer!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad("label_smoothing", "must be in [0, 1)")
        if not 0.0 < self.pct_start < 1.0:
            raise bad("pct_start", "must be between 0 and 1")
        if self.others_weight < 0 or self.others_per_batch < 1 or self.others_max < 1:
            raise bad("others_weight", "must not be negative; others_per_batch and others_max at least 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise bad("device", f"must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise bad("precision", f"must be auto, bf16 or fp32, got {self.precision!r}")
        f = self.lr_find
        if not 0 < f.start_lr < f.end_lr:
            raise bad("lr_find.start_lr", "must be positive and below end_lr")
        if f.iterations < 5 or f.head_iterations < 5:
            raise bad("lr_find.iterations", "must be at least 5")
        if not 0.0 <= f.smoothing < 1.0:
            raise bad("lr_find.smoothing", "must be in [0, 1)")
        if f.diverge <= 1.0:
            raise bad("lr_find.diverge", "must be above 1")
        if f.rule not in ("valley", "steep", "minimum"):
            raise bad("lr_find.rule", f"must be valley, steep or minimum, got {f.rule!r}")
        if not 0 < f.min_lr < f.max_lr:
            raise bad("lr_find.min_lr", "must be positive and below lr_find.max_lr")


def train_crop(cfg: TrainerConfig) -> int:
    """Side (px) of the random crops the whole network trains on: `train_crop_ratio` x `crop`, rounded
    to a multiple of 8 (at least 8)."""
    return max(8, int(round(cfg.crop * cfg.train_crop_ratio / 8)) * 8)


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> TrainerConfig:
    """`[trainer]` of the config file (see sorter.config.find_config), with flag overrides on top."""
    return load_section(TrainerConfig, "trainer", path, overrides)
