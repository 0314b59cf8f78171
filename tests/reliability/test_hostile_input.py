"""Hostile and odd input: every file ends in `_rejected/` or is sorted correctly, each with a clear reason in
the report, and the run never stops. One run over one inbox holding all of it (plus a few in-run changes
injected through FileOps: a file deleted, a file still growing)."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sorter.fsops import FileOps
from sorter.preprocess import preprocess
from sorter.report import read_report
from tests.conftest import COLOURS, make_colour_photo
from tests.reliability import figures
from tests.sorter.conftest import assert_consistent, photo_inventory, sha

NAME_MAX = 255


def colour_array(colour: str, size=(120, 90), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = size
    return np.clip(np.array(COLOURS[colour]) + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def png_bytes(width: int, height: int, depth: int, colour_type: int, raw_rows: bytes,
              idat: bytes | None = None) -> bytes:
    """A PNG from raw filtered rows (or an already compressed IDAT)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    idat = zlib.compress(raw_rows) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def rgb16_png(path: Path, colour: str) -> None:
    """A 48-bit (16 bits per channel) RGB PNG, written by hand (Pillow cannot write one)."""
    a = colour_array(colour, (48, 40), seed=7).astype(">u2") * 257
    rows = b"".join(b"\x00" + row.tobytes() for row in a)
    path.write_bytes(png_bytes(48, 40, 16, 2, rows))


def bomb_png(path: Path) -> None:
    """A PNG whose header claims 100000 x 100000 pixels (10 gigapixels) in a few hundred bytes."""
    path.write_bytes(png_bytes(100_000, 100_000, 8, 2, b"\x00" * 1000))


def palette_with_transparency(path: Path) -> None:
    idx = np.ones((90, 120), np.uint8)
    idx[:, :12] = 0  # a transparent strip
    im = Image.fromarray(idx, "P")
    im.putpalette([255, 255, 255, 220, 30, 30] + [0] * 762)
    im.save(path, transparency=0)


def animated_gif(path: Path) -> None:
    frames = [Image.fromarray(colour_array(c, seed=i)) for i, c in enumerate(("red", "blue", "blue"))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(colour_array("green", (160, 90), seed=8)).save(path, exif=exif)


def corrupt_exif(path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(colour_array("red", seed=9)).save(buf, "JPEG")
    data = buf.getvalue()
    junk = b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + b"\xde\xad" * 40  # IFD offset far beyond the segment
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk + data[2:])


def truncated_jpeg(path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(colour_array("red", (400, 300), seed=10)).save(buf, "JPEG", quality=95)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])


def long_name(suffix: str = ".jpg") -> str:
    """A name of exactly 255 bytes in UTF-8 (multi-byte characters: a byte limit, not a character one)."""
    stem = "\u00e9" * ((NAME_MAX - len(suffix)) // 2)
    stem += "x" * (NAME_MAX - len(suffix) - len(stem.encode()))
    return stem + suffix


# name -> (builder, expected action, expected folder or None (left in place), substring of the reason)
HOSTILE = {
    "empty.jpg": (lambda p: p.write_bytes(b""), "rejected", "_rejected", ""),
    "truncated.jpg": (truncated_jpeg, "rejected", "_rejected", "truncated"),
    "text.jpg": (lambda p: p.write_text("this is a shopping list, not a photo\n"), "rejected", "_rejected",
                 "not an image"),
    "png named.jpg": (lambda p: make_colour_photo(p, "red", seed=1, fmt="PNG"), "moved", "Red_Bird", ""),
    "cmyk.jpg": (lambda p: Image.fromarray(colour_array("green", seed=2)).convert("CMYK").save(p), "moved",
                 "Green_Bird", ""),
    "grey16.png": (lambda p: Image.fromarray((np.arange(90 * 120, dtype=np.uint16).reshape(90, 120) * 6)).save(p),
                   "review", "_review", "below threshold"),
    "rgb16.png": (lambda p: rgb16_png(p, "blue"), "moved", "Blue_Bird", ""),
    "grey.jpg": (lambda p: Image.fromarray(colour_array("red", seed=3)).convert("L").save(p), "review", "_review",
                 "below threshold"),
    "palette.png": (palette_with_transparency, "moved", "Red_Bird", ""),
    "animated.gif": (animated_gif, "moved", "Red_Bird", ""),  # the first frame is classified
    "bomb.png": (bomb_png, "rejected", "_rejected", "decompression bomb"),
    "rotated.jpg": (exif_rotated, "moved", "Green_Bird", ""),
    "bad exif.jpg": (corrupt_exif, "moved", "Red_Bird", ""),
    "R\u00f6tkehlchen \u9ce5 \U0001f426.jpg": (lambda p: make_colour_photo(p, "red", seed=4), "moved", "Red_Bird", ""),
    "  two  spaces .jpg": (lambda p: make_colour_photo(p, "blue", seed=5), "moved", "Blue_Bird", ""),
    "new\nline.jpg": (lambda p: make_colour_photo(p, "green", seed=6), "moved", "Green_Bird", ""),
    long_name(): (lambda p: make_colour_photo(p, "red", seed=11), "moved", "Red_Bird", ""),
    '=HYPERLINK("x").jpg': (lambda p: make_colour_photo(p, "blue", seed=12), "moved", "Blue_Bird", ""),
    "album.jpg/inside.jpg": (lambda p: make_colour_photo(p, "green", seed=13), "moved", "Green_Bird", ""),
    "victim.jpg": (lambda p: make_colour_photo(p, "red", seed=14), "skipped", None, "vanished"),
    "grower.jpg": (lambda p: make_colour_photo(p, "blue", seed=15), "skipped", None, "changed during the run"),
}


class InRunChanges(FileOps):
    """While the run hashes them, `victim.jpg` is deleted and `grower.jpg` grows (a copy still arriving)."""

    def sha256(self, path):
        if Path(path).name == "victim.jpg" and os.path.exists(path):
            os.unlink(path)
        if Path(path).name == "grower.jpg":
            with open(path, "ab") as f:
                f.write(b"\0" * 4096)
        return super().sha256(path)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_every_hostile_file_is_rejected_or_sorted_with_a_reason(tmp_path, make_runner):
    inbox, lib, outside = tmp_path / "inbox", tmp_path / "lib", tmp_path / "outside"
    for name, (build, *_rest) in HOSTILE.items():
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        build(inbox / name)
    make_colour_photo(outside / "elsewhere.jpg", "red", seed=20)
    make_colour_photo(outside / "dir" / "deep.jpg", "red", seed=21)
    os.symlink(outside / "elsewhere.jpg", inbox / "link.jpg")     # a photo-named link out of the inbox
    os.symlink(outside / "dir", inbox / "linkdir")                # a folder link out of the inbox
    (inbox / "IMG_7.CR2").mkdir()                                 # a folder named like a RAW
    outside_before = {p: sha(p) for p in outside.rglob("*") if p.is_file()}
    victim, grower = sha(inbox / "victim.jpg"), sha(inbox / "grower.jpg")
    before = photo_inventory(inbox)
    os.mkfifo(inbox / "pipe.jpg")                                 # would block a reader forever

    s = make_runner(ops=InRunChanges()).run()

    rows = {r.source: r for r in read_report(s.report)}
    problems = []
    for name, (_, action, folder, reason) in HOSTILE.items():
        r = rows.get(str(inbox / name))
        if r is None:
            problems.append(f"{name!r}: no report row")
            continue
        where = Path(r.destination).parent.name if r.destination else None
        if (r.action, where) != (action, folder) or reason not in r.error:
            problems.append(f"{name!r}: {r.action} to {where} ({r.error!r}); "
                            f"expected {action} to {folder} ({reason!r})")
        if action in ("rejected", "skipped", "review") and not r.error.strip():
            problems.append(f"{name!r}: {r.action} without a reason")
        if r.destination and sha(Path(r.destination)) != r.sha256:
            problems.append(f"{name!r}: the library copy does not match the report's sha256")
    for name in ("link.jpg", "linkdir", "pipe.jpg"):
        r = rows.get(str(inbox / name))
        if r is None or r.action != "skipped" or not r.error:
            problems.append(f"{name!r}: expected a skipped row with a reason, got {r}")
    assert len(rows) == len(read_report(s.report)), "a file reported twice"
    figures.add(trials=1, faults=len(HOSTILE) + 4, hostile_files=len(HOSTILE) + 4)
    assert not problems, "\n".join(problems)

    # links never followed or moved; the folders named like photos are still folders in the inbox
    assert os.readlink(inbox / "link.jpg") == str(outside / "elsewhere.jpg") and (inbox / "linkdir").is_symlink()
    assert {p: sha(p) for p in outside.rglob("*") if p.is_file()} == outside_before
    assert (inbox / "album.jpg").is_dir() and (inbox / "IMG_7.CR2").is_dir()
    assert not any(p.is_symlink() for p in lib.rglob("*"))
    # the formula-like name is escaped in the CSV itself
    with open(s.report, newline="", encoding="utf-8", errors="surrogateescape") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))]
    assert str(inbox / '=HYPERLINK("x").jpg') in cells or f"'{inbox}" in " ".join(cells)
    # nothing lost (the test itself deleted the victim and grew the grower); the grown file is taken by
    # the next run
    (inbox / "pipe.jpg").unlink()
    expected = before - Counter([victim, grower]) + Counter([sha(inbox / "grower.jpg")])
    now = photo_inventory(inbox, lib)
    figures.add(lost=sum((expected - now).values()))
    assert now == expected
    again = make_runner().run()
    assert [(r.source, r.action) for r in read_report(again.report)] == [(str(inbox / "grower.jpg"), "moved")]
    assert_consistent(inbox, lib, expected)


def test_exif_orientation_is_applied_before_classifying(tmp_path):
    """The tiny colour model cannot see a rotation (the centre crop's mean colour is the same): check the
    pixels the model gets instead."""
    exif_rotated(tmp_path / "rotated.jpg")
    upright = Image.open(tmp_path / "rotated.jpg").transpose(Image.Transpose.ROTATE_270)
    upright.save(tmp_path / "upright.png")
    a, b = preprocess(tmp_path / "rotated.jpg", 40, 32), preprocess(tmp_path / "upright.png", 40, 32)
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < 2


def test_a_255_byte_name_that_collides_is_shortened_not_refused(tmp_path, make_runner):
    """`IMG (2).jpg` for a name already at the 255-byte limit would be too long: the stem is shortened
    (the same for every sibling) instead of the group being left in the inbox run after run."""
    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    name = long_name()
    make_colour_photo(inbox / name, "red", seed=30)
    make_runner().run()
    make_colour_photo(inbox / name, "red", seed=31)            # another photo, the same name
    raw = name[: -len(".jpg")] + ".CR2"
    (inbox / raw).write_bytes(b"fake raw beside it")
    originals = photo_inventory(inbox, lib)
    s = make_runner().run()
    rows = read_report(s.report)
    assert [r.action for r in rows] == ["moved", "moved"], [(r.action, r.error) for r in rows]
    dests = [Path(r.destination) for r in rows]
    assert all(len(os.fsencode(d.name)) <= NAME_MAX and d.parent == lib / "Red_Bird" for d in dests)
    stems = {d.name.rsplit(".", 1)[0] for d in dests}
    assert len(stems) == 1 and stems.pop().endswith(" (2)")   # siblings keep one stem
    assert_consistent(inbox, lib, originals)
    assert len(list((lib / "Red_Bird").glob("*.xmp"))) == 2   # a sidecar for each photo, both within the limit


def test_a_file_still_being_written_is_left_until_it_holds_still(tmp_path, make_runner):
    """A real writer appends to a photo while a one-shot run (settle 0.8 s) waits for it: it is not taken,
    the rest is; once the writer has stopped, the next run files it whole."""
    import threading
    import time

    inbox, lib = tmp_path / "inbox", tmp_path / "lib"
    make_colour_photo(inbox / "done.jpg", "red", seed=40)
    old = time.time() - 60
    os.utime(inbox / "done.jpg", (old, old))
    make_colour_photo(inbox / "arriving.jpg", "blue", seed=41)
    stop = threading.Event()

    def write_slowly():
        with open(inbox / "arriving.jpg", "ab") as f:
            while not stop.wait(0.1):
                f.write(b"\0" * 512)
                f.flush()

    writer = threading.Thread(target=write_slowly)
    writer.start()
    try:
        s = make_runner(settle=0.8).run(wait_for_settling=True)
    finally:
        stop.set()
        writer.join()
    figures.add(trials=1, faults=1)
    assert [Path(r.source).name for r in read_report(s.report)] == ["done.jpg"] and s.waiting == 1
    final = sha(inbox / "arriving.jpg")
    time.sleep(0.9)
    s = make_runner(settle=0.8).run()
    rows = read_report(s.report)
    assert [(Path(r.source).name, r.action, r.sha256) for r in rows] == [("arriving.jpg", "moved", final)]
    assert_consistent(inbox, lib, photo_inventory(lib))


def test_a_small_png_claiming_100_megapixels_of_rgba_is_rejected_or_cheap(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO
    side = 10_000
    row = b"\x00" + b"\x00" * (side * 4)
    c = zlib.compressobj(9)
    rows = b"".join(c.compress(row) for _ in range(side)) + c.flush()
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(side, side, 8, 6, b"", idat=rows))
    code = ("import sys, resource; from sorter.decode import load; a, err = load(sys.argv[1], 224, 224); "
            "print(err, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                         timeout=300).stdout.split()
    err, peak_mb = " ".join(out[:-1]), int(out[-1])
    assert "bomb" in err or peak_mb < 1024, (err, peak_mb)
