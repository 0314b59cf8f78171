"""Journalled transactions: the only way the sorter changes the inbox or the library.

A transaction is a dict:
    id        unique id
    kind      "sort" or "undo"
    run       the run that made it;  report: that run's CSV report (recovery appends missing rows there)
    steps     move/put/remove steps (move.py), run in order
    rows      the report rows it produces (report.Row as dicts)
    sidecars  sidecar records for the index (created/merged sidecars, or {"path", "forget": True})
    fail      the action its rows get when it is rolled back ("skipped" or "refused")

`execute`: journal `begin` (fsynced) -> steps -> records to the sinks (index, report) -> `done`.
A move that fails for one file (name taken, file vanished, permission) rolls the transaction back, so a
group never ends up split, and its rows say why it was left in place. A storage error (disk full,
read-only) stops the run with StorageError; the transaction stays pending.
`recover`: every pending transaction is finished (steps are idempotent), its records are replayed
into the index and into its own run's report (rows it already holds are not repeated), then `done`.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from .errors import StorageError
from .fsops import FileOps, is_storage_error
from .journal import Journal
from .move import StepError, reverse_step, run_step
from .report import CsvReport, Row, Sinks


def new_txn(kind: str, run: str, report: Path, steps: list[dict], rows: list[Row], sidecars: list[dict],
            fail: str = "skipped") -> dict:
    return {"id": uuid.uuid4().hex, "kind": kind, "run": run, "report": str(report), "steps": steps,
            "rows": [r.to_dict() for r in rows], "sidecars": sidecars, "fail": fail}


def _storage(e: OSError, what: str) -> StorageError:
    return StorageError(f"{what}: {e.strerror or e} (nothing was lost; the next run finishes the job)")


def _where(step: dict) -> str:
    return step.get("src") or step.get("path") or "?"


def _noted(rows: list[Row], notes: list[str]) -> list[Row]:
    if notes:
        for r in rows:
            r.error = "; ".join([r.error] + notes if r.error else notes)
    return rows


class Transactions:
    def __init__(self, journal: Journal, ops: FileOps, sinks: Sinks):
        self.journal = journal
        self.ops = ops
        self.sinks = sinks

    def execute(self, txn: dict) -> list[Row]:
        """Run a transaction; returns the rows it recorded (rolled-back rows carry the reason)."""
        try:
            self.journal.begin(txn)
        except OSError as e:
            raise _storage(e, "cannot write the journal") from None
        done: list[dict] = []
        notes: list[str] = []
        failed_sidecars: set[str] = set()
        for step in txn["steps"]:
            try:
                run_step(self.ops, step)
                done.append(step)
            except (StepError, OSError) as e:
                if isinstance(e, OSError) and is_storage_error(e):
                    raise _storage(e, f"cannot write {_where(step)}") from None
                reason = str(e) if isinstance(e, StepError) else f"{_where(step)}: {e.strerror or e}"
                if step["op"] == "move":
                    return self._roll_back(txn, done, reason)
                notes.append(f"sidecar not written: {reason}")  # the photos are filed; keywords missing
                failed_sidecars.add(step["path"])
        rows = _noted([Row.from_dict(r) for r in txn["rows"]], notes)
        sidecars = [s for s in txn["sidecars"] if s["path"] not in failed_sidecars]
        self._record(rows, sidecars)
        self.journal.done(txn["id"])
        return rows

    def _roll_back(self, txn: dict, done: list[dict], reason: str) -> list[Row]:
        for step in reversed(done):
            back = reverse_step(step)
            if back is not None:
                try:
                    run_step(self.ops, back)
                except (StepError, OSError) as e:  # cannot roll back: stay pending, recovery rolls forward
                    if isinstance(e, OSError):
                        raise _storage(e, f"cannot roll back {_where(back)}") from None
                    raise StorageError(f"cannot roll back an interrupted move: {e}") from None
        rows = [Row.from_dict(r) for r in txn["rows"]]
        for r in rows:
            r.action, r.destination, r.remember = txn["fail"], "", False
            r.error = f"left in place: {reason}"
        self._record(rows, [])
        self.journal.abort(txn["id"])
        return rows

    def _record(self, rows: list[Row], sidecars: list[dict]) -> None:
        try:
            self.sinks.record(rows, sidecars)
        except OSError as e:
            raise _storage(e, "cannot write the report") from None


def recover(journal: Journal, ops: FileOps, index) -> list[str]:
    """Finish every pending transaction; returns one line per transaction for the summary."""
    messages = []
    for txn in journal.pending():
        notes, missing = [], set()
        for step in txn["steps"]:
            try:
                run_step(ops, step)
            except StepError as e:
                notes.append(str(e))
                if step["op"] == "move":
                    missing.add(step["src"])
            except OSError as e:
                if is_storage_error(e):
                    raise _storage(e, f"recovery cannot write {_where(step)}") from None
                notes.append(f"{_where(step)}: {e.strerror or e}")
                if step["op"] == "move":
                    missing.add(step["src"])
        rows = [Row.from_dict(r) for r in txn["rows"]]
        for r in rows:
            r.error = "; ".join(filter(None, [r.error, "finished after an interruption"]))
            if r.source in missing:
                r.action, r.destination = txn["fail"], ""
        _noted(rows, notes)
        report = CsvReport(Path(txn["report"]), ops, dedupe=True)
        try:
            Sinks(index, report).record(rows, txn["sidecars"])
        finally:
            report.close()
        journal.done(txn["id"])
        messages.append(f"finished an interrupted {txn['kind']} of {len(rows)} file(s) from run {txn['run']}"
                        + (f" ({'; '.join(notes)})" if notes else ""))
    return messages
