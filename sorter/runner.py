"""One sorter run: recover -> lock -> scan -> classify in batches -> plan -> apply -> report/index.

Streaming: the primaries of all groups go through one `Classifier.classify` stream (so its decoding can
run ahead of inference; each group is hashed in a worker thread as the classifier takes its photo), and
every `batch_size` predictions are planned and applied before the next batch is taken; memory stays bounded and the report grows batch by batch. A stop request (SIGTERM,
SIGINT, the daemon shutting down) is honoured between batches: the batch in hand is finished and
flushed, the rest stays in the inbox for the next run.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .apply import Applier, now_iso
from .card import ModelCard, find_model, read_card
from .classify import Classifier, open_set_for, providers_for, wants_int8
from .errors import StorageError, UserError
from .fsops import FileOps
from .index import Index
from .journal import Journal
from .library import check_paths
from .lock import LibraryLock
from .plan import Decision, plan_batch, resolve_threshold
from .report import CsvReport, Row, Sinks, new_report_path
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
    species: Counter = field(default_factory=Counter)    # photos (groups) filed per species
    recovered: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    waiting: int = 0
    groups: int = 0
    stopped: bool = False
    seconds: float = 0.0


def load_card(model: str, exports_dir: Path | None = None) -> ModelCard:
    return read_card(find_model(model, exports_dir))


def _hash_group(ops: FileOps, group: Group) -> tuple[dict[Path, str], str]:
    """Hash every file of the group once: (hashes, '') or (partial hashes, why the group is skipped)."""
    hashes: dict[Path, str] = {}
    for f in group.files:
        try:
            hashes[f] = ops.sha256(f)
        except FileNotFoundError:
            return hashes, f"{f.name} vanished during the run; the group was left in place"
        except PermissionError:
            hashes[f] = ""  # unreadable: filed to _rejected by name (same filesystem) with the reason
        except OSError as e:
            return hashes, f"cannot read {f.name}: {e.strerror}"
    return hashes, ""


class HashAhead:
    """Hashes each group in worker threads as soon as the classifier asks for its photo, so hashing
    (hashlib releases the GIL) overlaps decoding and inference instead of following them."""

    def __init__(self, ops: FileOps, workers: int = 2):
        self.ops = ops
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="hash") if workers else None
        self.futures: dict[int, Future] = {}

    def feed(self, groups: list[Group]) -> Iterator[Path]:
        for g in groups:
            if self.pool:
                self.futures[id(g)] = self.pool.submit(_hash_group, self.ops, g)
            yield g.primary

    def result(self, group: Group) -> tuple[dict[Path, str], str]:
        future = self.futures.pop(id(group), None)
        return future.result() if future else _hash_group(self.ops, group)

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)


class Runner:
    """Holds what survives between runs of a daemon (the loaded classifier)."""

    def __init__(self, settings: RunSettings, ops: FileOps | None = None, classifier_factory: Callable | None = None):
        self.settings = settings
        self.ops = ops or FileOps()
        self._factory = classifier_factory
        self._classifier = None
        self.hash_workers = 2  # threads hashing ahead of the batch being applied (0: hash in the loop)
        self.card = load_card(settings.model, settings.exports_dir)
        on_cpu = providers_for(settings.device) == ["CPUExecutionProvider"]
        variant = "int8" if wants_int8(self.card, settings.int8, on_cpu) else "fp32"
        self.threshold, self.threshold_source = resolve_threshold(
            self.card, settings.threshold, settings.target_precision, open_set_for(self.card, variant, settings.tta))
        self.inbox, self.library = check_paths(settings.inbox, settings.library)

    def classifier(self):
        if self._classifier is None:
            if self._factory is not None:
                self._classifier = self._factory(self.card)
            else:
                s = self.settings
                self._classifier = Classifier(self.card, device=s.device, batch_size=s.batch_size,
                                              workers=s.workers, int8=s.int8, tta=s.tta)
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
            on_batch: Callable[[int], None] | None = None, extra_sinks: Iterable = (),
            wait_for_settling: bool = False) -> RunSummary:
        """One run. `wait_for_settling` (a one-shot run): files still settling are waited for, once,
        instead of being left to a later run."""
        s, lib, ops = self.settings, self.library, self.ops
        started = time.monotonic()
        if not self.inbox.is_dir():
            raise UserError(f"inbox not found: {self.inbox}")
        if not s.dry_run and not os.access(self.inbox, os.W_OK):
            raise UserError(f"the inbox {self.inbox} is read-only: photos cannot be moved out of it "
                            "(copy them to a writable folder first)")
        summary = RunSummary("", None, self.model_desc(), self.threshold, self.threshold_source)
        lock = index = journal = None
        try:
            if s.dry_run:  # read only: no lock, no recovery, no index writes
                index = Index(lib.index, lib.root, readonly=True)
                pending = Journal(lib.journal, ops).pending()
                if pending:
                    summary.notes.append(f"{len(pending)} interrupted transaction(s) pending: "
                                         "the next real run finishes them")
            else:
                ops.makedirs(lib.state)
                lock = LibraryLock(lib.lock).acquire()
                if lock.stale:
                    summary.notes.append(f"recovered a stale lock left by pid {lock.stale.get('pid')}")
                index = Index(lib.index, lib.root)
                journal = Journal(lib.journal, ops).open()
                summary.recovered = recover(journal, ops, index)
                journal.compact()
            return self._run(summary, index, journal, stop, on_start, on_batch, extra_sinks, started,
                             wait_for_settling)
        except OSError as e:  # the library's disk refused a write outside a transaction (report, journal)
            where = f" {e.filename}" if e.filename else ""
            raise StorageError(f"cannot write{where}: {e.strerror or e} "
                               "(nothing was lost; the next run finishes the job)") from None
        except sqlite3.Error as e:
            raise StorageError(f"library index {lib.index}: {e} (nothing was lost; the next run finishes the job)") from None
        finally:
            if journal is not None:
                journal.close()
            if index is not None:
                index.close()
            if lock is not None:
                lock.release()

    def _run(self, summary, index, journal, stop, on_start, on_batch, extra_sinks, started,
             wait_for_settling) -> RunSummary:
        s, lib, ops = self.settings, self.library, self.ops
        found = scan(self.inbox, lib.root, s.settle)
        if found.waiting and wait_for_settling:
            (stop or threading.Event()).wait(s.settle)
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
        report = new_report_path(lib.reports, "-dry-run" if s.dry_run else "")
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
            hasher = HashAhead(ops, self.hash_workers)
            stream = self.classifier().classify(hasher.feed(groups)) if groups else iter(())
            pairs = zip(groups, stream)
            try:
                while True:
                    if stop is not None and stop.is_set():  # checked between batches only
                        summary.stopped = True
                        break
                    batch = list(itertools.islice(pairs, s.batch_size))
                    if not batch:
                        break
                    decisions, hashes = self._plan(batch, index, hasher)
                    self._count(summary, applier.apply(decisions, hashes))
                    sinks.flush()
                    if on_batch:
                        on_batch(sum(len(g.files) for g, _ in batch))
            finally:
                close = getattr(stream, "close", None)
                if close:
                    close()
                hasher.close()
            status = "stopped" if summary.stopped else "done"
        finally:
            try:
                index.end_run(summary.run, now_iso(), status, dict(summary.counts))
                sinks.close()
                if journal is not None and status != "failed":
                    journal.compact()
            except (OSError, sqlite3.Error):
                if status != "failed":
                    raise  # otherwise the error that stopped the run is the one to report
        summary.seconds = time.monotonic() - started
        return summary

    def _plan(self, batch, index: Index, hasher: HashAhead) -> tuple[list[Decision], dict[Path, str]]:
        hashes: dict[Path, str] = {}
        out, ok_groups, ok_preds = [], [], []
        skips = {}
        for group, pred in batch:
            got, why = hasher.result(group)
            hashes.update(got)
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
            out.append(skips.get(id(group)) or next(planned))
        return out, hashes

    @staticmethod
    def _count(summary: RunSummary, rows: list[Row]) -> None:
        for r in rows:
            summary.counts[r.action] += 1
            if r.action == "moved" and r.primary:
                summary.species[r.species] += 1  # photos (groups), not files
