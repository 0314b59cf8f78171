"""One sorter per library, with real processes: a second one refuses with one line (exit 6) while the first
holds the library; once the first is SIGKILLed, its stale lock is recovered by the next run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from sorter.lock import holder as lock_holder
from tests.conftest import REPO, make_colour_photo
from tests.reliability import figures
from tests.sorter.conftest import assert_consistent, photo_inventory


def test_second_sorter_refuses_and_a_killed_holders_lock_is_recovered(tmp_path, tiny_card):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    for i, c in enumerate(("red", "green", "blue")):
        make_colour_photo(inbox / f"{c}.jpg", c, seed=i)
    originals = photo_inventory(inbox)

    def cmd(settle):
        return [sys.executable, "-m", "sorter.cli", "run", str(inbox), "--library", str(lib), "--model",
                str(tiny_card), "--settle", str(settle), "-q", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # the first sorter waits (holding the library) for the just-written photos to settle for 60 s
    first = subprocess.Popen(cmd(60), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while (lock_holder(lib / ".sorter" / "lock") or {}).get("pid") != first.pid:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = subprocess.run(cmd(0), cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 6, second
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: another sorter is using the library"), second.stderr
        assert f"pid {first.pid}" in lines[0] and not second.stdout
        assert photo_inventory(inbox) == originals
    finally:
        first.kill()  # SIGKILL: no chance to release anything
        first.wait()
    figures.add(trials=2, faults=2)
    third = subprocess.run(cmd(0), cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert f"note: recovered a stale lock left by pid {first.pid}" in third.stdout
    assert_consistent(inbox, lib, originals)
    assert not list(inbox.iterdir())
    figures.add(lost=sum((originals - photo_inventory(inbox, lib)).values()))
