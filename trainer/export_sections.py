"""The measured sections of a model card: open set (review curve + threshold), flip TTA, int8.

Each function measures on the exported graph (through sorter code or an onnxruntime session) and
returns (card section, one summary line).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from sorter.card import sha256_file
from sorter.classify import Classifier
from sorter.scores import SCORES, score

from . import onnx_eval
from .openset import between, choose_threshold, held_out_estimate, review_curve, thin
from .quantize import compare_speed, quantize_int8, session

CURVE_POINTS = 400  # at most this many curve points are kept in the card


def open_set_section(opts, val_logits: np.ndarray, labels: np.ndarray, unk_logits: np.ndarray | None,
                     temperature: float, unk_groups: list[str] | None = None) -> tuple[dict, str]:
    known = score(opts.score, val_logits, temperature)
    correct = val_logits.argmax(1) == labels
    unknown = score(opts.score, unk_logits, temperature) if unk_logits is not None else None
    curve = review_curve(known, correct, unknown, opts.unknown_share)
    choice = choose_threshold(curve, opts.target_precision)
    p = choice.point
    section = {
        "score": opts.score, "threshold": between(curve, p), "target_precision": opts.target_precision,
        "unknown_share": opts.unknown_share if unknown is not None else 0.0, "target_met": choice.met,
        "at_threshold": p.card(), "known_photos": int(len(known)),
        "unknown_photos": int(len(unknown)) if unknown is not None else 0,
        "unknown_source": str(opts.unknown) if opts.unknown else None,
        "curve": [q.card() for q in thin(curve, CURVE_POINTS)],
    }
    if unknown is not None:
        section["compared"] = compare_scores(val_logits, correct, unk_logits, temperature, opts)
    if unknown is not None and unk_groups and len(set(unk_groups)) > 1:
        section["held_out"] = held_out_estimate(known, correct, unknown, unk_groups, opts.unknown_share,
                                                opts.target_precision)
    ru = "n/a (no --unknown photos)" if unknown is None else f"{p.review_unknown:.1%}"
    line = (f"open set ({opts.score}): threshold {p.threshold:.4g} -> precision {p.precision:.2%} "
            f"(target {opts.target_precision:.0%}{'' if choice.met else ', NOT reached'}), review {p.review_known:.1%} "
            f"of known and {ru} of unknown photos")
    if "held_out" in section:
        h = section["held_out"]
        line += (f"; unknown species held out in turn: review {h['review_known']:.1%} known, "
                 f"{h['review_unknown']:.1%} unknown, precision {h['precision']:.2%}")
    return section, line


def compare_scores(val_logits: np.ndarray, correct: np.ndarray, unk_logits: np.ndarray, temperature: float,
                   opts) -> dict:
    """Every score in sorter.scores at its own recommended threshold, so the card shows why its score
    was chosen: {score: {review_known, review_unknown, precision, target_met}}."""
    out = {}
    for name in SCORES:
        curve = review_curve(score(name, val_logits, temperature), correct, score(name, unk_logits, temperature),
                             opts.unknown_share)
        choice = choose_threshold(curve, opts.target_precision)
        out[name] = {**choice.point.card(), "threshold": between(curve, choice.point), "target_met": choice.met}
    return out


def tta_section(clf: Classifier, val_px: np.ndarray, labels: np.ndarray, opts, unk_px: np.ndarray | None,
                temperature: float) -> tuple[dict, str]:
    """Flip TTA (mean of the logits of the photo and its mirror image) against the plain model."""
    plain, flipped, t_plain, t_flip = onnx_eval.timed_pair(clf, val_px)
    both = (plain + flipped) / 2.0
    top1 = float((plain.argmax(1) == labels).mean())
    top1_tta = float((both.argmax(1) == labels).mean())
    section = {"flip": bool(top1_tta > top1), "combine": "mean of logits", "top1": round(top1, 4),
               "top1_flip": round(top1_tta, 4), "top1_gain": round(top1_tta - top1, 4),
               "time_factor": round((t_plain + t_flip) / t_plain, 3)}
    if unk_px is not None:
        unk = (onnx_eval.run_logits(clf, unk_px) + onnx_eval.run_logits(clf, unk_px, flip=True)) / 2.0
        curve = review_curve(score(opts.score, both, temperature), both.argmax(1) == labels,
                             score(opts.score, unk, temperature), opts.unknown_share)
        choice = choose_threshold(curve, opts.target_precision)
        section["open_set"] = {"threshold": between(curve, choice.point), "target_met": choice.met,
                               "at_threshold": choice.point.card()}
    line = (f"flip TTA: top-1 {top1:.2%} -> {top1_tta:.2%} ({top1_tta - top1:+.2%}) for "
            f"{section['time_factor']:.2f}x the time; {'recommended' if section['flip'] else 'off by default'}")
    return section, line


def int8_section(fp32: Path, out: Path, ds, resize: int, crop: int, val_px: np.ndarray, labels: np.ndarray,
                 val_logits: np.ndarray, opts) -> tuple[dict, str]:
    """Quantize (calibrated on training photos), then measure accuracy change and speed-up here."""
    paths = list(ds.train.paths)
    random.Random(0).shuffle(paths)
    calib_px, _ = onnx_eval.load_pixels(sorted(paths[:opts.calib_photos]), resize, crop, "int8 calibration")
    formats = [opts.quant_format] + [f for f in ("qdq", "qoperator") if f != opts.quant_format]
    tried = []
    best = None
    for fmt in formats:
        cand = out.with_name(f".{fmt}.{out.name}")
        t0 = time.perf_counter()
        quantize_int8(fp32, cand, calib_px, fmt=fmt)
        quant_s = time.perf_counter() - t0
        speed = compare_speed(fp32, cand, val_px[:32])
        tried.append({"format": fmt, "speedup": round(speed.speedup, 3), "quantize_seconds": round(quant_s, 1)})
        if best is None or speed.speedup > best[1].speedup:
            best = (fmt, speed, cand)
        if speed.speedup >= 1.2:  # fast enough: no need to try the other format
            break
    fmt, speed, cand = best
    cand.replace(out)
    for f in out.parent.glob(f".*.{out.name}"):
        f.unlink()
    sess = session(out)
    logits8 = np.concatenate([sess.run(None, {"image": np.ascontiguousarray(val_px[i:i + 32].transpose(0, 3, 1, 2))})[0]
                              for i in range(0, len(val_px), 32)])
    top1 = float((val_logits.argmax(1) == labels).mean())
    top1_8 = float((logits8.argmax(1) == labels).mean())
    section = {"file": out.name, "sha256": sha256_file(out), "format": fmt, "per_channel": True,
               "weights": "int8", "activations": "uint8", "calibration_photos": int(len(calib_px)),
               "top1_fp32": round(top1, 4), "top1_int8": round(top1_8, 4), "top1_change": round(top1_8 - top1, 4),
               "agreement": round(float((logits8.argmax(1) == val_logits.argmax(1)).mean()), 4),
               "speedup": round(speed.speedup, 3), "fp32_ms": round(speed.fp32_s * 1e3, 1),
               "int8_ms": round(speed.int8_s * 1e3, 1), "batch": speed.batch, "repeats": speed.repeats,
               "tried": tried, "size_mb": round(out.stat().st_size / 1e6, 2)}
    line = (f"int8 ({fmt}): top-1 {top1:.2%} -> {top1_8:.2%} ({top1_8 - top1:+.2%}), speed-up {speed.speedup:.2f}x "
            f"(median of {speed.repeats}, batch {speed.batch}: fp32 {speed.fp32_s * 1e3:.0f} ms, int8 "
            f"{speed.int8_s * 1e3:.0f} ms)" + ("" if len(tried) == 1 else f"; tried {tried}"))
    return section, line


def int8_open_set(int8: Path, val_px: np.ndarray, labels: np.ndarray, unk_px: np.ndarray | None,
                  temperature: float, opts) -> dict:
    """The int8 copy's own recommended threshold (its scores differ slightly from the fp32 model's), with
    the card's temperature: {threshold, target_met, at_threshold}."""
    sess = session(int8)

    def logits(px: np.ndarray) -> np.ndarray:
        return np.concatenate([sess.run(None, {"image": np.ascontiguousarray(px[i:i + 32].transpose(0, 3, 1, 2))})[0]
                               for i in range(0, len(px), 32)]).astype(np.float64)

    lv = logits(val_px)
    lu = logits(unk_px) if unk_px is not None and len(unk_px) else None
    curve = review_curve(score(opts.score, lv, temperature), lv.argmax(1) == labels,
                         score(opts.score, lu, temperature) if lu is not None else None, opts.unknown_share)
    choice = choose_threshold(curve, opts.target_precision)
    return {"threshold": between(curve, choice.point), "target_met": choice.met, "at_threshold": choice.point.card()}
