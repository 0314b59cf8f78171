"""The reliability suite's figure: trials run, faults injected, files lost (must be 0).

Tests add to one tally as they go (`add(trials=1, faults=3, lost=0)`); `conftest.py` prints it at the end
of the pytest session (terminal summary) and `bench/soak.py` prints the same line.
"""

from __future__ import annotations

from collections import Counter

TALLY: Counter = Counter()

# keys shown in the summary line, in order (others are printed after them)
MAIN = ("trials", "faults", "lost")
LABELS = {"trials": "trials run", "faults": "faults injected", "lost": "files lost"}


def add(**counts: int) -> None:
    for key, n in counts.items():
        TALLY[key] += int(n)


def line(tally: Counter | None = None) -> str:
    t = TALLY if tally is None else tally
    main = ", ".join(f"{LABELS[k]} {t.get(k, 0)}" for k in MAIN)
    rest = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(t.items()) if k not in MAIN)
    return f"reliability: {main}" + (f" ({rest})" if rest else "")
