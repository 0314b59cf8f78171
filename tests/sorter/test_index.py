from sorter.index import Index
from sorter.report import Row


def test_index_records_lookups_and_status(tmp_path):
    lib = tmp_path / "lib"
    (lib / "A").mkdir(parents=True)
    (lib / "A" / "a.jpg").write_bytes(b"a")
    idx = Index(lib / ".sorter" / "index.sqlite", lib)
    assert idx.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "files_sha256" in {r[1] for r in idx.db.execute("PRAGMA index_list(files)")}
    idx.start_run("r1", "t0", "/in", "m@x", "/lib/reports/r1.csv", False)
    rows = [Row("t", "/in/a.jpg", str(lib / "A" / "a.jpg"), "moved", "A", run="r1", sha256="ha", primary=True),
            Row("t", "/in/a.cr2", str(lib / "A" / "a.cr2"), "moved", "A", run="r1", sha256="hc"),  # a sibling
            Row("t", "/in/gone.jpg", str(lib / "A" / "gone.jpg"), "moved", "A", run="r1", sha256="hg", primary=True),
            Row("t", "/in/r.jpg", str(lib / "_review" / "r.jpg"), "review", "A", run="r1", sha256="hr", primary=True),
            Row("t", "/in/d.jpg", "", "duplicate", run="r1", sha256="ha", size=1, mtime_ns=5, remember=True)]
    idx.record(rows, [{"path": str(lib / "A" / "a.xmp"), "run": "r1", "orig_sha256": None, "new_sha256": "x"}])
    idx.record(rows, [])  # replayed by recovery: idempotent
    idx.end_run("r1", "t1", "done", {"moved": 2})
    assert idx.find_sha("ha") == lib / "A" / "a.jpg"
    assert idx.find_sha("hg") is None  # indexed but no longer on disk: not a duplicate
    assert idx.seen_unchanged("/in/d.jpg", 1, 5) and not idx.seen_unchanged("/in/d.jpg", 1, 6)
    assert idx.sidecars_of_run("r1") == {str(lib / "A" / "a.xmp"): (None, "x")}
    c = idx.counts()
    assert c["species"] == {"A": 2} and c["actions"]["review"] == 1
    assert idx.last_runs()[0]["counts"] == {"moved": 2}
    idx.record([Row("t", str(lib / "A" / "a.jpg"), "/in/a.jpg", "undone")], [])
    assert idx.find_sha("ha") is None
    idx.close()
