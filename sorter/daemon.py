"""Keep sorting: poll the inbox every N seconds (`--watch`) or run on a cron schedule (`--schedule`).

APScheduler 3 runs the job in a background thread: one instance at a time (`max_instances=1`), missed
runs coalesced into one. SIGTERM/SIGINT set a stop event: the running job finishes its current batch,
flushes report and index, and the scheduler shuts down after it. `serve` takes an optional duration so
tests (and benchmarks) can run the real scheduler for a bounded time.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable

from .errors import ConfigError, UserError

log = logging.getLogger(__name__)


# APScheduler is imported where it is used: a one-shot `sorter run` does not pay for it at start-up.


def make_trigger(interval: float | None = None, cron: str | None = None, timezone: str | None = None):
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if cron:
        try:
            return CronTrigger.from_crontab(cron, timezone=timezone)
        except (ValueError, LookupError) as e:
            raise ConfigError(f"bad schedule {cron!r}: {e}") from None
    if interval is None or interval <= 0:
        raise ConfigError("the watch interval must be a positive number of seconds")
    return IntervalTrigger(seconds=interval, timezone=timezone)


def stop_on_signals(stop: threading.Event, notify: Callable[[str], None] | None = None) -> Callable[[], None]:
    """SIGTERM and SIGINT set `stop` (main thread only; `stop.signum` says which): the run finishes its
    batch. A second signal raises KeyboardInterrupt at once (safe too: the journal lets the next run
    finish). Returns a function restoring the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.signum = signum  # a one-shot run that stops early exits 128 + signum, as if killed by it
        stop.set()
        if notify:
            notify("stopping after the current batch (signal again to stop at once)")

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    return lambda: [signal.signal(s, h) for s, h in old.items()]


def serve(job: Callable[[threading.Event], object], trigger, stop: threading.Event,
          run_now: bool = True, duration: float | None = None,
          on_error: Callable[[Exception], None] | None = None) -> int:
    """Run `job(stop)` on `trigger` until `stop` is set (or `duration` seconds pass). Returns the number
    of job runs that completed. A user error in one run (disk full, library locked) is reported through
    `on_error` and the schedule goes on; the next run retries."""
    from apscheduler.schedulers.background import BackgroundScheduler

    runs = 0
    lock = threading.Lock()

    def wrapped() -> None:
        nonlocal runs
        if stop.is_set():
            return
        try:
            job(stop)
        except UserError as e:
            (on_error or (lambda err: log.error("%s", err)))(e)
        except Exception as e:  # a bug: report it, keep the daemon alive for the next run
            log.exception("sorter run failed")
            if on_error:
                on_error(e)
        with lock:
            runs += 1

    scheduler = BackgroundScheduler()
    first = dt.datetime.now(dt.timezone.utc) if run_now else None
    kwargs = {"next_run_time": first} if run_now else {}
    scheduler.add_job(wrapped, trigger, id="sort", max_instances=1, coalesce=True,
                      misfire_grace_time=None, **kwargs)
    scheduler.start()
    try:
        stop.wait(duration)
    except KeyboardInterrupt:            # a second signal: do not wait for the batch
        scheduler.shutdown(wait=False)
        raise
    stop.set()                           # the running job finishes its batch and returns
    scheduler.shutdown(wait=True)
    return runs
