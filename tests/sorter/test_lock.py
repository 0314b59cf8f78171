import json
import subprocess
import sys

import pytest

from sorter.lock import LibraryLock, LockedError
from sorter.lock import holder as lock_holder
from tests.conftest import REPO


def test_second_sorter_refuses_and_a_dead_holder_is_recovered(tmp_path):
    path = tmp_path / ".sorter" / "lock"
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from sorter.lock import LibraryLock\n"
            "l = LibraryLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path), str(REPO)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"another sorter is using the library .*pid {holder.pid}"):
            LibraryLock(path).acquire()
        assert lock_holder(path)["pid"] == holder.pid
    finally:
        holder.kill()  # SIGKILL: no chance to release
        holder.wait()
    lock = LibraryLock(path).acquire()
    assert lock.stale["pid"] == holder.pid  # taken over, and we know from whom
    assert json.loads(path.read_text())["pid"] != holder.pid
    assert lock_holder(path)["pid"] != holder.pid
    lock.release()
    assert path.read_text() == "" and lock_holder(path) is None


def test_lock_in_the_same_process_also_refuses(tmp_path):
    with LibraryLock(tmp_path / "lock"):
        with pytest.raises(LockedError):
            LibraryLock(tmp_path / "lock").acquire()
    with LibraryLock(tmp_path / "lock") as again:
        assert again.stale is None
