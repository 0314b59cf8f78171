"""The model card: `exports/NAME.json` beside `exports/NAME.onnx`.

Written by `trainer export`, read by the sorter. The sorter trusts nothing in it blindly: labels must be
safe folder names, and the .onnx file must hash to the card's sha256.

Schema (version 1), keys in order:
    format            "birdsort-model-card"
    version           1
    name              model name (file stem)
    labels            ordered class names; each is a library folder name
    input             {resize, crop, color: "RGB", dtype: "uint8", layout: "NCHW", mean, std}
                      resize = shorter side in pixels, then centre crop to crop x crop; mean/std are
                      already applied inside the graph (recorded for reference only)
    onnx              {file, sha256, input, output, opset, precision: fp32|int8, fp32_sha256 (int8 only)}
    int8              optional {file, sha256, top1_fp32, top1_int8, speedup, ...}: a quantized copy
                      beside the fp32 model; also format (qdq|qoperator), top1_change, agreement (share
                      of photos with the fp32 top-1), fp32_ms/int8_ms per batch, tried formats, and
                      open_set {threshold, target_met, at_threshold}: the threshold to use with the int8
                      copy. When onnx.precision is "int8" the shipped model is the int8 one (int8.file ==
                      onnx.file) and every other section was measured on it
    calibration       {temperature, ece_before, ece_after, nll_before, nll_after, method}
    open_set          {score, threshold, unknown_share, curve: [...], target_precision, ...}
                      score names a function in sorter.scores of (logits, temperature); a photo goes to
                      review when score < threshold. curve: [{threshold, review_known, review_unknown,
                      precision}] ascending in threshold, the points the threshold was chosen from
                      (precision counts unknown-species photos filed anywhere as wrong, weighted to
                      unknown_share of the inbox). Also: target_met, at_threshold (the chosen curve point;
                      threshold itself lies halfway from it to the next lower observed score),
                      known_photos, unknown_photos, unknown_source, held_out (leave-one-unknown-
                      species-out estimate of the same figures)
    tta               optional {flip: bool (recommended), combine, top1, top1_flip, top1_gain,
                      time_factor, open_set: {threshold, target_met, at_threshold}}: with flip TTA the
                      logits are the mean of the photo's and its mirror image's, and the threshold is
                      tta.open_set.threshold
    metrics           validation metrics (top1, per_class_recall, per_class_precision, ece, photos, split)
    provenance        {data_fingerprint, weights, command, commit, date, ...}

Keys may gain sub-keys within version 1; readers ignore what they do not know.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError

CARD_FORMAT = "birdsort-model-card"
CARD_VERSION = 1

# names the library reserves for itself, and names Windows refuses as file names
RESERVED = {"_review", "_rejected", "reports", ".sorter"}
WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
MAX_LABEL_LEN = 100


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    # one reused buffer, unbuffered reads straight into it: no allocation (and page faults) per block,
    # which costs a fifth of the hashing time on camera-sized files
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def check_label(label: Any) -> str | None:
    """Why `label` is not a safe species folder name, or None if it is."""
    if not isinstance(label, str):
        return f"label {label!r} is not a string"
    if not label.strip():
        return "a label is empty"
    if label != label.strip():
        return f"label {label!r} has leading or trailing spaces"
    if len(label) > MAX_LABEL_LEN:
        return f"label {label[:20]!r}... is longer than {MAX_LABEL_LEN} characters"
    if "/" in label or "\\" in label or label in (".", "..") or ".." in label:
        return f"label {label!r} could escape the library (path separator or '..')"
    if label.startswith(".") or label.startswith("_"):
        return f"label {label!r} starts with '.' or '_' (reserved for the library's own folders)"
    if label in RESERVED or label.lower() in {r.lower() for r in RESERVED}:
        return f"label {label!r} is a name the library reserves"
    if label.split(".")[0].upper() in WINDOWS_RESERVED:
        return f"label {label!r} is a reserved device name on Windows"
    if any(unicodedata.category(c).startswith("C") for c in label) or re.search(r'[<>:"|?*]', label):
        return f"label {label!r} contains control or reserved characters"
    return None


def check_labels(labels: Any) -> list[str]:
    if not isinstance(labels, list) or not labels:
        raise ModelError("model card has no labels")
    seen: set[str] = set()
    for label in labels:
        why = check_label(label)
        if why:
            raise ModelError(f"model card refused: {why}")
        key = unicodedata.normalize("NFC", label).casefold()
        if key in seen:
            raise ModelError(f"model card refused: duplicate label {label!r}")
        seen.add(key)
    return list(labels)


@dataclass
class ModelCard:
    name: str
    labels: list[str]
    input: dict[str, Any]
    onnx: dict[str, Any]
    calibration: dict[str, Any] = field(default_factory=lambda: {"temperature": 1.0})
    open_set: dict[str, Any] = field(default_factory=lambda: {"score": "msp", "threshold": 0.5})
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    int8: dict[str, Any] | None = None
    tta: dict[str, Any] | None = None
    path: Path | None = None  # where the card was read from (not serialised)

    # --- convenience accessors -------------------------------------------------------------
    @property
    def resize(self) -> int:
        return int(self.input["resize"])

    @property
    def crop(self) -> int:
        return int(self.input["crop"])

    @property
    def temperature(self) -> float:
        return float(self.calibration.get("temperature", 1.0))

    @property
    def onnx_path(self) -> Path:
        base = self.path.parent if self.path else Path(".")
        return base / self.onnx["file"]

    def to_json(self) -> str:
        d = {"format": CARD_FORMAT, "version": CARD_VERSION}
        d.update({k: v for k, v in asdict(self).items() if k != "path" and v is not None})
        return json.dumps(d, indent=2, ensure_ascii=False) + "\n"


def write_card(card: ModelCard, path: str | os.PathLike) -> None:
    """Write the card atomically (temporary file, fsync, rename)."""
    path = Path(path)
    check_labels(card.labels)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(card.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_card(path: str | os.PathLike) -> ModelCard:
    """Read and validate a card (structure and labels). Does not hash the model: see `verify_model`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model card not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"model card {path} is unreadable: {e}") from None
    if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
        raise ModelError(f"{path} is not a birdsort model card")
    if data.get("version") != CARD_VERSION:
        raise ModelError(f"{path}: model card version {data.get('version')!r} is not supported (need {CARD_VERSION})")
    try:
        card = ModelCard(
            name=str(data["name"]),
            labels=check_labels(data["labels"]),
            input=dict(data["input"]),
            onnx=dict(data["onnx"]),
            calibration=dict(data.get("calibration") or {"temperature": 1.0}),
            open_set=dict(data.get("open_set") or {"score": "msp", "threshold": 0.5}),
            metrics=dict(data.get("metrics") or {}),
            provenance=dict(data.get("provenance") or {}),
            int8=data.get("int8"),
            tta=data.get("tta"),
            path=path,
        )
        resize, crop = int(card.input["resize"]), int(card.input["crop"])
        file = str(card.onnx["file"])
        str(card.onnx["sha256"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"model card {path} is missing or has a bad field: {e}") from None
    if not (16 <= crop <= resize <= 4096):
        raise ModelError(f"model card {path}: bad input geometry resize={resize} crop={crop}")
    if Path(file).name != file:
        raise ModelError(f"model card {path}: onnx file must be a plain name beside the card, got {file!r}")
    if card.temperature <= 0:
        raise ModelError(f"model card {path}: temperature must be positive")
    return card


def verify_model(card: ModelCard, file_key: str = "onnx") -> Path:
    """The model file the card describes, after checking its sha256 against the card."""
    section = card.onnx if file_key == "onnx" else card.int8
    if not section:
        raise ModelError(f"model card {card.path} has no {file_key} model")
    base = card.path.parent if card.path else Path(".")
    model = base / section["file"]
    if not model.is_file():
        raise ModelError(f"model file not found: {model}")
    actual = sha256_file(model)
    if actual != section["sha256"]:
        raise ModelError(
            f"model {model} does not match its card (sha256 {actual[:12]}..., card says {str(section['sha256'])[:12]}...)"
        )
    return model


def find_model(name_or_path: str, exports_dir: str | os.PathLike | None = None) -> Path:
    """Resolve `--model NAME|PATH` to a card path: a .json or .onnx path, or a name in exports/."""
    p = Path(name_or_path)
    if p.suffix in (".json", ".onnx") or os.sep in name_or_path or "/" in name_or_path:
        card = p.with_suffix(".json") if p.suffix == ".onnx" else p
        if p.suffix == ".onnx" and p.name.endswith(".int8.onnx"):
            card = p.with_name(p.name[: -len(".int8.onnx")] + ".json")
        if not card.is_file():
            raise ModelError(f"model card not found: {card}")
        return card
    exports = Path(exports_dir) if exports_dir else default_exports_dir()
    card = exports / f"{name_or_path}.json"
    if not card.is_file():
        names = sorted(c.stem for c in exports.glob("*.json")) if exports.is_dir() else []
        hint = f" (available: {', '.join(names)})" if names else f" (no models in {exports})"
        raise ModelError(f"no model named {name_or_path!r}{hint}")
    return card


def default_exports_dir() -> Path:
    env = os.environ.get("BIRDSORT_EXPORTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "exports"
