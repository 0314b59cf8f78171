"""JPEG draft mode: large JPEGs are decoded scaled down by the DCT (never below what the model needs),
and what the model sees from the draft path matches full decoding: same top-1 on real photos."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from sorter.preprocess import _seek_preview, is_draft_candidate, open_image, preprocess
from tests.conftest import mpo_bytes

RESIZE, CROP = 256, 224


def camera_like(src: Image.Image, size, path=None, **save):
    """`src` upscaled to `size` with mild sensor noise, saved as JPEG (to `path` or returned as bytes)."""
    a = np.asarray(src.convert("RGB").resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    a = a + np.random.default_rng(size[0]).integers(-4, 5, a.shape, dtype=np.int16)
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    im.save(buf, save.pop("format", "JPEG"), quality=90, **save)
    if path is None:
        return buf.getvalue()
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def draft_spy(monkeypatch):
    """Records (requested box, decoded size) of every JPEG draft call."""
    calls = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = real(self, mode, size)
        calls.append((size, self.size))
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


def oriented(orientation: int) -> dict:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return {"exif": exif.tobytes()}


CASES = {  # name: (size, save options) -> expected decoded size (upright)
    "24MP 3:2": ((6000, 4000), {}, (750, 500)),
    "12MP 4:3": ((4032, 3024), {}, (504, 378)),
    "exactly 2x": ((900, 512), {}, (450, 256)),
    "portrait": ((2000, 3000), {}, (500, 750)),
    "EXIF rotated": ((3000, 2000), oriented(6), (500, 750)),
    "progressive": ((3000, 2000), {"progressive": True}, (750, 500)),
    "CMYK": ((3000, 2000), {"mode": "CMYK"}, (750, 500)),
    "greyscale": ((3000, 2000), {"mode": "L"}, (750, 500)),
    "MPO (camera JPEG with preview)": ((3000, 2000), {"format": "MPO"}, (750, 500)),
    "panorama": ((12000, 1000), {}, (6000, 500)),
}


@pytest.mark.parametrize("name", CASES)
def test_large_jpegs_take_the_draft_path_never_below_resize(tmp_path, draft_spy, name):
    size, save, want = CASES[name]
    save = dict(save)
    mode = save.pop("mode", "RGB")
    src = Image.new("RGB", (60, 40), (90, 140, 60))
    if save.get("format") == "MPO":
        save.update(save_all=True, append_images=[src.resize((160, 120))])
    data = camera_like(src, size, **save)
    if mode != "RGB":
        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).convert(mode).save(buf, "JPEG", quality=90)
        data = buf.getvalue()
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    draft_spy.clear()
    assert is_draft_candidate(path, RESIZE)
    img = open_image(path, RESIZE)
    assert img.mode == "RGB" and img.size == want
    assert min(img.size) >= RESIZE  # never fewer pixels than the model needs
    assert len(draft_spy) == 1
    assert preprocess(path, RESIZE, CROP).shape == (CROP, CROP, 3)


def test_small_jpegs_and_other_formats_are_decoded_in_full(tmp_path, draft_spy):
    small = camera_like(Image.new("RGB", (8, 8), "red"), (500, 400), tmp_path / "small.jpg")
    png = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), "blue").save(png)
    assert open_image(small, RESIZE).size == (500, 400)  # 1/2 would give 200 < 256
    big = open_image(png, RESIZE)  # box-reduced after decoding, never below 3x resize
    assert big.size == (1500, 1000) and min(big.size) >= 3 * RESIZE
    assert not is_draft_candidate(small, RESIZE) and not is_draft_candidate(png, RESIZE)
    assert all(decoded == (500, 400) for _, decoded in draft_spy)  # no scaled decode happened


@pytest.mark.parametrize("camera", ["JPEG", "MPO with a preview"])
def test_draft_path_matches_full_decoding_on_real_photos(shared_data, shared_models, camera):
    """Real photos of the 175 species the stand-in backbone was trained on, upscaled to camera sizes, at
    the backbone's own input geometry (144 -> 128, where its predictions are confident; at 256 -> 224 it
    is unsure and near-ties make top-1 a coin flip for either path): the model's top-1 from the draft
    path (for an MPO: its embedded quarter-size preview, in draft mode too) equals its top-1 from
    full-resolution decoding of the primary image, photo by photo."""
    torch = pytest.importorskip("torch")
    from torchvision.models import resnet18

    from trainer.model import MEAN, STD

    model = resnet18(num_classes=175)
    model.load_state_dict(torch.load(shared_models / "resnet18-birds175.pt", map_location="cpu", weights_only=True))
    model.eval()
    files = sorted((shared_data / "birds-pretrain").glob("*/*.jpg"))
    random.Random(0).shuffle(files)
    sizes = [(3000, 2000), (2000, 3000), (4032, 3024), (2400, 1600)]
    draft, full = [], []
    for i, f in enumerate(files[:16]):
        data = camera_like(Image.open(f), sizes[i % len(sizes)])
        if camera != "JPEG":
            primary = Image.open(io.BytesIO(data))
            preview = primary.resize((primary.width // 4, primary.height // 4), Image.Resampling.LANCZOS)
            data = mpo_bytes(primary, preview)
            with Image.open(io.BytesIO(data)) as im:
                assert _seek_preview(im, 144) is not None  # the preview path is the one measured
        draft.append(preprocess(io.BytesIO(data), 144, 128))  # the backbone's training geometry
        full.append(preprocess(io.BytesIO(data), 144, 128, draft=False))
        assert np.abs(draft[-1].astype(int) - full[-1]).mean() < 2.0  # grey levels, out of 255

    def probs(arrays):
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
        x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        with torch.no_grad():
            return torch.softmax(model(x), 1).numpy()

    pd, pf = probs(draft), probs(full)
    assert list(pd.argmax(1)) == list(pf.argmax(1))
    assert np.abs(pd - pf).max() < 0.05
