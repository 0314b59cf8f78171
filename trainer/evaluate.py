"""Evaluation: batched inference on eval-transformed pixels, and the metrics computed from logits.

Metrics: top-1, per-class precision / recall, the confusion matrix (rows = true class, columns =
predicted), expected calibration error (15 equal-width confidence bins), and the most confident
mistakes (for the most-confused photos grid).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .augment import normalize, to_tensor
from .device import Machine


@torch.no_grad()
def predict_logits(model: nn.Module, pixels: np.ndarray, machine: Machine, batch_size: int = 64) -> np.ndarray:
    """float32 logits (N, K) for uint8 eval pixels (N, crop, crop, 3), i.e. preprocess() output."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(pixels), batch_size):
            x = normalize(to_tensor(pixels[i:i + batch_size], machine.device))
            with machine.autocast():
                out.append(model(x).float().cpu())
    finally:
        model.train(was_training)
    k = model.fc.out_features if hasattr(model, "fc") else 0
    return torch.cat(out).numpy() if out else np.zeros((0, k), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's share."""
    return ece_of(probs.max(axis=1), probs.argmax(axis=1) == labels, bins)


def ece_of(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE from each prediction's confidence and whether it was right (what a sorter report holds)."""
    conf, correct = np.asarray(confidence, np.float64), np.asarray(correct, bool)
    if len(conf) == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def metrics(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Everything evaluate reports, as JSON-ready values."""
    k = len(classes)
    probs = softmax(logits.astype(np.float64))
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds, k)
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), np.nan)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), np.nan)
    p_true = probs[np.arange(len(labels)), labels]
    nll = float(-np.log(np.clip(p_true, 1e-12, None)).mean()) if len(labels) else float("nan")
    return {
        "n": int(len(labels)),
        "top1": float((preds == labels).mean()) if len(labels) else float("nan"),
        "nll": nll,
        "ece": expected_calibration_error(probs, labels),
        "per_class": {
            c: {"precision": _num(precision[i]), "recall": _num(recall[i]), "support": int(cm[i].sum())}
            for i, c in enumerate(classes)
        },
        "confusion": cm.tolist(),
        "classes": list(classes),
    }


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def worst_mistakes(logits: np.ndarray, labels: np.ndarray, n: int = 16) -> list[tuple[int, int, float]]:
    """(index, predicted class, confidence) of the `n` most confident wrong predictions."""
    probs = softmax(logits.astype(np.float64))
    preds = probs.argmax(axis=1)
    wrong = np.flatnonzero(preds != labels)
    order = wrong[np.argsort(-probs[wrong, preds[wrong]])][:n]
    return [(int(i), int(preds[i]), float(probs[i, preds[i]])) for i in order]


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """JSON written atomically (temp + fsync + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------------
# Evaluating a checkpoint on a dataset folder


def eval_split(root, ckpt: dict[str, Any]):
    """The photos to evaluate in `root`: its val/ split; for a flat folder, all photos, except when it is
    the very folder the checkpoint was trained on (same fingerprint): then its held-out split only."""
    from sorter.errors import UserError

    from .data import Split, data_fingerprint, discover

    cfg = ckpt["config"]
    ds = discover(root, cfg.get("val_fraction", 0.2), cfg.get("seed", 0))
    if ds.split_from_train and data_fingerprint(ds) != ckpt["data_fingerprint"]:
        ds.val = Split(ds.train.paths + ds.val.paths, ds.train.labels + ds.val.labels)
    unknown = sorted(set(ds.classes) - set(ckpt["classes"]))
    if unknown:
        raise UserError(f"class '{unknown[0]}' in {root} is not one of the model's classes")
    remap = [ckpt["classes"].index(c) for c in ds.classes]
    ds.val.labels = [remap[y] for y in ds.val.labels]
    return ds.val


def evaluate_checkpoint(path_or_run, root, out_dir=None, machine: Machine | None = None,
                        cache_dir=None, batch_size: int = 64) -> dict[str, Any]:
    """Metrics of a checkpoint (a run folder means best.pt) on DATA; JSON and plots into `out_dir`
    (default: the run folder, or the checkpoint's folder)."""
    from .checkpoint import load_checkpoint, model_from_checkpoint, resolve
    from .data import load_split
    from .device import pick_machine
    from .plots import plot_confusion, plot_mistakes

    machine = machine or pick_machine()
    ckpt = load_checkpoint(path_or_run)
    split = eval_split(root, ckpt)
    geo = ckpt["input"]
    arrays = load_split(split, geo["resize"], geo["crop"], ckpt["classes"], cache_dir, desc="decode eval")
    model = model_from_checkpoint(ckpt).to(machine.device, memory_format=torch.channels_last)
    logits = predict_logits(model, arrays.pixels, machine, batch_size)
    result = metrics(logits, arrays.labels, ckpt["classes"])
    result["checkpoint"] = str(resolve(path_or_run))
    result["data"] = str(root)
    out = Path(out_dir) if out_dir else resolve(path_or_run).parent
    out.mkdir(parents=True, exist_ok=True)
    write_json(result, out / "metrics.json")
    plot_confusion(np.asarray(result["confusion"]), ckpt["classes"], out / "confusion.png",
                   title=f"confusion matrix: top-1 {result['top1']:.1%} on {result['n']} photos")
    worst = worst_mistakes(logits, arrays.labels)
    names = [c.replace("_", " ") for c in ckpt["classes"]]
    plot_mistakes([arrays.pixels[i] for i, _, _ in worst],
                  [f"{names[arrays.labels[i]]}\n-> {names[p]} ({c:.0%})" for i, p, c in worst],
                  out / "most_confused.png", title="most confident mistakes (true -> predicted)")
    return result
