"""`sorter undo REPORT.csv`: put every file that run filed back where it came from.

Per file: the library copy must still hash to the report's sha256 (a merged sidecar: to what the sorter
wrote; its original content is restored from .sorter/backups/ first) and its old place must be free;
otherwise the file is refused with the reason and left alone. Sidecars the run created are removed
when unchanged. Every change is a journalled transaction like a sort (so an interrupted undo is finished
by the next start), the index forgets what left the library, and the undo writes its own report
(`reports/<timestamp>-undo.csv`, actions `undone` and `refused`).
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .apply import now_iso
from .errors import StorageError, UserError
from .fsops import FileOps
from .index import FILED, Index
from .journal import Journal
from .library import STATE, Library
from .lock import LibraryLock
from .move import move_step, put_step, remove_step
from .report import CsvReport, Row, Sinks, read_report
from .txn import Transactions, new_txn, recover


@dataclass
class UndoSummary:
    report: Path | None
    counts: Counter = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)


def library_of_report(report: Path) -> Library:
    report = Path(report).resolve()
    if not report.is_file():
        raise UserError(f"report not found: {report}")
    root = report.parent.parent
    if report.parent.name != "reports" or not (root / STATE).is_dir():
        raise UserError(f"{report} is not in a library's reports/ folder")
    return Library(root)


def _refuse(row: Row, reason: str) -> Row:
    return Row(now_iso(), row.destination, row.source, "refused", row.species, row.confidence, row.top3,
               row.sha256, row.model, reason)


def undo(report: Path, ops: FileOps | None = None) -> UndoSummary:
    try:
        return _undo(report, ops or FileOps())
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        raise StorageError(f"cannot write{where}: {e.strerror or e} (nothing was lost; run the undo again)") from None
    except sqlite3.Error as e:
        raise StorageError(f"library index: {e} (nothing was lost; run the undo again)") from None


def _undo(report: Path, ops: FileOps) -> UndoSummary:
    lib = library_of_report(report)
    try:
        rows = read_report(Path(report))
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read report {report}: {e}") from None
    run = Path(report).stem
    todo = [r for r in rows if r.action in FILED and r.destination]
    summary = UndoSummary(None)
    with LibraryLock(lib.lock):
        index = Index(lib.index, lib.root)
        journal = Journal(lib.journal, ops).open()
        try:
            summary.recovered = recover(journal, ops, index)
            sidecars = index.sidecars_of_run(run)
            if not todo and not sidecars:
                raise UserError(f"{report} records no filed photos: nothing to undo")
            out = Path(str(lib.reports / time.strftime("%Y%m%d-%H%M%S")) + "-undo.csv")
            summary.report = out
            csv = CsvReport(out, ops)
            sinks = Sinks(index, csv)
            txns = Transactions(journal, ops, sinks)
            index.start_run(out.stem, now_iso(), str(report), "undo", str(out), False)
            try:
                for row in todo:
                    _undo_file(ops, row, sidecars.pop(row.destination, None), txns, out, summary, sinks)
                for path, (orig, new) in sidecars.items():
                    if orig is None:
                        _remove_created(ops, Path(path), new, txns, out, summary, sinks)
            finally:
                index.end_run(out.stem, now_iso(), "done", dict(summary.counts))
                sinks.close()
            journal.compact()
        finally:
            journal.close()
            index.close()
    return summary


def _undo_file(ops: FileOps, row: Row, sidecar: tuple[str | None, str] | None, txns: Transactions,
               out: Path, summary: UndoSummary, sinks: Sinks) -> None:
    lib_path, old = Path(row.destination), Path(row.source)
    expect = sidecar[1] if sidecar else row.sha256
    reason = ""
    if not ops.lexists(lib_path):
        if ops.lexists(old) and row.sha256 and ops.sha256(old) == row.sha256:
            summary.counts["already undone"] += 1
            return
        reason = "no longer in the library"
    elif ops.sha256(lib_path) != expect:
        reason = "changed since the run; left in the library"
    elif ops.lexists(old):
        reason = f"its old place {old} is taken; left in the library"
    if reason:
        refused = _refuse(row, reason)
        sinks.record([refused])
        summary.counts["refused"] += 1
        summary.refused.append(f"{lib_path}: {reason}")
        return
    steps = []
    if sidecar and sidecar[0]:
        backup = Path(out).parent.parent / STATE / "backups" / f"{sidecar[0]}.xmp"
        try:
            original = ops.read_bytes(backup)
        except OSError:
            original = None
        if original is None:
            refused = _refuse(row, "the original sidecar's backup is missing; left in the library")
            sinks.record([refused])
            summary.counts["refused"] += 1
            summary.refused.append(f"{lib_path}: backup missing")
            return
        steps.append(put_step(lib_path, original, sidecar[1]))
    steps.append(move_step(lib_path, old, row.sha256 or None))
    back = Row(now_iso(), str(lib_path), str(old), "undone", row.species, row.confidence, row.top3,
               row.sha256, row.model, "", run=out.stem)
    done = txns.execute(new_txn("undo", out.stem, out, steps, [back], [], fail="refused"))
    for r in done:
        summary.counts[r.action] += 1
        if r.action == "refused":
            summary.refused.append(f"{lib_path}: {r.error}")


def _remove_created(ops: FileOps, path: Path, sha: str, txns: Transactions, out: Path,
                    summary: UndoSummary, sinks: Sinks) -> None:
    if not ops.lexists(path):
        return
    row = Row(now_iso(), str(path), "", "undone", sha256=sha, error="removed the sidecar the sorter created",
              run=out.stem)
    if ops.sha256(path) != sha:
        row.action, row.error = "refused", "sidecar created by the sorter was edited since; left in place"
        sinks.record([row])
        summary.counts["refused"] += 1
        summary.refused.append(f"{path}: edited since")
        return
    txns.execute(new_txn("undo", out.stem, out, [remove_step(path, sha)], [row], [], fail="refused"))
    summary.counts["sidecars removed"] += 1
