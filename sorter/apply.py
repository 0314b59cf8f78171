"""Turn planned decisions into journalled transactions (or, in a dry run, into report rows only).

For each group: check that no file changed since it was hashed, choose destination names (a collision
gets a suffix, `IMG_1 (2)`, the same for every sibling so the group stays recognisable), prepare the
XMP keywords (merged into the group's own sidecars, or a new `<stem>.xmp`; a merged sidecar's original is
kept in .sorter/backups/ so that undo restores it exactly): one transaction per group. A batch's
transactions run as one group commit (txn.py).
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
from .scan import stem_of
from .sidecar import SidecarError, merge_sidecar, new_sidecar
from .txn import Transactions, new_txn


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def free_names(ops: FileOps, folder: Path, files: list[Path], stem: str, extra: list[str] = (),
               reserved: set[Path] | None = None) -> tuple[dict[Path, Path], str]:
    """Destinations in `folder` for a group's files under the first free tag: `IMG_1.JPG`, else
    `IMG_1 (2).JPG`, `IMG_1 (3).JPG`... the same tag for every sibling, each keeping its own name
    otherwise. `extra`: suffixes of files the group will gain (".xmp" for a sidecar we create), added
    to `stem`. `reserved`: names promised to earlier groups of the same batch. Returns (destinations,
    tagged stem)."""
    reserved = reserved if reserved is not None else set()
    n = 1
    while True:
        tag = "" if n == 1 else f" ({n})"
        dest = {}
        for f in files:
            own = stem_of(f.name) or f.stem
            dest[f] = folder / (own + tag + f.name[len(own):])
        wanted = list(dest.values()) + [folder / (stem + tag + s) for s in extra]
        if not any(w in reserved or ops.lexists(w) for w in wanted):
            reserved.update(wanted)
            return dest, stem + tag
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
                           size, mtime, False, self.run, f == d.group.primary))
        return out

    def apply(self, decisions: list[Decision], hashes: dict[Path, str]) -> list[Row]:
        """Apply a batch: rows for groups left in place at once, then every move as one group commit."""
        rows: list[Row] = []
        txns: list[dict] = []
        reserved: set[Path] = set()
        for d in decisions:
            txn, now = self._prepare(d, hashes, reserved)
            rows += now
            if txn:
                txns.append(txn)
        if rows:
            self.sinks.record(rows)
        if txns:
            rows += self.txns.execute(*txns)
        return rows

    def _prepare(self, d: Decision, hashes: dict[Path, str], reserved: set[Path]) -> tuple[dict | None, list[Row]]:
        """(a transaction, []) for a group to file; (None, rows) for one left in place or a dry run."""
        if d.action in ("duplicate", "skipped"):
            rows = self.rows(d, hashes, d.action, d.reason)
            for r in rows:
                r.remember = d.action == "duplicate"  # not reported again until it changes; a skip is retried
            return None, rows
        changed = self._changed(d)
        if changed:
            return None, self.rows(d, hashes, "skipped", changed)
        folder = self.library.root / d.folder
        group = d.group
        create_xmp = d.action == "moved" and self.write_sidecars and not group.sidecars
        dest, stem = free_names(self.ops, folder, group.files, group.stem, [".xmp"] if create_xmp else [], reserved)
        rows = self.rows(d, hashes, d.action if self.txns else "dry-run", d.reason)
        for r, f in zip(rows, group.files):
            r.destination = str(dest[f])
            if not self.txns:
                r.error = "; ".join(filter(None, [f"plan: {d.action}", r.error]))
        if self.txns is None:
            return None, rows
        steps = [move_step(f, dest[f], hashes.get(f) or None) for f in group.photos + group.sidecars]
        sidecars: list[dict] = []
        if d.action == "moved" and self.write_sidecars:
            notes = self._keywords(d, hashes, dest, folder / f"{stem}.xmp", steps, sidecars)
            for r in rows:
                r.error = "; ".join(filter(None, [r.error] + notes))
        return new_txn("sort", self.run, self.report, steps, rows, sidecars), []

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
