"""Helpers for the sorter's tests: photo trees, tree snapshots, the "nothing lost" invariants, and
FileOps subclasses that inject faults (an errno at a chosen call) or a crash (the process dies at the
N-th filesystem change: that call and every later one fail, so no clean-up code gets to run)."""

from __future__ import annotations

import errno
import hashlib
import os
from collections import Counter
from pathlib import Path

import pytest

from sorter.fsops import FileOps
from sorter.index import Index
from sorter.library import Library
from sorter.report import read_report
from sorter.runner import Runner, RunSettings
from tests.conftest import make_colour_photo, make_tiny_model

XMP_MINE = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4">'
            b'<dc:subject><rdf:Bag><rdf:li>mine</rdf:li></rdf:Bag></dc:subject>'
            b'</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>\n')

MUTATING = ("makedirs", "link", "rename", "rename_noreplace", "unlink", "open_new", "open_append", "write", "fsync", "truncate",
            "set_times", "fsync_dir")


class Crash(BaseException):
    """The simulated death of the process (BaseException: no `except Exception` swallows it)."""


class CrashOps(FileOps):
    """Dies at the `at`-th filesystem change (counting from 1); a write dies half-way through.

    fsync calls count as crash points but do not reach the disk: a killed process loses nothing that
    was written (only a power cut would), and skipping them keeps hundreds of simulated crashes fast."""

    def __init__(self, at: int | None = None):
        self.at, self.calls, self.dead, self.log = at, 0, False, []

    def fsync(self, fd: int) -> None:
        pass

    def fsync_dir(self, path, now: bool = False) -> None:
        pass

    def __getattribute__(self, name):
        attr = object.__getattribute__(self, name)
        if name in MUTATING or name in ("lexists", "stat", "read_bytes", "sha256", "samefile", "copy_new"):
            if object.__getattribute__(self, "dead"):
                raise Crash("dead")
            if name in MUTATING:
                self.calls += 1
                self.log.append(name)
                if self.at is not None and self.calls == self.at:
                    self.dead = True
                    if name == "write":
                        def torn(fd, data, _w=attr):
                            os.write(fd, data[: len(data) // 2])
                            raise Crash(f"killed in write #{self.calls}")
                        return torn
                    raise Crash(f"killed at {name} #{self.calls}")
        return attr


class FaultOps(FileOps):
    """Raises OSError(errno) from the named methods, e.g. FaultOps(link=errno.EXDEV, write=errno.ENOSPC);
    `after`: let that many faulty calls succeed first; `when(*args)`: fault only matching calls."""

    def __init__(self, after: int = 0, when=None, **faults: int):
        self.after, self.when, self.count = after, when, 0
        for method, code in faults.items():
            setattr(self, method, self._failing(getattr(FileOps, method), code).__get__(self))

    def _failing(self, original, code):
        def failing(this, *args, **kwargs):
            if self.when is None or self.when(*args):
                self.count += 1
                if self.count > self.after:
                    raise OSError(code, os.strerror(code), str(args[0]) if args else None)
            return original(this, *args, **kwargs)
        return failing


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path, skip=(".sorter", "reports")) -> dict[str, str]:
    """relative path -> sha256 of every file under root (symlinks as 'link:target')."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not (rel_dir == Path(".") and d in skip)]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = f"link:{os.readlink(p)}" if p.is_symlink() else sha(p)
    return out


def photo_inventory(*roots: Path) -> Counter:
    """sha256 of every photo (not sidecar, link or our temporary file) under the roots, outside .sorter
    and reports."""
    c = Counter()
    for root in roots:
        if root.exists():
            for rel, digest in snapshot(root).items():
                if not rel.lower().endswith((".xmp", ".sorter-tmp")) and not digest.startswith("link:"):
                    c[digest] += 1
    return c


def assert_consistent(inbox: Path, library: Path, originals: Counter) -> None:
    """Nothing lost or doubled, no temporary file, and index + reports agree with the disk."""
    assert photo_inventory(inbox, library) == originals
    for root in (inbox, library):
        leftovers = [p for p in root.rglob("*") if p.name.endswith(".sorter-tmp")]
        assert not leftovers, leftovers
    lib = Library(library)
    if not lib.index.exists():
        return
    index = Index(lib.index, lib.root, readonly=True)
    indexed = {os.fsdecode(p): d for p, d in index.db.execute("SELECT path, sha256 FROM files")}
    reports = [Path(r) for (r,) in index.db.execute("SELECT report FROM runs WHERE dry_run = 0 ORDER BY rowid")]
    index.close()
    assert set(reports) <= set(lib.reports.glob("*.csv"))
    filed = {}
    for report in reports:  # in the order the runs happened
        for r in read_report(report):
            if r.action in ("moved", "review", "rejected") and r.destination:
                filed[str(Path(r.destination).relative_to(library))] = r.sha256
            elif r.action == "undone":
                filed.pop(str(Path(r.source).relative_to(library)), None)
    on_disk = {rel: d for rel, d in snapshot(library).items() if not rel.lower().endswith(".xmp")}
    assert indexed.keys() - {k for k in indexed if k.lower().endswith(".xmp")} == on_disk.keys()
    for rel, digest in on_disk.items():
        assert indexed[rel] == digest and filed.get(rel) == digest, rel


def colour_tree(inbox: Path, n: int = 3, seed: int = 0) -> Path:
    """Generated photos: per colour n JPEGs; a RAW+JPEG+XMP group; a lone RAW with a .CR2.xmp; junk."""
    colours = ("red", "green", "blue")
    for i in range(n):
        for j, c in enumerate(colours):
            make_colour_photo(inbox / ("sub" if i % 2 else "") / f"{c}_{i}.jpg", c, seed=seed + 10 * i + j)
    make_colour_photo(inbox / "IMG_1.JPG", "green", seed=seed + 100)
    (inbox / "IMG_1.CR2").write_bytes(b"II*\x00fake raw " + bytes([seed % 256]) * 64)
    (inbox / "IMG_1.xmp").write_bytes(XMP_MINE)
    (inbox / "IMG_2.NEF").write_bytes(b"fake nef " + bytes([seed % 256]) * 80)
    (inbox / "IMG_2.NEF.xmp").write_bytes(XMP_MINE)
    (inbox / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return inbox


@pytest.fixture
def tiny_card(tmp_path) -> Path:
    return make_tiny_model(tmp_path / "exports")


@pytest.fixture
def make_runner(tmp_path, tiny_card):
    """Runner factory on the tiny model; runners share one onnxruntime session (batch size 4)."""
    shared = {}

    def classifier(card):
        from sorter.classify import Classifier
        if "c" not in shared:
            shared["c"] = Classifier(card, device="cpu", batch_size=4)
        return shared["c"]

    def make(inbox=None, library=None, ops=None, **kw) -> Runner:
        kw.setdefault("settle", 0.0)
        kw.setdefault("device", "cpu")
        kw.setdefault("batch_size", 4)
        settings = RunSettings(inbox or tmp_path / "inbox", library or tmp_path / "lib", model=str(tiny_card), **kw)
        return Runner(settings, ops=ops, classifier_factory=classifier)
    return make


__all__ = ["Crash", "CrashOps", "FaultOps", "snapshot", "photo_inventory", "assert_consistent", "colour_tree",
           "sha", "XMP_MINE", "errno"]
