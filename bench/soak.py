"""Reliability soak: kill real `sorter run` processes at random moments for as long as you like.

The same loop as tests/reliability/test_kill.py (tests/reliability/harness.py), with more trials, more
files and a time limit: each trial starts the sorter on the inbox (photo groups with RAW+JPEG+XMP
siblings, PNGs, broken files, duplicates; refilled as it drains), sends SIGKILL or SIGTERM after a
random delay spread over the run's measured duration, and checks that every original is still there
exactly once (sha256); every other trial the library is recovered and checked in full (no temporary
file, index and reports agree with the disk); a complete run follows every --full-every trials and at
the end. Prints the figure: trials run, faults injected, files lost (must be 0).

    python bench/soak.py                                   # 300 SIGKILLs, then 150 SIGTERMs
    python bench/soak.py --kills 1000 --minutes 30 --groups 200 --signal kill --cross-fs
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_tiny_model  # noqa: E402
from tests.reliability import figures  # noqa: E402
from tests.reliability.harness import KillTrials  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=300, help="signals to send per signal kind")
    ap.add_argument("--signal", choices=["kill", "term", "both"], default="both")
    ap.add_argument("--groups", type=int, default=120, help="photo groups added per wave (about 2.2 files each)")
    ap.add_argument("--batch-size", type=int, default=2,
                    help="sorter --batch-size (small: a batch is always in flight)")
    ap.add_argument("--minutes", type=float, default=60.0, help="time limit per signal kind")
    ap.add_argument("--full-every", type=int, default=10, help="a complete run after this many trials")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cross-fs", action="store_true", help="library on /dev/shm: every move is a copy + verify")
    ap.add_argument("--keep", action="store_true", help="keep the inbox and library for inspection")
    args = ap.parse_args()
    sigs = {"kill": [signal.SIGKILL], "term": [signal.SIGTERM], "both": [signal.SIGKILL, signal.SIGTERM]}[args.signal]
    failed = False
    for sig in sigs:
        root = Path(tempfile.mkdtemp(prefix=f"birdsort-soak-{sig.name.lower()}-"))
        lib_root = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="birdsort-soak-")) if args.cross_fs else None
        card = make_tiny_model(root / "exports")
        trials = KillTrials(root, card, sig=sig, seed=args.seed, wave_groups=args.groups, batch_size=args.batch_size,
                            library=lib_root / "lib" if lib_root else None, log=print)
        try:
            out = trials.run(args.kills, full_every=args.full_every, max_seconds=args.minutes * 60)
        except AssertionError as e:
            failed = True
            out = trials.out
            print(f"FAILED ({sig.name}): {e}")
        one = Counter(trials.out.figures())
        figures.add(**one)
        print(f"{sig.name}: {out.kills} kill(s) in {out.trials} trial(s) + {out.full_runs} complete run(s), "
              f"{out.mid_transaction} inside a batch of moves, {out.recoveries} recoveries checked, "
              f"{out.files} files, SIGTERM: {out.graceful} graceful, {out.early} before the handler, "
              f"{out.interrupted} stopped at once by a second signal (130); "
              f"lost {out.lost}, doubled {out.doubled}, {out.seconds:.0f} s" + "".join(f"; {n}" for n in out.notes))
        print(figures.line(one))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            if lib_root:
                shutil.rmtree(lib_root, ignore_errors=True)
        else:
            print(f"kept {root}" + (f" and {lib_root}" if lib_root else ""))
    print(figures.line())
    return 1 if failed or figures.TALLY["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
