"""Batched classification with onnxruntime: paths in, predictions out, in input order.

The model card is checked before the model is used (sha256), photos are decoded by `decode.load` (the
one preprocessing function; RAW files through their embedded preview), fed as raw uint8 NCHW
(normalisation is inside the graph), and the logits become calibrated probabilities (temperature from
the card), top-3 alternatives and the card's open-set score.

Speed: decoding a camera JPEG costs several times more than classifying it, so photos are decoded in a
pool (threads: Pillow and onnxruntime both release the GIL, so decoding overlaps inference without
copying pixels between processes) while the caller's thread runs onnxruntime on the previous batch. At
most `prefetch` photos are decoded ahead, which bounds memory. onnxruntime's worker threads sleep instead
of spinning while they wait, so they leave the cores to the decoders. The int8 model is used where its
card says it is as accurate (see `choose_model`).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import decode
from .card import ModelCard, verify_model
from .errors import ModelError
from .scores import calibrated_probs, score

log = logging.getLogger(__name__)

# the int8 model is used by default when its card says its top-1 is within this of the fp32 model's
INT8_TOP1_TOLERANCE = 0.005


@dataclass
class Prediction:
    path: Path
    label: str | None = None                 # top-1 species; None when the photo could not be read
    confidence: float = 0.0                  # calibrated probability of `label`
    score: float = float("nan")              # open-set score (card.open_set.score); higher = surer
    top3: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None                 # one-line reason the photo was unreadable


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def providers_for(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelError("--device cuda: onnxruntime has no CUDA support here (install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def int8_is_as_accurate(card: ModelCard) -> bool:
    """Whether the card's int8 section says the int8 model loses (almost) no top-1 accuracy."""
    q = card.int8 or {}
    try:
        return float(q["top1_int8"]) >= float(q["top1_fp32"]) - INT8_TOP1_TOLERANCE
    except (KeyError, TypeError, ValueError):
        return False


def choose_model(card: ModelCard, int8: bool | None, on_cpu: bool) -> tuple[Path, str]:
    """(verified model file, "int8" | "fp32").

    int8=True: the int8 model, or a ModelError. int8=False: the fp32 model. int8=None (default): the int8
    model when running on CPU and its card says it is as accurate, falling back to fp32 (with a warning)
    when its file is missing or does not match the card."""
    if card.onnx.get("precision") == "int8":  # exported with --int8-only: the one model is the int8 one
        return verify_model(card), "int8"
    if int8 is True:
        return verify_model(card, "int8"), "int8"
    if wants_int8(card, int8, on_cpu):
        try:
            return verify_model(card, "int8"), "int8"
        except ModelError as e:
            log.warning("using the fp32 model: %s", e)
    return verify_model(card), "fp32"


def wants_int8(card: ModelCard, int8: bool | None, on_cpu: bool) -> bool:
    """Whether `choose_model` picks the int8 model (before checking its file)."""
    if card.onnx.get("precision") == "int8" or int8 is True:
        return True
    return bool(int8 is None and on_cpu and card.int8 and int8_is_as_accurate(card))


def open_set_for(card: ModelCard, variant: str, tta: bool) -> dict:
    """The card's open-set section (score, threshold, curve) measured for the model as it will run:
    flip TTA and a separate int8 copy each have their own threshold where the export measured one."""
    if tta and isinstance((card.tta or {}).get("open_set"), dict):
        return card.tta["open_set"]
    separate_int8 = variant == "int8" and card.onnx.get("precision") != "int8"
    if separate_int8 and isinstance((card.int8 or {}).get("open_set"), dict):
        return card.int8["open_set"]
    return card.open_set


def default_threads() -> int:
    """onnxruntime's intra-op threads beside a decode pool of one worker per core: half the cores.

    Decoding a camera JPEG costs several times more than classifying it, so the decoders keep every
    core busy; a single-threaded (per two cores) onnxruntime has no barrier to wait at when a decoder
    holds the other core (measured on 2 cores: int8 14.1 vs 11.2 photos/s, fp32 within noise)."""
    return max(1, cpu_count() // 2)


def sha256_of(card: ModelCard, model_path: Path) -> str:
    """The card's sha256 of the model file in use (already verified against the file)."""
    for section in (card.onnx, card.int8 or {}):
        if section.get("file") == model_path.name:
            return str(section["sha256"])
    raise ModelError(f"model card {card.path} does not describe {model_path.name}")


def session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # idle onnxruntime threads sleep rather than spin: the decode pool needs those cores between batches
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class Classifier:
    """`Classifier(card).classify(paths)` yields one Prediction per path, in input order.

    batch_size: photos per onnxruntime run. threads: onnxruntime's intra-op threads (0 = half the cores,
    see `default_threads`).
    workers: decoders (0 = one per core). pool: "thread" (default) or "process". prefetch: photos decoded
    ahead of the batch being classified (0 = 2 * batch_size + workers). int8: see `choose_model`.
    tta: also classify the mirror image and average the logits (twice the inference cost). min_batch:
    while the next photo is still being decoded, a batch of at least this many ready photos is classified
    rather than left waiting (default batch_size // 4), so that inference overlaps the last decodes too.
    """

    def __init__(self, card: ModelCard, device: str = "auto", batch_size: int = 32, threads: int = 0,
                 workers: int = 0, pool: str = "thread", prefetch: int = 0, int8: bool | None = None,
                 tta: bool = False, min_batch: int | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if pool not in ("thread", "process"):
            raise ValueError(f"pool must be 'thread' or 'process', got {pool!r}")
        self.card = card
        self.batch_size = batch_size
        self.workers = workers or cpu_count()
        self.pool_kind = pool
        self.prefetch = prefetch or 2 * batch_size + self.workers
        self.min_batch = max(1, batch_size // 4) if min_batch is None else max(1, min(min_batch, batch_size))
        self.tta = tta
        self.threads = threads or default_threads()
        providers = providers_for(device)
        self.model_path, self.variant = choose_model(card, int8, on_cpu=providers == ["CPUExecutionProvider"])
        self.model_sha256 = sha256_of(card, self.model_path)
        try:
            self.session = ort.InferenceSession(str(self.model_path), session_options(self.threads),
                                                providers=providers)
        except Exception as e:
            raise ModelError(f"onnxruntime cannot load {self.model_path}: {str(e).splitlines()[0][:200]}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.labels = card.labels
        width = self._output_width()
        if width != len(card.labels):
            raise ModelError(f"model card {card.path} has {len(card.labels)} labels but its model outputs {width} "
                             "classes: the card does not belong to this model")
        self.open_set = open_set_for(card, self.variant, tta)
        self.score_name = self.open_set.get("score", "msp")
        self._pool: Executor | None = None

    def _output_width(self) -> int:
        """Classes the model outputs: from the graph when it says, else from one run on a black photo."""
        shape = self.session.get_outputs()[0].shape
        if shape and isinstance(shape[-1], int):
            return shape[-1]
        crop = self.card.crop
        return int(self.session.run(None, {self.input_name: np.zeros((1, 3, crop, crop), np.uint8)})[0].shape[-1])

    # --- the decode pool ---------------------------------------------------------------------
    def _executor(self) -> Executor:
        if self._pool is None:
            if self.pool_kind == "process":
                # forkserver: never fork a process that holds onnxruntime's threads
                from concurrent.futures import ProcessPoolExecutor  # here: the thread pool is the default
                from multiprocessing import get_context

                self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("forkserver"))
            else:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="decode")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- inference ---------------------------------------------------------------------------
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, classes) float32 logits (averaged with the mirror image's under TTA)."""
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        if not self.tta:
            return self.session.run(None, {self.input_name: x})[0]
        both = np.concatenate([x, x[..., ::-1]])  # mirror: flip the width axis
        out = self.session.run(None, {self.input_name: both})[0]
        return (out[: len(x)] + out[len(x):]) / 2

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
        """Predictions in input order; unreadable photos come back with `error` set.

        Paths are consumed lazily; at most `prefetch` photos are decoded or waiting at any time.
        """
        pool = self._executor()
        resize, crop = self.card.resize, self.card.crop
        pending: deque[tuple[Path, Future]] = deque()  # submitted, in input order
        done: list[tuple[Path, np.ndarray | None, str | None]] = []  # decoded, awaiting a batch
        n_ready = 0  # photos in `done` with pixels
        it = iter(paths)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) + len(done) < self.prefetch:
                    p = next(it, None)
                    if p is None:
                        exhausted = True
                        break
                    p = Path(p)
                    pending.append((p, pool.submit(decode.load, p, resize, crop)))
                # take the next decoded photo unless the batch is full, or it is not decoded yet and
                # enough photos are ready to keep onnxruntime busy meanwhile (the decoders are the
                # bottleneck: waiting for a full batch would leave inference for the end)
                if pending and n_ready < self.batch_size and (n_ready < self.min_batch or pending[0][1].done()):
                    p, fut = pending.popleft()
                    pixels, error = fut.result()
                    done.append((p, pixels, error))
                    n_ready += pixels is not None
                    continue
                if not done:
                    return
                yield from self._run_batch(done)
                done, n_ready = [], 0
        finally:
            for _, fut in pending:
                fut.cancel()

    def _run_batch(self, items: list[tuple[Path, np.ndarray | None, str | None]]) -> Iterator[Prediction]:
        good = [(p, a) for p, a, _ in items if a is not None]
        preds = iter(self.predictions([p for p, _ in good], self.logits(np.stack([a for _, a in good])))
                     if good else [])
        for p, a, error in items:
            yield next(preds) if a is not None else Prediction(p, error=error)
