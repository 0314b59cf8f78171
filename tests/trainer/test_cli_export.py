"""trainer export / evaluate through the command line: one clear line per user error."""

import os

from click.testing import CliRunner

from tests.trainer.test_export import SPECIES, link_photos, save_checkpoint
from trainer.cli import main


def test_export_then_evaluate_through_the_cli(shared_data, tmp_path):
    data = link_photos(shared_data, tmp_path / "data", per_split=(2, 2))
    save_checkpoint(tmp_path / "run" / "best.pt", SPECIES)
    (tmp_path / "run" / "config.json").write_text('{"data": "%s"}' % data)  # as trainer fit writes it
    out = tmp_path / "exports"
    runner = CliRunner()
    r = runner.invoke(main, ["export", str(tmp_path / "run"), "--name", "cli", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "parity:" in r.output and (out / "cli.onnx").is_file() and (out / "cli.json").is_file()

    r = runner.invoke(main, ["export", str(tmp_path / "run"), "--name", "cli", "--out", str(out)])
    assert r.exit_code == 2 and r.output.strip().startswith("error:") and "--force" in r.output
    assert len(r.output.strip().splitlines()) == 1

    r = runner.invoke(main, ["export", str(tmp_path / "nothing"), "--name", "x", "--out", str(out)])
    assert r.exit_code == 2 and "checkpoint not found" in r.output and len(r.output.strip().splitlines()) == 1

    unknown = tmp_path / "unknown" / "Mallard"
    unknown.mkdir(parents=True)
    for p in sorted((shared_data / "unknown" / "Mallard").glob("*.jpg"))[:2]:
        os.symlink(p, unknown / p.name)
    r = runner.invoke(main, ["evaluate", str(out / "cli.onnx"), str(data), "--unknown", str(unknown.parent),
                             "--out", str(tmp_path / "eval")])
    assert r.exit_code == 0, r.output
    assert "top-1" in r.output and "review at threshold" in r.output and (tmp_path / "eval" / "metrics.json").is_file()

    (out / "cli.onnx").write_bytes((out / "cli.onnx").read_bytes() + b"\0")
    r = runner.invoke(main, ["evaluate", str(out / "cli.onnx"), str(data)])
    assert r.exit_code == 4 and "does not match its card" in r.output and len(r.output.strip().splitlines()) == 1
