"""Checkpoints: written atomically, loaded with `weights_only=True`, enough to rebuild the model alone.

Keys (the export step relies on the first eight):
  model            state_dict of the torchvision ResNet-18 with a len(classes)-way `fc`
  arch             "resnet18"
  classes          ordered class names (the labels of the model's outputs)
  input            {"resize": R, "crop": C}: the eval transform is preprocess(path, R, C) + MEAN/STD
  config           dataclasses.asdict(TrainerConfig) of the run
  weights          the initial weights string (imagenet | none | PATH)
  data_fingerprint sha256 prefix of the dataset's relative paths and sizes
  metrics          {"val_top1": ..., "val_loss": ...} of this checkpoint's epoch
  stage, epoch, optimizer, scheduler, rng, lrs, history: what `fit --resume` needs
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch
from torch import nn
from torchvision.models import resnet18

from sorter.errors import UserError

REQUIRED = ("model", "arch", "classes", "input", "config", "weights", "data_fingerprint", "metrics")


class CheckpointError(UserError):
    """A checkpoint or run folder is missing or unusable."""


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """`write(f)` into a temporary file beside `path`, fsync, then rename over it (never half-written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save to a temporary file beside `path`, fsync, then rename over it (never half-written)."""
    return _atomic_write(Path(path), lambda f: torch.save(ckpt, f))


def publish_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Make `dst` hold what `src` holds, atomically: a hard link under a temporary name renamed over
    `dst` (no copy; `src` is later replaced by rename, never rewritten in place, so `dst` keeps its
    content). Where hard links are not possible (FAT, some network shares), a copy, fsynced, renamed."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link")
    try:
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        with open(src, "rb") as fin:
            _atomic_write(dst, lambda fout: shutil.copyfileobj(fin, fout, 1 << 20))
    return dst


def resolve(path_or_run: str | os.PathLike, name: str = "best.pt") -> Path:
    """A checkpoint file, or a run folder -> its `name` (best.pt by default)."""
    p = Path(path_or_run).expanduser()
    if p.is_dir():
        p = p / name
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def load_checkpoint(path_or_run: str | os.PathLike, name: str = "best.pt") -> dict[str, Any]:
    """Load a trainer checkpoint (a run folder means its best.pt); weights_only=True always."""
    p = resolve(path_or_run, name)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot load checkpoint {p}: {msg}") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise CheckpointError(f"{p} is not a trainer checkpoint (keys {', '.join(REQUIRED)} expected)")
    if ckpt["arch"] != "resnet18":
        raise CheckpointError(f"{p}: unsupported architecture {ckpt['arch']!r}")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The trained network, rebuilt from the checkpoint alone (eval mode, CPU, fp32)."""
    model = resnet18(weights=None, num_classes=len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()
