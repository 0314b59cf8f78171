"""The library index: SQLite in WAL mode at `library/.sorter/index.sqlite`.

Tables:
    files     one row per file the sorter put in the library (path relative to the library, unique;
              paths are stored as the OS's bytes, so any file name round-trips exactly),
              with its sha256 (indexed: a duplicate lookup costs the same for 10 or 100,000 photos),
              original source path, species, action and run.
    seen      files deliberately left in the inbox (duplicates, symlinks...), by path, size and mtime,
              so that a later run does not report them again until they change.
    sidecars  XMP sidecars a run created (orig_sha256 NULL) or merged (the original content is kept in
              .sorter/backups/<orig_sha256>.xmp), so that undo can remove or restore them exactly.
    runs      one row per run: times, model, report, counts.

The index is also an output sink (`record`): every write is an idempotent upsert or delete, so
recovery may replay a transaction's records safely.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from pathlib import Path

from .report import Row

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY, sha256 TEXT, source BLOB, species TEXT, action TEXT, run TEXT, time TEXT,
    is_primary INTEGER);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256);
CREATE TABLE IF NOT EXISTS seen (
    path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, action TEXT, run TEXT, time TEXT);
CREATE TABLE IF NOT EXISTS sidecars (
    path BLOB PRIMARY KEY, run TEXT, orig_sha256 TEXT, new_sha256 TEXT);
CREATE INDEX IF NOT EXISTS sidecars_run ON sidecars(run);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, started TEXT, ended TEXT, inbox TEXT, model TEXT, report TEXT,
    dry_run INTEGER, status TEXT, counts TEXT);
"""

FILED = ("moved", "review", "rejected")


def _key(path: str | Path) -> bytes:
    """Paths are stored as the bytes the OS uses: exact for any name, even one that is not UTF-8."""
    return os.fsencode(str(path))


class Index:
    def __init__(self, path: Path, library: Path, readonly: bool = False):
        self.path = Path(path)
        self.library = Path(library)
        self.readonly = readonly
        if readonly:
            if self.path.exists():
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            else:
                self.db = sqlite3.connect(":memory:")
                self.db.executescript(SCHEMA)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self.db.commit()

    def rel(self, path: str | Path) -> bytes:
        p = Path(path)
        try:
            return _key(p.relative_to(self.library).as_posix())
        except ValueError:
            return _key(p)

    # --- lookups -----------------------------------------------------------------------------------
    def find_sha(self, sha256: str) -> Path | None:
        """A library file with these bytes, if the index knows one that still exists."""
        for (rel,) in self.db.execute("SELECT path FROM files WHERE sha256 = ?", (sha256,)):
            p = self.library / os.fsdecode(rel)
            if p.is_file():
                return p
        return None

    def seen_unchanged(self, path: Path, size: int, mtime_ns: int) -> bool:
        row = self.db.execute("SELECT size, mtime_ns FROM seen WHERE path = ?", (_key(path),)).fetchone()
        return row is not None and row[0] == size and row[1] == mtime_ns

    def sidecars_of_run(self, run: str) -> dict[str, tuple[str | None, str]]:
        rows = self.db.execute("SELECT path, orig_sha256, new_sha256 FROM sidecars WHERE run = ?", (run,))
        return {str(self.library / os.fsdecode(p)): (o, n) for p, o, n in rows}

    # --- the sink interface ------------------------------------------------------------------------
    def record(self, rows: list[Row], sidecars: list[dict]) -> None:
        if self.readonly:
            return
        with self.db:
            for r in rows:
                if r.action in FILED and r.destination:
                    self.db.execute(
                        "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (self.rel(r.destination), r.sha256, _key(r.source), r.species, r.action, r.run, r.time,
                         int(r.primary)))
                    self.db.execute("DELETE FROM seen WHERE path = ?", (_key(r.source),))
                elif r.action == "undone":
                    self.db.execute("DELETE FROM files WHERE path = ?", (self.rel(r.source),))
                    self.db.execute("DELETE FROM sidecars WHERE path = ?", (self.rel(r.source),))
                elif r.remember and r.size is not None:
                    self.db.execute("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?, ?, ?)",
                                    (_key(r.source), r.size, r.mtime_ns, r.action, r.run, r.time))
            for s in sidecars:
                if s.get("forget"):
                    self.db.execute("DELETE FROM sidecars WHERE path = ?", (self.rel(s["path"]),))
                else:
                    self.db.execute("INSERT OR REPLACE INTO sidecars VALUES (?, ?, ?, ?)",
                                    (self.rel(s["path"]), s["run"], s.get("orig_sha256"), s["new_sha256"]))

    def flush(self) -> None:
        pass  # every record() commits

    def close(self) -> None:
        self.db.close()

    # --- runs --------------------------------------------------------------------------------------
    def start_run(self, run: str, started: str, inbox: str, model: str, report: str, dry_run: bool) -> None:
        if self.readonly:
            return
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, NULL, ?, ?, ?, ?, 'running', NULL)",
                            (run, started, inbox, model, report, int(dry_run)))

    def end_run(self, run: str, ended: str, status: str, counts: dict) -> None:
        if self.readonly:
            return
        with self.db:
            self.db.execute("UPDATE runs SET ended = ?, status = ?, counts = ? WHERE id = ?",
                            (ended, status, json.dumps(counts, sort_keys=True), run))

    # --- status ------------------------------------------------------------------------------------
    def counts(self) -> dict[str, Counter]:
        """Photos (groups: a RAW+JPEG+XMP shot counts once) per species and per action."""
        out: dict[str, Counter] = {"species": Counter(), "actions": Counter()}
        for action, species, n in self.db.execute(
                "SELECT action, species, COUNT(*) FROM files WHERE is_primary = 1 GROUP BY action, species"):
            out["actions"][action] += n
            if action == "moved":
                out["species"][species] += n
        return out

    def last_runs(self, n: int = 5) -> list[dict]:
        cur = self.db.execute("SELECT id, started, ended, model, status, counts, dry_run FROM runs "
                              "ORDER BY started DESC LIMIT ?", (n,))
        return [{"id": i, "started": s, "ended": e, "model": m, "status": st,
                 "counts": json.loads(c) if c else {}, "dry_run": bool(d)} for i, s, e, m, st, c, d in cur]
