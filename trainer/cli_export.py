"""Click commands for exporting a run and evaluating an exported model (parse and print only).

`trainer.cli` adds them to its group: `trainer export RUN --name NAME ...`; `trainer evaluate` hands an
exported model (a .onnx/.json path) to `evaluate_exported`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from .export import ExportOptions, export_run


@click.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Model name: writes OUT/NAME.onnx and OUT/NAME.json (the model card).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("exports"), show_default=True,
              help="Folder for exported models.")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="The labelled dataset the run was trained on (its val split measures the export).")
@click.option("--unknown", type=click.Path(path_type=Path), default=None,
              help="Photos of species the model does not know, for the review curve and threshold.")
@click.option("--unknown-share", type=float, default=0.1, show_default=True,
              help="Share of unknown species in an inbox, used to weight the unknown photos.")
@click.option("--target-precision", type=float, default=0.98, show_default=True,
              help="The recommended review threshold is the lowest that reaches this precision.")
@click.option("--score", default="msp", show_default=True,
              help="Open-set score the sorter thresholds (msp: calibrated softmax confidence, max_logit, energy).")
@click.option("--int8", "int8", is_flag=True, help="Also write OUT/NAME.int8.onnx (static QDQ quantization), measured.")
@click.option("--int8-only", is_flag=True, help="Ship only the int8 graph, as OUT/NAME.onnx (measured, then described by the card).")
@click.option("--quant-format", type=click.Choice(["qdq", "qoperator"]), default="qdq", show_default=True,
              help="int8 format tried first (the other is tried too when the first is not faster).")
@click.option("--force", is_flag=True, help="Replace an existing model of the same name.")
def export_cmd(run, name, out, data, unknown, unknown_share, target_precision, score, int8, int8_only, quant_format,
               force):
    """Export RUN (a run folder or checkpoint) to ONNX with a model card, parity checked."""
    opts = ExportOptions(name=name, out=out, data=data, unknown=unknown, unknown_share=unknown_share,
                         target_precision=target_precision, score=score, int8=int8, int8_only=int8_only, quant_format=quant_format,
                         force=force, command=shlex.join(["trainer", *sys.argv[1:]]))
    result = export_run(run, opts)
    for line in result.lines:
        click.echo(line)


def echo_evaluation(report: dict, out_json: Path | None) -> None:
    from .evaluate import write_json

    click.echo(f"{report['model']}: top-1 {report['top1']:.2%} on {report['photos']} photos, ECE {report['ece']:.3f}")
    for c, r in report["per_class_recall"].items():
        click.echo(f"  {c:28s} recall {r:.2%}")
    if "open_set" in report:
        o = report["open_set"]
        click.echo(f"review at threshold {o['threshold']:.4g} ({o['score']}): known {o['review_known']:.1%}, "
                   f"unknown {o['review_unknown']:.1%}, precision {o['precision']:.2%}")
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        write_json(report, out_json)
        click.echo(f"wrote {out_json}")
