"""Transfer learning in two stages, each one OneCycle (torch's OneCycleLR, momentum cycling on).

1. head: the backbone is frozen, so its pooled 512-d features of every training photo (centre crop
   and its mirror image) are computed once and the new `fc` trains on them: seconds, not minutes.
2. full: the whole network, discriminative LRs over five layer groups (stem+layer1, layer2, layer3,
   layer4, fc; each gets `group_decay` x the next one's LR), batches augmented from the uint8 cache.

Both stages take their peak LR from the LR finder unless one is given. An optional "others" folder
(photos of other species, no labels) adds `others_weight` x cross-entropy to the uniform distribution
on `others_per_batch` such photos per batch (outlier exposure, for open-set scores).

Every epoch is seeded by (seed, stage, epoch) and its end writes last.pt (and best.pt when val top-1
improves) with optimizer, scheduler and RNG state, so `resume` continues mid-cycle exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR
from tqdm import tqdm

from .augment import augment, center, normalize, to_tensor
from .checkpoint import CheckpointError, load_checkpoint, publish_copy, save_checkpoint
from .config import TrainerConfig, train_crop
from .data import LoadedData
from .device import Machine
from .evaluate import predict_logits
from .lr_finder import LRFindResult, lr_range_test, write_csv
from .model import build_model
from .rundir import write_history

log = logging.getLogger(__name__)
STAGES = ("head", "full")


def layer_groups(model: nn.Module) -> list[list[nn.Module]]:
    """The five groups of discriminative LRs, input side first."""
    return [[model.conv1, model.bn1, model.layer1], [model.layer2], [model.layer3], [model.layer4], [model.fc]]


def param_groups(modules_by_group: list[list[nn.Module]], decay: float, weight_decay: float) -> list[dict]:
    """Optimizer groups with `lr_mult` = decay^(distance from the last group); no weight decay on biases
    and BatchNorm (1-d parameters)."""
    groups = []
    n = len(modules_by_group)
    for i, modules in enumerate(modules_by_group):
        params = [p for m in modules for p in m.parameters()]
        mult = decay ** (n - 1 - i)
        decayed = [p for p in params if p.ndim > 1]
        plain = [p for p in params if p.ndim <= 1]
        groups.append({"params": decayed, "lr_mult": mult, "weight_decay": weight_decay})
        groups.append({"params": plain, "lr_mult": mult, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def make_optimizer(cfg: TrainerConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW, fused (one kernel over all parameters: 30% less optimizer time on the
    CPU than the default per-parameter loop) where this torch and device have it."""
    if cfg.optimizer == "adamw":
        make = lambda **kw: torch.optim.AdamW(groups, lr=1e-3, betas=(cfg.momentum[0], 0.99), **kw)  # noqa: E731
    else:
        make = lambda **kw: torch.optim.SGD(groups, lr=1e-3, momentum=cfg.momentum[0], nesterov=True, **kw)  # noqa: E731
    try:
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or a device without fused kernels
        return make()


def make_scheduler(cfg: TrainerConfig, opt: torch.optim.Optimizer, lr: float, total_steps: int) -> OneCycleLR:
    # OneCycleLR needs a warm-up phase of at least one step: tiny runs get a few extra (unused) steps
    total_steps = max(total_steps, int(2 / cfg.pct_start) + 1)
    return OneCycleLR(
        opt, max_lr=[lr * g["lr_mult"] for g in opt.param_groups], total_steps=total_steps,
        pct_start=cfg.pct_start, div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor,
        cycle_momentum=True, max_momentum=cfg.momentum[0], base_momentum=cfg.momentum[1],
    )


def epoch_generator(seed: int, stage: str, epoch: int) -> torch.Generator:
    """Randomness of one epoch (batch order, augmentation, others sampling): a pure function of its place."""
    return torch.Generator().manual_seed(seed * 1_000_003 + STAGES.index(stage) * 10_007 + epoch)


def uniform_ce(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from the uniform distribution over classes: low when the model is unsure."""
    return -F.log_softmax(logits.float(), dim=1).mean(dim=1).mean()


@torch.no_grad()
def pooled_features(model: nn.Module, x: torch.Tensor, machine: Machine) -> torch.Tensor:
    """(N, 512) pooled backbone features of normalised images (the input of `fc`)."""
    m = model
    with machine.autocast():
        h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        h = m.layer4(m.layer3(m.layer2(m.layer1(h))))
        return torch.flatten(m.avgpool(h), 1).float()


def features_of(model, pixels: np.ndarray, crop: int, machine: Machine, batch: int, flips: bool) -> torch.Tensor:
    """Features of the centre crops of uint8 squares (and of their mirror images after them)."""
    model.eval()
    out = []
    views = (False, True) if flips else (False,)
    for flip in views:
        for i in range(0, len(pixels), batch):
            x = center(to_tensor(pixels[i:i + batch], machine.device), crop)
            out.append(pooled_features(model, x.flip(3) if flip else x, machine).cpu())
    return torch.cat(out) if out else torch.zeros(0, 512)


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict[str, Any]]
    lrs: dict[str, float]
    best: dict[str, float]
    finder: dict[str, LRFindResult] = field(default_factory=dict)


class Fit:
    """One training run. `run()` does both stages; state lives here between epochs."""

    def __init__(self, cfg: TrainerConfig, data: LoadedData, machine: Machine, run_dir: Path,
                 progress: bool = True, t0: float | None = None):
        self.cfg, self.data, self.machine, self.run_dir, self.progress = cfg, data, machine, run_dir, progress
        self.t0 = time.perf_counter() if t0 is None else t0  # "elapsed" in the history counts from here
        torch.manual_seed(cfg.seed)
        self.model = build_model(len(data.classes), cfg.weights).to(machine.device, memory_format=torch.channels_last)
        self.history: list[dict[str, Any]] = []
        self.lrs: dict[str, float] = {}
        self.finder: dict[str, LRFindResult] = {}
        self.best: dict[str, float] = {}
        self.y_train = torch.from_numpy(data.train.labels)
        self._resume_state: dict[str, Any] | None = None
        self._feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self._no_save = False
        self._budget: int | None = None

    # ------------------------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> FitResult:
        """Both stages (or what is left of them after `resume`). `stop_after`: stop once this many
        epochs have been completed in this call (to simulate an interruption in tests)."""
        self._budget = stop_after
        start_stage, start_epoch = self._resume_point()
        for stage, epochs in (("head", self.cfg.head_epochs), ("full", self.cfg.epochs)):
            if STAGES.index(stage) < STAGES.index(start_stage) or epochs == 0:
                continue
            first = start_epoch if stage == start_stage else 0
            if not self._stage(stage, epochs, first):
                break
        return FitResult(self.run_dir, self.history, self.lrs, self.best, self.finder)

    def lr_find(self, stage: str) -> LRFindResult:
        """The LR range test of `stage` as `run` would do it; for "full", the head is trained first
        (a random head would dominate the loss). Checkpoints of that head training are not written."""
        self._no_save = True
        if stage == "full" and self.cfg.head_epochs:
            self._stage("head", self.cfg.head_epochs, 0)
        self.lrs.pop(stage, None)
        self._stage(stage, 0, 0)  # builds the optimizer and runs the finder; no epoch
        return self.finder[stage]

    def _resume_point(self) -> tuple[str, int]:
        r = self._resume_state
        if r is None:
            return "head", 0
        stage, epoch = r["stage"], r["epoch"]
        total = self.cfg.head_epochs if stage == "head" else self.cfg.epochs
        if epoch >= total:  # that stage had finished: start the next one
            return ("full", 0) if stage == "head" else ("done", 0)
        return stage, epoch

    def _stage(self, stage: str, epochs: int, first_epoch: int) -> bool:
        cfg = self.cfg
        head = stage == "head"
        for p in self.model.parameters():
            p.requires_grad_(not head)
        for p in self.model.fc.parameters():
            p.requires_grad_(True)
        groups = [[self.model.fc]] if head else layer_groups(self.model)
        opt = make_optimizer(cfg, param_groups(groups, cfg.group_decay, cfg.weight_decay))
        if head:
            self._feats = self._features()
        n = len(self._feats[0]) if head else len(self.data.train.pixels)
        bs = min(cfg.batch_size, n)
        steps = n // bs
        step_fn = self._head_step if head else self._full_step
        lr = self._stage_lr(stage, opt, step_fn, n, bs)
        sched = make_scheduler(cfg, opt, lr, epochs * steps)
        if self._resume_state is not None and self._resume_state["stage"] == stage:
            opt.load_state_dict(self._resume_state["optimizer"])
            sched.load_state_dict(self._resume_state["scheduler"])
            torch.set_rng_state(self._resume_state["rng"]["torch"])
        self._resume_state = None
        for epoch in range(first_epoch, epochs):
            gen = epoch_generator(cfg.seed, stage, epoch)
            order = torch.randperm(n, generator=gen)
            t0 = time.perf_counter()
            self.model.train(not head)
            loss_sum, correct, seen = 0.0, 0, 0
            bar = tqdm(range(steps), desc=f"{stage} {epoch + 1}/{epochs}", leave=False, disable=not self.progress)
            for s in bar:
                idx = order[s * bs:(s + 1) * bs]
                loss, ok = step_fn(opt, idx, gen)
                sched.step()
                loss_sum += loss * len(idx)
                correct += ok
                seen += len(idx)
                rate = seen / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", img_s=f"{rate:.0f}")
            seconds = time.perf_counter() - t0
            val_loss, val_acc = self._validate(head)
            row = {"stage": stage, "epoch": epoch + 1, "lr": opt.param_groups[-1]["lr"],
                   "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                   "val_loss": val_loss, "val_acc": val_acc, "seconds": seconds,
                   "images_per_s": seen / max(seconds, 1e-9), "elapsed": time.perf_counter() - self.t0}
            self.history.append(row)
            log.info("%s epoch %d/%d: train loss %.3f acc %.3f, val loss %.3f acc %.3f, %.1fs", stage,
                     epoch + 1, epochs, row["train_loss"], row["train_acc"], val_loss, val_acc, seconds)
            if not self._no_save:
                self._save(stage, epoch + 1, opt, sched, val_loss, val_acc)
            if self._budget is not None:
                self._budget -= 1
                if self._budget <= 0:
                    return False
        return True

    # ------------------------------------------------------------------------------------------------
    def _features(self):
        cfg, m = self.cfg, self.machine
        bs = max(cfg.batch_size, 64)
        train = features_of(self.model, self.data.train.pixels, cfg.crop, m, bs, flips=True)
        val = predict_features_eval(self.model, self.data.val.pixels, m, bs)
        others = None
        if self.data.others is not None and len(self.data.others):
            others = features_of(self.model, self.data.others, cfg.crop, m, bs, flips=False)
        return train, val, others

    def _head_step(self, opt, idx: torch.Tensor, gen: torch.Generator) -> tuple[float, int]:
        train, _, others = self._feats
        y = self.y_train.repeat(2)[idx]
        x = train[idx].to(self.machine.device)
        logits = self.model.fc(x)
        loss = F.cross_entropy(logits, y.to(logits.device), label_smoothing=self.cfg.label_smoothing)
        if others is not None and self.cfg.others_weight > 0:
            pick = torch.randint(len(others), (self.cfg.others_per_batch,), generator=gen)
            loss = loss + self.cfg.others_weight * uniform_ce(self.model.fc(others[pick].to(x.device)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()), int((logits.argmax(1).cpu() == y).sum())

    def _full_step(self, opt, idx: torch.Tensor, gen: torch.Generator) -> tuple[float, int]:
        cfg, m = self.cfg, self.machine
        pixels = [to_tensor(self.data.train.pixels[idx.numpy()], m.device)]
        n_known = len(idx)
        use_others = self.data.others is not None and len(self.data.others) and cfg.others_weight > 0
        if use_others:
            pick = torch.randint(len(self.data.others), (cfg.others_per_batch,), generator=gen)
            pixels.append(to_tensor(self.data.others[pick.numpy()], m.device))
        x = augment(torch.cat(pixels), train_crop(cfg), gen, (cfg.scale_min, cfg.scale_max), (cfg.ratio_min, cfg.ratio_max),
                    cfg.flip, cfg.jitter)
        y = self.y_train[idx].to(m.device)
        with m.autocast():
            logits = self.model(x)
        logits = logits.float()
        loss = F.cross_entropy(logits[:n_known], y, label_smoothing=cfg.label_smoothing)
        if use_others:
            loss = loss + cfg.others_weight * uniform_ce(logits[n_known:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()), int((logits[:n_known].argmax(1) == y).sum())

    def _stage_lr(self, stage: str, opt, step_fn: Callable, n: int, bs: int) -> float:
        """The stage's peak LR: given, stored (resume), or found by the LR range test."""
        given = self.cfg.head_lr if stage == "head" else self.cfg.lr
        if stage in self.lrs:
            return self.lrs[stage]
        if given is not None:
            self.lrs[stage] = given
            return given
        self.finder[stage] = res = self.find_lr(stage, opt, step_fn, n, bs)
        self.lrs[stage] = res.lr
        write_csv(res, self.run_dir / f"lr_find_{stage}.csv")
        from .plots import plot_lr_find  # matplotlib only when a curve is drawn
        plot_lr_find(res, self.run_dir / f"lr_find_{stage}.png", title=f"LR range test: {stage} stage")
        log.info("LR finder (%s stage): %s -> %.3g", stage,
                 ", ".join(f"{k} {v:.3g}" for k, v in res.suggestions.items()), res.lr)
        return res.lr

    def find_lr(self, stage: str, opt, step_fn: Callable, n: int, bs: int) -> LRFindResult:
        f = self.cfg.lr_find
        iters = f.head_iterations if stage == "head" else f.iterations
        gen = torch.Generator().manual_seed(self.cfg.seed + 99_991)
        self.model.train(stage != "head")
        bar = tqdm(total=iters, desc=f"lr-find {stage}", leave=False, disable=not self.progress)
        order: list[torch.Tensor] = []

        def step(i: int) -> float:
            if not order:
                order.extend(torch.randperm(n, generator=gen).split(bs)[: n // bs])
            return step_fn(opt, order.pop(0), gen)[0]

        def progress(i, lr, s):
            bar.update(1)
            bar.set_postfix(lr=f"{lr:.2g}", loss=f"{s:.3f}")

        try:
            return lr_range_test(self.model, opt, step, f.start_lr, f.end_lr, iters, f.smoothing, f.diverge,
                                 f.rule, f.min_lr, f.max_lr, progress)
        finally:
            bar.close()

    @torch.no_grad()
    def _validate(self, head: bool) -> tuple[float, float]:
        y = torch.from_numpy(self.data.val.labels)
        if len(y) == 0:
            return float("nan"), float("nan")
        if head:
            logits = self.model.fc(self._feats[1].to(self.machine.device)).float().cpu()
        else:
            logits = torch.from_numpy(predict_logits(self.model, self.data.val.pixels, self.machine))
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())

    # ------------------------------------------------------------------------------------------------
    def checkpoint(self, stage: str, epoch: int, opt, sched, val_loss: float, val_acc: float) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "arch": "resnet18",
            "classes": list(self.data.classes),
            "input": {"resize": cfg.resize, "crop": cfg.crop},
            "config": dataclasses.asdict(cfg),
            "weights": cfg.weights,
            "data_fingerprint": self.data.fingerprint,
            "metrics": {"val_top1": val_acc, "val_loss": val_loss},
            "stage": stage,
            "epoch": epoch,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "lrs": dict(self.lrs),
            "history": [dict(r) for r in self.history],
            "best": dict(self.best),
            "precision": self.machine.precision,
        }

    def _save(self, stage, epoch, opt, sched, val_loss, val_acc) -> None:
        ckpt = self.checkpoint(stage, epoch, opt, sched, val_loss, val_acc)
        better = not self.best or np.isnan(self.best["val_top1"]) or \
            (val_acc, -val_loss) >= (self.best["val_top1"], -self.best["val_loss"])
        if better:
            self.best = {"val_top1": val_acc, "val_loss": val_loss, "stage": stage, "epoch": epoch}
            ckpt["best"] = dict(self.best)
        save_checkpoint(ckpt, self.run_dir / "last.pt")
        if better:  # the same checkpoint: a second name for last.pt's file, not a second write
            publish_copy(self.run_dir / "last.pt", self.run_dir / "best.pt")
        write_history(self.history, self.run_dir / "history.csv")

    def load_resume(self, run_dir: Path) -> None:
        """Continue from run_dir/last.pt: weights, optimizer, scheduler, RNG, stage, epoch, history."""
        ckpt = load_checkpoint(run_dir, "last.pt")
        if ckpt["classes"] != list(self.data.classes) or ckpt["data_fingerprint"] != self.data.fingerprint:
            raise CheckpointError(f"{run_dir} was trained on other data (classes or files differ): cannot resume")
        self.model.load_state_dict(ckpt["model"])
        self.history = list(ckpt["history"])
        self.lrs = dict(ckpt["lrs"])
        self.best = dict(ckpt.get("best", {}))
        self._resume_state = ckpt
        if self.best and (self.best["stage"], self.best["epoch"]) == (ckpt["stage"], ckpt["epoch"]):
            # stopped between writing last.pt and linking best.pt to it: link now (harmless otherwise)
            publish_copy(run_dir / "last.pt", run_dir / "best.pt")


@torch.no_grad()
def predict_features_eval(model: nn.Module, pixels: np.ndarray, machine: Machine, batch: int) -> torch.Tensor:
    """Features of eval pixels (already the eval crop): what `fc` sees at evaluation time."""
    model.eval()
    out = [pooled_features(model, normalize(to_tensor(pixels[i:i + batch], machine.device)), machine).cpu()
           for i in range(0, len(pixels), batch)]
    return torch.cat(out) if out else torch.zeros(0, 512)
