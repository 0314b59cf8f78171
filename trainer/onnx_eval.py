"""Run an exported model through the sorter's own code: `sorter.preprocess.preprocess` for the pixels
and `sorter.classify.Classifier` (its onnxruntime session) for the logits.

Used by `trainer export` (metrics, calibration and the review curve are measured on the exported graph
the sorter will run, not on the torch model) and by `trainer evaluate exports/NAME.onnx DATA`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sorter.classify import Classifier
from sorter.preprocess import PreprocessError, preprocess

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif"}


def photos_under(folder: str | os.PathLike) -> list[Path]:
    """Every photo file anywhere under `folder` (by extension, hidden files skipped), sorted."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def load_pixels(paths: list[Path], resize: int, crop: int, desc: str = "decode") -> tuple[np.ndarray, list[int]]:
    """preprocess() every path: (N, crop, crop, 3) uint8 and the indices of the paths that decoded."""
    arrays, keep, failed = [], [], 0
    for i, p in enumerate(tqdm(paths, desc=desc, unit="photo", leave=False, disable=None)):
        try:
            arrays.append(preprocess(p, resize, crop))
            keep.append(i)
        except PreprocessError as e:
            failed += 1
            if failed == 1:
                log.warning("skipping unreadable photo %s: %s", p, e)
    if failed > 1:
        log.warning("%d unreadable photos skipped in all", failed)
    if not arrays:
        return np.zeros((0, crop, crop, 3), np.uint8), keep
    return np.stack(arrays), keep


def run_logits(clf: Classifier, pixels: np.ndarray, flip: bool = False, batch: int = 32) -> np.ndarray:
    """Logits of (N, H, W, 3) pixels through the Classifier's session; `flip` mirrors them left-right."""
    out = []
    for i in range(0, len(pixels), batch):
        x = pixels[i:i + batch]
        out.append(clf.logits(x[:, :, ::-1] if flip else x))
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(clf.labels)))


def timed_pair(clf: Classifier, pixels: np.ndarray, repeats: int = 3) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Logits of the photos and of their mirror images, with the median wall time of each pass;
    the passes alternate so that both see the same machine load (one warm-up pass first)."""
    run_logits(clf, pixels[:8])
    times: list[list[float]] = [[], []]
    out = [None, None]
    for _ in range(repeats):
        for i, flip in enumerate((False, True)):
            t0 = time.perf_counter()
            out[i] = run_logits(clf, pixels, flip)
            times[i].append(time.perf_counter() - t0)
    return out[0], out[1], float(np.median(times[0])), float(np.median(times[1]))


def check_card_matches(card) -> None:
    """Refuse (ModelError, one line) a card whose model is not the one it describes: sha256, input and
    output names, and one output per label."""
    from sorter.card import verify_model
    from sorter.errors import ModelError

    from .onnx_graph import graph_io, output_width

    path = verify_model(card)
    inputs, outputs, _ = graph_io(path)
    want_in, want_out = card.onnx.get("input", "image"), card.onnx.get("output", "logits")
    if want_in not in inputs or want_out not in outputs:
        raise ModelError(f"model {path} does not match its card: graph has inputs {inputs} and outputs {outputs}, "
                         f"card says {want_in!r} -> {want_out!r}")
    width = output_width(path, want_out)
    if width is not None and width != len(card.labels):
        raise ModelError(f"model {path} does not match its card: {width} outputs but {len(card.labels)} labels")


def labelled_photos(root: str | os.PathLike, labels: list[str]) -> tuple[list[Path], list[int]]:
    """Photos of DATA/val/<class>/ (or DATA/<class>/ without val/), with their index in `labels`.
    A class folder the model has no label for is an error (its photos could never be right)."""
    from sorter.errors import UserError

    root = Path(root)
    base = root / "val" if (root / "val").is_dir() else root
    if not base.is_dir():
        raise UserError(f"dataset folder not found: {root}")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    if not classes:
        raise UserError(f"{base} has no class folders")
    stray = [c for c in classes if c not in labels]
    if stray:
        raise UserError(f"class '{stray[0]}' in {base} is not one of the model's labels "
                        "(pass photos of other species with --unknown)")
    paths, idx = [], []
    for c in classes:
        for p in photos_under(base / c):
            paths.append(p)
            idx.append(labels.index(c))
    return paths, idx


def evaluate_exported(model: str | os.PathLike, data: str | os.PathLike, unknown: str | os.PathLike | None = None,
                      threshold: float | None = None, batch_size: int = 32) -> dict:
    """Evaluate an exported model exactly as the sorter runs it (sorter.classify.Classifier on the
    photo files): top-1, per-class recall, ECE of the calibrated confidence, and, with photos of
    unknown species, the review rates and precision at the card's threshold."""
    from sorter.card import find_model, read_card

    from .evaluate import ece_of

    card = read_card(find_model(str(model)))
    check_card_matches(card)
    clf = Classifier(card, device="cpu", batch_size=batch_size)
    paths, truth = labelled_photos(data, card.labels)
    preds = list(tqdm(clf.classify(paths), total=len(paths), desc="evaluate", unit="photo", leave=False, disable=None))
    ok = [i for i, p in enumerate(preds) if p.error is None]
    if not ok:
        raise ValueError(f"no readable photos in {data}")
    y = np.array([truth[i] for i in ok])
    pred = np.array([card.labels.index(preds[i].label) for i in ok])
    conf = np.array([preds[i].confidence for i in ok])
    known_scores = np.array([preds[i].score for i in ok])
    report = {
        "model": str(card.path), "data": str(data), "photos": len(ok), "unreadable": len(preds) - len(ok),
        "top1": float((pred == y).mean()), "ece": ece_of(conf, pred == y),
        "per_class_recall": {c: float((pred[y == i] == i).mean()) for i, c in enumerate(card.labels) if (y == i).any()},
        "confusion": np.bincount(y * len(card.labels) + pred, minlength=len(card.labels) ** 2)
                       .reshape(len(card.labels), -1).tolist(),
    }
    if unknown is not None:
        u_preds = [p for p in clf.classify(photos_under(unknown)) if p.error is None]
        t = float(card.open_set.get("threshold", 0.0)) if threshold is None else threshold
        share = float(card.open_set.get("unknown_share", 0.1)) or 0.1
        fk = known_scores >= t
        fu = np.array([p.score >= t for p in u_preds])
        filed = (1 - share) * fk.mean() + share * fu.mean()
        report["open_set"] = {"score": card.open_set.get("score"), "threshold": t, "unknown_photos": len(u_preds),
                              "unknown_share": share, "review_known": float(1 - fk.mean()),
                              "review_unknown": float(1 - fu.mean()),
                              "precision": float((1 - share) * (fk & (pred == y)).mean() / filed) if filed else 1.0}
    return report
