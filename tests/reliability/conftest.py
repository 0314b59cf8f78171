"""Reliability suite: fixtures for real small filesystems, and the figure printed at the end of the session."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.reliability import figures


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if figures.TALLY:
        terminalreporter.write_sep("=", "reliability figure")
        terminalreporter.write_line(figures.line())


def _mount_tmpfs(where: Path, size: str) -> str:
    """'' when a tmpfs of `size` is mounted at `where`, else why it could not be."""
    if os.environ.get("BIRDSORT_NO_MOUNT"):
        return "BIRDSORT_NO_MOUNT is set"
    if os.geteuid() != 0:
        return "not root"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    return "" if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


class SmallFs:
    """A real tmpfs of a given size (root only), or None where mounting is not allowed."""

    def __init__(self, path: Path):
        self.path = path

    def remount(self, *options: str) -> None:
        subprocess.run(["mount", "-o", ",".join(("remount",) + options), str(self.path)], check=True)


@pytest.fixture
def small_fs(tmp_path):
    """Factory: small_fs(size) -> SmallFs mounted on a fresh folder, or None (the reason is kept in
    `small_fs.why`). Every mount is unmounted when the test ends, whatever happened."""
    mounted: list[Path] = []

    def make(size: str = "2m"):
        where = Path(tempfile.mkdtemp(prefix="birdsort-fs-", dir=tmp_path))
        why = _mount_tmpfs(where, size)
        if why:
            make.why = why
            return None
        mounted.append(where)
        return SmallFs(where)

    make.why = ""
    try:
        yield make
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
            shutil.rmtree(where, ignore_errors=True)


# the sorter tests' runner factory and tiny model card (tests/sorter/conftest.py), reused here
from tests.sorter.conftest import make_runner, tiny_card  # noqa: E402,F401
