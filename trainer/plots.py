"""Plots (matplotlib, Agg backend): LR finder curve, loss and accuracy curves, confusion matrix and the
most confused photos. Drawing only: every figure is computed elsewhere and passed in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

MARKERS = {"valley": ("o", "tab:red"), "steep": ("s", "tab:green"), "minimum": ("^", "tab:purple")}


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_lr_find(result, path, title: str = "LR range test") -> Path:
    """Raw and smoothed loss against LR (log scale), each rule's suggestion marked; the chosen one bold."""
    lrs, raw, sm = np.asarray(result.lrs), np.asarray(result.losses), np.asarray(result.curve)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(lrs, raw, color="0.75", lw=1, label="loss (per batch)")
    ax.plot(lrs, result.smoothed, color="tab:blue", lw=1, ls=":", label="online EMA (stopping rule)")
    ax.plot(lrs, sm, color="tab:blue", lw=2, label="median + zero-lag smoothed (rules)")
    ax.set_xscale("log")
    finite = sm[np.isfinite(sm)]
    if len(finite):
        lo, hi = finite.min(), min(finite.max(), 2.5 * finite.min() + 0.5)
        pad = 0.08 * (hi - lo + 1e-9)
        ax.set_ylim(lo - pad, hi + pad)
    for name, lr in result.suggestions.items():
        marker, colour = MARKERS.get(name, ("x", "k"))
        y = np.interp(np.log(lr), np.log(lrs), sm)
        chosen = name == result.rule
        ax.plot([lr], [y], marker=marker, color=colour, ms=11 if chosen else 8, ls="none",
                mec="k" if chosen else colour, mew=1.5 if chosen else 0.5,
                label=f"{name}: {lr:.2g}" + ("  (used)" if chosen else ""))
        if chosen:
            ax.axvline(lr, color=colour, lw=1, ls="--", alpha=0.6)
    ax.set_xlabel("learning rate (head group)")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left", fontsize=9)
    return _save(fig, path)


def plot_history(history: list[dict[str, Any]], path) -> Path:
    """Loss and accuracy per epoch over both stages, train and val, with the stage boundary marked."""
    x = np.arange(1, len(history) + 1)
    heads = sum(1 for r in history if r["stage"] == "head")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, ax, label in (("loss", a1, "loss"), ("acc", a2, "top-1 accuracy")):
        ax.plot(x, [float(r[f"train_{key}"]) for r in history], "o-", label=f"train {label}", ms=4)
        ax.plot(x, [float(r[f"val_{key}"]) for r in history], "s-", label=f"val {label}", ms=4)
        if 0 < heads < len(history):
            ax.axvline(heads + 0.5, color="0.5", ls="--", lw=1)
            top = ax.get_xaxis_transform()  # x in data units, y in axes units
            ax.text(heads + 0.4, 0.98, "head only ", transform=top, va="top", ha="right", fontsize=8, color="0.4")
            ax.text(heads + 0.6, 0.98, " whole network", transform=top, va="top", fontsize=8, color="0.4")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    a1.legend(fontsize=9, loc="lower left")
    a2.legend(fontsize=9, loc="lower right")
    a2.set_ylim(min(0.0 + a2.get_ylim()[0], 1.0), 1.0)
    fig.suptitle("training history (train figures: augmented batches, loss with label smoothing)", fontsize=9)
    return _save(fig, path)


def plot_confusion(cm: np.ndarray, classes: list[str], path, title: str = "confusion matrix (val)") -> Path:
    """Row-normalised colours, counts written in each non-empty cell."""
    cm = np.asarray(cm)
    k = len(classes)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.55 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.6 else ("tab:red" if i != j else "black"))
    names = [c.replace("_", " ") for c in classes]
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return _save(fig, path)


def plot_mistakes(images: list[np.ndarray], captions: list[str], path, title: str = "most confident mistakes") -> Path:
    """A grid of photos (uint8 HWC) with 'true -> predicted (confidence)' captions."""
    n = max(len(images), 1)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.7 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    if not images:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
    for ax, img, cap in zip(axes.flat, images, captions):
        ax.imshow(img)
        ax.set_title(cap, fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)
