"""The decode pool and the RAW preview path: order, per-file errors, bounded prefetch, RAW previews
(through a small DNG written here that LibRaw reads), flip TTA and the int8 model choice."""

from __future__ import annotations

import io
import shutil
import struct

import numpy as np
import pytest
from PIL import Image

from sorter import decode
from sorter.card import read_card, sha256_file, write_card
from sorter.classify import Classifier, choose_model
from sorter.errors import ModelError
from tests.conftest import make_colour_photo


def make_dng(path, preview: Image.Image, orientation: int = 1, raw_size=(64, 48)):
    """A minimal DNG (TIFF): IFD0 = the JPEG preview (NewSubfileType 1), SubIFD = a 16-bit CFA raw image.

    It is just enough for LibRaw to identify it, report its orientation and hand over the preview."""
    buf = io.BytesIO()
    preview.save(buf, "JPEG", quality=90)
    jpg = buf.getvalue() + b"\0" * (len(buf.getvalue()) & 1)
    rw, rh = raw_size
    raw = np.random.default_rng(0).integers(0, 4000, (rh, rw)).astype("<u2").tobytes()
    SHORT, LONG, ASCII, BYTE = 3, 4, 2, 1

    def s(v):
        return struct.pack("<HH", v, 0)

    def u(v):
        return struct.pack("<I", v)

    def ifd(entries):
        return (struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", t, ty, n) + v for t, ty, n, v in sorted(entries))
                + u(0))

    n0, n1 = 14, 13
    sub_off = 8 + 2 + 12 * n0 + 4
    make_off = sub_off + 2 + 12 * n1 + 4
    make, model = b"Canon\0\0\0", b"DNGTEST\0"
    model_off, jpg_off = make_off + len(make), make_off + len(make) + len(model)
    raw_off = jpg_off + len(jpg)
    w, h = preview.size
    ifd0 = [(254, LONG, 1, u(1)), (256, LONG, 1, u(w)), (257, LONG, 1, u(h)), (259, SHORT, 1, s(7)),
            (262, SHORT, 1, s(6)), (271, ASCII, len(make), u(make_off)), (272, ASCII, len(model), u(model_off)),
            (273, LONG, 1, u(jpg_off)), (274, SHORT, 1, s(orientation)), (277, SHORT, 1, s(3)),
            (279, LONG, 1, u(len(jpg))), (330, LONG, 1, u(sub_off)), (50706, BYTE, 4, bytes([1, 4, 0, 0])),
            (50708, ASCII, len(model), u(model_off))]
    sub = [(254, LONG, 1, u(0)), (256, LONG, 1, u(rw)), (257, LONG, 1, u(rh)), (258, SHORT, 1, s(16)),
           (259, SHORT, 1, s(1)), (262, SHORT, 1, s(32803)), (273, LONG, 1, u(raw_off)), (277, SHORT, 1, s(1)),
           (278, LONG, 1, u(rh)), (279, LONG, 1, u(len(raw))), (33421, SHORT, 2, struct.pack("<HH", 2, 2)),
           (33422, BYTE, 4, bytes([0, 1, 1, 2])), (50717, LONG, 1, u(4095))]
    path.write_bytes(b"II*\0" + u(8) + ifd(ifd0) + ifd(sub) + make + model + jpg + raw)
    return path


def halves(size=(900, 600)) -> Image.Image:
    """Red left half, blue right half: shows which way an image was turned or mirrored."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (220, 30, 30)
    a[:, w // 2:] = (30, 40, 220)
    return Image.fromarray(a, "RGB")


def quadrant_colours(a: np.ndarray) -> tuple:
    """Dominant channel (0 red, 2 blue) of the top, bottom, left and right halves of an HWC image."""
    h, w = a.shape[:2]
    parts = (a[: h // 4], a[-h // 4:], a[:, : w // 4], a[:, -w // 4:])
    return tuple(int(np.argmax(p.reshape(-1, 3).mean(0))) for p in parts)


# --- RAW previews -----------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_raw_preview_is_upright_like_an_exif_rotated_jpeg(tmp_path, orientation):
    dng = make_dng(tmp_path / "IMG_1.DNG", halves(), orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    jpg = tmp_path / "IMG_1.jpg"
    halves().save(jpg, "JPEG", quality=90, exif=exif.tobytes())
    from_raw, err = decode.load(dng, 256, 224)
    from_jpg, _ = decode.load(jpg, 256, 224)
    assert err is None and from_raw.shape == (224, 224, 3)
    assert quadrant_colours(from_raw) == quadrant_colours(from_jpg)
    assert np.abs(from_raw.astype(int) - from_jpg).mean() < 3


def test_raw_preview_is_decoded_in_draft_mode_but_not_below_resize(tmp_path):
    dng = make_dng(tmp_path / "big.dng", halves((2400, 1600)))
    img = decode.raw_preview(dng, 256, 224)
    assert img.size == (600, 400)  # 1/4 scale: 1/8 would be 200 < 256


def test_raw_errors_are_one_line_reasons(tmp_path):
    tiny = make_dng(tmp_path / "tiny.dng", halves((160, 120)))
    fake = tmp_path / "fake.CR2"
    fake.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.nef"
    empty.write_bytes(b"")
    truncated = tmp_path / "cut.dng"
    truncated.write_bytes(make_dng(tmp_path / "whole.dng", halves()).read_bytes()[:300])
    for path, want in [(truncated, "RAW"), (tiny, "preview is only 160x120"), (fake, "not a RAW file"), (empty, "empty file"),
                       (tmp_path / "gone.arw", "vanished")]:
        pixels, err = decode.load(path, 256, 224)
        assert pixels is None and want in err and "\n" not in err


def test_raw_suffixes_are_case_insensitive(tmp_path):
    assert decode.is_raw(tmp_path / "a.CR2") and decode.is_raw(tmp_path / "b.dng") and not decode.is_raw(tmp_path / "c.jpg")


# --- the decode pool ----------------------------------------------------------------------------------

def mixed_inbox(tmp_path):
    """Colour photos with unreadable files in between; the expected label (or None) for each."""
    paths, want = [], []
    colours = {"red": "Red_Bird", "green": "Green_Bird", "blue": "Blue_Bird"}
    for i in range(14):
        c = ("red", "green", "blue")[i % 3]
        paths.append(make_colour_photo(tmp_path / f"p{i:02d}.jpg", c, size=(300 + 7 * i, 200), seed=i))
        want.append(colours[c])
        if i in (0, 5, 6, 13):
            bad = tmp_path / f"bad{i}.jpg"
            bad.write_bytes(paths[-1].read_bytes()[:400] if i % 2 else b"")
            paths.append(bad)
            want.append(None)
    dng = make_dng(tmp_path / "raw.dng", Image.new("RGB", (600, 400), (30, 40, 220)))
    paths.insert(8, dng)
    want.insert(8, "Blue_Bird")
    return paths, want


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_pool_keeps_input_order_and_reports_errors_per_file(tmp_path, tiny_model, pool):
    paths, want = mixed_inbox(tmp_path)
    with Classifier(read_card(tiny_model), device="cpu", batch_size=3, workers=2, pool=pool) as clf:
        preds = list(clf.classify(paths))
    assert [p.path for p in preds] == paths
    assert [p.label for p in preds] == want
    for p, w in zip(preds, want):
        if w is None:
            assert p.error and "\n" not in p.error and p.top3 == []
        else:
            assert p.error is None and len(p.top3) == 3


def test_pool_decodes_a_bounded_number_ahead(tmp_path, tiny_model):
    paths = [make_colour_photo(tmp_path / f"p{i}.jpg", "red", seed=i) for i in range(40)]
    taken = []

    def lazy():
        for p in paths:
            taken.append(p)
            yield p

    with Classifier(read_card(tiny_model), device="cpu", batch_size=4, workers=2, prefetch=6) as clf:
        stream = clf.classify(lazy())
        first = next(stream)
        assert first.path == paths[0]
        assert len(taken) <= 6 + 1  # the window, plus the one path that found it full
        rest = list(stream)
    assert len(rest) == 39 and len(taken) == 40


def test_results_do_not_depend_on_pool_or_batch(tmp_path, tiny_model):
    paths, _ = mixed_inbox(tmp_path)
    card = read_card(tiny_model)
    runs = []
    for kw in ({"batch_size": 1, "workers": 1}, {"batch_size": 5, "workers": 2}, {"batch_size": 64, "workers": 2}):
        with Classifier(card, device="cpu", **kw) as clf:
            runs.append([(p.label, p.error, round(p.confidence, 6)) for p in clf.classify(paths)])
    assert runs[0] == runs[1] == runs[2]


# --- TTA ---------------------------------------------------------------------------------------------------

class SpySession:
    """Wraps an onnxruntime session and records what it was fed."""

    def __init__(self, session):
        self.session, self.inputs = session, []

    def run(self, outputs, feed):
        self.inputs.append(next(iter(feed.values())))
        return self.session.run(outputs, feed)


def test_tta_averages_the_logits_of_the_photo_and_its_mirror_image(tmp_path, tiny_model):
    card = read_card(tiny_model)
    batch = np.stack([np.asarray(halves((32, 32)))] * 2)
    batch[1, :5] = 0  # not symmetric top/bottom: a wrong flip axis would show
    plain = Classifier(card, device="cpu")
    tta = Classifier(card, device="cpu", tta=True)
    tta.session = spy = SpySession(tta.session)
    got = tta.logits(batch)
    x = batch.transpose(0, 3, 1, 2)
    fed = spy.inputs[0]
    assert fed.shape == (4, 3, 32, 32)
    assert np.array_equal(fed[:2], x) and np.array_equal(fed[2:], x[..., ::-1])
    want = (plain.logits(batch) + plain.logits(batch[:, :, ::-1])) / 2
    assert np.allclose(got, want, atol=1e-6)


# --- the int8 model ------------------------------------------------------------------------------------

def with_int8(card_path, top1_fp32, top1_int8, write_file=True):
    """Give the tiny model's card an int8 section (the 'int8' file is a copy of the fp32 model)."""
    card = read_card(card_path)
    q = card_path.with_name(f"{card.name}.int8.onnx")
    if write_file:
        shutil.copy(card.onnx_path, q)
    card.int8 = {"file": q.name, "sha256": sha256_file(q) if write_file else "0" * 64,
                 "top1_fp32": top1_fp32, "top1_int8": top1_int8, "speedup": 2.5}
    write_card(card, card_path)
    return read_card(card_path)


def test_int8_is_used_when_the_card_says_it_is_as_accurate(tiny_model):
    card = with_int8(tiny_model, 0.94, 0.938)
    assert choose_model(card, None, on_cpu=True)[1] == "int8"
    assert choose_model(card, None, on_cpu=False)[1] == "fp32"  # CUDA: the fp32 model
    assert choose_model(card, False, on_cpu=True)[1] == "fp32"
    clf = Classifier(card, device="cpu")
    assert clf.variant == "int8" and clf.model_sha256 == card.int8["sha256"]


def test_int8_is_not_used_when_less_accurate_unless_asked(tiny_model):
    card = with_int8(tiny_model, 0.94, 0.90)
    assert choose_model(card, None, on_cpu=True)[1] == "fp32"
    assert choose_model(card, True, on_cpu=True)[1] == "int8"


def test_missing_int8_file_falls_back_or_fails_when_asked_for(tiny_model):
    card = with_int8(tiny_model, 0.94, 0.94, write_file=False)
    assert choose_model(card, None, on_cpu=True)[1] == "fp32"
    with pytest.raises(ModelError, match="model file not found"):
        choose_model(card, True, on_cpu=True)


def test_an_int8_only_export_is_its_own_model(tiny_model):
    card = read_card(tiny_model)
    card.onnx["precision"] = "int8"
    card.int8 = {"file": card.onnx["file"], "sha256": card.onnx["sha256"], "top1_fp32": 0.9, "top1_int8": 0.8}
    for asked in (None, True, False):
        path, variant = choose_model(card, asked, on_cpu=True)
        assert path == card.onnx_path and variant == "int8"


def test_a_stream_closed_early_leaves_the_classifier_usable(tmp_path, tiny_model):
    """The runner stops between batches (SIGTERM): the stream is closed with photos still in the pool."""
    paths = [make_colour_photo(tmp_path / f"p{i}.jpg", ("red", "blue")[i % 2], seed=i) for i in range(30)]
    with Classifier(read_card(tiny_model), device="cpu", batch_size=4, workers=2) as clf:
        stream = clf.classify(paths)
        first = [next(stream) for _ in range(5)]
        stream.close()
        again = list(clf.classify(paths[:6]))
    assert [p.path for p in first] == paths[:5]
    assert [p.label for p in again] == ["Red_Bird", "Blue_Bird"] * 3


@pytest.mark.parametrize("labels", [["A_Bird", "B_Bird"], ["A_Bird", "B_Bird", "C_Bird", "D_Bird"]])
def test_a_card_whose_labels_do_not_match_the_model_outputs_is_refused(tiny_model, labels):
    card = read_card(tiny_model)
    card.labels = labels
    with pytest.raises(ModelError, match="2 labels|4 labels"):
        Classifier(card, device="cpu")


def png_claiming(path, w, h, colour_type=2):
    """A PNG whose header claims w x h (IHDR only plus an empty image stream): costs nothing to write."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def test_a_huge_full_decode_is_refused_before_decoding(tmp_path):
    pixels, err = decode.load(png_claiming(tmp_path / "bomb.png", 14000, 14000), 160, 144)
    assert pixels is None and "too large to decode" in err and "bomb" in err


def test_large_images_are_reduced_before_their_mode_conversions(tmp_path):
    """A 4000x3000 half-transparent RGBA PNG: composited onto white after a box reduction, same colours."""
    a = np.zeros((3000, 4000, 4), np.uint8)
    a[..., 0], a[..., 3] = 200, 128
    Image.fromarray(a, "RGBA").save(tmp_path / "alpha.png")
    pixels, err = decode.load(tmp_path / "alpha.png", 160, 144)
    assert err is None and pixels.shape == (144, 144, 3)
    assert np.abs(pixels.reshape(-1, 3).mean(0) - (227, 127, 127)).max() < 2  # 200*a + 255*(1-a), a = 128/255


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
def test_strip_reduction_equals_a_whole_reduction(mode):
    from sorter.preprocess import _shrink

    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (1000, 1301, 4), dtype=np.uint8), "RGBA").convert(mode)
    small = _shrink(img, 50)  # k = 1000 // 150 = 6; strips of 384 rows, the last one partial
    assert small.size == (217, 167) and small.mode == mode
    assert np.array_equal(np.asarray(small), np.asarray(img.reduce(6)))
