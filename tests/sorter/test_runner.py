"""End-to-end runs on generated photo trees (and real photos) with the tiny colour model."""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from sorter.report import read_report
from sorter.sidecar import keywords
from sorter.undo import undo
from tests.conftest import REPO, build_tree, make_colour_photo
from tests.sorter.conftest import (XMP_MINE, Crash, CrashOps, assert_consistent, colour_tree, photo_inventory,
                                   sha, snapshot)


def rows_by_source(report: Path) -> dict[str, object]:
    return {r.source: r for r in read_report(report)}


def test_run_files_every_photo_once_with_siblings_and_sidecars(tmp_path, make_runner):
    inbox, lib = colour_tree(tmp_path / "inbox"), tmp_path / "lib"
    before = snapshot(inbox)
    originals = photo_inventory(inbox)
    s = make_runner().run()
    assert s.counts["moved"] == 3 * 3 + 3 and s.counts["rejected"] == 3  # IMG_1 group of 3; broken + IMG_2 pair
    assert_consistent(inbox, lib, originals)
    assert not any(inbox.rglob("*.jpg"))
    rows = read_report(s.report)
    assert sorted(r.source for r in rows) == sorted(str(inbox / p) for p in before)  # every file, once
    assert {r.sha256 for r in rows if not r.source.endswith(".xmp")} == set(originals)
    # the RAW+JPEG+XMP group travelled together into the JPEG's species; the XMP kept "mine" and the rating
    group = {p.name for p in (lib / "Green_Bird").iterdir() if p.name.startswith("IMG_1")}
    assert group == {"IMG_1.JPG", "IMG_1.CR2", "IMG_1.xmp"}
    merged = (lib / "Green_Bird" / "IMG_1.xmp").read_bytes()
    kw = keywords(merged)
    assert kw["dc:subject"] == ["mine", "Green_Bird"] and kw["lr:hierarchicalSubject"] == ["Birds|Green_Bird"]
    assert kw["digiKam:TagsList"] == ["Birds/Green_Bird"] and b'Rating="4"' in merged
    # every filed photo without a sidecar got one naming its species
    for jpg in (lib / "Red_Bird").glob("red_*.jpg"):
        assert keywords(jpg.with_suffix(".xmp").read_bytes())["dc:subject"] == ["Red_Bird"]
    # a lone RAW with its darktable-style sidecar: rejected together (no preview in these fake bytes)
    assert (lib / "_rejected" / "IMG_2.NEF").is_file() and (lib / "_rejected" / "IMG_2.NEF.xmp").read_bytes() == XMP_MINE
    rejected = rows_by_source(s.report)[str(inbox / "broken.jpg")]
    assert rejected.action == "rejected" and rejected.error
    # photos are never modified
    for rel, digest in before.items():
        if not rel.endswith(".xmp"):
            hits = [p for p in lib.rglob(Path(rel).name)]
            assert len(hits) == 1 and sha(hits[0]) == digest


def test_second_run_does_nothing_new(tmp_path, make_runner):
    inbox = colour_tree(tmp_path / "inbox")
    os.symlink("/etc/hostname", inbox / "link.jpg")
    shutil.copy(inbox / "red_0.jpg", inbox / "red_copy.jpg")  # a duplicate: left in place, reported once
    runner = make_runner()
    first = runner.run()
    assert first.counts["duplicate"] == 1 and first.counts["skipped"] == 1
    lib_before = snapshot(tmp_path / "lib")
    second = runner.run()
    assert second.report is None and sum(second.counts.values()) == 0
    assert snapshot(tmp_path / "lib") == lib_before
    assert (inbox / "red_copy.jpg").exists() and (inbox / "link.jpg").is_symlink()


def test_dry_run_touches_nothing(tmp_path, make_runner):
    inbox, lib = colour_tree(tmp_path / "inbox"), tmp_path / "lib"
    before = snapshot(inbox)
    s = make_runner(dry_run=True).run()
    assert snapshot(inbox) == before
    assert not (lib / ".sorter").exists() and snapshot(lib) == {}  # only the report was written
    rows = read_report(s.report)
    assert {r.action for r in rows} == {"dry-run"} and len(rows) == len(before)
    planned = {Path(r.destination).parent.name for r in rows}
    assert planned == {"Red_Bird", "Green_Bird", "Blue_Bird", "_rejected"}


def test_collisions_get_a_suffix_for_the_whole_group(tmp_path, make_runner):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    make_colour_photo(inbox / "IMG_5.jpg", "red", seed=1)
    (inbox / "IMG_5.cr2").write_bytes(b"raw one")
    make_runner().run()
    make_colour_photo(inbox / "IMG_5.jpg", "red", seed=2)
    (inbox / "IMG_5.cr2").write_bytes(b"raw two")
    (inbox / "IMG_5.cr2.xmp").write_bytes(XMP_MINE)
    make_runner().run()
    names = sorted(p.name for p in (lib / "Red_Bird").iterdir())
    assert names == ["IMG_5 (2).cr2", "IMG_5 (2).cr2.xmp", "IMG_5 (2).jpg", "IMG_5.cr2", "IMG_5.jpg", "IMG_5.xmp"]
    assert (lib / "Red_Bird" / "IMG_5.cr2").read_bytes() == b"raw one"
    assert (lib / "Red_Bird" / "IMG_5 (2).cr2").read_bytes() == b"raw two"


def test_duplicates_of_library_photos_are_left_in_place(tmp_path, make_runner):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    make_colour_photo(inbox / "a.jpg", "blue", seed=3)
    make_runner().run()
    make_colour_photo(inbox / "again" / "b.jpg", "blue", seed=3)  # same bytes, other name
    s = make_runner().run()
    row = read_report(s.report)[0]
    assert row.action == "duplicate" and str(lib / "Blue_Bird" / "a.jpg") in row.error
    assert (inbox / "again" / "b.jpg").exists()


def test_review_threshold_and_formula_names(tmp_path, make_runner):
    inbox = tmp_path / "inbox"
    make_colour_photo(inbox / '=HYPERLINK("x").jpg', "red", seed=4)
    build_tree(inbox, {"grey.png": lambda p: make_colour_photo(p, "red", seed=5)})
    s = make_runner(threshold=1.01).run()  # nothing reaches it: everything goes to review
    assert s.counts["review"] == 2
    with open(s.report, newline="") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert str(inbox / '=HYPERLINK("x").jpg') in {r.source for r in read_report(s.report)}
    lib = tmp_path / "lib"
    assert (lib / "_review" / '=HYPERLINK("x").jpg').is_file()
    assert not (lib / "_review" / '=HYPERLINK("x").xmp').exists()  # uncertain: no species keywords


def test_settling_files_wait_for_a_later_run(tmp_path, make_runner):
    inbox = tmp_path / "inbox"
    make_colour_photo(inbox / "new.jpg", "red", seed=6)
    s = make_runner(settle=3600).run()
    assert s.report is None and s.waiting == 1 and (inbox / "new.jpg").exists()
    s = make_runner(settle=0.3).run(wait_for_settling=True)  # a one-shot run waits for them, once
    assert s.counts["moved"] == 1 and not (inbox / "new.jpg").exists()


def test_stop_request_finishes_the_batch_and_keeps_the_rest(tmp_path, make_runner):
    inbox = tmp_path / "inbox"
    for i in range(10):
        make_colour_photo(inbox / f"p{i}.jpg", "green", seed=i)
    stop = threading.Event()
    s = make_runner(batch_size=4).run(stop, on_batch=lambda n: stop.set())
    assert s.stopped and s.counts["moved"] == 4
    assert len(list(inbox.glob("*.jpg"))) == 6 and len(read_report(s.report)) == 4


def test_undo_restores_the_inbox_byte_for_byte(tmp_path, make_runner):
    inbox, lib = colour_tree(tmp_path / "inbox"), tmp_path / "lib"
    before = snapshot(inbox)
    s = make_runner().run()
    u = undo(s.report)
    assert u.counts["undone"] == len(before) and not u.refused
    assert snapshot(inbox) == before  # merged sidecars restored exactly, files back in their folders
    assert snapshot(lib) == {}  # created sidecars removed, nothing left behind
    again = undo(s.report)
    assert again.counts["already undone"] == len(before)
    assert_consistent(inbox, lib, photo_inventory(inbox))


def test_undo_refuses_changed_files_and_taken_places(tmp_path, make_runner):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    for i, c in enumerate(("red", "green", "blue")):
        make_colour_photo(inbox / f"{c}.jpg", c, seed=i)
    s = make_runner().run()
    (lib / "Red_Bird" / "red.jpg").write_bytes(b"edited")
    make_colour_photo(inbox / "green.jpg", "green", seed=99)  # a new photo took the old place
    u = undo(s.report)
    assert u.counts["undone"] == 1 and u.counts["refused"] == 2
    reasons = {r.source: r.error for r in read_report(u.report) if r.action == "refused"}
    assert "changed since the run" in reasons[str(lib / "Red_Bird" / "red.jpg")]
    assert "is taken" in reasons[str(lib / "Green_Bird" / "green.jpg")]
    assert (inbox / "blue.jpg").exists() and (lib / "Red_Bird" / "red.jpg").read_bytes() == b"edited"


def crash_points(tmp_path, make_runner, batch_size: int) -> int:
    """Mutating filesystem calls a clean run of the small crash tree makes."""
    ops = CrashOps()
    small_tree(tmp_path / "probe" / "inbox")
    make_runner(tmp_path / "probe" / "inbox", tmp_path / "probe" / "lib", ops=ops, batch_size=batch_size).run()
    return ops.calls


def small_tree(inbox: Path) -> Path:
    make_colour_photo(inbox / "IMG_1.JPG", "green", seed=1)
    (inbox / "IMG_1.CR2").write_bytes(b"raw bytes")
    (inbox / "IMG_1.CR2.xmp").write_bytes(XMP_MINE)
    make_colour_photo(inbox / "b.png", "red", seed=2, fmt="PNG")
    return inbox


@pytest.mark.parametrize("batch_size", [1, 4])  # a transaction per commit, and both groups in one commit
def test_a_crash_at_any_filesystem_call_is_recovered(tmp_path, make_runner, batch_size):
    total = crash_points(tmp_path, make_runner, batch_size)
    assert total > 20
    for at in range(1, total + 1):
        root = tmp_path / f"crash{at}"
        inbox, lib = small_tree(root / "inbox"), root / "lib"
        originals = photo_inventory(inbox)
        with pytest.raises(Crash):
            make_runner(inbox, lib, ops=CrashOps(at), batch_size=batch_size).run()
        assert photo_inventory(inbox, lib) == originals, f"crash at call {at}"
        make_runner(inbox, lib, ops=CrashOps()).run()  # restart: recovery, then the rest of the job
        assert_consistent(inbox, lib, originals)
        assert not list(inbox.rglob("*.*")), f"crash at call {at}: {list(inbox.rglob('*'))}"
        assert sorted(p.name for p in (lib / "Green_Bird").iterdir()) == ["IMG_1.CR2", "IMG_1.CR2.xmp", "IMG_1.JPG"], at
        assert keywords((lib / "Green_Bird" / "IMG_1.CR2.xmp").read_bytes())["dc:subject"] == ["mine", "Green_Bird"], at
        assert (lib / "Red_Bird" / "b.xmp").is_file(), at
        assert (lib / ".sorter" / "journal.jsonl").read_bytes() == b"", at


def test_real_photos_end_to_end(tmp_path, make_runner, shared_data):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for d in sorted((shared_data / "birds10" / "val").iterdir())[:5]:
        for p in sorted(d.glob("*.jpg"))[:4]:
            shutil.copy(p, inbox / p.name)
    originals = photo_inventory(inbox)
    assert sum(originals.values()) == 20
    s = make_runner().run()
    assert_consistent(inbox, tmp_path / "lib", originals)
    assert sum(v for k, v in s.counts.items() if k in ("moved", "review")) == 20
    u = undo(s.report)
    assert u.counts["undone"] == 20 and photo_inventory(inbox) == originals


def test_odd_names_round_trip_through_run_report_index_and_undo(tmp_path, make_runner):
    inbox = tmp_path / "inbox"
    names = ["caf\u00e9 \u00fcber.jpg", "line\nbreak.jpg", " lead space.jpg", "x" * 240 + ".jpg",
             os.fsdecode(b"latin1-\xe9t\xe9.jpg")]  # the last is not valid UTF-8
    for i, name in enumerate(names):
        make_colour_photo(inbox / name, "red", seed=i)
    before = snapshot(inbox)
    s = make_runner().run()
    assert s.counts["moved"] == 5
    assert {r.source for r in read_report(s.report)} == {str(inbox / n) for n in names}
    assert_consistent(inbox, tmp_path / "lib", Counter(before.values()))
    undo(s.report)
    assert snapshot(inbox) == before


def test_without_sidecars_existing_ones_travel_unchanged(tmp_path, make_runner):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    make_colour_photo(inbox / "a.jpg", "red", seed=1)
    make_colour_photo(inbox / "b.jpg", "red", seed=2)
    (inbox / "b.xmp").write_bytes(XMP_MINE)
    make_runner(write_sidecars=False).run()
    assert sorted(p.name for p in (lib / "Red_Bird").iterdir()) == ["a.jpg", "b.jpg", "b.xmp"]
    assert (lib / "Red_Bird" / "b.xmp").read_bytes() == XMP_MINE


def test_inbox_on_another_filesystem_is_copied_verified_and_removed(tmp_path, make_runner):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to move across")
    inbox = Path(tempfile.mkdtemp(dir=shm, prefix="birdsort-inbox-"))
    try:
        colour_tree(inbox, n=2)
        before = snapshot(inbox)
        originals = photo_inventory(inbox)
        s = make_runner(inbox=inbox).run()
        assert_consistent(inbox, tmp_path / "lib", originals)
        assert not any(p.is_file() for p in inbox.rglob("*")) and s.counts["moved"] >= 6
        undo(s.report)  # and back across
        assert snapshot(inbox) == before
    finally:
        shutil.rmtree(inbox, ignore_errors=True)


def test_sigkill_at_random_moments_loses_nothing(tmp_path, tiny_card):
    """A few real kills of a real process (the exhaustive version is the CrashOps test above)."""
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    for i in range(40):
        make_colour_photo(inbox / f"p{i}.jpg", ("red", "green", "blue")[i % 3], seed=i)
    originals = photo_inventory(inbox)
    cmd = [sys.executable, "-m", "sorter.cli", "run", str(inbox), "--library", str(lib), "--model", str(tiny_card),
           "--settle", "0", "--batch-size", "4", "-q", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(0)
    for _ in range(4):
        p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.2))
        p.kill()
        p.wait()
        assert photo_inventory(inbox, lib) == originals
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_consistent(inbox, lib, originals)
    assert not list(inbox.glob("*.jpg"))
