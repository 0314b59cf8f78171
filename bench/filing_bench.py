"""Filing overhead of `sorter run` (journal, fsyncs, sidecars, index, report) against a bare baseline.

Classification is replaced by an instant stub so that only the filing layer is measured. Each trial:
N generated files (random bytes named .jpg, in 10 species by name) in a fresh inbox on this disk.
    project:  Runner.run() with the stub classifier, sidecars on (the default) and off
    baseline: sha256 of each file + os.rename into library/<Species>/ (no journal, no fsync, no
              sidecar, no report): what a careless script does
Prints medians over trials and the ratio. Usage: python bench/filing_bench.py [N] [TRIALS] [KB per file]
(camera files are 10-45 MB: e.g. `filing_bench.py 30 2 12000` measures hashing as well as filing)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sorter.classify import Prediction  # noqa: E402
from sorter.runner import Runner, RunSettings  # noqa: E402
from tests.conftest import make_tiny_model  # noqa: E402

SPECIES = [f"Species_{i}" for i in range(10)]


class StubClassifier:
    def classify(self, paths):
        for p in paths:
            label = SPECIES[int(Path(p).stem.split("_")[1]) % len(SPECIES)]
            yield Prediction(Path(p), label, 0.99, 0.99, [(label, 0.99)])


def make_inbox(root: Path, n: int, size: int) -> Path:
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    for i in range(n):
        (inbox / f"IMG_{i:05}.jpg").write_bytes(os.urandom(size))
    old = time.time() - 60
    for p in inbox.iterdir():
        os.utime(p, (old, old))
    return inbox


def baseline(inbox: Path, library: Path) -> None:
    for p in sorted(inbox.iterdir()):
        hashlib.sha256(p.read_bytes()).hexdigest()
        folder = library / SPECIES[int(p.stem.split("_")[1]) % len(SPECIES)]
        folder.mkdir(parents=True, exist_ok=True)
        os.rename(p, folder / p.name)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    size = 1000 * (int(sys.argv[3]) if len(sys.argv) > 3 else 20)
    work = Path(tempfile.mkdtemp(prefix="filing-bench-", dir=os.environ.get("BENCH_DIR")))
    card = make_tiny_model(work / "exports", labels=SPECIES)
    times = {"project": [], "project-nosidecar": [], "baseline": []}
    try:
        for t in range(trials):
            for kind in times:
                root = work / f"{kind}{t}"
                inbox = make_inbox(root, n, size)
                start = time.perf_counter()
                if kind == "baseline":
                    baseline(inbox, root / "lib")
                else:
                    settings = RunSettings(inbox, root / "lib", model=str(card), settle=0, batch_size=32,
                                           write_sidecars=kind == "project")
                    s = Runner(settings, classifier_factory=lambda c: StubClassifier()).run()
                    assert s.counts["moved"] == n, s.counts
                times[kind].append(time.perf_counter() - start)
                shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    b = med["baseline"]
    print(f"files: {n} x {size // 1000} KB, trials: {trials}, disk: {work.parent}")
    for kind, label in (("project", "journalled, fsynced, sidecars, index, report"),
                        ("project-nosidecar", "the same with --no-sidecars"),
                        ("baseline", "sha256 + os.rename, nothing else")):
        print(f"{kind:18} ({label}): median {med[kind]:.3f} s = {1000 * med[kind] / n:.2f} ms/file, "
              f"{med[kind] / b:.1f}x baseline")


if __name__ == "__main__":
    main()
