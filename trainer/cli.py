"""`trainer` command line: parse, call trainer.train / trainer.evaluate, print. No logic lives here."""

from __future__ import annotations

import logging
import sys

import click

from sorter.errors import UserError

from .config import load_config


class Group(click.Group):
    """Turns a UserError anywhere below into one line `error: ...` and its exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=Group)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Fine-tune ResNet-18 on a folder of labelled bird photos: lr-find, fit, evaluate."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")


def common(f):
    """Options shared by fit and lr-find (each overrides its config.toml key when given)."""
    options = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False), help="config.toml to use."),
        click.option("--weights", help="Initial weights: imagenet | none | PATH (state_dict or checkpoint)."),
        click.option("--batch-size", type=int, help="Photos per training step."),
        click.option("--resize", type=int, help="Shorter side (px) photos are resized to."),
        click.option("--crop", type=int, help="Centre-crop side (px) of evaluation (and exported) inputs."),
        click.option("--train-crop-ratio", type=float,
                     help="Side of the whole network's random training crops, as a share of --crop "
                          "(0.78: 112 of 144 px)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train."),
        click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), help="bf16 autocast or fp32."),
        click.option("--seed", type=int, help="Seed of the split, initialisation and augmentation."),
        click.option("--others", type=click.Path(file_okay=False), help="Folder of other species' photos (open set)."),
        click.option("--others-weight", type=float, help="Weight of the uniform-target loss on --others photos."),
        click.option("--others-per-batch", type=int, help="--others photos added to each batch."),
        click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/<time>)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _overrides(**flags) -> dict:
    return {k: v for k, v in flags.items() if v is not None}


@main.command("lr-find")
@click.argument("data", type=click.Path())
@common
@click.option("--stage", type=click.Choice(["head", "full"]), default="head", show_default=True,
              help="head: new classifier on a frozen backbone; full: whole network (after the head).")
@click.option("--rule", type=click.Choice(["valley", "steep", "minimum"]), help="Suggestion rule used.")
def lr_find_cmd(data, config_path, out, stage, rule, **flags) -> None:
    """LR range test on DATA: suggestions printed, curve saved as PNG and CSV."""
    from .train import lr_find

    over = _overrides(**flags)
    if rule:
        over["lr_find.rule"] = rule
    cfg = load_config(config_path, over)
    res = lr_find(cfg, data, out, stage)
    for name, lr in res["suggestions"].items():
        click.echo(f"{name:8s} {lr:.3g}" + ("   <- used by fit" if name == res["rule"] else ""))
    click.echo(f"curve: {res['png']}\nraw:   {res['csv']}")


@main.command("fit")
@click.argument("data", type=click.Path())
@common
@click.option("--epochs", type=int, help="Whole-network epochs (stage 2).")
@click.option("--head-epochs", type=int, help="Head-only epochs on the frozen backbone (stage 1).")
@click.option("--lr", type=float, help="Stage 2 peak LR (default: LR finder).")
@click.option("--head-lr", type=float, help="Stage 1 peak LR (default: LR finder).")
@click.option("--resume", type=click.Path(file_okay=False),
              help="Continue the interrupted run in this folder (with its own config; other flags are ignored).")
def fit_cmd(data, config_path, out, resume, **flags) -> None:
    """Fine-tune on DATA (root/<class>/* or root/{train,val}/<class>/*) into a run folder."""
    from .train import fit

    cfg = load_config(config_path, _overrides(**flags))
    res = fit(cfg, data, out, resume)
    best = res.best
    click.echo(f"run: {res.run_dir}")
    click.echo("learning rates: " + ", ".join(f"{k} {v:.3g}" for k, v in res.lrs.items()))
    if best:
        click.echo(f"best val top-1 {best['val_top1']:.2%} ({best['stage']} epoch {best['epoch']}) -> "
                   f"{res.run_dir / 'best.pt'}")


@main.command("evaluate")
@click.argument("model", type=click.Path())
@click.argument("data", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), help="Folder for metrics.json and plots.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to run.")
@click.option("--unknown", type=click.Path(file_okay=False),
              help="Exported models: photos of other species, for the review rates at the card's threshold.")
@click.option("--threshold", type=float, help="Exported models: review threshold instead of the card's.")
def evaluate_cmd(model, data, out, device, unknown, threshold) -> None:
    """Top-1, per-class precision/recall, confusion matrix and calibration of MODEL on DATA (its val/
    split, or all photos of a flat class folder). MODEL is a run folder or checkpoint, or an exported
    model (exports/NAME.onnx or .json), which is then run through the sorter's own code."""
    if model.endswith((".onnx", ".json")):
        from pathlib import Path

        from .cli_export import echo_evaluation
        from .onnx_eval import evaluate_exported

        report = evaluate_exported(model, data, unknown, threshold)
        echo_evaluation(report, Path(out) / "metrics.json" if out else None)
        return
    from .device import pick_machine
    from .evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(model, data, out, pick_machine(device))
    click.echo(f"top-1 {r['top1']:.2%} on {r['n']} photos; NLL {r['nll']:.3f}; ECE {r['ece']:.3f}")
    for name, c in r["per_class"].items():
        p = "-" if c["precision"] is None else f"{c['precision']:.2f}"
        rec = "-" if c["recall"] is None else f"{c['recall']:.2f}"
        click.echo(f"  {name:32s} precision {p}  recall {rec}  ({c['support']} photos)")


def _add_export() -> None:
    from .cli_export import export_cmd

    main.add_command(export_cmd)


_add_export()


if __name__ == "__main__":
    main()
