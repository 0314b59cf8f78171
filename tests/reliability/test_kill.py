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
