import os
import time

from sorter.scan import scan, stem_of
from tests.conftest import build_tree


def names(groups):
    return {g.stem: [f.name for f in g.files] for g in groups}


def test_groups_by_stem_with_both_sidecar_styles_and_primary_first(tmp_path):
    build_tree(tmp_path, {
        "IMG_1.CR2": b"raw", "IMG_1.JPG": None, "IMG_1.xmp": b"<x/>", "IMG_1.CR2.xmp": b"<x/>",
        "IMG_2.NEF": b"raw", "IMG_2.NEF.xmp": b"<x/>",
        "IMG_3.png": None, "IMG_3.tif": None,
        "sub": {"IMG_1.jpg": None},            # same stem, other folder: another group
    })
    r = scan(tmp_path)
    got = {(g.folder.name, g.stem): [f.name for f in g.files] for g in r.groups}
    assert got[(tmp_path.name, "IMG_1")][0] == "IMG_1.JPG"
    assert sorted(got[(tmp_path.name, "IMG_1")]) == ["IMG_1.CR2", "IMG_1.CR2.xmp", "IMG_1.JPG", "IMG_1.xmp"]
    assert got[(tmp_path.name, "IMG_2")] == ["IMG_2.NEF", "IMG_2.NEF.xmp"]  # a RAW alone is the primary
    assert got[(tmp_path.name, "IMG_3")][0] == "IMG_3.png"
    assert got[("sub", "IMG_1")] == ["IMG_1.jpg"]
    assert not r.skipped


def test_ignores_hidden_partial_other_files_and_orphan_sidecars(tmp_path):
    build_tree(tmp_path, {
        ".hidden.jpg": None, ".cache": {"a.jpg": None}, "b.jpg.part": b"x", "c.crdownload": b"x",
        "d.tmp": b"x", "notes.txt": b"x", "orphan.xmp": b"<x/>", "ok.jpg": None,
        "folder.jpg": {"inner.jpg": None},   # a directory named like a photo is a directory
    })
    r = scan(tmp_path)
    assert names(r.groups) == {"ok": ["ok.jpg"], "inner": ["inner.jpg"]}
    assert not r.skipped


def test_symlinks_are_reported_never_followed(tmp_path):
    outside = tmp_path / "outside"
    build_tree(outside, {"secret.jpg": None, "dir": {"x.jpg": None}})
    inbox = build_tree(tmp_path / "inbox", {"real.jpg": None})
    os.symlink(outside / "secret.jpg", inbox / "link.jpg")
    os.symlink(outside / "dir", inbox / "linkdir")
    r = scan(inbox)
    assert names(r.groups) == {"real": ["real.jpg"]}
    assert sorted(s.path.name for s in r.skipped) == ["link.jpg", "linkdir"]
    assert all("symbolic link" in s.reason for s in r.skipped)


def test_library_inside_the_inbox_is_not_scanned(tmp_path):
    build_tree(tmp_path, {"a.jpg": None, "lib": {"Red": {"b.jpg": None}}})
    r = scan(tmp_path, library=tmp_path / "lib")
    assert names(r.groups) == {"a": ["a.jpg"]}


def test_settle_period_holds_back_the_whole_group(tmp_path):
    build_tree(tmp_path, {"old.jpg": None, "new.jpg": None, "new.cr2": b"raw"})
    past = time.time() - 100
    for n in ("old.jpg", "new.jpg"):
        os.utime(tmp_path / n, (past, past))
    r = scan(tmp_path, settle=10, now=time.time() + 50)   # ctime is "now": 50 s ago, mtime of new.cr2 too
    assert names(r.groups) == {"old": ["old.jpg"], "new": ["new.jpg", "new.cr2"]}
    r = scan(tmp_path, settle=10)
    assert names(r.groups) == {} and r.waiting == 3
    assert names(scan(tmp_path, settle=0).groups).keys() == {"old", "new"}


def test_stem_rules():
    assert stem_of("IMG_1.CR2.xmp") == "IMG_1" and stem_of("IMG_1.xmp") == "IMG_1"
    assert stem_of("a.b.jpg") == "a.b" and stem_of("a.b.xmp") == "a.b"
    assert stem_of("notes.txt") is None and stem_of(".jpg") is None


def test_scan_is_linear_in_files(tmp_path):
    """Thousands of files in one pass (a correctness check of the walk, not a timing)."""
    for i in range(2000):
        (tmp_path / f"p{i:04}.jpg").write_bytes(b"x")
    r = scan(tmp_path)
    assert len(r.groups) == 2000 and [g.stem for g in r.groups][:2] == ["p0000", "p0001"]
