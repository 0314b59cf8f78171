"""Batched classification with onnxruntime: paths in, predictions out.

The model card is checked before the model is used (sha256), the photos are preprocessed with the one
preprocessing function, fed as raw uint8 NCHW (normalisation is inside the graph), and the logits become
calibrated probabilities (temperature from the card), top-3 alternatives and the card's open-set score.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .card import ModelCard, verify_model
from .errors import ModelError
from .preprocess import PreprocessError, preprocess
from .scores import calibrated_probs, score


@dataclass
class Prediction:
    path: Path
    label: str | None = None                 # top-1 species; None when the photo could not be read
    confidence: float = 0.0                  # calibrated probability of `label`
    score: float = float("nan")              # open-set score (card.open_set.score); higher = surer
    top3: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None                 # one-line reason the photo was unreadable


def providers_for(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelError("--device cuda: onnxruntime has no CUDA support here (install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class Classifier:
    def __init__(self, card: ModelCard, device: str = "auto", batch_size: int = 32, threads: int = 0):
        self.card = card
        self.batch_size = batch_size
        model_path = verify_model(card)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(model_path), opts, providers=providers_for(device))
        except Exception as e:
            raise ModelError(f"onnxruntime cannot load {model_path}: {str(e).splitlines()[0][:200]}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.labels = card.labels
        self.score_name = card.open_set.get("score", "msp")

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, classes) float32 logits."""
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        return self.session.run(None, {self.input_name: x})[0]

    def predictions(self, paths: list[Path], logits: np.ndarray) -> list[Prediction]:
        probs = calibrated_probs(logits, self.card.temperature)
        scores = score(self.score_name, logits, self.card.temperature)
        out = []
        for path, p, s in zip(paths, probs, scores):
            order = np.argsort(-p)[:3]
            top3 = [(self.labels[i], float(p[i])) for i in order]
            out.append(Prediction(path, top3[0][0], top3[0][1], float(s), top3))
        return out

    def classify(self, paths: Iterable[str | os.PathLike]) -> Iterator[Prediction]:
        """Predictions in input order; unreadable photos come back with `error` set."""
        ready: list[tuple[Path, np.ndarray]] = []
        for p in paths:
            p = Path(p)
            try:
                ready.append((p, preprocess(p, self.card.resize, self.card.crop)))
            except PreprocessError as e:
                yield from self._flush(ready)
                ready = []
                yield Prediction(p, error=str(e))
                continue
            if len(ready) == self.batch_size:
                yield from self._flush(ready)
                ready = []
        yield from self._flush(ready)

    def _flush(self, ready: list[tuple[Path, np.ndarray]]) -> Iterator[Prediction]:
        if ready:
            paths = [p for p, _ in ready]
            yield from self.predictions(paths, self.logits(np.stack([a for _, a in ready])))
