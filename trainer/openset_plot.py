"""The review curve as a PNG: precision and review rates against the threshold, operating point marked."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_review_curve(open_set: dict, path: str | os.PathLike, title: str = "review curve") -> Path:
    """Left: precision against the share of known photos sent to review (the trade-off a user picks
    from). Right: review rates of known and unknown photos, and precision, against the threshold."""
    curve = open_set["curve"]
    t = [p["threshold"] for p in curve]
    rk = [p["review_known"] for p in curve]
    ru = [p["review_unknown"] for p in curve]
    pr = [p["precision"] for p in curve]
    chosen = open_set["at_threshold"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot([100 * x for x in rk], [100 * x for x in pr], color="C0")
    a.axhline(100 * open_set["target_precision"], color="grey", ls="--", lw=0.8, label="target precision")
    a.plot(100 * chosen["review_known"], 100 * chosen["precision"], "o", color="C3", label="chosen threshold")
    a.set_xlabel("known-species photos sent to review (%)")
    a.set_ylabel(f"precision of filed photos (%), unknown share {open_set['unknown_share']:.0%}")
    a.set_ylim(max(0, 100 * min(pr) - 2), 100.5)
    a.grid(alpha=0.3)
    a.legend(loc="lower right")
    b.plot(t, [100 * x for x in rk], label="known sent to review", color="C0")
    if any(x is not None for x in ru):
        b.plot(t, [100 * x if x is not None else float("nan") for x in ru], label="unknown sent to review", color="C1")
    b.plot(t, [100 * x for x in pr], label="precision", color="C2")
    b.axvline(open_set["threshold"], color="C3", ls="--", lw=0.8, label=f"threshold {open_set['threshold']:.3g}")
    b.set_xlabel(f"threshold on {open_set['score']}")
    b.set_ylabel("%")
    b.grid(alpha=0.3)
    b.legend(loc="center right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
