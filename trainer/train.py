"""The workflows behind `trainer fit` and `trainer lr-find`: load the data once, run, write the run folder."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from .config import TrainerConfig
from .data import LoadedData, load_dataset
from .device import Machine, pick_machine
from .evaluate import evaluate_checkpoint
from .loop import Fit, FitResult
from .model import load_state_dict_file
from .plots import plot_history
from .rundir import new_run_dir, write_config

log = logging.getLogger(__name__)


def load_data(cfg: TrainerConfig, root) -> LoadedData:
    """Decode the dataset once (a bad --weights PATH is refused first, before minutes of decoding)."""
    if cfg.weights not in ("imagenet", "none"):
        load_state_dict_file(cfg.weights)
    return load_dataset(root, cfg.resize, cfg.crop, cfg.val_fraction, cfg.seed, cfg.cache_dir,
                        cfg.decode_workers, cfg.others, cfg.others_max)


def fit(cfg: TrainerConfig, root, out=None, resume=None, data: LoadedData | None = None,
        machine: Machine | None = None, stop_after: int | None = None, progress: bool = True,
        evaluate: bool = True) -> FitResult:
    """Train on the dataset folder `root`; `resume` names a run folder to continue (its config is used)."""
    t0 = time.perf_counter()
    if resume is not None:
        from .checkpoint import load_checkpoint
        from sorter.config import build

        old = load_checkpoint(resume, "last.pt")
        cfg = build(TrainerConfig, old["config"], "trainer")
        out = resume
    machine = machine or pick_machine(cfg.device, cfg.precision, cfg.threads)
    data = data or load_data(cfg, root)
    run_dir = new_run_dir(out)
    write_config(dataclasses.asdict(cfg), {"data": str(root), "device": str(machine.device),
                                           "precision": machine.precision}, run_dir / "config.json")
    trainer = Fit(cfg, data, machine, run_dir, progress, t0)
    if resume is not None:
        trainer.load_resume(Path(resume))
    result = trainer.run(stop_after)
    if result.history:
        plot_history(result.history, run_dir / "curves.png")
    complete = bool(result.history) and len(result.history) == cfg.head_epochs + cfg.epochs
    if evaluate and complete and len(data.val.labels):
        evaluate_checkpoint(run_dir, root, run_dir, machine, cfg.cache_dir)
    log.info("fit finished in %.1fs; best val top-1 %s", time.perf_counter() - t0, result.best.get("val_top1"))
    return result


def lr_find(cfg: TrainerConfig, root, out=None, stage: str = "head", data: LoadedData | None = None,
            machine: Machine | None = None, progress: bool = True) -> dict[str, Any]:
    """The LR range test of a stage as `fit` would run it, curves (CSV, PNG) written to `out`."""
    machine = machine or pick_machine(cfg.device, cfg.precision, cfg.threads)
    data = data or load_data(cfg, root)
    run_dir = new_run_dir(out, "runs/lr-find")
    cfg = dataclasses.replace(cfg, lr=None, head_lr=None if stage == "head" else cfg.head_lr)
    res = Fit(cfg, data, machine, run_dir, progress).lr_find(stage)
    return {"stage": stage, "suggestions": res.suggestions, "rule": res.rule, "lr": res.lr, "run_dir": str(run_dir),
            "csv": str(run_dir / f"lr_find_{stage}.csv"), "png": str(run_dir / f"lr_find_{stage}.png")}
