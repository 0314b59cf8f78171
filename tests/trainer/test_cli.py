"""The `trainer` command line through CliRunner: exit codes, one-line errors, the fit/evaluate workflow."""

import json

import pytest
from click.testing import CliRunner

from tests.conftest import build_tree
from tests.trainer.helpers import tiny_tree
from trainer.cli import main

TINY = ["--weights", "none", "--resize", "40", "--crop", "32", "--batch-size", "8", "--precision", "fp32",
        "--device", "cpu"]


@pytest.fixture
def tiny_config_file(tmp_path):
    p = tmp_path / "config.toml"
    p.write_text("[trainer]\nhead_epochs = 1\nepochs = 1\ncache_dir = \"\"\nthreads = 1\n"
                 "[trainer.lr_find]\niterations = 6\nhead_iterations = 10\n")
    return str(p)


def run(args):
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("tree, message", [
    (None, "dataset folder not found"),
    ({"only": {"a.jpg": None}}, "only one class"),
    ({"a": {"1.jpg": None}, "b": {}}, "holds no photos"),
    ({"train": {"a": {"1.jpg": None}, "b": {"1.jpg": None}}, "val": {"c": {"1.jpg": None}}}, "class 'c' is in"),
])
def test_bad_dataset_is_one_line_and_exit_2(tmp_path, tree, message, tiny_config_file):
    root = tmp_path / "data"
    if tree is not None:
        root.mkdir()
        build_tree(root, tree)
    r = run(["fit", str(root), "--config", tiny_config_file, *TINY, "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in r.output


def test_bad_weights_and_config_errors(tmp_path, tiny_config_file):
    root = tiny_tree(tmp_path / "d", n=4)
    r = run(["fit", str(root), "--config", tiny_config_file, *TINY, "--weights", str(tmp_path / "nope.pt")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "weights file not found" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[trainer]\nepoch = 3\n")
    r = run(["fit", str(root), "--config", str(bad)])
    assert r.exit_code == 3 and "trainer.epoch" in r.output and len(r.output.strip().splitlines()) == 1
    r = run(["evaluate", str(tmp_path / "no-run"), str(root)])
    assert r.exit_code == 2 and "checkpoint not found" in r.output


def test_lr_find_fit_evaluate_workflow(tmp_path, tiny_config_file):
    root = tiny_tree(tmp_path / "d", split=True)
    r = run(["lr-find", str(root), "--config", tiny_config_file, *TINY, "--out", str(tmp_path / "lr")])
    assert r.exit_code == 0, r.output
    assert "valley" in r.output and "<- used by fit" in r.output and (tmp_path / "lr" / "lr_find_head.png").is_file()
    r = run(["fit", str(root), "--config", tiny_config_file, *TINY, "--lr", "0.01", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "best val top-1" in r.output and (tmp_path / "run" / "best.pt").is_file()
    r = run(["evaluate", str(tmp_path / "run"), str(root), "--out", str(tmp_path / "eval")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["n"] == 6 and set(m["per_class"]) == {"alpha", "beta", "gamma"} and 0 <= m["ece"] <= 1
    assert (tmp_path / "eval" / "confusion.png").is_file() and (tmp_path / "eval" / "most_confused.png").is_file()
