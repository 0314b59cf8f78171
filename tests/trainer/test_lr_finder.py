"""LR range test: exact restoration, sane suggestions on synthetic curves, divergence stop."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from trainer.lr_finder import RULES, lr_range_test, lr_schedule, smooth, suggest, suggest_valley


def _model_and_data(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    return model, x, y


@pytest.mark.parametrize("frozen", [False, True])
def test_model_and_optimizer_restored_bit_for_bit(frozen):
    model, x, y = _model_and_data()
    if frozen:  # head-only stage: only the last layer trains
        for p in model[:3].parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD([{"params": params, "lr_mult": 0.5}], lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss()

    def step(i):
        opt.zero_grad()
        loss = loss_fn(model(x[i % 4 * 16:(i % 4 + 1) * 16]), y[i % 4 * 16:(i % 4 + 1) * 16])
        loss.backward()
        opt.step()
        return loss.item()

    step(0)  # the optimizer has momentum buffers and BatchNorm running stats have moved
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = {k: v["momentum_buffer"].clone() for k, v in opt.state_dict()["state"].items()}
    lr_before = opt.param_groups[0]["lr"]
    res = lr_range_test(model, opt, step, 1e-5, 10.0, 40)
    assert len(res.lrs) > 5
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    after = opt.state_dict()["state"]
    assert set(after) == set(opt_before)
    for k, v in after.items():
        assert torch.equal(v["momentum_buffer"], opt_before[k])
    assert opt.param_groups[0]["lr"] == lr_before
    assert res.lrs[1] / res.lrs[0] == pytest.approx((10.0 / 1e-5) ** (1 / 39))


def test_sweep_stops_at_divergence_and_sets_group_ratios():
    w = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [w], "lr_mult": 1.0}, {"params": [nn.Parameter(torch.zeros(1))], "lr_mult": 0.1}],
                          lr=1.0)
    seen = []

    def step(i):
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[1]["lr"]))
        lr = opt.param_groups[0]["lr"]
        return 1.0 if lr < 1e-2 else 1.0 + (lr / 1e-2) ** 2  # blows up above 1e-2

    res = lr_range_test(nn.Linear(1, 1), opt, step, 1e-5, 10.0, 100, smoothing=0.0)
    assert len(res.lrs) < 100 and res.lrs[-1] < 0.1
    assert all(b == pytest.approx(a * 0.1) for a, b in seen)


def synthetic_curve(n=100, noise=0.03, seed=0):
    """A fine-tuning-like curve: flat, falls between 1e-4 and 1e-2, minimum near 2e-2, then diverges."""
    lrs = np.array(lr_schedule(1e-6, 1.0, n))
    t = np.log10(lrs)
    falling = 1.0 / (1 + np.exp(-(t + 3) * 3))  # 0 -> 1 across 1e-4 .. 1e-2
    loss = 2.0 - 1.2 * falling + np.where(t > -1.7, (t + 1.7) ** 2 * 4, 0)
    rng = np.random.default_rng(seed)
    return lrs, loss + rng.normal(0, noise, n)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rule", list(RULES))
def test_suggestion_lands_in_the_falling_part(rule, seed):
    lrs, raw = synthetic_curve(seed=seed)
    sm = smooth(list(raw), 0.9)
    keep = [i for i in range(len(sm)) if sm[i] < 4 * min(sm[:i + 1])]
    lr = suggest(lrs[keep], np.array(sm)[keep], rule)
    # the falling part: from where the loss has dropped a little to before the minimum
    assert 3e-5 <= lr <= 2e-2, (rule, lr)


def test_valley_on_a_clean_curve():
    lrs = np.logspace(-6, 0, 61)
    loss = np.concatenate([np.full(20, 2.0), np.linspace(2.0, 0.5, 30), np.linspace(0.5, 3.0, 11)])
    lr = suggest_valley(lrs, loss)
    assert lrs[20] < lr < lrs[49]


def test_suggest_clips():
    lrs = np.logspace(-6, 0, 61)
    loss = np.linspace(3.0, 1.0, 61)
    assert suggest(lrs, loss, "minimum", min_lr=1e-4, max_lr=0.05) == 0.05
    assert suggest(lrs, loss[::-1].copy(), "valley", min_lr=1e-4) == pytest.approx(1e-4)


def test_smooth_is_debiased():
    s = smooth([2.0, 2.0, 2.0], 0.98)
    assert all(math.isclose(v, 2.0) for v in s)
