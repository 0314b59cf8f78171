"""Trainer defaults vs a plain fine-tuning baseline, same data, same epochs, same run; plus the LR
finder's choice beside a sweep of fixed learning rates.

    python bench/train_bench.py [--data ../shared/data/birds10] [--weights ../shared/models/resnet18-birds175.pt]
                                [--parts bench,sweep] [--sweep 0.003,0.01,0.03]

- trainer: `trainer.train.fit` with config.toml's defaults (cold decode cache included in its time).
- baseline: fp32, NCHW, a torch DataLoader decoding JPEGs every epoch with torchvision transforms
  (RandomResizedCrop + flip), Adam at a constant 1e-3, no LR finder, no staging, the same number of
  epochs (head_epochs + epochs) and batch size.
Both are scored on the same val pixels (the trainer's eval transform, fp32). Timings on a shared
machine are noisy: read the ratio, and rerun when in doubt.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trainer.config import load_config  # noqa: E402
from trainer.data import load_dataset  # noqa: E402
from trainer.device import pick_machine  # noqa: E402
from trainer.evaluate import predict_logits  # noqa: E402
from trainer.model import MEAN, STD, build_model  # noqa: E402
from trainer.train import fit  # noqa: E402


def accuracy(model, data, machine) -> float:
    logits = predict_logits(model, data.val.pixels, machine)
    return float((logits.argmax(1) == data.val.labels).mean())


def baseline(root: Path, weights: str, cfg, epochs: int, fp32) -> tuple[float, torch.nn.Module]:
    """The plain recipe; returns (seconds, model)."""
    from torchvision import datasets, transforms

    torch.manual_seed(cfg.seed)
    tf = transforms.Compose([
        transforms.RandomResizedCrop(cfg.crop, scale=(cfg.scale_min, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    t0 = time.perf_counter()
    ds = datasets.ImageFolder(root / "train", tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=0)
    model = build_model(len(ds.classes), weights)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for epoch in range(epochs):
        seen, correct = 0, 0
        for x, y in loader:
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
            correct += int((out.argmax(1) == y).sum())
        print(f"  baseline epoch {epoch + 1}/{epochs}: train acc {correct / seen:.3f} "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
    return time.perf_counter() - t0, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent.parent / "shared/data/birds10"))
    ap.add_argument("--weights", default=str(REPO.parent.parent / "shared/models/resnet18-birds175.pt"))
    ap.add_argument("--parts", default="bench,sweep", help="bench (trainer vs baseline), sweep (LR check)")
    ap.add_argument("--sweep", default="0.003,0.01,0.03", help="fixed whole-network peak LRs to compare")
    ap.add_argument("--config", default=None)
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    root = Path(args.data)
    cfg = dataclasses.replace(load_config(args.config), weights=args.weights)
    fp32 = pick_machine(cfg.device, "fp32", cfg.threads)
    machine = pick_machine(cfg.device, cfg.precision, cfg.threads)
    epochs = cfg.head_epochs + cfg.epochs
    print(f"data {root}, weights {args.weights}; {epochs} epochs ({cfg.head_epochs} head + {cfg.epochs} full), "
          f"batch {cfg.batch_size}, {cfg.resize}/{cfg.crop} px; trainer precision {machine.precision}, "
          f"{torch.get_num_threads()} threads", flush=True)
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {}
        if "bench" in parts:
            t0 = time.perf_counter()
            run_cfg = dataclasses.replace(cfg, cache_dir=str(tmp / "cache"))  # cold cache: decoding is timed
            res = fit(run_cfg, root, tmp / "trainer", machine=machine, progress=False, evaluate=False)
            t_trainer = time.perf_counter() - t0
            data = load_dataset(root, cfg.resize, cfg.crop, cache_dir=run_cfg.cache_dir)
            from trainer.checkpoint import load_checkpoint, model_from_checkpoint

            last = accuracy(model_from_checkpoint(load_checkpoint(res.run_dir, "last.pt")), data, fp32)
            best = res.best["val_top1"]
            print(f"trainer: {t_trainer:.1f}s, val top-1 {last:.2%} at the last epoch ({best:.2%} best "
                  f"epoch), LRs {', '.join(f'{k} {v:.3g}' for k, v in res.lrs.items())}", flush=True)
            t_base, model = baseline(root, args.weights, cfg, epochs, fp32)
            base = accuracy(model, data, fp32)
            print(f"baseline: {t_base:.1f}s, val top-1 {base:.2%} at the last epoch", flush=True)
            print(f"RESULT time trainer/baseline = {t_trainer / t_base:.3f} ({t_trainer:.1f}s vs {t_base:.1f}s); "
                  f"val top-1 {last:.2%} vs {base:.2%}", flush=True)
            reached = [r for r in res.history if r["val_acc"] >= base]
            if reached:  # time to the baseline's final accuracy, counted from the start of fit (decoding included)
                r = reached[0]
                print(f"RESULT trainer reached the baseline's {base:.2%} after {r['elapsed']:.1f}s ({r['stage']} epoch "
                      f"{r['epoch']}): {r['elapsed'] / t_base:.3f} of the baseline's time", flush=True)
            else:
                print("RESULT trainer never reached the baseline's accuracy", flush=True)
            results["finder_lr"], results["finder_acc"] = res.lrs["full"], res.history[-1]["val_acc"]
        if "sweep" in parts:
            data = load_dataset(root, cfg.resize, cfg.crop, cache_dir=cfg.cache_dir)
            if "finder_lr" not in results:
                res = fit(cfg, root, tmp / "finder", data=data, machine=machine, progress=False, evaluate=False)
                results["finder_lr"], results["finder_acc"] = res.lrs["full"], res.history[-1]["val_acc"]
                print(f"  finder: full-stage suggestions {res.finder['full'].suggestions}", flush=True)
            rows = [(f"LR finder ({cfg.lr_find.rule})", results["finder_lr"], results["finder_acc"])]
            for lr in [float(v) for v in args.sweep.split(",")]:
                res = fit(dataclasses.replace(cfg, lr=lr), root, tmp / f"lr{lr}", data=data, machine=machine,
                          progress=False, evaluate=False)
                rows.append(("fixed", lr, res.history[-1]["val_acc"]))
                print(f"  fixed lr {lr:.3g}: val top-1 {rows[-1][2]:.2%}", flush=True)
            print("RESULT whole-network peak LR -> val top-1 at the last epoch")
            for name, lr, acc in rows:
                print(f"  {name:22s} {lr:8.3g}  {acc:.2%}")


if __name__ == "__main__":
    main()
