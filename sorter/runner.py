"""One sorter run: recover -> lock -> scan -> classify in batches -> plan -> apply -> report/index.

Streaming: the primaries of all groups go through one `Classifier.classify` stream (so its decoding can
run ahead of inference), and every `batch_size` predictions are hashed, planned and applied before the
next batch is taken; memory stays bounded and the report grows batch by batch. A stop request (SIGTERM,
SIGINT, the daemon shutting down) is honoured between batches: the batch in hand is finished and
flushed, the rest stays in the inbox for the next run.
"""

from __future__ import annotations

import inspect
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .apply import Applier, now_iso
from .card import ModelCard, find_model, read_card
from .errors import StorageError
from .fsops import FileOps
from .index import Index
from .journal import Journal
from .library import Library, check_paths
from .lock import LibraryLock
from .plan import Decision, plan_batch, resolve_threshold
from .report import CsvReport, Row, Sinks
from .scan import Group, scan
from .txn import Transactions, recover


@dataclass
class RunSettings:
    inbox: Path
    library: Path
    model: str = "default"
    threshold: float | None = None
    target_precision: float | None = None
    batch_size: int = 32
    device: str = "auto"
    settle: float = 5.0
    dry_run: bool = False
    write_sidecars: bool = True
    exports_dir: Path | None = None
    workers: int = 0
    int8: bool | None = None
    tta: bool = False


@dataclass
class RunSummary:
    run: str
    report: Path | None
    model: str
    threshold: float
    threshold_source: str
    counts: Counter = field(default_factory=Counter)     # files per action
    species: Counter = field(default_factory=Counter)    # files filed per species
    recovered: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    waiting: int = 0
    groups: int = 0
    stopped: bool = False
    seconds: float = 0.0


def load_card(model: str, exports_dir: Path | None = None) -> ModelCard:
    return read_card(find_model(model, exports_dir))


def new_report_path(reports: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = reports / f"{stamp}.csv", 2
    while path.exists():
        path, n = reports / f"{stamp}-{n}.csv", n + 1
    return path


def _hash_group(ops: FileOps, group: Group, hashes: dict[Path, str]) -> str:
    """Hash every file of the group once; returns a reason when the group must be skipped."""
    for f in group.files:
        try:
            hashes[f] = ops.sha256(f)
        except FileNotFoundError:
            return f"{f.name} vanished during the run; the group was left in place"
        except PermissionError:
            hashes[f] = ""  # unreadable: filed to _rejected by name (same filesystem) with the reason
        except OSError as e:
            return f"cannot read {f.name}: {e.strerror}"
    return ""


class Runner:
    """Holds what survives between runs of a daemon (the loaded classifier)."""

    def __init__(self, settings: RunSettings, ops: FileOps | None = None, classifier_factory: Callable | None = None):
        self.settings = settings
        self.ops = ops or FileOps()
        self._factory = classifier_factory
        self._classifier = None
        self.card = load_card(settings.model, settings.exports_dir)
        self.threshold, self.threshold_source = resolve_threshold(self.card, settings.threshold,
                                                                  settings.target_precision)
        self.inbox, self.library = check_paths(settings.inbox, settings.library)

    def classifier(self):
        if self._classifier is None:
            if self._factory is not None:
                self._classifier = self._factory(self.card)
            else:
                from .classify import Classifier
                s = self.settings
                wanted = {"device": s.device, "batch_size": s.batch_size, "workers": s.workers, "int8": s.int8,
                          "tta": s.tta}
                accepted = inspect.signature(Classifier).parameters  # options the classifier offers
                self._classifier = Classifier(self.card, **{k: v for k, v in wanted.items() if k in accepted})
        return self._classifier

    def model_desc(self) -> str:
        sha = getattr(self._classifier, "model_sha256", None) or self.card.onnx["sha256"]
        return f"{self.card.name}@{sha}"

    def close(self) -> None:
        close = getattr(self._classifier, "close", None)
        if close:
            close()
        self._classifier = None

    def run(self, stop: threading.Event | None = None, on_start: Callable[[int], None] | None = None,
            on_batch: Callable[[int], None] | None = None, extra_sinks: Iterable = ()) -> RunSummary:
        s, lib, ops = self.settings, self.library, self.ops
        started = time.monotonic()
        summary = RunSummary("", None, self.model_desc(), self.threshold, self.threshold_source)
        lock = None
        if s.dry_run:
            index = Index(lib.index, lib.root, readonly=True)
            journal = None
            pending = Journal(lib.journal, ops).pending()
            if pending:
                summary.notes.append(f"{len(pending)} interrupted transaction(s) pending: the next real run finishes them")
        else:
            ops.makedirs(lib.state)
            lock = LibraryLock(lib.lock).acquire()
            if lock.stale:
                summary.notes.append(f"recovered a stale lock left by pid {lock.stale.get('pid')}")
            index = Index(lib.index, lib.root)
            journal = Journal(lib.journal, ops)
        try:
            if journal is not None:
                try:
                    journal.open()
                except OSError as e:
                    raise StorageError(f"cannot open the journal {lib.journal}: {e.strerror}") from None
                summary.recovered = recover(journal, ops, index)
                journal.compact()
            return self._run(summary, index, journal, stop, on_start, on_batch, extra_sinks, started)
        finally:
            if journal is not None:
                journal.close()
            index.close()
            if lock is not None:
                lock.release()

    def _run(self, summary, index, journal, stop, on_start, on_batch, extra_sinks, started) -> RunSummary:
        s, lib, ops = self.settings, self.library, self.ops
        found = scan(self.inbox, lib.root, s.settle)
        summary.waiting = found.waiting
        groups = [g for g in found.groups
                  if not all(index.seen_unchanged(f, *g.stats[f]) for f in g.files)]
        skipped = [k for k in found.skipped if not index.seen_unchanged(k.path, k.size, k.mtime_ns)]
        summary.groups = len(groups)
        if not groups and not skipped:
            summary.seconds = time.monotonic() - started
            return summary  # nothing new: no report, no run record
        if groups:
            self.classifier()  # load (and verify) the model before anything is written
        summary.model = self.model_desc()
        report = new_report_path(lib.reports)
        summary.run, summary.report = report.stem, report
        ops.makedirs(lib.reports)
        csv = CsvReport(report, ops)
        sinks = Sinks(index, csv, *extra_sinks)
        index.start_run(summary.run, now_iso(), str(self.inbox), summary.model, str(report), s.dry_run)
        txns = None if s.dry_run else Transactions(journal, ops, sinks)
        applier = Applier(lib, ops, sinks, txns, summary.run, report, summary.model, s.write_sidecars)
        status = "failed"
        try:
            rows = [Row(now_iso(), str(k.path), action="skipped", error=k.reason, size=k.size,
                        mtime_ns=k.mtime_ns, remember=True, run=summary.run) for k in skipped]
            sinks.record(rows)
            self._count(summary, rows)
            if on_start:
                on_start(sum(len(g.files) for g in groups))
            stream = self.classifier().classify(g.primary for g in groups) if groups else iter(())
            pairs = zip(groups, stream)
            try:
                while batch := list(itertools.islice(pairs, s.batch_size)):
                    for decision, hashes in self._plan(batch, index):
                        self._count(summary, applier.apply(decision, hashes))
                    sinks.flush()
                    if on_batch:
                        on_batch(sum(len(g.files) for g, _ in batch))
                    if stop is not None and stop.is_set():
                        summary.stopped = True
                        break
            finally:
                close = getattr(stream, "close", None)
                if close:
                    close()
            status = "stopped" if summary.stopped else "done"
        finally:
            index.end_run(summary.run, now_iso(), status, dict(summary.counts))
            sinks.close()
            if journal is not None and status != "failed":
                journal.compact()
        summary.seconds = time.monotonic() - started
        return summary

    def _plan(self, batch, index: Index) -> list[tuple[Decision, dict[Path, str]]]:
        hashes: dict[Path, str] = {}
        out, ok_groups, ok_preds = [], [], []
        skips = {}
        for group, pred in batch:
            why = _hash_group(self.ops, group, hashes)
            if why:
                skips[id(group)] = Decision(group, "skipped", reason=why, prediction=pred)
            else:
                ok_groups.append(group)
                ok_preds.append(pred)

        def find(sha: str) -> str | None:
            hit = index.find_sha(sha)
            return str(hit) if hit else None

        planned = iter(plan_batch(ok_groups, ok_preds, hashes, self.threshold, find))
        for group, _ in batch:
            out.append((skips.get(id(group)) or next(planned), hashes))
        return out

    @staticmethod
    def _count(summary: RunSummary, rows: list[Row]) -> None:
        for r in rows:
            summary.counts[r.action] += 1
            if r.action == "moved":
                summary.species[r.species] += 1
