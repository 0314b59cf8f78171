"""Undo corner cases (the main undo behaviour is tested end to end in test_runner.py)."""

from __future__ import annotations

import sqlite3

import sorter.report
from sorter.report import read_report
from sorter.undo import undo
from tests.conftest import make_colour_photo


def test_two_undos_in_the_same_second_get_their_own_reports(tmp_path, make_runner, monkeypatch):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    make_colour_photo(inbox / "a.jpg", "red", seed=1)
    first = make_runner().run()
    make_colour_photo(inbox / "b.jpg", "blue", seed=2)
    second = make_runner().run()
    monkeypatch.setattr(sorter.report.time, "strftime", lambda fmt, *a: "20990101-000000")  # one second
    u1, u2 = undo(first.report), undo(second.report)
    assert u1.report != u2.report
    assert {r.source for r in read_report(u1.report)} == {str(lib / "Red_Bird" / n) for n in ("a.jpg", "a.xmp")}
    assert {r.source for r in read_report(u2.report)} == {str(lib / "Blue_Bird" / n) for n in ("b.jpg", "b.xmp")}
    db = sqlite3.connect(lib / ".sorter" / "index.sqlite")
    runs = {r for (r,) in db.execute("SELECT report FROM runs WHERE model = 'undo'")}
    db.close()
    assert runs == {str(u1.report), str(u2.report)}
