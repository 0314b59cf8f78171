"""The plan: what should happen to each photo group. Pure: no filesystem access.

Given groups, their predictions, file hashes, a threshold and a duplicate lookup, `plan_batch` returns
one `Decision` per group:
    duplicate  every photo in the group is byte-identical to one already in the library (or filed
               earlier in this batch): left in place and reported
    rejected   the primary photo could not be read: library/_rejected/, with the reason
    review     the open-set score is below the threshold: library/_review/
    moved      library/<Species>/
`apply.py` turns decisions into journalled moves; a dry run only reports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .card import ModelCard
from .classify import Prediction
from .errors import UserError
from .scan import Group

REVIEW = "_review"
REJECTED = "_rejected"


@dataclass
class Decision:
    group: Group
    action: str                       # moved | review | rejected | duplicate | skipped
    folder: str | None = None         # library sub-folder; None = left in place
    species: str = ""
    reason: str = ""
    prediction: Prediction | None = None
    duplicate_of: dict[Path, str] = field(default_factory=dict)  # file -> identical library file


def resolve_threshold(card: ModelCard, threshold: float | None = None,
                      target_precision: float | None = None, open_set: dict | None = None) -> tuple[float, str]:
    """The review threshold and a phrase saying where it came from. `open_set` is the card's section
    for the model variant in use (default: the card's main one)."""
    open_set = card.open_set if open_set is None else open_set
    if threshold is not None:
        return float(threshold), "--threshold"
    if target_precision is not None:
        curve = open_set.get("curve")
        if not curve:
            raise UserError(f"--target-precision: model card {card.name!r} has no open_set.curve")
        try:
            points = sorted((float(p["threshold"]), float(p["precision"])) for p in curve)
        except (KeyError, TypeError, ValueError):
            raise UserError(f"model card {card.name!r}: open_set.curve entries need threshold and precision") from None
        for t, precision in points:
            if precision >= target_precision:
                return t, f"precision >= {target_precision:g} on the card's curve (precision {precision:.3f})"
        best = max(p for _, p in points)
        raise UserError(f"--target-precision {target_precision:g}: the model reaches at most {best:.3f} on its curve")
    try:
        return float(open_set["threshold"]), "the model card's recommendation"
    except (KeyError, TypeError, ValueError):
        raise UserError(f"model card {card.name!r} has no open_set.threshold; pass --threshold") from None


def decide(group: Group, pred: Prediction | None, hashes: dict[Path, str], threshold: float,
           find_duplicate: Callable[[str], str | None]) -> Decision:
    photos = group.photos
    dups = {p: find_duplicate(hashes[p]) for p in photos if hashes.get(p)}
    if photos and len(dups) == len(photos) and all(dups.values()):
        first = dups[group.primary]
        return Decision(group, "duplicate", reason=f"identical to {first}", duplicate_of=dict(dups), prediction=pred)
    if pred is None or pred.error or pred.label is None:
        why = pred.error if pred and pred.error else "could not be classified"
        return Decision(group, "rejected", REJECTED, reason=why, prediction=pred)
    if math.isnan(pred.score) or pred.score < threshold:
        return Decision(group, "review", REVIEW, species=pred.label, prediction=pred,
                        reason=f"score {pred.score:.4f} below threshold {threshold:.4f}")
    return Decision(group, "moved", pred.label, species=pred.label, prediction=pred)


def plan_batch(groups: list[Group], preds: list[Prediction | None], hashes: dict[Path, str], threshold: float,
               find_duplicate: Callable[[str], str | None]) -> list[Decision]:
    """Decisions for a batch; a photo repeated within the batch is a duplicate of its first copy."""
    planned: dict[str, str] = {}

    def lookup(sha: str) -> str | None:
        return find_duplicate(sha) or planned.get(sha)

    out = []
    for group, pred in zip(groups, preds):
        d = decide(group, pred, hashes, threshold, lookup)
        if d.action != "duplicate":
            for p in group.photos:
                if hashes.get(p):
                    planned.setdefault(hashes[p], f"{p} (filed in this run)")
        out.append(d)
    return out
