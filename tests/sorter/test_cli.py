import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from sorter.cli import main
from sorter.lock import LibraryLock
from tests.conftest import REPO, make_colour_photo, make_tiny_model
from tests.sorter.conftest import colour_tree, snapshot


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def one_line_error(result, code, text):
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.output


def test_run_status_undo(tmp_path, tiny_card):
    inbox, lib = colour_tree(tmp_path / "inbox"), tmp_path / "lib"
    before = snapshot(inbox)
    r = invoke("run", inbox, "--library", lib, "--model", tiny_card, "--settle", 0, "--device", "cpu", "-q")
    assert r.exit_code == 0, r.output
    assert "sorted 15 file(s) in 12 group(s)" in r.output and "photos: Green_Bird 4, " in r.output and "report: " in r.output
    report = r.output.split("report: ")[1].strip()
    s = invoke("status", lib)
    assert s.exit_code == 0 and "Green_Bird" in s.output and "(rejected)                          2" in s.output
    u = invoke("undo", report, "--yes")
    assert u.exit_code == 0 and "put back 15 file(s); refused 0" in u.output
    assert snapshot(inbox) == before


def test_dry_run_prints_the_plan_and_touches_nothing(tmp_path, tiny_card):
    inbox = colour_tree(tmp_path / "inbox")
    before = snapshot(inbox)
    r = invoke("run", inbox, "--library", tmp_path / "lib", "--model", tiny_card, "--settle", 0, "--dry-run", "-q")
    assert r.exit_code == 0 and "planned 15 file(s)" in r.output
    assert f"dry-run   {inbox / 'red_0.jpg'} -> {tmp_path / 'lib' / 'Red_Bird' / 'red_0.jpg'}" in r.output
    assert snapshot(inbox) == before and not (tmp_path / "lib" / ".sorter").exists()


def test_default_model_from_exports(tmp_path):
    inbox = tmp_path / "inbox"
    make_colour_photo(inbox / "a.jpg", "red", seed=1)
    args = ("run", inbox, "--library", tmp_path / "lib", "--settle", 0, "-q")
    one_line_error(invoke(*args, env={"BIRDSORT_EXPORTS": str(tmp_path / "exports")}), 4, "no model named 'default'")
    make_tiny_model(tmp_path / "exports", name="default")
    r = invoke(*args, env={"BIRDSORT_EXPORTS": str(tmp_path / "exports")})
    assert r.exit_code == 0 and (tmp_path / "lib" / "Red_Bird" / "a.jpg").is_file()


def test_user_errors_are_one_line(tmp_path, tiny_card):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    inbox.mkdir()
    base = ("--model", tiny_card, "--settle", 0)
    one_line_error(invoke("run", tmp_path / "nope", "--library", lib, *base), 2, "inbox not found")
    (lib / ".sorter").mkdir(parents=True)
    one_line_error(invoke("run", inbox, "--library", lib / "Red_Bird", *base), 2, "inside another library")
    one_line_error(invoke("run", lib / "Red_Bird", "--library", lib, *base), 2, "inbox not found")
    (lib / "Red_Bird").mkdir()
    one_line_error(invoke("run", lib / "Red_Bird", "--library", lib, *base), 2, "inside the library")
    one_line_error(invoke("run", inbox, "--library", lib, *base, "--target-precision", 0.9), 2, "no open_set.curve")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sorter]\nbatchsize = 3\n")
    one_line_error(invoke("run", inbox, "--library", lib, *base, "--config", bad), 3, "sorter.batchsize")
    one_line_error(invoke("run", inbox, *base, "--config", tmp_path / "empty.toml"), 3, "config file not found")
    (tmp_path / "empty.toml").write_text("")
    one_line_error(invoke("run", inbox, *base, "--config", tmp_path / "empty.toml"), 3, "no library")
    one_line_error(invoke("undo", tmp_path / "r.csv", "-y"), 2, "report not found")
    one_line_error(invoke("status", tmp_path), 2, "is not a sorter library")
    make_colour_photo(inbox / "a.jpg", "red", seed=1)
    with LibraryLock(lib / ".sorter" / "lock"):
        one_line_error(invoke("run", inbox, "--library", lib, *base), 6, "another sorter is using the library")
    assert (inbox / "a.jpg").exists()


def test_schedule_from_the_config_or_the_command_line(tmp_path, tiny_card):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sorter.schedule]\nwatch_interval = 1.0\n")
    base = ("run", inbox, "--library", tmp_path / "lib", "--model", tiny_card, "--config", cfg)
    one_line_error(invoke(*base, "--schedule"), 3, "needs [sorter.schedule] cron")
    one_line_error(invoke(*base, "--schedule", "every night"), 3, "bad schedule 'every night'")
    one_line_error(invoke(*base, "--schedule", "0 2 * * *", "--watch"), 2, "choose one of --watch and --schedule")
    one_line_error(invoke(*base, "--watch", "--dry-run"), 2, "--dry-run runs once")


def start_watcher(tmp_path, tiny_card, *how):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sorter.schedule]\ncron = "* * * * *"\n')
    cmd = [sys.executable, "-m", "sorter.cli", "run", str(inbox), "--library", str(lib), "--model", str(tiny_card),
           "--settle", "0", "-q", "--device", "cpu", "--config", str(cfg), *how]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def test_sigterm_stops_a_scheduled_sorter_cleanly(tmp_path, tiny_card):
    (tmp_path / "inbox").mkdir()
    p = start_watcher(tmp_path, tiny_card, "--schedule")  # cron from the config: every minute
    try:
        assert p.stdout.readline().startswith(f"watching {tmp_path / 'inbox'} on schedule '* * * * *'")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 0 and out.strip() == "stopped" and "Traceback" not in err


def test_sigterm_stops_the_watcher_cleanly(tmp_path, tiny_card):
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    make_colour_photo(inbox / "a.jpg", "green", seed=1)
    p = start_watcher(tmp_path, tiny_card, "--watch", "--interval", "0.2")
    try:
        deadline = time.monotonic() + 30
        while not (lib / "Green_Bird" / "a.jpg").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "watching" in out and out.strip().endswith("stopped") and "Traceback" not in err
    assert (lib / "Green_Bird" / "a.jpg").is_file()
    assert not LibraryLock(lib / ".sorter" / "lock").acquire().stale  # released on the way out


def test_sigterm_stops_a_one_shot_run_after_its_batch_with_exit_143(tmp_path, tiny_card):
    """A script running `sorter run` must not read an early stop as "done": photos are left in the inbox."""
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    for i in range(400):
        make_colour_photo(inbox / f"p{i:03d}.jpg", ("green", "red")[i % 2], seed=i, size=(48, 40))
    p = start_watcher(tmp_path, tiny_card, "--batch-size", "1")  # one-shot: no --watch/--schedule
    try:
        deadline = time.monotonic() + 60
        while not any(lib.glob("*_Bird/*.jpg")) and time.monotonic() < deadline:
            time.sleep(0.005)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143, (p.returncode, out, err)
    assert "stopped on request" in out and "Traceback" not in err
    filed = [f for f in lib.rglob("*.jpg") if ".sorter" not in f.parts]  # species folders and _review
    left = list(inbox.glob("*.jpg"))
    assert filed and left and len(filed) + len(left) == 400  # stopped mid-way, nothing lost
    assert not LibraryLock(lib / ".sorter" / "lock").acquire().stale
