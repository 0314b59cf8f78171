"""Destination faults: a read-only library, a full disk (a real 2 MB tmpfs where mounting is allowed,
else ENOSPC injected at the write layer), a library turning read-only mid-run. Each run stops with one
clear line and exit code 5, loses nothing, and the next run (space freed, disk writable) finishes the job.
The library sits on its own small filesystem, the inbox on the disk: every move is a copy + fsync +
verify + rename across filesystems."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sorter.errors import StorageError
from tests.conftest import REPO, make_colour_photo
from tests.reliability import figures
from tests.sorter.conftest import FaultOps, XMP_MINE, assert_consistent, photo_inventory

COLOURS = ("red", "green", "blue")


def fill_inbox(inbox: Path, groups: int, raw_kb: int, seed: int = 0) -> None:
    """JPEG + fake RAW (random, incompressible bytes) + XMP per group."""
    for i in range(groups):
        make_colour_photo(inbox / f"s{seed}" / f"IMG_{i:03}.JPG", COLOURS[i % 3], seed=seed * 1000 + i)
        (inbox / f"s{seed}" / f"IMG_{i:03}.CR2").write_bytes(os.urandom(raw_kb * 1024))
        if i % 2:
            (inbox / f"s{seed}" / f"IMG_{i:03}.xmp").write_bytes(XMP_MINE)


def sorter_cli(inbox: Path, lib: Path, card: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    args = ["run", str(inbox), "--library", str(lib), "--model", str(card), "--settle", "0", "--batch-size", "4",
            "-q", "--device", "cpu"]
    head = ["-m", "tests.reliability.faulty_sorter", fault] if fault else ["-m", "sorter.cli"]
    return subprocess.run([sys.executable, *head, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def one_line_storage_error(r: subprocess.CompletedProcess, what: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 5, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and what in lines[0], r.stderr
    assert "nothing was lost; the next run finishes the job" in lines[0]
    return lines[0]


def no_temporary_files(*roots: Path) -> None:
    for root in roots:
        assert not [p for p in root.rglob("*") if p.name.endswith(".sorter-tmp")]


def test_disk_full_stops_with_one_line_and_the_next_run_finishes(tmp_path, small_fs, tiny_card):
    inbox = tmp_path / "inbox"
    fill_inbox(inbox, 24, raw_kb=160)  # about 4 MB for a 2 MB library
    originals = photo_inventory(inbox)
    fs = small_fs("2m")
    if fs is not None:
        lib, fault, how = fs.path / "lib", None, "real 2 MB tmpfs"
    else:  # no mount here: ENOSPC from the write layer after some writes
        lib, fault, how = tmp_path / "lib", "write=ENOSPC,after=12", f"injected ENOSPC ({small_fs.why})"
    print(f"disk full: {how}")
    r = sorter_cli(inbox, lib, tiny_card, fault)
    line = one_line_storage_error(r, "No space left on device")
    figures.add(trials=1, faults=1, **{"disk_full_" + ("real" if fs else "injected"): 1})
    now = photo_inventory(inbox, lib)
    lost = sum((originals - now).values())
    figures.add(lost=lost)
    assert lost == 0 and now == originals, line
    no_temporary_files(inbox, lib)
    assert any(lib.rglob("*.CR2")) and any(inbox.rglob("*.CR2")), "the disk should fill part-way through"
    if fs is not None:  # still full: recovery itself meets the full disk, stops the same way
        one_line_storage_error(sorter_cli(inbox, lib, tiny_card), "No space left on device")
        assert photo_inventory(inbox, lib) == originals
        no_temporary_files(inbox, lib)
        figures.add(trials=1, faults=1)
        fs.remount("size=64m")  # space freed
    r = sorter_cli(inbox, lib, tiny_card)
    assert r.returncode == 0, r.stderr
    assert_consistent(inbox, lib, originals)
    assert not [p for p in inbox.rglob("*") if p.is_file()]


def test_read_only_library_refuses_with_one_line_and_the_next_run_finishes(tmp_path, small_fs, tiny_card):
    inbox = tmp_path / "inbox"
    fill_inbox(inbox, 4, raw_kb=8, seed=1)
    fs = small_fs("64m")
    lib = (fs.path if fs else tmp_path) / "lib"
    r = sorter_cli(inbox, lib, tiny_card)  # a library that already holds photos, index, reports
    assert r.returncode == 0, r.stderr
    fill_inbox(inbox, 6, raw_kb=8, seed=2)
    originals = photo_inventory(inbox, lib)
    if fs is not None:
        fs.remount("ro")
        r = sorter_cli(inbox, lib, tiny_card)
        how = "real read-only tmpfs"
    else:
        r = sorter_cli(inbox, lib, tiny_card, "open_new=EROFS,open_append=EROFS,makedirs=EROFS")
        how = f"injected EROFS ({small_fs.why})"
    print(f"read-only library: {how}")
    one_line_storage_error(r, "Read-only file system")
    figures.add(trials=1, faults=1, **{"read_only_" + ("real" if fs else "injected"): 1})
    assert photo_inventory(inbox, lib) == originals
    if fs is not None:
        fs.remount("rw")
    r = sorter_cli(inbox, lib, tiny_card)
    assert r.returncode == 0, r.stderr
    assert_consistent(inbox, lib, originals)
    assert not [p for p in inbox.rglob("*") if p.is_file()]


@pytest.mark.parametrize("method", ["rename_noreplace", "write", "open_new", "fsync_dir"])
def test_library_turning_read_only_mid_run(tmp_path, make_runner, method):
    """EROFS from one layer after a few successful calls (same filesystem: renames, sidecar writes,
    journal/report appends, folder syncs): StorageError, nothing lost, the next run finishes."""
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    fill_inbox(inbox, 10, raw_kb=2, seed=3)
    originals = photo_inventory(inbox)
    ops = FaultOps(after=6, **{method: errno.EROFS})
    with pytest.raises(StorageError, match="Read-only file system.*nothing was lost"):
        make_runner(ops=ops).run()
    figures.add(trials=1, faults=1)
    now = photo_inventory(inbox, lib)
    figures.add(lost=sum((originals - now).values()))
    assert now == originals
    make_runner().run()
    assert_consistent(inbox, lib, originals)
    assert not [p for p in inbox.rglob("*") if p.is_file()]
