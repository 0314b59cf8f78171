"""The review threshold: how precise automatic filing is, against how many photos go to review.

A photo is filed automatically when its open-set score (sorter.scores; higher = surer it is one of
the known species) is at least the threshold, and sent to review otherwise. Precision is the share of
filed photos that land in the right species folder; photos of unknown species (not one of the labels)
are wrong wherever they are filed. Unknown species make up `unknown_share` of an inbox, so

    precision(t) = (1-u) * P(known, correct, score >= t) / ((1-u) * P(known, score >= t) + u * P(unknown, score >= t))

with P(known, ...) measured on the validation photos and P(unknown, ...) on photos of other species.
Everything here is pure numpy: no model, no files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    review_known: float    # share of known-species photos sent to review
    review_unknown: float  # share of unknown-species photos sent to review (nan without unknowns)
    precision: float       # share of filed photos in the right folder (1.0 when nothing is filed)

    def card(self) -> dict:
        d = {k: (None if isinstance(v, float) and np.isnan(v) else round(float(v), 6)) for k, v in asdict(self).items()}
        return d


def review_curve(known_scores: np.ndarray, known_correct: np.ndarray, unknown_scores: np.ndarray | None,
                 unknown_share: float = 0.1) -> list[CurvePoint]:
    """One point per distinct threshold worth considering (every observed score), lowest first."""
    ks = np.asarray(known_scores, np.float64)
    kc = np.asarray(known_correct, bool)
    us = np.asarray(unknown_scores if unknown_scores is not None else [], np.float64)
    if len(ks) == 0 or len(ks) != len(kc):
        raise ValueError("need one correctness flag per known score, and at least one known score")
    if not 0.0 <= unknown_share < 1.0:
        raise ValueError("unknown_share must be in [0, 1)")
    u = unknown_share if len(us) else 0.0
    thresholds = np.unique(np.concatenate([ks, us]))
    # shares with score >= t, by sorting once: searchsorted(side="left") counts scores < t
    k_sorted = np.sort(ks)
    kc_sorted = np.sort(ks[kc])
    u_sorted = np.sort(us)
    filed_k = 1.0 - np.searchsorted(k_sorted, thresholds, "left") / len(ks)
    filed_kc = (len(kc_sorted) - np.searchsorted(kc_sorted, thresholds, "left")) / len(ks)
    filed_u = 1.0 - np.searchsorted(u_sorted, thresholds, "left") / len(us) if len(us) else np.zeros_like(thresholds)
    filed = (1 - u) * filed_k + u * filed_u
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(filed > 0, (1 - u) * filed_kc / filed, 1.0)
    review_u = 1.0 - filed_u if len(us) else np.full_like(thresholds, np.nan)
    return [CurvePoint(float(t), float(1 - fk), float(ru), float(p))
            for t, fk, ru, p in zip(thresholds, filed_k, review_u, precision)]


@dataclass(frozen=True)
class Choice:
    point: CurvePoint
    met: bool  # whether the target precision is reached at all


def choose_threshold(curve: list[CurvePoint], target_precision: float) -> Choice:
    """The operating point that reaches `target_precision` while sending the fewest known photos to
    review. When no threshold reaches it, the most precise point (fewest reviews among ties), met=False."""
    if not curve:
        raise ValueError("empty curve")
    ok = [p for p in curve if p.precision >= target_precision]
    if ok:
        return Choice(min(ok, key=lambda p: (p.review_known, p.threshold)), True)
    return Choice(max(curve, key=lambda p: (p.precision, -p.review_known)), False)


def between(curve: list[CurvePoint], point: CurvePoint) -> float:
    """A threshold that makes the same decisions as `point` on the measured photos, but sits halfway
    to the next lower observed score, so that rounding or tiny numerical differences (float32 vs int8
    kernels, another onnxruntime) do not flip the photos on the edge."""
    i = curve.index(point)
    return point.threshold if i == 0 else (curve[i - 1].threshold + point.threshold) / 2.0


def point_at(curve: list[CurvePoint], threshold: float) -> CurvePoint:
    """The curve's point for a given threshold (the first with threshold >= the given one)."""
    for p in curve:
        if p.threshold >= threshold:
            return p
    return curve[-1]


def thin(curve: list[CurvePoint], max_points: int = 200) -> list[CurvePoint]:
    """At most `max_points` of the curve (evenly in review_known), keeping the ends, for the card."""
    if len(curve) <= max_points:
        return list(curve)
    idx = np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))
    return [curve[i] for i in idx]


def held_out_estimate(known_scores: np.ndarray, known_correct: np.ndarray, unknown_scores: np.ndarray,
                      groups: list[str], unknown_share: float, target_precision: float) -> dict:
    """An honest estimate for species the threshold never saw: for each unknown species (group), the
    threshold is chosen without it and measured on it alone. Returns the per-species figures and
    their means (review_known, review_unknown, precision at each held-out threshold)."""
    groups_a = np.asarray(groups)
    us = np.asarray(unknown_scores, np.float64)
    per = {}
    for g in sorted(set(groups)):
        rest, held = us[groups_a != g], us[groups_a == g]
        if len(rest) == 0:
            continue
        t = choose_threshold(review_curve(known_scores, known_correct, rest, unknown_share), target_precision).point.threshold
        filed_k = float((np.asarray(known_scores) >= t).mean())
        filed_kc = float(((np.asarray(known_scores) >= t) & np.asarray(known_correct, bool)).mean())
        filed_u = float((held >= t).mean())
        filed = (1 - unknown_share) * filed_k + unknown_share * filed_u
        precision = (1 - unknown_share) * filed_kc / filed if filed > 0 else 1.0
        per[g] = {"threshold": round(t, 6), "review_known": round(1 - filed_k, 4),
                  "review_unknown": round(1 - filed_u, 4), "precision": round(precision, 4)}
    if not per:
        return {}
    mean = {k: round(float(np.mean([v[k] for v in per.values()])), 4) for k in ("review_known", "review_unknown", "precision")}
    return {"protocol": "leave one unknown species out: threshold chosen without it, measured on it", **mean,
            "per_species": per}
