"""`trainer export RUN --name NAME`: a checkpoint becomes exports/NAME.onnx + exports/NAME.json.

Steps, each measured on the exported graph through the sorter's own code:
 1. ONNX graph (uint8 RGB NCHW "image" -> "logits", normalisation inside, dynamic batch); onnx.checker.
 2. Parity: every validation photo through the trainer's eval transform + torch, and through
    sorter.preprocess + onnxruntime: identical top-1 and probabilities within 1e-3, or the export fails.
 3. Optionally int8 (trainer.quantize): accuracy change and speed-up against fp32, measured here;
    `--int8` writes NAME.int8.onnx beside NAME.onnx, `--int8-only` ships the int8 graph as NAME.onnx.
 4. Temperature scaling on the validation logits of the shipped graph (trainer.calibrate).
 5. The review curve on validation photos + photos of unknown species, and the threshold that reaches
    the target precision (trainer.openset); saved as a plot.
 6. Flip test-time augmentation, measured: accuracy gained against time spent.
 7. The model card; files are written into a temporary folder and renamed into place (model first,
    card last: a reader never sees a card without its model).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sorter.card import ModelCard, check_labels, read_card, sha256_file, write_card
from sorter.classify import Classifier
from sorter.errors import ModelError, UserError
from sorter.scores import SCORES, calibrated_probs, score

from . import onnx_eval
from .calibrate import calibrate
from .checkpoint import load_checkpoint, model_from_checkpoint
from .export_sections import int8_open_set, int8_section, open_set_section, tta_section
from .data import data_fingerprint, discover
from .model import MEAN, STD
from .device import Machine
from .evaluate import metrics, predict_logits
from .onnx_graph import INPUT_NAME, OPSET, OUTPUT_NAME, to_onnx_bytes
from .onnx_eval import check_card_matches

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PARITY_ATOL = 1e-3


class ExportError(UserError):
    """The run cannot be exported as asked (one line)."""


@dataclass
class ExportOptions:
    name: str
    out: Path = Path("exports")
    data: Path | None = None            # labelled dataset (val split: parity, calibration, metrics)
    unknown: Path | None = None         # photos of species the model does not know (review curve)
    unknown_share: float = 0.1          # share of unknown species in an inbox
    target_precision: float = 0.98      # the recommended threshold reaches this precision
    score: str = "msp"                  # open-set score (sorter.scores.SCORES), with the fitted temperature
    int8: bool = False                  # also write NAME.int8.onnx, measured against fp32
    int8_only: bool = False             # ship the int8 graph as NAME.onnx (no fp32 file)
    quant_format: str = "qdq"           # qdq | qoperator
    calib_photos: int = 256             # training photos that calibrate the int8 ranges
    force: bool = False
    command: str = ""                   # the command line, for provenance


@dataclass
class ExportResult:
    card_path: Path
    card: ModelCard
    lines: list[str] = field(default_factory=list)  # the human summary the CLI prints


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                             timeout=10, cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def check_targets(opts: ExportOptions) -> tuple[Path, Path]:
    """exports/NAME.onnx and NAME.json, refusing names that are unsafe or would overwrite a model."""
    if not NAME_RE.match(opts.name) or opts.name.endswith((".onnx", ".json")):
        raise ExportError(f"model name {opts.name!r} must be letters, digits, '_', '-' or '.', without an extension")
    if opts.score not in SCORES:
        raise ExportError(f"unknown open-set score {opts.score!r} (known: {', '.join(SCORES)})")
    if not 0.0 <= opts.unknown_share < 1.0 or not 0.0 < opts.target_precision <= 1.0:
        raise ExportError("unknown share must be in [0, 1) and target precision in (0, 1]")
    onnx_path, card_path = opts.out / f"{opts.name}.onnx", opts.out / f"{opts.name}.json"
    taken = [p for p in (onnx_path, card_path, opts.out / f"{opts.name}.int8.onnx") if p.exists()]
    if taken and not opts.force:
        raise ExportError(f"{taken[0]} already exists: choose another --name or pass --force to replace it")
    return onnx_path, card_path


def parity(torch_logits: np.ndarray, onnx_logits: np.ndarray) -> tuple[int, float]:
    """(photos whose top-1 differs, largest probability difference) between the two paths."""
    p_t, p_o = calibrated_probs(torch_logits), calibrated_probs(onnx_logits)
    return int((p_t.argmax(1) != p_o.argmax(1)).sum()), float(np.abs(p_t - p_o).max())


def torch_eval_logits(model, pixels: np.ndarray) -> np.ndarray:
    """The trainer's eval path (trainer.evaluate.predict_logits: normalize + model) in fp32 on the CPU."""
    return predict_logits(model, pixels, Machine(torch.device("cpu"), bf16=False))


def card_metrics(logits: np.ndarray, labels: np.ndarray, classes: list[str], temperature: float) -> dict:
    """trainer.evaluate.metrics of the calibrated logits (top-1 is unchanged by the temperature; NLL and
    ECE are those of the confidence the sorter reports), plus per-class recall/precision flattened."""
    m = metrics(logits / temperature, labels, classes)
    return {"photos": m["n"], "top1": round(m["top1"], 4), "nll": round(m["nll"], 4), "ece": round(m["ece"], 4),
            "per_class_recall": {c: v["recall"] for c, v in m["per_class"].items()},
            "per_class_precision": {c: v["precision"] for c, v in m["per_class"].items()},
            "confusion": m["confusion"]}


def dataset_of(run: str | os.PathLike, ckpt: dict) -> str | None:
    """The dataset folder the run was trained on, from the run folder's config.json."""
    run = Path(run)
    cfg = (run if run.is_dir() else run.parent) / "config.json"
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None
    return data.get("data") if isinstance(data, dict) else None


def export_run(run: str | os.PathLike, opts: ExportOptions) -> ExportResult:
    onnx_path, card_path = check_targets(opts)
    ckpt = load_checkpoint(run)
    classes = list(ckpt["classes"])
    try:
        check_labels(classes)
    except ModelError as e:
        raise ExportError(f"checkpoint classes cannot be model labels: {e}") from None
    model = model_from_checkpoint(ckpt)
    if model.fc.out_features != len(classes):
        raise ExportError(f"checkpoint has {len(classes)} classes but its model has {model.fc.out_features} outputs")
    resize, crop = int(ckpt["input"]["resize"]), int(ckpt["input"]["crop"])

    data = opts.data or dataset_of(run, ckpt)
    if not data:
        raise ExportError("this checkpoint does not name its dataset: pass --data DIR (the folder it was trained on)")
    ds = discover(data, float(ckpt["config"].get("val_fraction", 0.2)), int(ckpt["config"].get("seed", 0)))
    if ds.classes != classes:
        raise ExportError(f"classes in {data} ({len(ds.classes)}) differ from the checkpoint's ({len(classes)}): "
                          "export with the dataset the model was trained on")
    opts.out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(dir=opts.out, prefix=f".export-{opts.name}-") as tmp_s:
        tmp = Path(tmp_s)
        # 1. the graph, and a provisional card so that the sorter's Classifier can load it
        fp32 = tmp / f"{opts.name}.fp32.onnx"
        fp32.write_bytes(to_onnx_bytes(model, crop))
        card = ModelCard(
            name=opts.name, labels=classes,
            input={"resize": resize, "crop": crop, "color": "RGB", "dtype": "uint8", "layout": "NCHW",
                   "mean": list(MEAN), "std": list(STD)},
            onnx={"file": fp32.name, "sha256": sha256_file(fp32), "input": INPUT_NAME,
                  "output": OUTPUT_NAME, "opset": OPSET, "precision": "fp32"},
        )
        write_card(card, tmp / card_path.name)
        clf = Classifier(read_card(tmp / card_path.name), device="cpu")

        # 2. parity on every validation photo
        val_px, keep = onnx_eval.load_pixels(ds.val.paths, resize, crop, "val photos")
        labels = np.asarray(ds.val.labels)[keep]
        if len(labels) == 0:
            raise ExportError(f"no readable validation photos in {data}")
        val_logits = onnx_eval.run_logits(clf, val_px)
        flips, diff = parity(torch_eval_logits(model, val_px), val_logits)
        if flips or diff > PARITY_ATOL:
            raise ExportError(f"parity check failed: ONNX vs torch differ on {flips} top-1 of {len(labels)} "
                              f"photos, max probability difference {diff:.2e} (limit {PARITY_ATOL:g})")
        lines.append(f"parity: {len(labels)} val photos, same top-1, max probability difference {diff:.1e}")

        # 3. int8: measured against fp32; with --int8-only it becomes the model the card describes
        int8_tmp = tmp / f"{opts.name}.int8.onnx"
        if opts.int8 or opts.int8_only:
            card.int8, summary = int8_section(fp32, int8_tmp, ds, resize, crop, val_px, labels, val_logits, opts)
            lines.append(summary)
        if opts.int8_only:
            int8_tmp.replace(tmp / onnx_path.name)
            card.int8["file"] = onnx_path.name
            card.onnx.update(precision="int8", fp32_sha256=card.onnx["sha256"])
            fp32.unlink()
        else:
            fp32.replace(tmp / onnx_path.name)
        card.onnx.update(file=onnx_path.name, sha256=sha256_file(tmp / onnx_path.name))
        write_card(card, tmp / card_path.name)
        clf = Classifier(read_card(tmp / card_path.name), device="cpu")
        val_logits = onnx_eval.run_logits(clf, val_px)  # everything below measures the shipped graph

        # 4. calibration and metrics
        cal = calibrate(val_logits, labels)
        card.calibration = cal.card()
        card.metrics = card_metrics(val_logits, labels, classes, cal.temperature)
        card.metrics["split"] = "val (seeded split of train)" if ds.split_from_train else "val"
        lines.append(f"val top-1 {card.metrics['top1']:.2%} on {len(labels)} photos ({card.onnx['precision']}); "
                     f"temperature {cal.temperature:.3f}, ECE {cal.ece_before:.3f} -> {cal.ece_after:.3f}")

        # 5. open set: the review curve and the recommended threshold
        unk_logits, unk_px, groups = None, None, None
        if opts.unknown:
            unk_paths = onnx_eval.photos_under(opts.unknown)
            if not unk_paths:
                raise ExportError(f"no photos under --unknown {opts.unknown}")
            unk_px, keep_u = onnx_eval.load_pixels(unk_paths, resize, crop, "unknown photos")
            unk_logits = onnx_eval.run_logits(clf, unk_px)
            # species = first folder below --unknown (photos directly in it form one group)
            rel = [unk_paths[i].relative_to(opts.unknown).parts for i in keep_u]
            groups = [parts[0] if len(parts) > 1 else "." for parts in rel]
        card.open_set, summary = open_set_section(opts, val_logits, labels, unk_logits, cal.temperature, groups)
        lines.append(summary)

        # 6. flip TTA, measured
        card.tta, summary = tta_section(clf, val_px, labels, opts, unk_px, cal.temperature)
        lines.append(summary)
        if opts.int8 and not opts.int8_only:  # the int8 copy gets its own threshold
            card.int8["open_set"] = int8_open_set(int8_tmp, val_px, labels, unk_px, cal.temperature, opts)

        card.provenance = {
            "checkpoint": str(Path(run)), "data": str(Path(data)),
            "data_fingerprint": ckpt.get("data_fingerprint") or data_fingerprint(ds),
            "data_fingerprint_now": data_fingerprint(ds),
            "weights": ckpt.get("weights"), "others": (ckpt.get("config") or {}).get("others"),
            "unknown": str(opts.unknown) if opts.unknown else None,
            "command": opts.command or " ".join(sys.argv),
            "commit": git_commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint_metrics": ckpt.get("metrics"),
        }
        write_card(card, tmp / card_path.name)
        check_card_matches(read_card(tmp / card_path.name))

        from .openset_plot import plot_review_curve
        plot_path = opts.out / f"{opts.name}.review.png"
        plot_review_curve(card.open_set, tmp / plot_path.name, title=f"{opts.name}: review curve")

        # 7. into place: models first, the card last (each file on disk before its rename)
        for f in tmp.iterdir():
            fsync_file(f)
        os.replace(tmp / onnx_path.name, onnx_path)
        if opts.int8 and not opts.int8_only:
            os.replace(int8_tmp, opts.out / int8_tmp.name)
        elif (opts.out / int8_tmp.name).exists():
            (opts.out / int8_tmp.name).unlink()  # --force: an old int8 model would no longer match
        os.replace(tmp / plot_path.name, plot_path)
        os.replace(tmp / card_path.name, card_path)
    lines.append(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB), {card_path}, {plot_path}")
    return ExportResult(card_path, read_card(card_path), lines)
