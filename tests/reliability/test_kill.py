"""Real processes killed at random moments (SIGKILL) or asked to stop (SIGTERM), restarted each time:
nothing is ever lost. The loop itself is in harness.py (shared with bench/soak.py)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.conftest import make_tiny_model
from tests.reliability import figures
from tests.reliability.harness import KillTrials

KILLS = int(os.environ.get("BIRDSORT_KILLS", "50"))


def run_trials(tmp_path, sig, kills, seed, library=None, **kw):
    card = make_tiny_model(tmp_path / "exports")
    trials = KillTrials(tmp_path, card, sig=sig, seed=seed, library=library, **kw)
    try:
        out = trials.run(kills)
    finally:
        figures.add(**trials.out.figures())
    print(f"\n{signal.Signals(sig).name}: {out}")
    return out


@pytest.mark.timeout(420)
def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    out = run_trials(tmp_path, signal.SIGKILL, KILLS, seed=1)
    assert out.kills >= KILLS and out.lost == 0 and out.doubled == 0
    assert out.mid_transaction >= KILLS // 5, f"too few kills landed inside a batch of moves: {out}"
    assert out.files >= 200


@pytest.mark.timeout(300)
def test_sigterm_finishes_the_batch_and_flushes_everything(tmp_path):
    out = run_trials(tmp_path, signal.SIGTERM, max(KILLS // 2, 10), seed=2)
    assert out.lost == 0 and out.graceful >= out.kills // 2, out


@pytest.mark.timeout(300)
def test_sigkill_during_copies_to_another_filesystem(tmp_path):
    """Library on /dev/shm (tmpfs), inbox on disk: kills land in copy + fsync + verify + rename."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) for the library")
    lib = Path(tempfile.mkdtemp(dir=shm, prefix="birdsort-lib-"))
    try:
        out = run_trials(tmp_path, signal.SIGKILL, max(KILLS // 5, 5), seed=3, library=lib / "lib")
    finally:
        shutil.rmtree(lib, ignore_errors=True)
    assert out.lost == 0 and out.doubled == 0


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_soak(tmp_path, sig):
    out = run_trials(tmp_path, sig, int(os.environ.get("BIRDSORT_SOAK_KILLS", "400")), seed=11, wave_groups=120)
    assert out.lost == 0 and out.doubled == 0


@pytest.mark.timeout(300)
def test_sigkill_during_undo_loses_nothing(tmp_path):
    """Undo is journalled like a sort: killed at random moments and restarted, it still puts every file
    back byte for byte (merged sidecars restored from their backups, created ones removed)."""
    import random
    import subprocess
    import sys
    import time

    from tests.conftest import REPO
    from tests.reliability.harness import make_wave, pending, recover_now
    from tests.sorter.conftest import assert_consistent, photo_inventory, snapshot

    card = make_tiny_model(tmp_path / "exports")
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    make_wave(inbox, 0, 30)
    before = snapshot(inbox)
    originals = photo_inventory(inbox)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def sort() -> list[str]:
        r = subprocess.run([sys.executable, "-m", "sorter.cli", "run", str(inbox), "--library", str(lib), "--model",
                            str(card), "--settle", "0", "-q", "--device", "cpu"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return [sys.executable, "-m", "sorter.cli", "undo", r.stdout.split("report: ")[1].strip(), "--yes"]

    t0 = time.monotonic()
    assert subprocess.run([sys.executable, "-m", "sorter.cli", "--help"], cwd=REPO, env=env,
                          capture_output=True).returncode == 0
    startup = time.monotonic() - t0
    rng, kills, mid, trials, cycles = random.Random(5), 0, 0, 0, 0
    undo = sort()
    while kills < 8:
        p = subprocess.Popen(undo, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(startup * 0.8, startup + 0.4))
        killed = p.poll() is None
        if killed:
            p.kill()
            kills += 1
        _, err = p.communicate()
        trials += 1
        mid += pending(lib) > 0
        now = photo_inventory(inbox, lib)
        figures.add(lost=sum((originals - now).values()))
        assert now == originals, f"undo killed {kills} time(s)"
        if trials % 2:
            recover_now(lib)
            assert_consistent(inbox, lib, originals)
        if not killed:  # the undo finished: everything is back; sort again and undo that run
            assert p.returncode == 0, err
            assert snapshot(inbox) == before
            cycles += 1
            undo = sort()
    figures.add(trials=trials + cycles + 1, faults=kills, undo_kills=kills, kills_mid_transaction=mid)
    done = subprocess.run(undo, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert snapshot(inbox) == before
    assert not [p for p in lib.rglob("*") if p.is_file() and ".sorter" not in p.parts and "reports" not in p.parts]
    assert_consistent(inbox, lib, originals)
