"""The exported network: uint8 RGB NCHW pixels in, logits out, normalisation inside the graph.

The sorter feeds raw pixels from `sorter.preprocess.preprocess` (transposed to NCHW), so everything the
trainer's eval transform does after those pixels (scale to 0..1, ImageNet mean/std) lives in the graph.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from .model import MEAN, STD

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class PixelModel(nn.Module):
    """uint8 (N, 3, H, W) RGB -> float logits (N, classes): x / 255, minus mean, over std, model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # scale and shift folded into one multiply-add: (x/255 - mean)/std = x * a + b
        std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -mean / std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image.float() * self.scale + self.shift)


def to_onnx_bytes(model: nn.Module, crop: int, opset: int = OPSET) -> bytes:
    """Serialise `model` (in eval mode, on the CPU, fp32) as an ONNX graph with a dynamic batch axis."""
    wrapped = PixelModel(model).eval().to("cpu", torch.float32)
    dummy = torch.zeros(2, 3, crop, crop, dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped, (dummy,), buf, dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def graph_io(path: str | Path) -> tuple[list[str], list[str], int]:
    """Input names, output names and the default-domain opset of an ONNX file."""
    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return [i.name for i in proto.graph.input], [o.name for o in proto.graph.output], int(opset)


def output_width(path: str | Path, name: str = OUTPUT_NAME) -> int | None:
    """The static size of the last axis of output `name` (classes), or None when it is symbolic."""
    proto = onnx.load(str(path), load_external_data=False)
    for o in proto.graph.output:
        if o.name == name:
            dims = o.type.tensor_type.shape.dim
            return int(dims[-1].dim_value) if dims and dims[-1].HasField("dim_value") else None
    return None
