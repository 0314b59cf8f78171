"""Unreadable (permission) files, for real: the sorter runs as `nobody` (the child is started through
util-linux `setpriv --reuid --regid --clear-groups`, which leaves it no capabilities; root reads
everything, so a FileOps fault would only imitate this), on files owned by root with mode 000. Each
is filed with a clear reason (or travels with its readable group), nothing is lost, and undo puts everything back."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sorter.report import read_report
from tests.conftest import REPO, make_colour_photo, make_tiny_model
from tests.reliability import figures
from tests.sorter.conftest import XMP_MINE, photo_inventory, snapshot


def nobody() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    return pw.pw_uid, pw.pw_gid


@pytest.fixture
def world(tmp_path):
    """A folder `nobody` can reach (pytest's tmp_path is private to root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges to nobody (and to make files root alone can read)")
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) not found")
    base = Path(tempfile.mkdtemp(prefix="birdsort-nobody-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_unreadable_files_as_an_unprivileged_user(world):
    uid, gid = nobody()
    card = make_tiny_model(world / "exports")
    inbox, lib = world / "inbox", world / "lib"
    make_colour_photo(inbox / "ok.jpg", "red", seed=1)
    make_colour_photo(inbox / "secret.jpg", "blue", seed=2)           # unreadable photo: rejected
    make_colour_photo(inbox / "pair.JPG", "green", seed=3)
    (inbox / "pair.CR2").write_bytes(b"raw that only root can read")  # unreadable sibling: travels along
    make_colour_photo(inbox / "tagged.jpg", "red", seed=4)
    (inbox / "tagged.xmp").write_bytes(XMP_MINE)                      # unreadable sidecar: moved, not merged
    for name in ("secret.jpg", "pair.CR2", "tagged.xmp"):
        os.chmod(inbox / name, 0)
    for d in (inbox, world / "exports"):
        os.chmod(d, 0o777)
    lib.mkdir(mode=0o777)
    os.chmod(lib, 0o777)
    before = snapshot(inbox)
    originals = photo_inventory(inbox)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(world)}

    def sorter(*args) -> subprocess.CompletedProcess:
        drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        return subprocess.run([*drop, sys.executable, "-m", "sorter.cli", *map(str, args)], cwd=world, env=env,
                              capture_output=True, text=True, timeout=120)

    r = sorter("run", inbox, "--library", lib, "--model", card, "--settle", 0, "-q", "--device", "cpu")
    figures.add(trials=1, faults=3)
    assert r.returncode == 0, r.stderr
    report = Path(r.stdout.split("report: ")[1].strip())
    rows = {Path(row.source).name: row for row in read_report(report)}
    assert rows["secret.jpg"].action == "rejected" and "permission denied" in rows["secret.jpg"].error.lower()
    assert Path(rows["secret.jpg"].destination).parent == lib / "_rejected"
    assert {Path(rows[n].destination).parent.name for n in ("pair.JPG", "pair.CR2")} == {"Green_Bird"}
    assert rows["tagged.jpg"].action == "moved" and "keywords not written" in rows["tagged.jpg"].error
    now = photo_inventory(inbox, lib)
    figures.add(lost=sum((originals - now).values()))
    assert now == originals and not [p for p in inbox.rglob("*") if p.is_file()]

    u = sorter("undo", report, "--yes")
    assert u.returncode == 0, u.stderr
    assert "refused 0" in u.stdout, u.stdout
    assert snapshot(inbox) == before
