"""The move journal: an append-only JSON-lines file in `library/.sorter/journal.jsonl`.

Protocol (see txn.py): a transaction's `begin` record, holding every step and every record it will
produce, is appended and fsynced BEFORE any step runs; `done` (or `abort` after a clean rollback) is
appended after its records reached the index and the report. A transaction with `begin` but neither
`done` nor `abort` is pending: recovery finishes it. A torn last line (crash mid-append) is cut off on
open: a torn `begin` never ran (steps start only after the fsync), a torn `done` just makes recovery
replay idempotent steps.
"""

from __future__ import annotations

import json
from pathlib import Path

from .fsops import FileOps


class Journal:
    def __init__(self, path: Path, ops: FileOps | None = None):
        self.path = Path(path)
        self.ops = ops or FileOps()
        self._fd: int | None = None

    def open(self) -> "Journal":
        self.ops.makedirs(self.path.parent)
        self._cut_torn_tail()
        self._fd = self.ops.open_append(self.path)
        return self

    def close(self) -> None:
        if self._fd is not None:
            self.ops.close(self._fd)
            self._fd = None

    def _cut_torn_tail(self) -> None:
        try:
            data = self.ops.read_bytes(self.path)
        except FileNotFoundError:
            return
        if data and not data.endswith(b"\n"):
            self.ops.truncate(self.path, data.rfind(b"\n") + 1)

    def _append(self, records: list[dict], sync: bool) -> None:
        if self._fd is None:
            raise RuntimeError("journal is not open")
        text = "".join(json.dumps(r, ensure_ascii=True, separators=(",", ":")) + "\n" for r in records)
        self.ops.write(self._fd, text.encode("ascii"))  # one write: a kill leaves whole lines or a torn tail
        if sync:
            self.ops.fsync(self._fd)

    def begin(self, *txns: dict) -> None:
        """Record transactions before any of their steps runs (one write, one fsync for a batch)."""
        self._append([{"t": "begin", **txn} for txn in txns], sync=True)

    def done(self, *txn_ids: str) -> None:
        self._append([{"t": "done", "id": i} for i in txn_ids], sync=False)

    def abort(self, txn_id: str) -> None:
        self._append([{"t": "abort", "id": txn_id}], sync=True)

    def pending(self) -> list[dict]:
        """Transactions begun but neither done nor aborted, in the order they began."""
        try:
            data = self.ops.read_bytes(self.path)
        except FileNotFoundError:
            return []
        begun: dict[str, dict] = {}
        for line in data.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # torn tail
            if rec.get("t") == "begin":
                begun[rec["id"]] = rec
            elif rec.get("t") in ("done", "abort"):
                begun.pop(rec.get("id"), None)
        return list(begun.values())

    def compact(self) -> None:
        """Empty the journal when nothing is pending (called at the end of a run, under the lock)."""
        if self.pending():
            return
        self.close()
        self.ops.truncate(self.path, 0)
        self._fd = self.ops.open_append(self.path)
