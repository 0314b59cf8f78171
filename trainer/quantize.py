"""int8 static quantization with onnxruntime's quantizer, and its measured cost and benefit.

Calibration feeds training photos through the one preprocessing function (the same uint8 pixels the
sorter feeds), so the activation ranges are those of real inputs. Weights are quantized per output
channel (int8), activations per tensor (uint8: the u8s8 pair that VNNI kernels run fastest).
The format is QDQ by default (QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into int8
kernels when graph optimizations are on); QOperator (QLinearConv etc.) is the alternative.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from .onnx_graph import INPUT_NAME


class PixelReader(CalibrationDataReader):
    """Feeds (N, H, W, 3) uint8 pixels to the quantizer's calibrator as NCHW batches."""

    def __init__(self, pixels: np.ndarray, batch: int = 16, input_name: str = INPUT_NAME):
        self.pixels, self.batch, self.input_name = pixels, batch, input_name
        self.pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.pos >= len(self.pixels):
            return None
        x = self.pixels[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return {self.input_name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))}

    def rewind(self) -> None:
        self.pos = 0


def quantize_int8(fp32: str | os.PathLike, out: str | os.PathLike, calib_pixels: np.ndarray,
                  fmt: str = "qdq", method: str = "minmax") -> Path:
    """Write a statically quantized copy of `fp32` to `out` (per-channel int8 weights)."""
    if len(calib_pixels) == 0:
        raise ValueError("int8 calibration needs at least one photo")
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quant-") as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        # shape inference + graph optimisation first, as onnxruntime recommends before quantizing
        quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
        quantize_static(
            str(prepped), str(out), PixelReader(calib_pixels),
            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile if method == "percentile" else CalibrationMethod.MinMax,
            extra_options={"CalibMovingAverage": method == "minmax"} if method == "minmax" else {},
        )
    return out


def session(path: str | os.PathLike, threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@dataclass
class Speed:
    fp32_s: float      # median seconds per batch
    int8_s: float
    batch: int
    repeats: int

    @property
    def speedup(self) -> float:
        return self.fp32_s / self.int8_s


def compare_speed(fp32: str | os.PathLike, int8: str | os.PathLike, pixels: np.ndarray, repeats: int = 7,
                  threads: int = 0) -> Speed:
    """Median wall time of one batch through each model, interleaved so both see the same machine load."""
    x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
    sessions = [session(fp32, threads), session(int8, threads)]
    for s in sessions:  # warm-up
        s.run(None, {INPUT_NAME: x})
    times: list[list[float]] = [[], []]
    for _ in range(repeats):
        for i, s in enumerate(sessions):
            t0 = time.perf_counter()
            s.run(None, {INPUT_NAME: x})
            times[i].append(time.perf_counter() - t0)
    return Speed(float(np.median(times[0])), float(np.median(times[1])), len(x), repeats)
