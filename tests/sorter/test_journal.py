from sorter.journal import Journal


def test_pending_done_abort_and_compact(tmp_path):
    j = Journal(tmp_path / ".sorter" / "journal.jsonl").open()
    for t in ("a", "b", "c"):
        j.begin({"id": t, "steps": []})
    j.done("a")
    j.abort("c")
    assert [t["id"] for t in j.pending()] == ["b"]
    j.compact()
    assert j.path.read_bytes() != b""  # b is still pending: kept
    j.done("b")
    j.compact()
    assert j.path.read_bytes() == b"" and j.pending() == []
    j.close()


def test_torn_tail_is_cut_on_open(tmp_path):
    path = tmp_path / "journal.jsonl"
    j = Journal(path).open()
    j.begin({"id": "a", "steps": []})
    j.close()
    with open(path, "ab") as f:
        f.write(b'{"t":"done","id":"a')  # killed mid-append
    j = Journal(path).open()
    assert [t["id"] for t in j.pending()] == ["a"]  # a torn "done" only means: replay (idempotent)
    j.begin({"id": "b", "steps": []})
    assert [t["id"] for t in j.pending()] == ["a", "b"]
    j.close()
