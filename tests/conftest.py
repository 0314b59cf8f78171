"""Shared fixtures. Tests that need the real photos in ../shared/data use `shared_data` and skip
with a clear reason where the folder is absent (a fresh machine elsewhere)."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BIRDSORT_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: birds10/{train,val}/<Species>/*.jpg, unknown/<Species>/*.jpg, birds-pretrain/..."""
    root = SHARED / "data"
    if not (root / "birds10" / "val").is_dir():
        pytest.skip(f"real bird photos not found at {root} (set BIRDSORT_SHARED to the shared folder)")
    return root


@pytest.fixture(scope="session")
def shared_models() -> Path:
    root = SHARED / "models"
    if not (root / "resnet18-birds175.pt").is_file():
        pytest.skip(f"stand-in backbone not found at {root}")
    return root


def make_photo(path: Path, size=(64, 48), seed: int = 0, fmt: str | None = None, mode: str = "RGB") -> Path:
    """Write a generated photo (smooth colour field plus noise, unique per seed)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 255, 3)
    img = (base + 60 * np.sin(xx[..., None] / (3 + seed % 7)) + 40 * np.cos(yy[..., None] / 5)
           + rng.normal(0, 12, (h, w, 3)))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)
    return path


def build_tree(root: Path, tree: dict) -> Path:
    """Build a folder tree from a dict: {"a": {"b.jpg": b"..." | callable(path) | None}}.

    bytes/str values are written as they are; a callable is called with the path; None makes a photo.
    """
    for name, value in tree.items():
        p = root / name
        if isinstance(value, dict):
            p.mkdir(parents=True, exist_ok=True)
            build_tree(p, value)
        elif isinstance(value, (bytes, str)):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(value.encode() if isinstance(value, str) else value)
        elif callable(value):
            value(p)
        else:
            make_photo(p, seed=abs(hash(str(p))) % 10_000)
    return root


# ----------------------------------------------------------------------------------------------------
# A tiny ONNX model (built with onnx.helper, no torch): it classifies a photo by its mean colour.
# Input "image": uint8 (N, 3, H, W). Logits = mean RGB (0..1) @ W + b, so a photo whose dominant
# colour is red scores highest for the first label, green the second, blue the third.

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def make_tiny_model(folder: Path, name: str = "tiny", labels=("Red_Bird", "Green_Bird", "Blue_Bird"),
                    resize: int = 40, crop: int = 32, threshold: float = 0.5, scale: float = 12.0) -> Path:
    """Write folder/NAME.onnx and its model card folder/NAME.json; return the card's path."""
    import onnx
    from onnx import TensorProto, helper

    from sorter.card import ModelCard, sha256_file, write_card

    k = len(labels)
    w = np.zeros((3, k), np.float32)
    for i in range(k):
        w[i % 3, i] = scale
        w[:, i] -= scale / 3
    nodes = [
        helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["xf", "c255"], ["x01"]),
        helper.make_node("GlobalAveragePool", ["x01"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["feat"], axis=1),
        helper.make_node("MatMul", ["feat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 3, crop, crop])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k])],
        initializer=[
            helper.make_tensor("c255", TensorProto.FLOAT, [], [255.0]),
            helper.make_tensor("W", TensorProto.FLOAT, [3, k], w.flatten().tolist()),
            helper.make_tensor("B", TensorProto.FLOAT, [k], [0.0] * k),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / f"{name}.onnx"
    onnx.save(model, onnx_path)
    card = ModelCard(
        name=name,
        labels=list(labels),
        input={"resize": resize, "crop": crop, "color": "RGB", "dtype": "uint8", "layout": "NCHW"},
        onnx={"file": onnx_path.name, "sha256": sha256_file(onnx_path), "input": "image", "output": "logits"},
        calibration={"temperature": 1.0},
        open_set={"score": "msp", "threshold": threshold},
    )
    write_card(card, folder / f"{name}.json")
    return folder / f"{name}.json"


def make_colour_photo(path: Path, colour: str, size=(120, 90), seed: int = 0, fmt: str | None = None) -> Path:
    """A photo dominated by one of COLOURS (with noise, unique bytes per seed)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, "RGB").save(path, format=fmt)
    return path


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    """Card path of a tiny colour model in a temporary exports folder."""
    return make_tiny_model(tmp_path / "exports")


LARGE_THUMBNAIL_FULL_HD = 0x010002  # MPF (CIPA DC-007) type of a camera's embedded preview


def mpo_bytes(primary: Image.Image, preview: Image.Image, mptype: int = LARGE_THUMBNAIL_FULL_HD,
              orientation: int | None = None, quality: int = 90) -> bytes:
    """A camera-style MPO: `primary` + one more frame whose MP type is `mptype` (Pillow writes
    "Undefined"; the entry is patched to what a camera writes), with an EXIF orientation if given."""
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    primary.save(buf, "MPO", save_all=True, append_images=[preview], quality=quality, exif=exif.tobytes())
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        entry = im.mpinfo[0xB002][1]
    old = struct.pack("<LLLHH", 0, entry["Size"], entry["DataOffset"], 0, 0)
    assert data.count(old) == 1
    return data.replace(old, struct.pack("<LLLHH", mptype, entry["Size"], entry["DataOffset"], 0, 0))
