"""The LR range test (Smith 2015; fastai's `lr_find`), written out.

The learning rate grows exponentially from `start` to `end` over `iterations` mini-batches, one
training step each; the loss is smoothed with a debiased exponential moving average and the test stops
once it exceeds `diverge` x the best smoothed loss. The model's and the optimizer's state are deep
copied before and loaded back after, so the test leaves no trace (bit for bit).

Param groups may carry an `lr_mult` (discriminative LRs): each group gets `lr * lr_mult`, so the test
sweeps the head group's LR with the other groups following at their fixed ratios.

Suggestion rules are pure functions of (lrs, losses) -> lr, interchangeable through `RULES`.
"""

from __future__ import annotations

import copy
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch


@dataclass
class LRFindResult:
    lrs: list[float]                 # learning rate of each step (head group)
    losses: list[float]              # raw mini-batch loss of each step
    smoothed: list[float]            # debiased exponential moving average of `losses` (online: stopping)
    curve: list[float] = field(default_factory=list)  # robust zero-lag smoothing of `losses` (the rules read this)
    suggestions: dict[str, float] = field(default_factory=dict)  # rule name -> suggested LR
    rule: str = "valley"             # the rule whose suggestion is used

    @property
    def lr(self) -> float:
        return self.suggestions[self.rule]


def lr_schedule(start: float, end: float, iterations: int) -> list[float]:
    """Exponential sweep: start * (end/start)^(i/(iterations-1))."""
    return [start * (end / start) ** (i / max(iterations - 1, 1)) for i in range(iterations)]


def smooth(losses: list[float], beta: float) -> list[float]:
    """Debiased exponential moving average (as Adam debiases its moments)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)) if beta > 0 else loss)
    return out


def centered(losses: list[float], beta: float) -> list[float]:
    """Zero-lag smoothing: the mean of a forward and a backward debiased EMA."""
    forward = smooth(losses, beta)
    backward = smooth(losses[::-1], beta)[::-1]
    return [(a + b) / 2 for a, b in zip(forward, backward)]


def robust_curve(losses: list[float]) -> list[float]:
    """The curve the rules read: a running median (window ~1/8 of the sweep) then a zero-lag EMA.

    The online EMA lags the raw loss by about 1/(1-beta) steps (20 at 0.95: more than a decade of LR in
    a short sweep), which moves the valley and the minimum, and so every suggestion, to higher LRs. A
    whole-network sweep on augmented batches is also spiky; the median drops the spikes, and unlike a
    wide average it does not drag the blow-up at the end backwards into the minimum."""
    n = len(losses)
    k = max(3, (n // 8) | 1)
    h = k // 2
    a = np.asarray(losses, float)
    a = np.where(np.isfinite(a), a, np.nanmax(np.where(np.isfinite(a), a, np.nan)) if np.isfinite(a).any() else 0)
    med = [float(np.median(a[max(0, i - h):i + h + 1])) for i in range(n)]
    return centered(med, 1 - 2 / (k + 1))


# ----------------------------------------------------------------------------------------------------
# Suggestion rules: (lrs, losses) -> lr. `losses` are the smoothed losses, truncated at divergence.


def _trim(lrs, losses) -> tuple[np.ndarray, np.ndarray]:
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    ok = np.isfinite(losses)
    return lrs[ok], losses[ok]


def suggest_minimum(lrs, losses) -> float:
    """A tenth of the LR at the lowest loss: safely below where the loss turns up."""
    lrs, losses = _trim(lrs, losses)
    return float(lrs[int(np.argmin(losses))] / 10)


def suggest_steep(lrs, losses) -> float:
    """The LR where the loss falls fastest (most negative slope against log LR), before the minimum."""
    lrs, losses = _trim(lrs, losses)
    end = int(np.argmin(losses)) + 1
    if end < 3:
        return float(lrs[0])
    grad = np.gradient(losses[:end], np.log(lrs[:end]))
    return float(lrs[int(np.argmin(grad))])


def suggest_valley(lrs, losses) -> float:
    """fastai's valley: the longest decreasing subsequence of the loss curve, and the point halfway
    into its middle third. Fed with a well-smoothed curve; `suggest` clips the result."""
    lrs, losses = _trim(lrs, losses)
    n = len(losses)
    if n < 3:
        return float(lrs[0])
    lds = [1] * n
    best_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[i] > lds[best_end]:
            best_end = i
    best_start = best_end - lds[best_end] + 1
    third = (best_end - best_start) / 3
    idx = best_start + int(third) + int(third / 2)
    return float(lrs[min(idx, n - 1)])


RULES: dict[str, Callable] = {"valley": suggest_valley, "steep": suggest_steep, "minimum": suggest_minimum}


VALLEY_RANGE = (1 / 4, 1 / 2)  # the valley is clipped into [lr_min/4, lr_min/2] (lr_min: LR at the lowest loss)


def suggest(lrs, losses, rule: str = "valley", min_lr: float = 0.0, max_lr: float = math.inf) -> float:
    """The named rule's suggestion, clipped to [min_lr, max_lr] and to at most the lowest-loss LR.

    The valley is also anchored on the minimum: clipped into VALLEY_RANGE x the lowest-loss LR. Alone,
    it reads the whole falling stretch of the curve, and when that starts with a long gentle slope (as
    when fine-tuning a pretrained network: the loss drifts down for decades before it drops) it lands
    far too low: on birds10 from the birds175 backbone it picked 7e-4 for the head, a 87% model against
    94% at 3e-3..1e-2 (see bench/README.md). The first few points, where the debiased average still
    follows single batches, are skipped."""
    lrs_a, losses_a = _trim(lrs, losses)
    skip = min(5, len(lrs_a) // 10)
    lrs_a, losses_a = lrs_a[skip:], losses_a[skip:]
    lr = RULES[rule](lrs_a, losses_a)
    at_min = float(lrs_a[int(np.argmin(losses_a))])
    if rule == "valley":
        lr = min(max(lr, at_min * VALLEY_RANGE[0]), at_min * VALLEY_RANGE[1])
    lr = min(lr, at_min)
    return float(min(max(lr, min_lr), max_lr))


# ----------------------------------------------------------------------------------------------------


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)


def lr_range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: Callable[[int], float],
    start: float = 1e-6,
    end: float = 1.0,
    iterations: int = 100,
    smoothing: float = 0.95,
    diverge: float = 4.0,
    rule: str = "valley",
    min_lr: float = 0.0,
    max_lr: float = math.inf,
    progress: Callable[[int, float, float], None] | None = None,
) -> LRFindResult:
    """Run the test. `step(i)` performs training step i (forward, backward, optimizer.step()) at the
    LR this function has set, and returns the mini-batch loss. Model and optimizer are restored after."""
    model_state = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(optimizer.state_dict())
    lrs, losses, smoothed = [], [], []
    best, avg = math.inf, 0.0
    try:
        for i, lr in enumerate(lr_schedule(start, end, iterations)):
            _set_lr(optimizer, lr)
            loss = float(step(i))
            lrs.append(lr)
            losses.append(loss)
            avg = smoothing * avg + (1 - smoothing) * loss
            s = avg / (1 - smoothing ** (i + 1)) if smoothing > 0 else loss
            smoothed.append(s)
            if progress is not None:
                progress(i, lr, s)
            if not math.isfinite(s) or (i > 5 and s > diverge * best):
                break
            best = min(best, s)
    finally:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(opt_state)
    curve = robust_curve(losses) if losses else []
    result = LRFindResult(lrs, losses, smoothed, curve, rule=rule)
    for name in RULES:
        result.suggestions[name] = suggest(lrs, curve, name, min_lr, max_lr)
    return result


def write_csv(result: LRFindResult, path: str | Path) -> None:
    """Raw (lr, loss) pairs with the online-smoothed and zero-lag curves beside them."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lr", "loss", "smoothed_loss", "centered_loss"])
        for lr, loss, s, c in zip(result.lrs, result.losses, result.smoothed, result.curve):
            w.writerow([f"{lr:.6g}", f"{loss:.6g}", f"{s:.6g}", f"{c:.6g}"])
