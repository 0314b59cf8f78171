"""Hostile model cards: labels that would escape or confuse the library are refused with one clear line
through the command line (`--model path/to/card.json`), before anything is written."""

from __future__ import annotations

import json
import unicodedata

import pytest

from tests.conftest import make_colour_photo
from tests.reliability import figures
from tests.sorter.test_cli import invoke, one_line_error

HOSTILE_LABELS = {
    "dotdot": (["../escape", "B", "C"], "could escape the library"),
    "dotdot-inside": (["A..B", "B", "C"], "could escape the library"),
    "parent": (["..", "B", "C"], "could escape the library"),
    "absolute": (["/etc", "B", "C"], "could escape the library"),
    "backslash": (["A\\..\\B", "B", "C"], "could escape the library"),
    "empty": (["", "B", "C"], "a label is empty"),
    "blank": (["   ", "B", "C"], "a label is empty"),
    "duplicate": (["A", "B", "A"], "duplicate label 'A'"),
    "duplicate-case": (["Robin", "robin", "C"], "duplicate label 'robin'"),
    "duplicate-unicode": ([unicodedata.normalize("NFC", "Mo\u00e9"), unicodedata.normalize("NFD", "Mo\u00e9"), "C"],
                          "duplicate label"),
    "review": (["_review", "B", "C"], "reserved for the library's own folders"),
    "rejected": (["_rejected", "B", "C"], "reserved for the library's own folders"),
    "reports": (["reports", "B", "C"], "a name the library reserves"),
    "state": ([".sorter", "B", "C"], "starts with '.'"),
    "device": (["CON", "B", "C"], "reserved device name"),
    "device-ext": (["nul.txt", "B", "C"], "reserved device name"),
    "nul": (["A\x00B", "B", "C"], "control or reserved characters"),
    "newline": (["A\nB", "B", "C"], "control or reserved characters"),
    "tab": (["A\tB", "B", "C"], "control or reserved characters"),
    "colon": (["A:B", "B", "C"], "control or reserved characters"),
    "spaces": ([" A", "B", "C"], "leading or trailing spaces"),
    "long": (["A" * 300, "B", "C"], "longer than 100 characters"),
    "not-a-string": ([3, "B", "C"], "is not a string"),
    "no-labels": ([], "model card has no labels"),
}


@pytest.mark.parametrize("case", HOSTILE_LABELS)
def test_hostile_labels_are_refused_with_one_line(tmp_path, tiny_card, case):
    labels, reason = HOSTILE_LABELS[case]
    r, inbox, lib = run_with_labels(tmp_path, tiny_card, labels)
    figures.add(trials=1, faults=1, hostile_cards=1)
    one_line_error(r, 4, reason)
    assert "model card" in r.output
    assert not lib.exists() and (inbox / "a.jpg").is_file()


def run_with_labels(tmp_path, tiny_card, labels):
    """`sorter run` with the tiny model under a card carrying `labels`: (result, inbox, library)."""
    card = json.loads(tiny_card.read_text())
    card["labels"] = labels
    hostile = tiny_card.with_name("hostile.json")
    hostile.write_text(json.dumps(card))
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    make_colour_photo(inbox / "a.jpg", "red", seed=1)
    r = invoke("run", inbox, "--library", lib, "--model", hostile, "--settle", 0, "-q", "--device", "cpu")
    return r, inbox, lib


@pytest.mark.parametrize("labels", [["A", "B"], ["A", "B", "C", "D"]], ids=["fewer", "more"])
def test_labels_that_do_not_match_the_model_outputs_are_refused(tmp_path, tiny_card, labels):
    r, inbox, _ = run_with_labels(tmp_path, tiny_card, labels)
    one_line_error(r, 4, "label")
    assert (inbox / "a.jpg").is_file()
