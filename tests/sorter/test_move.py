"""The move/put/remove steps: never overwrite, survive every intermediate state, faults leave no trace."""

import errno
import hashlib
import os

import pytest

from sorter.fsops import FileOps, tmp_name
from sorter.move import StepError, move, put, remove
from tests.sorter.conftest import FaultOps


def h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def pair(tmp_path):
    src = tmp_path / "in" / "a.jpg"
    src.parent.mkdir()
    src.write_bytes(b"photo")
    return src, tmp_path / "lib" / "S" / "a.jpg"


@pytest.mark.parametrize("ops", [FileOps(), FaultOps(rename_noreplace=errno.ENOSYS),
                                 FaultOps(rename_noreplace=errno.EINVAL)],
                         ids=["renameat2", "link-unlink", "link-unlink-einval"])
def test_same_filesystem_move(pair, ops):
    src, dst = pair
    st = src.stat()
    move(ops, src, dst, h(b"photo"))
    assert not src.exists() and dst.read_bytes() == b"photo" and dst.stat().st_mtime_ns == st.st_mtime_ns
    move(ops, src, dst, h(b"photo"))  # idempotent: already done


def test_across_filesystems_copies_verifies_and_keeps_times(pair):
    src, dst = pair
    os.utime(src, ns=(1_000_000_000, 2_000_000_000))
    ops = FaultOps(when=lambda s, d: s == src, rename_noreplace=errno.EXDEV, link=errno.EXDEV)
    move(ops, src, dst, h(b"photo"))
    assert ops.count == 1  # renameat2 said EXDEV; the copy's own rename into place succeeded
    assert not src.exists() and dst.read_bytes() == b"photo"
    assert dst.stat().st_mtime_ns == 2_000_000_000
    assert not tmp_name(dst).exists()


def test_never_overwrites(pair):
    src, dst = pair
    dst.parent.mkdir(parents=True)
    dst.write_bytes(b"someone else")
    with pytest.raises(StepError, match="taken by a different file"):
        move(FileOps(), src, dst, h(b"photo"))
    assert src.read_bytes() == b"photo" and dst.read_bytes() == b"someone else"


def test_disk_full_during_copy_leaves_source_and_no_temporary(pair):
    src, dst = pair
    ops = FaultOps(rename_noreplace=errno.EXDEV, link=errno.EXDEV, write=errno.ENOSPC)
    with pytest.raises(OSError) as e:
        move(ops, src, dst, h(b"photo"))
    assert e.value.errno == errno.ENOSPC
    assert src.read_bytes() == b"photo" and not dst.exists() and not tmp_name(dst).exists()


def test_source_changed_during_copy_is_left(pair):
    src, dst = pair
    ops = FaultOps(rename_noreplace=errno.EXDEV, link=errno.EXDEV)
    with pytest.raises(StepError, match="changed while it was being copied"):
        move(ops, src, dst, h(b"other bytes"))
    assert src.exists() and not dst.exists() and not tmp_name(dst).exists()


@pytest.mark.parametrize("state", ["linked", "partial-tmp", "copied-not-removed", "only-tmp"])
def test_finishes_every_interrupted_state(pair, state):
    src, dst = pair
    dst.parent.mkdir(parents=True)
    tmp = tmp_name(dst)
    if state == "linked":
        os.link(src, dst)
    elif state == "partial-tmp":
        tmp.write_bytes(b"pho")
    elif state == "copied-not-removed":
        dst.write_bytes(b"photo")
    elif state == "only-tmp":
        tmp.write_bytes(b"photo")
        src.unlink()
    move(FileOps(), src, dst, h(b"photo"))
    assert not src.exists() and dst.read_bytes() == b"photo" and not tmp.exists()


def test_vanished_source(pair):
    src, dst = pair
    src.unlink()
    with pytest.raises(StepError, match="vanished"):
        move(FileOps(), src, dst, h(b"photo"))


def test_put_replaces_only_the_expected_content(tmp_path):
    p = tmp_path / "a.xmp"
    put(FileOps(), p, b"new", None)
    assert p.read_bytes() == b"new"
    put(FileOps(), p, b"new", None)  # idempotent
    put(FileOps(), p, b"merged", h(b"new"))
    assert p.read_bytes() == b"merged"
    with pytest.raises(StepError, match="changed meanwhile"):
        put(FileOps(), p, b"again", h(b"new"))
    assert p.read_bytes() == b"merged" and not tmp_name(p).exists()


def test_remove_only_our_own_file(tmp_path):
    p = tmp_path / "a.xmp"
    p.write_bytes(b"ours")
    with pytest.raises(StepError, match="changed since"):
        remove(FileOps(), p, h(b"something else"))
    remove(FileOps(), p, h(b"ours"))
    assert not p.exists()
    remove(FileOps(), p, h(b"ours"))  # absent is fine
