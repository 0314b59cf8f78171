"""Journalled transactions: the only way the sorter changes the inbox or the library.

A transaction is a dict:
    id        unique id
    kind      "sort" or "undo"
    run       the run that made it;  report: that run's CSV report (recovery appends missing rows there)
    steps     move/put/remove steps (move.py), run in order
    rows      the report rows it produces (report.Row as dicts)
    sidecars  sidecar records for the index (created/merged sidecars, or {"path", "forget": True})
    fail      the action its rows get when it is rolled back ("skipped" or "refused")

`execute` (a batch of transactions, as one group commit): journal `begin` records (one fsynced write)
-> steps (folder fsyncs deferred to the end of the batch, except where order matters for safety)
-> records to the sinks (index, report) -> `done` records.
A move that fails for one file (name taken, file vanished, permission) rolls the transaction back, so a
group never ends up split, and its rows say why it was left in place. A storage error (disk full,
read-only) stops the run with StorageError; the transaction stays pending.
`recover`: every pending transaction is finished (steps are idempotent), its records are replayed
into the index and into its own run's report (rows it already holds are not repeated), then `done`.
"""

from __future__ import annotations

import sqlite3
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

    def execute(self, *txns: dict) -> list[Row]:
        """Run transactions as one group commit: all `begin` records in one fsynced write, the steps
        (folder fsyncs done once per folder at the end), then every record in one go, then `done`.
        Returns the rows recorded (a rolled-back transaction's rows carry the reason)."""
        if not txns:
            return []
        try:
            self.journal.begin(*txns)
        except OSError as e:
            raise _storage(e, "cannot write the journal") from None
        rows: list[Row] = []
        sidecars: list[dict] = []
        finished: list[str] = []
        try:
            with self.ops.deferred_dir_syncs():
                for txn in txns:
                    r, s, ok = self._steps(txn)
                    rows += r
                    sidecars += s
                    if ok:
                        finished.append(txn["id"])
        except OSError as e:  # a folder fsync at the end of the batch
            raise _storage(e, f"cannot sync {e.filename or 'a folder'}") from None
        self._record(rows, sidecars)
        try:
            self.journal.done(*finished)
        except OSError as e:
            raise _storage(e, "cannot write the journal") from None
        return rows

    def _steps(self, txn: dict) -> tuple[list[Row], list[dict], bool]:
        """Run one transaction's steps: (rows, sidecar records, True) or, rolled back, (rows, [], False)."""
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
                    return self._roll_back(txn, done, reason), [], False
                notes.append(f"sidecar not written: {reason}")  # the photos are filed; keywords missing
                failed_sidecars.add(step["path"])
        rows = _noted([Row.from_dict(r) for r in txn["rows"]], notes)
        return rows, [s for s in txn["sidecars"] if s["path"] not in failed_sidecars], True

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
        try:
            self.journal.abort(txn["id"])  # durable now: recovery must not roll this one forward
        except OSError as e:
            raise _storage(e, "cannot write the journal") from None
        return rows

    def _record(self, rows: list[Row], sidecars: list[dict]) -> None:
        try:
            self.sinks.record(rows, sidecars)
        except OSError as e:
            raise _storage(e, "cannot write the report") from None
        except sqlite3.Error as e:
            raise StorageError(f"cannot update the library index: {e} "
                               "(nothing was lost; the next run finishes the job)") from None


def _stale(ops: FileOps, txn: dict) -> str:
    """Why a pending transaction must not be rolled forward: a source it has yet to move changed
    since it was journalled (the user edited the photo before the restart). '' if it may."""
    rewritten = {step["path"] for step in txn["steps"] if step["op"] == "put"}  # undo restores these first
    for step in txn["steps"]:
        if step["op"] == "move" and step.get("sha256") and step["src"] not in rewritten:
            src, dst = Path(step["src"]), Path(step["dst"])
            if ops.lexists(src) and not ops.lexists(dst) and ops.sha256(src) != step["sha256"]:
                return f"{src.name} changed after an interruption; the group was left in place"
    return ""


def _finish(ops: FileOps, txn: dict) -> tuple[list[str], set[str]]:
    """Roll a pending transaction forward; returns (notes, sources that could not be moved)."""
    notes, missing = [], set()
    for step in txn["steps"]:
        try:
            run_step(ops, step)
        except (StepError, OSError) as e:
            if isinstance(e, OSError) and is_storage_error(e):
                raise _storage(e, f"recovery cannot write {_where(step)}") from None
            notes.append(str(e) if isinstance(e, StepError) else f"{_where(step)}: {e.strerror or e}")
            if step["op"] == "move":
                missing.add(step["src"])
    return notes, missing


def _roll_back_pending(ops: FileOps, txn: dict) -> None:
    """Put back whatever moves of a pending transaction already happened (newest first)."""
    for step in reversed(txn["steps"]):
        back = reverse_step(step)
        if back is not None and ops.lexists(Path(step["dst"])) and not ops.lexists(Path(step["src"])):
            try:
                run_step(ops, back)
            except OSError as e:
                raise _storage(e, f"recovery cannot write {_where(back)}") from None


def recover(journal: Journal, ops: FileOps, index) -> list[str]:
    """Finish every pending transaction (or, when a source changed since, put it back); record its rows
    in the index and in its own run's report (rows already there are not repeated). Returns lines for
    the summary."""
    pending = journal.pending()
    if not pending:
        return []
    reports: dict[str, CsvReport] = {}
    problems: list[str] = []
    files = 0
    try:
        for txn in pending:
            rows = [Row.from_dict(r) for r in txn["rows"]]
            stale = _stale(ops, txn)
            if stale:
                _roll_back_pending(ops, txn)
                notes, missing = [stale], {r.source for r in rows}
                sidecars = []
            else:
                notes, missing = _finish(ops, txn)
                sidecars = txn["sidecars"]
            for r in rows:
                r.error = "; ".join(filter(None, [r.error, "finished after an interruption"]))
                if r.source in missing:
                    r.action, r.destination = txn["fail"], ""
            _noted(rows, notes)
            if txn["report"] not in reports:
                reports[txn["report"]] = CsvReport(Path(txn["report"]), ops, dedupe=True)
            Sinks(index, reports[txn["report"]]).record(rows, sidecars)
            journal.done(txn["id"])
            files += len(rows)
            problems += notes
    finally:
        for report in reports.values():
            report.close()
    kinds = sorted({t["kind"] for t in pending})
    return [f"finished {len(pending)} interrupted {'/'.join(kinds)} transaction(s) ({files} file(s))"] + problems
