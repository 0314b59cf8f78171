import threading
import time

import pytest

from sorter.daemon import make_trigger, serve
from sorter.errors import ConfigError, StorageError
from tests.conftest import make_colour_photo


def test_interval_job_runs_repeatedly_never_overlaps_and_stops_cleanly():
    active, most, runs = 0, 0, []
    guard = threading.Lock()

    def job(stop):
        nonlocal active, most
        with guard:
            active += 1
            most = max(most, active)
        time.sleep(0.15)  # longer than the interval: runs would overlap without max_instances=1
        with guard:
            active -= 1
        runs.append(stop.is_set())

    stop = threading.Event()
    n = serve(job, make_trigger(interval=0.05), stop, duration=1.0)
    assert n >= 3 and n == len(runs) and most == 1
    assert active == 0  # shutdown waited for the running job


def test_errors_are_reported_and_the_schedule_goes_on():
    errors, calls = [], []

    def job(stop):
        calls.append(1)
        raise StorageError("disk full")

    n = serve(job, make_trigger(interval=0.05), threading.Event(), duration=0.4, on_error=errors.append)
    assert n == len(calls) >= 2 and all(str(e) == "disk full" for e in errors)


def test_cron_trigger_and_bad_schedules():
    trigger = make_trigger(cron="0 2 * * *", timezone="UTC")
    assert "hour='2'" in str(trigger)
    with pytest.raises(ConfigError, match="bad schedule"):
        make_trigger(cron="every night")
    with pytest.raises(ConfigError):
        make_trigger(interval=0)


def test_watching_sorts_photos_that_arrive(tmp_path, make_runner):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    inbox.mkdir()
    runner = make_runner()
    stop = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("n", serve(runner.run, make_trigger(interval=0.1), stop)))
    t.start()
    try:
        make_colour_photo(inbox / "late.jpg", "blue", seed=1)
        deadline = time.monotonic() + 10
        while not (lib / "Blue_Bird" / "late.jpg").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(10)
    assert (lib / "Blue_Bird" / "late.jpg").is_file() and not t.is_alive() and result["n"] >= 1
