"""Where a run's decisions go: one `Row` per file, delivered to output sinks.

Sinks share one small interface (`record(rows, sidecars)`, `flush()`, `close()`): the CSV report here,
the SQLite index (index.py), the console, and `MemorySink` for tests. The CSV report is
`LIB/reports/<timestamp>.csv` with DESIGN.md's columns; each group's rows are appended with a single
write, so a crash leaves a valid prefix. Cells a spreadsheet would run as a formula are escaped.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

from .fsops import FileOps

COLUMNS = ["time", "source", "destination", "action", "species", "confidence", "top3", "sha256", "model", "error"]
ACTIONS = ("moved", "review", "rejected", "duplicate", "skipped", "dry-run", "undone", "refused")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


@dataclass
class Row:
    time: str
    source: str
    destination: str = ""
    action: str = "skipped"
    species: str = ""
    confidence: float | None = None
    top3: str = ""
    sha256: str = ""
    model: str = ""
    error: str = ""
    # not written to the CSV: what the index needs to recognise a file left in the inbox next time
    size: int | None = None
    mtime_ns: int | None = None
    remember: bool = False
    run: str = ""
    primary: bool = False   # the group's classified photo (status counts photos by these)

    def cells(self) -> list[str]:
        conf = "" if self.confidence is None else f"{self.confidence:.4f}"
        values = [self.time, self.source, self.destination, self.action, self.species, conf, self.top3,
                  self.sha256, self.model, self.error]
        return [escape_cell(v) for v in values]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Row":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def escape_cell(value: str) -> str:
    """Prefix a quote to a cell a spreadsheet would evaluate (=, +, -, @, tab, CR; and ' itself,
    so that `unescape_cell` is exact)."""
    return "'" + value if value.startswith(FORMULA_START) else value


def unescape_cell(value: str) -> str:
    return value[1:] if value.startswith("'") else value


def format_top3(top3: list[tuple[str, float]]) -> str:
    return "; ".join(f"{label} {p:.4f}" for label, p in top3)


class Sink(Protocol):
    def record(self, rows: list[Row], sidecars: list[dict]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class MemorySink:
    """Keeps everything in memory (tests, summaries)."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.sidecars: list[dict] = []

    def record(self, rows: list[Row], sidecars: list[dict]) -> None:
        self.rows.extend(rows)
        self.sidecars.extend(sidecars)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


class CsvReport:
    """Appends rows to a report file. `dedupe=True` (recovery) skips rows the file already holds."""

    def __init__(self, path: Path, ops: FileOps | None = None, dedupe: bool = False):
        self.path = Path(path)
        self.ops = ops or FileOps()
        self.ops.makedirs(self.path.parent)
        fresh = not self.ops.lexists(self.path)
        if not fresh:
            data = self.ops.read_bytes(self.path)
            if HEADER.startswith(data):
                self.ops.truncate(self.path, 0)  # created, but killed before its header was complete
                fresh = True
            elif complete_prefix(data) < len(data):
                self.ops.truncate(self.path, complete_prefix(data))  # a row torn by a crash: cut it off
        self._have: set[tuple[str, str, str]] = set()
        if dedupe and not fresh:
            self._have = {(r.source, r.destination, r.action) for r in read_report(self.path)}
        self._fd = self.ops.open_append(self.path)
        if fresh:
            self.ops.write(self._fd, HEADER)

    def record(self, rows: list[Row], sidecars: list[dict]) -> None:
        todo = [r for r in rows if (r.source, r.destination, r.action) not in self._have]
        if todo:
            # surrogateescape: a file name that is not valid UTF-8 keeps its exact bytes
            self.ops.write(self._fd, _csv_text([r.cells() for r in todo]).encode("utf-8", "surrogateescape"))

    def flush(self) -> None:
        self.ops.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            self.flush()
            self.ops.close(self._fd)
            self._fd = None


class ConsoleSink:
    """One line per file to a print function (dry-run plans, verbose runs)."""

    def __init__(self, echo) -> None:
        self.echo = echo

    def record(self, rows: list[Row], sidecars: list[dict]) -> None:
        for r in rows:
            where = r.destination or "(left in place)"
            extra = f"  [{r.error}]" if r.error else ""
            line = f"{r.action:9} {r.source} -> {where}{extra}"
            self.echo(line.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Sinks:
    """Several sinks as one."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = list(sinks)

    def record(self, rows: list[Row], sidecars: list[dict] = ()) -> None:
        for s in self.sinks:
            s.record(rows, list(sidecars))

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self) -> None:
        for s in self.sinks:
            s.close()


HEADER = _csv_text([COLUMNS]).encode("utf-8")


def complete_prefix(data: bytes) -> int:
    """Length of the longest prefix made of whole CSV records: it ends with a newline that is not
    inside a quoted field (an even number of quote characters before it)."""
    end, quotes = 0, 0
    for i, byte in enumerate(data):
        if byte == 0x22:
            quotes += 1
        elif byte == 0x0A and quotes % 2 == 0:
            end = i + 1
    return end


def read_report(path: Path) -> list[Row]:
    """The rows of a report CSV (cells unescaped). A torn last line is ignored."""
    with open(path, "rb") as f:
        data = f.read()
    if HEADER.startswith(data):
        return []  # empty, or killed while writing the header
    text = data[: complete_prefix(data)].decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != COLUMNS:
        raise ValueError(f"{path} is not a sorter report (unexpected columns)")
    rows = []
    for cells in reader:
        if len(cells) != len(COLUMNS):
            continue
        d = dict(zip(COLUMNS, (unescape_cell(c) for c in cells)))
        d["confidence"] = float(d["confidence"]) if d["confidence"] else None
        rows.append(Row(**d))
    return rows
