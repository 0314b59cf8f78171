"""`sorter` command line: parse, call, print. No logic a test would want to call lives here."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from .config import SorterConfig, load_section
from .daemon import make_trigger, serve, stop_on_signals
from .errors import ConfigError, UserError
from .index import Index
from .journal import Journal
from .library import STATE, Library
from .lock import holder as lock_holder
from .report import ConsoleSink
from .runner import Runner, RunSettings, RunSummary
from .undo import undo as undo_report

FROM_CONFIG = "\0config"


def fail(e: UserError) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(e.exit_code)


class Progress:
    """A tqdm bar over the files of one run (on stderr; silent when there is nothing to do)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None

    def start(self, total: int) -> None:
        if self.enabled and total:
            from tqdm import tqdm  # here: `--quiet` runs and scripts do not pay for the import

            # disable=None: no bar when stderr is not a terminal (logs, cron mail)
            self.bar = tqdm(total=total, unit="file", desc="sorting", file=sys.stderr, leave=False, disable=None)

    def step(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def print_summary(s: RunSummary, library: Path, dry_run: bool) -> None:
    for line in s.notes + s.recovered:
        click.echo(f"note: {line}")
    if not s.report:
        click.echo("nothing new in the inbox" + (f" ({s.waiting} file(s) still settling)" if s.waiting else ""))
        return
    files = sum(s.counts.values())
    what = "planned" if dry_run else "sorted"
    click.echo(f"{what} {files} file(s) in {s.groups} group(s) in {s.seconds:.1f} s; model {s.model.split('@')[0]}, "
               f"threshold {s.threshold:.4g} ({s.threshold_source})")
    species = "photos: " + ", ".join(f"{k} {v}" for k, v in s.species.most_common())
    lines = [("moved", species), ("review", str(library / "_review")), ("rejected", str(library / "_rejected")),
             ("duplicate", "left in place"), ("skipped", "left in place"), ("dry-run", "nothing touched")]
    for action, detail in lines:
        if s.counts.get(action):
            click.echo(f"  {action:10} {s.counts[action]:6}  {detail}")
    if s.waiting:
        click.echo(f"  {'waiting':10} {s.waiting:6}  not settled yet: taken by a later run")
    if s.stopped:
        click.echo("stopped on request after the current batch; the rest stays in the inbox")
    click.echo(f"report: {s.report}")


@click.group()
def main() -> None:
    """Files bird photos by species with an exported model, safely and undoably."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


@main.command()
@click.argument("inbox", type=click.Path(path_type=Path))
@click.option("--library", "-l", type=click.Path(path_type=Path), help="Library folder (default: sorter.library in the config).")
@click.option("--watch", is_flag=True, help="Keep running: poll the inbox every sorter.schedule.watch_interval seconds.")
@click.option("--interval", type=float, help="Seconds between polls with --watch (overrides the config).")
@click.option("--schedule", "schedule", is_flag=False, flag_value=FROM_CONFIG, default=None, metavar="[CRON]",
              help='Run on a cron schedule, e.g. "0 2 * * *"; without a value: [sorter.schedule] cron.')
@click.option("--dry-run", is_flag=True, help="Print and report the plan; touch nothing.")
@click.option("--model", help="Model name in exports/ or a path to NAME.onnx/NAME.json (default: config, 'default').")
@click.option("--threshold", type=float, help="Review threshold on the model's open-set score.")
@click.option("--target-precision", type=float, help="Pick the threshold reaching this precision on the card's curve.")
@click.option("--batch-size", type=int, help="Photos per onnxruntime run.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to run the model.")
@click.option("--settle", type=float, help="Seconds a file's size and mtime must hold still before it is taken.")
@click.option("--no-sidecars", is_flag=True, default=None, help="Do not write XMP keywords.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Config file (default: ./config.toml).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def run(inbox, library, watch, interval, schedule, dry_run, model, threshold, target_precision, batch_size,
        device, settle, no_sidecars, config_path, quiet) -> None:
    """Sort the photos in INBOX into the library (once, --watch, or --schedule).

    A one-shot run stopped early by SIGTERM/SIGINT (after its current batch) exits 143/130."""
    summary, cron = None, None
    try:
        cfg = load_section(SorterConfig, "sorter", config_path, {
            "library": str(library) if library else None, "model": model, "threshold": threshold,
            "target_precision": target_precision, "batch_size": batch_size, "device": device,
            "settle_seconds": settle, "write_sidecars": False if no_sidecars else None,
            "schedule.watch_interval": interval})
        if not cfg.library:
            raise ConfigError("no library: pass --library LIB or set sorter.library in the config")
        if watch and schedule:
            raise UserError("choose one of --watch and --schedule")
        if dry_run and (watch or schedule):
            raise UserError("--dry-run runs once: drop --watch/--schedule")
        cron = cfg.schedule.cron if schedule == FROM_CONFIG else schedule
        if schedule == FROM_CONFIG and not cron:
            raise ConfigError("--schedule without a value needs [sorter.schedule] cron in the config")
        settings = RunSettings(inbox, Path(cfg.library).expanduser(), cfg.model, cfg.threshold, cfg.target_precision,
                               cfg.batch_size, cfg.device, cfg.settle_seconds, dry_run, cfg.write_sidecars,
                               workers=cfg.workers, int8=cfg.int8, tta=cfg.tta)
        runner = Runner(settings)
        stop = threading.Event()
        restore = stop_on_signals(stop, lambda line: click.echo(line, err=True))
        try:
            if watch or cron:
                trigger = make_trigger(cfg.schedule.watch_interval, cron, cfg.schedule.timezone)
                how = f"on schedule {cron!r}" if cron else f"every {cfg.schedule.watch_interval:g} s"
                click.echo(f"watching {runner.inbox} {how}; Ctrl-C or SIGTERM stops after the current batch")
                try:
                    serve(lambda ev: _one(runner, ev, quiet, dry_run, watching=True), trigger, stop,
                          run_now=not cron, on_error=lambda e: click.echo(f"error: {e}", err=True))
                except KeyboardInterrupt:  # forced: leave the job thread behind (the journal covers it)
                    click.echo("error: interrupted; nothing was lost, the next run finishes the job", err=True)
                    sys.stderr.flush()
                    os._exit(130)
                click.echo("stopped")
            else:
                summary = _one(runner, stop, quiet, dry_run)
        finally:
            restore()
            runner.close()
    except UserError as e:
        fail(e)
    except KeyboardInterrupt:
        click.echo("error: interrupted; nothing was lost, the next run finishes the job", err=True)
        sys.exit(130)
    if not (watch or cron) and summary is not None and summary.stopped:
        # stopped early on request: photos are left in the inbox, so a script must not read "done" (0);
        # everything done so far is flushed, and the exit status is the shell's for that signal (143, 130)
        sys.exit(128 + int(getattr(stop, "signum", signal.SIGTERM)))


def _one(runner: Runner, stop: threading.Event, quiet: bool, dry_run: bool,
         watching: bool = False) -> RunSummary | None:
    progress = Progress(not quiet and not dry_run)  # a dry run prints its plan line by line instead
    try:
        plan = [ConsoleSink(click.echo)] if dry_run else []
        summary = runner.run(stop, on_start=progress.start, on_batch=progress.step, extra_sinks=plan,
                             wait_for_settling=not watching)
    finally:
        progress.close()
    if watching and not summary.report and not summary.recovered:
        return summary  # a quiet poll
    print_summary(summary, runner.library.root, dry_run)
    return summary


@main.command()
@click.argument("report", type=click.Path(path_type=Path))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def undo(report, yes) -> None:
    """Put every file the run of REPORT filed back where it was (byte-identical, verified)."""
    try:
        if not yes:
            click.confirm(f"move the photos filed by {report} back to where they came from?", abort=True)
        s = undo_report(report)
    except UserError as e:
        fail(e)
    for line in s.recovered:
        click.echo(f"note: {line}")
    done = s.counts.get("undone", 0)
    click.echo(f"put back {done} file(s); refused {s.counts.get('refused', 0)}; "
               f"already back {s.counts.get('already undone', 0)}; removed {s.counts.get('sidecars removed', 0)} sidecar(s)")
    for line in s.refused[:20]:
        click.echo(f"  refused: {line}")
    if len(s.refused) > 20:
        click.echo(f"  ... and {len(s.refused) - 20} more (see the report)")
    click.echo(f"report: {s.report}")


@main.command()
@click.argument("library", type=click.Path(path_type=Path))
@click.option("--runs", default=5, show_default=True, help="How many recent runs to list.")
def status(library, runs) -> None:
    """What the library's index holds: photos per species, review, rejected, last runs."""
    lib = Library(Path(library).expanduser().resolve())
    if not lib.index.is_file():
        fail(UserError(f"{library} is not a sorter library (no {STATE}/index.sqlite)"))
    index = Index(lib.index, lib.root, readonly=True)
    try:
        counts = index.counts()
        click.echo(f"library {lib.root} (photos; a RAW+JPEG pair counts once)")
        for species, n in sorted(counts["species"].items()):
            click.echo(f"  {species:30} {n:6}")
        click.echo(f"  {'(review)':30} {counts['actions'].get('review', 0):6}")
        click.echo(f"  {'(rejected)':30} {counts['actions'].get('rejected', 0):6}")
        who = lock_holder(lib.lock)
        if who is not None:
            click.echo(f"a sorter is running now (pid {who.get('pid')} on {who.get('host')}, since {who.get('started')})")
        pending = Journal(lib.journal).pending()
        if pending:
            click.echo(f"{len(pending)} interrupted transaction(s) pending: the next run finishes them")
        click.echo("last runs:")
        for r in index.last_runs(runs):
            c = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items())) or "-"
            kind = " (dry run)" if r["dry_run"] else ""
            click.echo(f"  {r['id']}{kind}  {r['status']}  {r['model'].split('@')[0]}  {c}")
    finally:
        index.close()


if __name__ == "__main__":
    main()
