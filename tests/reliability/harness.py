"""Kill a real `sorter run` process at random moments, restart it, and check that nothing is lost.

Shared by tests/reliability/test_kill.py (a bounded run in CI) and bench/soak.py (as long as you like).

A trial starts `python -m sorter.cli run` on the inbox and sends it a signal after a random delay.
Delays are spread over the run's measured duration (start-up, then the time the remaining groups take
to file, from a calibration run), so most signals land while photos are being moved, some during
start-up and recovery. Batches are small (2 groups), so a batch is always in flight. When the inbox runs
low a new wave of groups is added, so every trial has work to interrupt.

Checked after every kill: every original photo still exists exactly once (sha256, multiset: byte-identical
copies count per copy) in the inbox or the library; on a same-filesystem library this must hold even
before recovery, since every move is one atomic rename. Every other trial the library is then recovered
in this process (what a restart does first) and checked in full: no temporary file, the index and the
reports agree with the disk. Every `full_every` trials, and at the end, a run goes to completion.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sorter.fsops import FileOps
from sorter.index import Index
from sorter.journal import Journal
from sorter.library import Library
from sorter.lock import LibraryLock
from sorter.scan import stem_of
from sorter.txn import recover
from tests.conftest import REPO, make_colour_photo
from tests.sorter.conftest import XMP_MINE, assert_consistent, photo_inventory

COLOURS = ("red", "green", "blue")


def make_wave(inbox: Path, wave: int, groups: int) -> int:
    """`groups` photo groups under inbox/wave<N>/: JPEGs, RAW+JPEG pairs, RAW+JPEG+XMP (both sidecar
    styles), PNGs, a lone fake RAW and a broken JPEG (both rejected), a byte-identical copy (duplicate).
    Returns how many groups will be filed (everything but the duplicates)."""
    filed = 0
    for i in range(groups):
        folder = inbox / f"wave{wave}" / f"d{i % 3}"
        seed = wave * 10_000 + i
        name = f"IMG_{i:04}"
        kind = i % 10
        if kind == 9 and i > 10:  # a copy of an earlier photo of this wave: a duplicate, left in place
            src = inbox / f"wave{wave}" / f"d{(i - 9) % 3}" / f"IMG_{i - 9:04}.JPG"
            if src.exists():
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"copy_{i:04}.JPG").write_bytes(src.read_bytes())
                continue
        filed += 1
        if kind == 7:
            (folder / f"{name}.NEF").parent.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.NEF").write_bytes(b"fake lone nef %d " % seed * 8)  # no preview: rejected
            continue
        if kind == 8:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken %d" % seed)  # rejected
            continue
        fmt_png = kind == 6
        make_colour_photo(folder / (f"{name}.png" if fmt_png else f"{name}.JPG"), COLOURS[i % 3], seed=seed)
        if kind in (1, 2, 3, 4):
            (folder / f"{name}.CR2").write_bytes(b"II*\x00fake raw %d " % seed * 16)
        if kind in (2, 5):
            (folder / f"{name}.xmp").write_bytes(XMP_MINE)
        if kind == 3:
            (folder / f"{name}.CR2.xmp").write_bytes(XMP_MINE.replace(b"mine", b"mine %d" % seed))
    return filed


def groups_left(inbox: Path) -> int:
    """Groups in the inbox still to be filed (byte-identical copies are left in place: not counted)."""
    return len({(f.parent, stem_of(f.name)) for f in inbox.rglob("*")
                if f.is_file() and stem_of(f.name) and not f.name.startswith("copy_")})


def pending(library: Path) -> int:
    return len(Journal(Library(library).journal).pending())


def recover_now(library: Path) -> list[str]:
    """What a restarted sorter does before anything else: take the lock, recover, compact the journal."""
    lib = Library(library)
    with LibraryLock(lib.lock):
        index = Index(lib.index, lib.root)
        journal = Journal(lib.journal, FileOps()).open()
        try:
            lines = recover(journal, FileOps(), index)
            journal.compact()
        finally:
            journal.close()
            index.close()
    return lines


def lost_and_doubled(originals: Counter, *roots: Path) -> tuple[int, int]:
    now = photo_inventory(*roots)
    return sum((originals - now).values()), sum((now - originals).values())


@dataclass
class Outcome:
    trials: int = 0
    kills: int = 0              # signals sent
    mid_transaction: int = 0    # kills that left a transaction pending (landed inside a batch's moves)
    graceful: int = 0           # SIGTERM: exit 143 (or 0 when all was done) after finishing the batch
    early: int = 0              # SIGTERM before the handler was installed (interpreter start-up)
    interrupted: int = 0        # a second SIGTERM: stopped at once, exit 130
    full_runs: int = 0
    recoveries: int = 0
    files: int = 0              # photo files ever put in the inbox
    lost: int = 0
    doubled: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        return {"trials": self.trials + self.full_runs, "faults": self.kills, "lost": self.lost,
                "kills_mid_transaction": self.mid_transaction, "files": self.files}


class KillTrials:
    def __init__(self, root: Path, card: Path, sig: int = signal.SIGKILL, seed: int = 0, wave_groups: int = 60,
                 batch_size: int = 2, library: Path | None = None, log=None):
        self.root, self.card, self.sig = root, card, sig
        self.inbox, self.library = root / "inbox", library or root / "lib"
        self.rng = random.Random(seed)
        self.wave_groups, self.batch_size = wave_groups, batch_size
        self.waves = 0
        self.remaining = 0            # groups still to file (estimate; duplicates excluded)
        self.originals: Counter = Counter()
        self.startup, self.per_group = 0.6, 0.02
        self.out = Outcome()
        self.log = log or (lambda line: None)
        self.same_fs = os.stat(self.inbox.parent).st_dev == os.stat(self.library.parent).st_dev

    def cmd(self) -> list[str]:
        return [sys.executable, "-m", "sorter.cli", "run", str(self.inbox), "--library", str(self.library),
                "--model", str(self.card), "--settle", "0", "--batch-size", str(self.batch_size), "-q",
                "--device", "cpu"]

    def popen(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(self.cmd(), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def add_wave(self) -> None:
        self.remaining += make_wave(self.inbox, self.waves, self.wave_groups)
        self.waves += 1
        self.originals = self.originals + photo_inventory(self.inbox / f"wave{self.waves - 1}")
        self.out.files = sum(self.originals.values())

    def check(self, when: str, exact: bool) -> None:
        lost, doubled = lost_and_doubled(self.originals, self.inbox, self.library)
        self.out.lost += lost
        if lost or (exact and doubled):
            self.out.doubled += doubled
            raise AssertionError(f"{when}: {lost} file(s) lost, {doubled} doubled")

    def full_run(self) -> str:
        """A run to completion, then the full check (and the inbox holds only what is left in place)."""
        p = self.popen()
        out, err = p.communicate(timeout=300)
        self.out.full_runs += 1
        if p.returncode != 0:
            raise AssertionError(f"a run after {self.out.kills} kill(s) failed ({p.returncode}): {err.strip()[-2000:]}")
        assert_consistent(self.inbox, self.library, self.originals)
        assert pending(self.library) == 0
        left = [f for f in self.inbox.rglob("*") if f.is_file() and not f.name.startswith("copy_")]
        assert not left, f"left in the inbox after a complete run: {left[:5]}"
        self.remaining = 0
        return out

    def calibrate(self) -> None:
        """A first wave filed by a complete run, timed: start-up (until the journal first grows) and
        seconds per group."""
        self.add_wave()
        groups = self.remaining
        journal = Library(self.library).journal
        t0 = time.monotonic()
        p = self.popen()
        first = None
        while p.poll() is None:
            if first is None and journal.exists() and journal.stat().st_size > 0:
                first = time.monotonic() - t0
            time.sleep(0.005)
        total = time.monotonic() - t0
        out, err = p.communicate()
        if p.returncode != 0:
            raise AssertionError(f"calibration run failed: {err.strip()[-2000:]}")
        self.out.full_runs += 1
        self.startup = first if first is not None else total / 2
        self.per_group = max((total - self.startup) / max(groups, 1), 0.002)
        assert_consistent(self.inbox, self.library, self.originals)
        self.remaining = 0
        self.log(f"calibration: start-up {self.startup:.2f} s, {self.per_group * 1000:.1f} ms per group")

    def delay(self) -> float:
        if self.rng.random() < 0.15:  # start-up, recovery of the previous kill, model loading
            return self.rng.uniform(0.0, self.startup)
        return self.startup + self.rng.uniform(0.0, self.per_group * min(max(self.remaining, 1), 40))

    def trial(self) -> None:
        if self.remaining < self.wave_groups // 2:
            self.add_wave()
        p = self.popen()
        time.sleep(self.delay())
        double = False
        if p.poll() is None:
            p.send_signal(self.sig)
            self.out.kills += 1
            if self.sig == signal.SIGTERM and self.rng.random() < 0.2:  # impatient: a second signal stops at once
                time.sleep(self.rng.uniform(0.0, 0.2))
                if p.poll() is None:
                    p.send_signal(self.sig)
                    self.out.kills += 1
                    double = True
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError("the sorter did not stop within 120 s of the signal") from None
        self.out.trials += 1
        self.remaining = groups_left(self.inbox)
        if double and p.returncode == 130:  # "interrupted; nothing was lost": the journal covers it
            self.out.interrupted += 1
            assert err.strip().splitlines()[-1].startswith("error: interrupted; nothing was lost"), err
        elif self.sig == signal.SIGTERM:
            self._after_term(p.returncode, out, err)
        elif p.returncode not in (-signal.SIGKILL, 0):
            raise AssertionError(f"sorter exited {p.returncode}: {err.strip()[-2000:]}")
        left = pending(self.library)
        self.out.mid_transaction += left > 0
        self.check(f"after kill {self.out.kills}", exact=self.same_fs)
        if self.out.trials % 2 == 0:  # restart's first step, here, then the full check
            recover_now(self.library)
            self.out.recoveries += 1
            self.check(f"after recovery {self.out.kills}", exact=True)
            assert_consistent(self.inbox, self.library, self.originals)

    def _after_term(self, code: int, out: str, err: str) -> None:
        """SIGTERM: exit 143 (stopped after the current batch, photos left in the inbox) or 0 (the run
        had finished its work), with everything flushed (no pending transaction, lock released, index
        and reports agree with the disk); or killed by the signal before the handler was installed."""
        if code == -signal.SIGTERM:
            self.out.early += 1
            return
        if code not in (0, 128 + signal.SIGTERM):
            raise AssertionError(f"SIGTERM: sorter exited {code}: {err.strip()[-2000:]}")
        if code == 128 + signal.SIGTERM:
            assert "stopped on request" in out, out
        self.out.graceful += 1
        assert "Traceback" not in err, err
        assert pending(self.library) == 0, "SIGTERM left a transaction pending"
        assert (Library(self.library).lock).read_bytes() == b"", "SIGTERM left the lock taken"
        assert_consistent(self.inbox, self.library, self.originals)

    def run(self, kills: int, full_every: int = 10, max_seconds: float | None = None) -> Outcome:
        t0 = time.monotonic()
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.library.mkdir(parents=True, exist_ok=True)
        self.calibrate()
        while self.out.kills < kills:
            if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                self.out.notes.append(f"time limit {max_seconds:g} s reached after {self.out.trials} trial(s)")
                break
            self.trial()
            if self.out.trials % full_every == 0:
                self.full_run()
        self.full_run()  # the final run completes the job
        self.out.seconds = time.monotonic() - t0
        return self.out
