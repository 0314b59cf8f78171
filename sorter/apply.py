"""Turn planned decisions into journalled transactions (or, in a dry run, into report rows only).

For each group: check that no file changed since it was hashed, choose destination names (a collision
gets a suffix, `IMG_1 (2)`, the same for every sibling so the group stays recognisable), prepare the
XMP keywords (merged into the group's own sidecars, or a new `<stem>.xmp`; a merged sidecar's original is
kept in .sorter/backups/ so that undo restores it exactly), then run it all as one transaction.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from .fsops import FileOps
from .library import Library
from .move import move_step, put_step
from .plan import Decision
from .report import Row, Sinks, format_top3
from .sidecar import SidecarError, merge_sidecar, new_sidecar
from .txn import Transactions, new_txn


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def free_stem(ops: FileOps, folder: Path, stem: str, names: list[str], extra: list[str] = ()) -> str:
    """The first of `stem`, `stem (2)`, `stem (3)`... under which every sibling name is free in `folder`.

    `names` are the group's file names (each starts with `stem`); `extra` are further suffixes the
    group will need (e.g. ".xmp" for a sidecar we create)."""
    n = 1
    while True:
        candidate = stem if n == 1 else f"{stem} ({n})"
        wanted = [candidate + name[len(stem):] for name in names] + [candidate + s for s in extra]
        if not any(ops.lexists(folder / w) for w in wanted):
            return candidate
        n += 1


class Applier:
    def __init__(self, library: Library, ops: FileOps, sinks: Sinks, txns: Transactions | None,
                 run: str, report: Path, model: str, write_sidecars: bool = True):
        self.library = library
        self.ops = ops
        self.sinks = sinks
        self.txns = txns            # None = dry run
        self.run = run
        self.report = report
        self.model = model
        self.write_sidecars = write_sidecars

    def rows(self, d: Decision, hashes: dict[Path, str], action: str, error: str = "") -> list[Row]:
        p = d.prediction
        out = []
        for f in d.group.files:
            size, mtime = d.group.stats.get(f, (None, None))
            err = error
            if d.duplicate_of.get(f):
                err = f"identical to {d.duplicate_of[f]}"
            out.append(Row(now_iso(), str(f), "", action, d.species, p.confidence if p and d.species else None,
                           format_top3(p.top3) if p else "", hashes.get(f, ""), self.model, err,
                           size, mtime, False, self.run))
        return out

    def apply(self, d: Decision, hashes: dict[Path, str]) -> list[Row]:
        if d.action in ("duplicate", "skipped"):
            rows = self.rows(d, hashes, d.action, d.reason)
            for r in rows:
                r.remember = True  # not reported again until the file changes
            self.sinks.record(rows)
            return rows
        changed = self._changed(d)
        if changed:
            rows = self.rows(d, hashes, "skipped", changed)
            self.sinks.record(rows)
            return rows
        folder = self.library.root / d.folder
        group = d.group
        create_xmp = d.action == "moved" and self.write_sidecars and not group.sidecars
        stem = free_stem(self.ops, folder, group.stem, [f.name for f in group.files], [".xmp"] if create_xmp else [])
        dest = {f: folder / (stem + f.name[len(group.stem):]) for f in group.files}
        rows = self.rows(d, hashes, d.action if self.txns else "dry-run", d.reason)
        for r, f in zip(rows, group.files):
            r.destination = str(dest[f])
            if not self.txns:
                r.error = "; ".join(filter(None, [f"plan: {d.action}", r.error]))
        if self.txns is None:
            self.sinks.record(rows)
            return rows
        steps = [move_step(f, dest[f], hashes.get(f) or None) for f in group.photos + group.sidecars]
        sidecars: list[dict] = []
        if d.action == "moved" and self.write_sidecars:
            notes = self._keywords(d, hashes, dest, folder / f"{stem}.xmp", steps, sidecars)
            for r in rows:
                r.error = "; ".join(filter(None, [r.error] + notes))
        txn = new_txn("sort", self.run, self.report, steps, rows, sidecars)
        return self.txns.execute(txn)

    def _changed(self, d: Decision) -> str:
        for f, (size, mtime) in d.group.stats.items():
            try:
                st = self.ops.stat(f)
            except FileNotFoundError:
                return f"{f.name} vanished during the run; the group was left in place"
            except OSError as e:
                return f"cannot stat {f.name}: {e.strerror}"
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                return f"{f.name} changed during the run; taken when it has settled"
        return ""

    def _keywords(self, d: Decision, hashes: dict[Path, str], dest: dict[Path, Path], new_path: Path,
                  steps: list[dict], sidecars: list[dict]) -> list[str]:
        """Add the sidecar steps for a filed group; returns notes for the report."""
        if not d.group.sidecars:
            data = new_sidecar(d.species)
            steps.append(put_step(new_path, data, None))
            sidecars.append({"path": str(new_path), "run": self.run, "orig_sha256": None,
                             "new_sha256": hashlib.sha256(data).hexdigest()})
            return []
        notes = []
        for src in d.group.sidecars:
            try:
                original = self.ops.read_bytes(src)
                merged = merge_sidecar(original, d.species)
            except (OSError, SidecarError) as e:
                notes.append(f"{src.name}: keywords not written: {getattr(e, 'strerror', None) or e}")
                continue
            orig_sha = hashlib.sha256(original).hexdigest()
            if orig_sha != hashes.get(src):
                notes.append(f"{src.name} changed during the run: keywords not written")
                continue
            if merged == original:
                continue  # already carries the keywords
            steps.append(put_step(self.library.backups / f"{orig_sha}.xmp", original, None))
            steps.append(put_step(dest[src], merged, orig_sha))
            sidecars.append({"path": str(dest[src]), "run": self.run, "orig_sha256": orig_sha,
                             "new_sha256": hashlib.sha256(merged).hexdigest()})
        return notes
