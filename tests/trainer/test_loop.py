"""The training loop: OneCycle schedule, two stages, checkpoints, exact resume, others (outlier) loss."""

import csv
import dataclasses

import numpy as np
import pytest
import torch

from tests.trainer.helpers import tiny_config, tiny_tree
from trainer.checkpoint import load_checkpoint, model_from_checkpoint
from trainer.data import load_dataset
from trainer.device import pick_machine
from trainer.evaluate import predict_logits
from trainer.loop import layer_groups, make_optimizer, make_scheduler, param_groups
from trainer.model import build_model
from trainer.train import fit


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tiny_tree(tmp_path_factory.mktemp("tiny"), split=True)
    cfg = tiny_config()
    return root, cfg, load_dataset(root, cfg.resize, cfg.crop)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_cycle_lr_and_momentum_follow_the_schedule(optimizer):
    cfg = dataclasses.replace(tiny_config(), optimizer=optimizer, group_decay=0.5)
    model = build_model(3, "none")
    opt = make_optimizer(cfg, param_groups(layer_groups(model), cfg.group_decay, cfg.weight_decay))
    total, peak = 40, 0.1
    sched = make_scheduler(cfg, opt, peak, total)
    lrs, moms = [], []
    for _ in range(total):
        g = opt.param_groups[-1]
        lrs.append(g["lr"])
        moms.append(g["momentum"] if optimizer == "sgd" else g["betas"][0])
        opt.step()
        sched.step()
    # the closed form of the one-cycle policy (cosine annealing up to step pct*total - 1, then down)
    up = cfg.pct_start * total - 1
    initial = peak / cfg.div_factor
    final = initial / cfg.final_div_factor

    def cos(a, b, t):
        return b + (a - b) / 2 * (1 + np.cos(np.pi * t))

    for step in range(total):
        if step <= up:
            lr, mom = cos(initial, peak, step / up), cos(cfg.momentum[0], cfg.momentum[1], step / up)
        else:
            t = (step - up) / (total - 1 - up)
            lr, mom = cos(peak, final, t), cos(cfg.momentum[1], cfg.momentum[0], t)
        assert lrs[step] == pytest.approx(lr, rel=1e-6), step
        assert moms[step] == pytest.approx(mom, rel=1e-6), step
    assert max(lrs) == pytest.approx(peak) and int(np.argmin(moms)) == int(np.argmax(lrs))
    # discriminative LRs: earlier groups at geometric fractions of the head's LR
    first_peak = max(g["max_lr"] for g in opt.param_groups[:2])
    assert first_peak == pytest.approx(peak * cfg.group_decay ** 4)


def test_fit_writes_a_complete_run_folder(tiny, tmp_path):
    root, cfg, data = tiny
    res = fit(cfg, root, tmp_path / "run", data=data, progress=False)
    run = res.run_dir
    for name in ("config.json", "history.csv", "best.pt", "last.pt", "lr_find_head.csv", "lr_find_head.png",
                 "lr_find_full.csv", "lr_find_full.png", "curves.png", "metrics.json", "confusion.png",
                 "most_confused.png"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert [(r["stage"], r["epoch"]) for r in rows] == [("head", "1"), ("full", "1"), ("full", "2")]
    ckpt = load_checkpoint(run)
    assert ckpt["classes"] == ["alpha", "beta", "gamma"] and ckpt["input"] == {"resize": 40, "crop": 32}
    assert ckpt["arch"] == "resnet18" and ckpt["weights"] == "none" and ckpt["config"]["crop"] == 32
    assert set(ckpt["lrs"]) == {"head", "full"} and 0 < ckpt["metrics"]["val_top1"] <= 1
    # the checkpoint alone rebuilds the model, and it reproduces the logged val accuracy
    model = model_from_checkpoint(ckpt)
    logits = predict_logits(model, data.val.pixels, pick_machine("cpu", "fp32"))
    acc = float((logits.argmax(1) == data.val.labels).mean())
    assert acc == pytest.approx(ckpt["metrics"]["val_top1"], abs=1e-6)


def test_resume_reproduces_an_uninterrupted_run(tiny, tmp_path):
    root, cfg, data = tiny
    cfg = dataclasses.replace(cfg, head_lr=0.01, lr=0.01, head_epochs=2, epochs=2)
    full = fit(cfg, root, tmp_path / "full", data=data, progress=False, evaluate=False)
    for stop in (1, 3):  # interrupted inside the head stage, and inside the whole-network stage
        part = tmp_path / f"part{stop}"
        fit(cfg, root, part, data=data, progress=False, stop_after=stop, evaluate=False)
        assert len(load_checkpoint(part, "last.pt")["history"]) == stop
        fit(cfg, root, resume=part, data=data, progress=False, evaluate=False)
        a, b = load_checkpoint(full.run_dir, "last.pt"), load_checkpoint(part, "last.pt")
        for k, v in a["model"].items():
            assert torch.equal(v, b["model"][k]), (stop, k)
        assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
        assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]


def test_resume_refuses_other_data(tiny, tmp_path):
    root, cfg, data = tiny
    cfg = dataclasses.replace(cfg, head_lr=0.01, lr=0.01)
    fit(cfg, root, tmp_path / "run", data=data, progress=False, stop_after=1, evaluate=False)
    other = tiny_tree(tmp_path / "other", classes=("x", "y", "z"), split=True)
    from trainer.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="other data"):
        fit(cfg, other, resume=tmp_path / "run", progress=False)


def test_others_add_a_uniform_target_loss(tiny, tmp_path):
    root, cfg, _ = tiny
    others = tiny_tree(tmp_path / "others", classes=("s1", "s2"), n=5)
    cfg = dataclasses.replace(cfg, head_lr=0.01, lr=0.01, others=str(others), others_per_batch=4, others_max=6)
    data = load_dataset(root, cfg.resize, cfg.crop, others=cfg.others, others_max=cfg.others_max)
    assert data.others is not None and len(data.others) == 6
    with_others = fit(cfg, root, tmp_path / "with", data=data, progress=False, evaluate=False)
    without = fit(dataclasses.replace(cfg, others=None), root, tmp_path / "without",
                  data=dataclasses.replace(data, others=None), progress=False, evaluate=False)
    # same seed and batches: only the extra loss term differs
    assert with_others.history[0]["train_loss"] != without.history[0]["train_loss"]


def test_lr_find_for_the_whole_network_trains_the_head_first(tiny, tmp_path):
    root, cfg, data = tiny
    from trainer.train import lr_find

    res = lr_find(cfg, root, tmp_path / "lr", "full", data=data, progress=False)
    assert set(res["suggestions"]) == {"valley", "steep", "minimum"}
    assert all(cfg.lr_find.min_lr <= v <= cfg.lr_find.max_lr for v in res["suggestions"].values())
    assert (tmp_path / "lr" / "lr_find_head.png").is_file() and (tmp_path / "lr" / "lr_find_full.csv").is_file()
    assert not (tmp_path / "lr" / "best.pt").exists()  # the head training there is not a run


def test_evaluate_on_the_training_folder_scores_only_its_held_out_split(tmp_path):
    from trainer.evaluate import evaluate_checkpoint

    root = tiny_tree(tmp_path / "flat", n=10)
    cfg = dataclasses.replace(tiny_config(), head_lr=0.01, lr=0.01, epochs=1)
    fit(cfg, root, tmp_path / "run", progress=False, evaluate=False)
    m = evaluate_checkpoint(tmp_path / "run", root, tmp_path / "eval", pick_machine("cpu", "fp32"))
    assert m["n"] == 6  # the 20% held out, not all 30 photos
    other = tiny_tree(tmp_path / "other", n=3)  # a different folder with the same classes: all photos
    assert evaluate_checkpoint(tmp_path / "run", other, tmp_path / "eval2", pick_machine("cpu", "fp32"))["n"] == 9


def test_the_whole_network_trains_on_smaller_crops_and_is_validated_on_the_eval_crop(tiny, tmp_path):
    root, cfg, data = tiny
    cfg = dataclasses.replace(cfg, head_lr=0.01, lr=0.01, head_epochs=0, epochs=1, train_crop_ratio=0.5)
    from trainer.loop import Fit

    run = Fit(cfg, data, pick_machine("cpu", "fp32"), tmp_path / "run", progress=False)
    (tmp_path / "run").mkdir()
    seen = []
    run.model.conv1.register_forward_pre_hook(lambda m, args: seen.append((m.training, tuple(args[0].shape[-2:]))))
    run.run()
    assert {s for t, s in seen if t} == {(16, 16)}   # training batches: 0.5 x the 32 px eval crop
    assert {s for t, s in seen if not t} == {(32, 32)}  # validation: the eval transform's crop


def test_best_checkpoint_is_a_snapshot_that_later_epochs_do_not_change(tiny, tmp_path):
    root, cfg, data = tiny
    cfg = dataclasses.replace(cfg, head_lr=0.01, lr=0.01, head_epochs=1, epochs=3)
    res = fit(cfg, root, tmp_path / "run", data=data, progress=False, evaluate=False)
    best, last = load_checkpoint(res.run_dir, "best.pt"), load_checkpoint(res.run_dir, "last.pt")
    assert (best["stage"], best["epoch"]) == (res.best["stage"], res.best["epoch"])
    assert best["metrics"]["val_top1"] == max(r["val_acc"] for r in res.history)
    if (best["stage"], best["epoch"]) != ("full", 3):  # an earlier epoch won: last.pt moved on since
        assert any(not torch.equal(v, last["model"][k]) for k, v in best["model"].items())


def test_publish_copy_is_atomic_and_survives_the_source_being_replaced(tmp_path, monkeypatch):
    import os

    from trainer.checkpoint import publish_copy, save_checkpoint

    save_checkpoint({"v": 1}, tmp_path / "last.pt")
    publish_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    save_checkpoint({"v": 2}, tmp_path / "last.pt")  # replaced by rename, as every epoch does
    assert torch.load(tmp_path / "best.pt")["v"] == 1 and torch.load(tmp_path / "last.pt")["v"] == 2

    def no_links(*a, **k):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # FAT, some network shares: a copy instead
    publish_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    assert torch.load(tmp_path / "best.pt")["v"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary left


def test_resume_links_best_when_stopped_between_last_and_best(tiny, tmp_path):
    root, cfg, data = tiny
    cfg = dataclasses.replace(cfg, head_lr=0.01, lr=0.01, head_epochs=1, epochs=2)
    run = tmp_path / "run"
    fit(cfg, root, run, data=data, progress=False, stop_after=1, evaluate=False)
    (run / "best.pt").unlink()  # as if killed after last.pt was written, before best.pt was linked to it
    from trainer.loop import Fit

    Fit(cfg, data, pick_machine("cpu", "fp32"), run, progress=False).load_resume(run)
    assert load_checkpoint(run, "best.pt")["epoch"] == load_checkpoint(run, "last.pt")["epoch"] == 1
