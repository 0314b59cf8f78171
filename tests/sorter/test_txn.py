"""Transactions under faults: storage errors stop the run losing nothing, one bad file never splits a
group, and the next run (recovery) finishes the job."""

import errno
import shutil

import pytest

from sorter.errors import StorageError
from sorter.report import read_report
from sorter.undo import undo
from tests.conftest import make_colour_photo
from tests.sorter.conftest import (Crash, CrashOps, FaultOps, assert_consistent, colour_tree, photo_inventory,
                                   snapshot)


@pytest.mark.parametrize("after, fault", [(12, {"write": errno.ENOSPC}), (6, {"rename_noreplace": errno.ENOSPC}),
                                          (3, {"open_new": errno.EDQUOT}), (12, {"fsync_dir": errno.EIO})])
def test_storage_error_mid_run_stops_cleanly_and_the_next_run_finishes(tmp_path, make_runner, after, fault):
    inbox, lib = colour_tree(tmp_path / "inbox"), tmp_path / "lib"
    originals = photo_inventory(inbox)
    with pytest.raises(StorageError, match="nothing was lost; the next run finishes the job"):
        make_runner(ops=FaultOps(after=after, **fault)).run()
    assert photo_inventory(inbox, lib) == originals
    assert not [p for p in tmp_path.rglob("*.sorter-tmp")]
    s = make_runner().run()
    assert_consistent(inbox, lib, originals)
    assert not any(p.is_file() for p in inbox.rglob("*")) and s.report is not None


def test_read_only_library_refuses_before_touching_anything(tmp_path, make_runner):
    inbox = colour_tree(tmp_path / "inbox")
    before = snapshot(inbox)
    with pytest.raises(StorageError, match="Read-only file system"):
        make_runner(ops=FaultOps(open_append=errno.EROFS)).run()
    assert snapshot(inbox) == before


def test_one_unmovable_file_keeps_its_group_together(tmp_path, make_runner):
    inbox, lib = colour_tree(tmp_path / "inbox"), tmp_path / "lib"
    originals = photo_inventory(inbox)
    cr2 = inbox / "IMG_1.CR2"
    ops = FaultOps(when=lambda src, *a: src == cr2, rename_noreplace=errno.EACCES, link=errno.EACCES,
                   rename=errno.EACCES)
    s = make_runner(ops=ops).run()
    assert sorted(p.name for p in inbox.glob("IMG_1*")) == ["IMG_1.CR2", "IMG_1.JPG", "IMG_1.xmp"]  # rolled back
    rows = [r for r in read_report(s.report) if "IMG_1" in r.source]
    assert {r.action for r in rows} == {"skipped"} and all("Permission denied" in r.error for r in rows)
    assert_consistent(inbox, lib, originals)
    make_runner().run()  # the fault is gone: filed now
    assert sorted(p.name for p in (lib / "Green_Bird").glob("IMG_1*")) == ["IMG_1.CR2", "IMG_1.JPG", "IMG_1.xmp"]
    assert_consistent(inbox, lib, originals)


def test_a_crash_at_any_point_of_an_undo_is_finished_by_the_next_undo(tmp_path, make_runner):
    inbox, lib = colour_tree(tmp_path / "inbox", n=1), tmp_path / "lib"
    before = snapshot(inbox)
    report = make_runner(ops=CrashOps()).run().report
    probe = CrashOps()
    state = tmp_path / "state"
    shutil.copytree(tmp_path, state, symlinks=True)
    undo(report, ops=probe)
    assert snapshot(inbox) == before
    for at in range(1, probe.calls + 1):
        shutil.rmtree(inbox.parent / "inbox")
        shutil.rmtree(lib)
        shutil.copytree(state / "inbox", inbox, symlinks=True)
        shutil.copytree(state / "lib", lib, symlinks=True)
        with pytest.raises(Crash):
            undo(report, ops=CrashOps(at))
        assert photo_inventory(inbox, lib) == photo_inventory(state / "inbox", state / "lib"), at
        undo(report, ops=CrashOps())
        assert snapshot(inbox) == before, at
        assert snapshot(lib) == {}, at


def test_a_source_changed_after_a_crash_is_not_rolled_forward(tmp_path, make_runner):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    make_colour_photo(inbox / "a.jpg", "red", seed=1)
    make_colour_photo(inbox / "b.jpg", "blue", seed=2)
    probe = CrashOps()
    shutil.copytree(inbox, tmp_path / "copy")
    make_runner(inbox=tmp_path / "copy", library=tmp_path / "probe-lib", ops=probe).run()
    first_move = probe.log.index("rename_noreplace") + 1
    with pytest.raises(Crash):  # both groups journalled in one commit; killed before the first move
        make_runner(ops=CrashOps(first_move)).run()
    make_colour_photo(inbox / "b.jpg", "green", seed=3)  # the user edits b.jpg before the restart
    s = make_runner(ops=CrashOps()).run()
    assert (lib / "Red_Bird" / "a.jpg").is_file()
    rows = [r for report in lib.glob("reports/*.csv") for r in read_report(report) if r.source.endswith("b.jpg")]
    assert sorted(r.action for r in rows) == ["moved", "skipped"]  # left in place, then sorted as it is now
    assert "changed after an interruption" in next(r.error for r in rows if r.action == "skipped")
    assert s.counts["moved"] == 1 and (lib / "Green_Bird" / "b.jpg").is_file()
