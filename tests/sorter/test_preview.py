"""Camera JPEGs with an MPF preview (Nikon, Sony, Fujifilm, Panasonic, OM): the preview is decoded
instead of the 24 MP primary only where it can stand in for it, with the primary's orientation; a broken
preview falls back to the primary."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sorter import decode
from sorter.preprocess import _seek_preview, open_image
from tests.conftest import LARGE_THUMBNAIL_FULL_HD, mpo_bytes

DISPARITY = 0x020002  # a stereo camera's second view: never a stand-in


def two_tone(size, left=(200, 30, 30), right=(30, 30, 200)) -> Image.Image:
    """Left half one colour, right half another: shows any rotation or mirror."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = left
    a[:, w // 2:] = right
    return Image.fromarray(a)


def mpo(path, primary: Image.Image, preview: Image.Image, mptype: int = LARGE_THUMBNAIL_FULL_HD,
        orientation: int | None = None):
    path.write_bytes(mpo_bytes(primary, preview, mptype, orientation))
    return path


def mean_colour(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), np.float32).reshape(-1, 3).mean(0)


def test_a_large_enough_preview_is_decoded_instead_of_the_primary(tmp_path):
    # the frames differ in colour here only to show which one was decoded
    path = mpo(tmp_path / "p.jpg", Image.new("RGB", (2400, 1600), "red"), Image.new("RGB", (480, 320), (0, 220, 0)))
    img = open_image(path, 160)
    assert mean_colour(img)[1] > 200 and min(img.size) >= 160  # the preview, in draft mode (1/2: 240x160)
    assert img.size == (240, 160)
    # the model needs more than the preview has: the primary
    assert mean_colour(open_image(path, 400))[0] > 200
    # full-resolution decoding never takes the preview
    assert mean_colour(open_image(path, 160, draft=False))[0] > 200


@pytest.mark.parametrize("why, preview, mptype", [
    ("a stereo view, not a preview", (480, 320), DISPARITY),
    ("MP type undefined", (480, 320), 0),
    ("letterboxed 16:9 preview of a 3:2 photo", (480, 270), LARGE_THUMBNAIL_FULL_HD),
    ("stored upright while the primary is not", (320, 480), LARGE_THUMBNAIL_FULL_HD),
])
def test_frames_that_cannot_stand_in_for_the_primary_are_not_used(tmp_path, why, preview, mptype):
    path = mpo(tmp_path / "p.jpg", Image.new("RGB", (2400, 1600), "red"), Image.new("RGB", preview, (0, 220, 0)), mptype)
    assert mean_colour(open_image(path, 160))[0] > 200, why


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_the_preview_is_turned_upright_by_the_primary_orientation(tmp_path, orientation):
    primary = two_tone((2400, 1600))
    path = mpo(tmp_path / "p.jpg", primary, primary.resize((480, 320)), orientation=orientation)
    with Image.open(path) as im:
        assert _seek_preview(im, 160) == orientation and im.tell() == 1
    fast = np.asarray(open_image(path, 160), np.float32)
    slow = open_image(path, 160, preview=False)  # the primary, EXIF-transposed as always
    slow = np.asarray(slow.resize(fast.shape[1::-1], Image.Resampling.BILINEAR), np.float32)
    assert fast.shape == slow.shape and np.abs(fast - slow).mean() < 8


def test_a_broken_preview_falls_back_to_the_primary(tmp_path):
    path = mpo(tmp_path / "p.jpg", Image.new("RGB", (2400, 1600), "red"), Image.new("RGB", (480, 320), (0, 220, 0)))
    data = path.read_bytes()
    path.write_bytes(data[:-300])  # the preview is stored last: its scan data is cut short
    img = open_image(path, 160)
    assert mean_colour(img)[0] > 200 and img.size == (300, 200)  # the primary, at 1/8
    x, err = decode.load(path, 160, 144)
    assert err is None and x.shape == (144, 144, 3)
