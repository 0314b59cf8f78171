"""The run folder: `runs/<name>/` holds config.json, history.csv, best.pt, last.pt, LR finder curves,
plots and metrics. Every file is written atomically (temp + fsync + rename)."""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any

from .evaluate import write_json

HISTORY_FIELDS = ["stage", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds",
                  "images_per_s", "elapsed"]


def new_run_dir(out: str | os.PathLike | None, base: str | os.PathLike = "runs") -> Path:
    """`out` as given, or runs/<YYYYmmdd-HHMMSS> (suffixed when taken)."""
    if out is not None:
        path = Path(out).expanduser()
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, n = Path(base) / stamp, 1
        while path.exists():
            n += 1
            path = Path(base) / f"{stamp}-{n}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_history(rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())


def write_config(config: dict[str, Any], extra: dict[str, Any], path: Path) -> None:
    write_json({**config, **extra}, path)
