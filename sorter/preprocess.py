"""The one preprocessing function: decode -> EXIF orientation -> RGB -> resize -> centre crop.

It serves the sorter and the trainer's evaluation of exported models, so that both see the same pixels.
Output is uint8 RGB, HWC; normalisation lives inside the ONNX graph.

Large JPEGs are decoded in draft mode: libjpeg scales by 1/2, 1/4 or 1/8 during the DCT, almost for
free, choosing the largest reduction whose result still has a shorter side of at least `resize` pixels,
so the model never sees fewer pixels than it needs.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

# Camera files reach 100-150 MP (medium format). Anything larger is treated as a decompression bomb.
MAX_PIXELS = 200_000_000
# A decode (after draft mode: PNG, TIFF, WebP are decoded in full) that would hold more than this many
# bytes is refused too: a 400 KB PNG can claim 10000x10000 RGBA, and each decode worker holds one.
MAX_DECODE_BYTES = 512 * 2**20
# modes Image.reduce averages correctly (not palette or bilevel images)
REDUCIBLE = {"RGB", "RGBA", "RGBa", "L", "LA", "La", "CMYK", "YCbCr", "I", "F"}
Image.MAX_IMAGE_PIXELS = None  # we enforce MAX_PIXELS ourselves, with a clear reason


class PreprocessError(Exception):
    """A file that cannot be turned into model input. `str(e)` is a one-line reason for the report."""


def _decode_cost(img: Image.Image) -> int:
    """Bytes that decoding `img` in full and converting it to RGB hold at once: modes that `_shrink`
    reduces before converting cost their own size; palette, bilevel and 16-bit images are converted at
    full size first."""
    w, h = img.size
    mode = img.mode
    if mode in REDUCIBLE:
        per_pixel = len(img.getbands()) * (4 if mode in ("I", "F") else 1)
    elif mode in ("P", "PA"):
        per_pixel = len(img.getbands()) + 4   # + the RGBA conversion
    elif mode.startswith("I;16"):
        per_pixel = 2 + 4 + 1 + 3             # + 32-bit scaling, 8-bit grey, RGB
    else:
        per_pixel = len(img.getbands()) + 3   # + the RGB conversion
    return w * h * per_pixel


def _shrink(img: Image.Image, min_side: int) -> Image.Image:
    """Box-reduce a large decoded image by an integer factor, keeping its shorter side at least 3x
    `min_side` (what resize's reducing_gap=3 would do later anyway), so that the mode conversions that
    follow copy megabytes, not gigabytes. Done in strips: Image.reduce converts RGBA/LA images to
    premultiplied alpha at full size first, which would double the memory of a huge image."""
    k = min(img.size) // (3 * max(min_side, 1))
    if k < 2 or img.mode not in REDUCIBLE:
        return img
    w, h = img.size
    out = Image.new(img.mode, ((w + k - 1) // k, (h + k - 1) // k))
    step = 64 * k  # whole blocks per strip: the strips' reductions tile the full one exactly
    for top in range(0, h, step):
        out.paste(img.crop((0, top, w, min(top + step, h))).reduce(k), (0, top // k))
    return out


def _to_rgb(img: Image.Image, min_side: int = 0) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: CMYK, 16-bit, greyscale, palette with transparency, alpha."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit (or 32-bit int) greyscale: scale to 8 bits rather than clip at 255
        a = np.asarray(img, dtype=np.uint32 if mode != "I" else np.int64)
        peak = 65535 if mode != "I" else max(int(a.max()), 255)
        a = np.clip(a * 255 // max(peak, 1), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "F":
        a = np.asarray(img, dtype=np.float32)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = np.nan_to_num((a - lo) / max(hi - lo, 1e-12) * 255.0)
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    if mode == "P" or mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        # drop alpha onto white, as a viewer would show the photo
        rgba = _shrink(img.convert("RGBA"), min_side) if min_side else img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK (Pillow inverts Adobe CMYK correctly), YCbCr, LAB, HSV


def _draft_box(size: tuple[int, int], min_side: int) -> tuple[int, int] | None:
    """The box to ask Pillow's JPEG draft mode for, or None when no DCT scaling (1/2 at least) fits.

    Pillow picks the largest scale s in (8, 4, 2) with s <= min(w // box_w, h // box_h) and decodes to
    ceil(w / s) x ceil(h / s); asking for a box whose shorter side is `min_side` therefore guarantees a
    shorter side of at least `min_side` after decoding, whatever the aspect ratio."""
    w, h = size
    short = min(w, h)
    min_side = max(int(min_side), 1)
    if short < 2 * min_side:
        return None
    return max(min_side * w // short, 1), max(min_side * h // short, 1)


def _is_jpeg(img: Image.Image) -> bool:
    # camera JPEGs with an MPF preview open as MPO, a JpegImageFile subclass: draft mode works for both
    return isinstance(img, JpegImagePlugin.JpegImageFile)


# MP types (CIPA DC-007) of the frames a camera stores as its primary image scaled down
PREVIEW_TYPES = frozenset({"Large Thumbnail (VGA Equivalent)", "Large Thumbnail (Full HD Equivalent)"})
# how far (relative) a preview's aspect ratio may be from the primary's: rounding, not letterboxing
PREVIEW_ASPECT_TOLERANCE = 0.02
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:  # corrupt EXIF: as stored
        return 1
    return value if value in _ORIENT else 1


def _seek_preview(img: Image.Image, min_side: int) -> int | None:
    """Select the camera's embedded preview of an MPO (a JPEG with an MPF index, as Nikon, Sony,
    Fujifilm, Panasonic and OM cameras write) when it can stand in for the primary image: MP type "Large
    Thumbnail" (the primary scaled down, not a stereo view or a panorama part), the same aspect ratio
    (within PREVIEW_ASPECT_TOLERANCE: no letterbox, not stored upright when the primary is not), a shorter
    side of at least `min_side`, and no EXIF orientation of its own that differs. The smallest such
    frame wins: its Huffman data is a fraction of the primary's, which even draft mode must decode in
    full. Returns the primary's EXIF orientation (to apply to the preview), or None, with the primary
    selected, when no frame qualifies."""
    try:
        entries = img.mpinfo[0xB002]
    except (AttributeError, KeyError, TypeError):
        return None
    primary_w, primary_h = img.size
    orientation = _orientation(img)
    best: tuple[int, int] | None = None  # (pixels, frame)
    moved = False
    for frame, entry in enumerate(entries[1:], start=1):
        attribute = entry.get("Attribute") if isinstance(entry, dict) else None
        if not isinstance(attribute, dict) or attribute.get("MPType") not in PREVIEW_TYPES:
            continue
        try:
            moved = True
            img.seek(frame)
            w, h = img.size
            own = _orientation(img) if "exif" in img.info else orientation
        except Exception:  # an unreadable index entry: not a usable preview
            continue
        if (min(w, h) >= min_side and img.mode == "RGB" and own == orientation
                and abs(w * primary_h - h * primary_w) <= PREVIEW_ASPECT_TOLERANCE * primary_w * h
                and (best is None or w * h < best[0])):
            best = (w * h, frame)
    if not moved:
        return None
    try:
        img.seek(best[1] if best else 0)
    except Exception:
        img.seek(0)
        return None
    return orientation if best else None


@contextmanager
def _reasons():
    """Decoder exceptions -> PreprocessError with a one-line reason for the report."""
    try:
        yield
    except PreprocessError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PreprocessError(f"cannot decode: {msg}") from None
    except Image.DecompressionBombError as e:
        raise PreprocessError(f"decompression bomb: {e}") from None
    except MemoryError:
        raise PreprocessError("out of memory decoding image") from None


def open_image(source: str | os.PathLike | Image.Image, min_side: int, draft: bool = True,
               preview: bool = True) -> Image.Image:
    """Decode `source` to an upright RGB image whose shorter side is at least `min_side` when the
    original allows it (draft mode may shrink JPEGs on decode, never below `min_side`; `draft=False`
    decodes at full resolution). With `draft` and `preview`, a camera JPEG's embedded preview is
    decoded instead of the primary image where it can stand in for it (see `_seek_preview`); a
    preview that fails to decode falls back to the primary image."""
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            img = Image.open(source)
        except UnidentifiedImageError:
            raise PreprocessError("not an image (unrecognised format)") from None
        except FileNotFoundError:
            raise PreprocessError("file vanished before it could be read") from None
        except PermissionError:
            raise PreprocessError("permission denied") from None
        except IsADirectoryError:
            raise PreprocessError("is a directory") from None
        except OSError as e:
            raise PreprocessError(f"cannot open: {e}") from None
    orientation = None
    try:
        with _reasons():
            w, h = img.size
            if w <= 0 or h <= 0:
                raise PreprocessError("image has no pixels")
            if w * h > MAX_PIXELS:
                raise PreprocessError(f"image too large ({w}x{h} pixels): possible decompression bomb")
            if getattr(img, "is_animated", False):
                img.seek(0)  # animated GIF/PNG/WebP: classify the first frame
            if draft and preview and not isinstance(source, Image.Image) and getattr(img, "mpinfo", None):
                orientation = _seek_preview(img, min_side)
        return _decode(img, min_side, draft, orientation)
    except PreprocessError:
        if orientation is None:
            raise
    # the preview was selected and did not decode: the primary image may still be fine
    img.close()
    return open_image(source, min_side, draft, preview=False)


def _decode(img: Image.Image, min_side: int, draft: bool, orientation: int | None) -> Image.Image:
    """The selected frame of an opened image -> upright RGB (`orientation`: the EXIF orientation to
    apply instead of the frame's own, for an embedded preview)."""
    with _reasons():
        box = _draft_box(img.size, min_side) if draft and _is_jpeg(img) else None
        if box is not None:
            img.draft("RGB", box)  # no-op on an image already loaded
        if _decode_cost(img) > MAX_DECODE_BYTES:
            dw, dh = img.size
            raise PreprocessError(f"image too large to decode ({dw}x{dh} {img.mode}, "
                                  f"{_decode_cost(img) >> 20} MB): possible decompression bomb")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
        img = _shrink(img, min_side)
        if orientation is not None:
            img = img.transpose(_ORIENT[orientation]) if orientation in _ORIENT else img
        else:
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # corrupt EXIF: keep the pixels as stored
                pass
        return _to_rgb(img, min_side)


def resize_shorter(img: Image.Image, side: int) -> Image.Image:
    """Resize so the shorter side is `side`, keeping aspect ratio (bilinear with antialiasing)."""
    w, h = img.size
    if min(w, h) == side:
        return img
    if w <= h:
        size = (side, max(1, round(h * side / w)))
    else:
        size = (max(1, round(w * side / h)), side)
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def center_crop(img: Image.Image, crop: int) -> Image.Image:
    w, h = img.size
    left, top = (w - crop) // 2, (h - crop) // 2
    return img.crop((left, top, left + crop, top + crop))


def preprocess(source: str | os.PathLike | Image.Image, resize: int, crop: int, draft: bool = True) -> np.ndarray:
    """The model input for one photo: uint8 RGB array of shape (crop, crop, 3).

    Raises PreprocessError with a one-line reason for anything that is not a usable image. `draft=False`
    decodes JPEGs at full resolution (slower, for comparisons).
    """
    img = open_image(source, resize, draft)
    img = center_crop(resize_shorter(img, resize), crop)
    return np.asarray(img, dtype=np.uint8)


def is_draft_candidate(path: str | os.PathLike, resize: int) -> bool:
    """Whether `path` is a JPEG large enough that `preprocess` decodes it in draft mode."""
    try:
        with Image.open(path) as img:
            return _is_jpeg(img) and _draft_box(img.size, resize) is not None
    except Exception:
        return False


__all__ = [
    "MAX_PIXELS",
    "PreprocessError",
    "open_image",
    "resize_shorter",
    "center_crop",
    "preprocess",
    "is_draft_candidate",
]
