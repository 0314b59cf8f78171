"""The sorter's command line with a faulty FileOps, for fault injection in a subprocess (tests only).

    python -m tests.reliability.faulty_sorter "write=ENOSPC,after=40" run INBOX --library LIB ...

Every FileOps the run creates is a `FaultOps` (tests/sorter/conftest.py) raising the named errno from the
named methods, after `after` of those calls have succeeded.
"""

from __future__ import annotations

import errno
import sys

import sorter.runner
from tests.sorter.conftest import FaultOps


def faulty(spec: str):
    after, faults = 0, {}
    for part in filter(None, spec.split(",")):
        key, value = part.split("=")
        if key == "after":
            after = int(value)
        else:
            faults[key] = getattr(errno, value)
    return lambda: FaultOps(after=after, **faults)


def main() -> None:
    sorter.runner.FileOps = faulty(sys.argv[1])
    sys.argv = ["sorter"] + sys.argv[2:]
    from sorter.cli import main as cli
    cli()


if __name__ == "__main__":
    main()
