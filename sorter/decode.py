"""Any photo file -> model input: JPEG/PNG/TIFF/... through `preprocess`, RAW through its embedded preview.

A RAW file (.cr2, .nef, .arw, .dng, ...) is never demosaiced here: that takes seconds. Cameras embed a
JPEG preview (often full size) in every RAW; rawpy hands it over and Pillow decodes it in draft mode like
any other JPEG. Some cameras embed a bitmap instead, which arrives as an RGB array. A RAW whose preview is
missing, unreadable or smaller than the model's input is reported with a one-line reason.

`load(path, resize, crop)` is what the decode pool runs: it never raises for a bad file, it returns the
reason, so one unreadable photo cannot stop a batch (and the function can run in another process).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .preprocess import PreprocessError, center_crop, open_image, preprocess, resize_shorter

# suffixes of camera RAW formats that LibRaw reads (lower case)
RAW_SUFFIXES = frozenset(
    ".3fr .ari .arw .cr2 .cr3 .crw .dcr .dng .erf .fff .iiq .k25 .kdc .mef .mos .mrw .nef .nrw .orf .pef"
    " .raf .raw .rw2 .rwl .sr2 .srf .srw .x3f".split()
)

# LibRaw's `flip` (sizes.flip) -> the Pillow transpose that makes the preview upright
_FLIP = {
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.ROTATE_90,   # 90 degrees counter-clockwise
    6: Image.Transpose.ROTATE_270,  # 90 degrees clockwise
}


def is_raw(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in RAW_SUFFIXES


def _first_line(e: BaseException) -> str:
    arg = e.args[0] if len(e.args) == 1 else None
    text = (arg.decode(errors="replace") if isinstance(arg, bytes) else str(e)).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def raw_preview(path: str | os.PathLike, min_side: int, need: int) -> Image.Image:
    """The upright RGB preview embedded in a RAW file, decoded no smaller than `min_side` on its shorter
    side when the preview allows it. Raises PreprocessError when there is no usable preview (none, an
    unsupported format, or a shorter side below `need` pixels, the model's input)."""
    import rawpy  # imported here: the JPEG path (nearly every photo) does not pay for it

    try:
        if os.path.getsize(path) == 0:
            raise PreprocessError("empty file")
        with rawpy.imread(str(path)) as raw:
            flip = int(getattr(raw.sizes, "flip", 0) or 0)
            thumb = raw.extract_thumb()
    except FileNotFoundError:
        raise PreprocessError("file vanished before it could be read") from None
    except rawpy.LibRawNoThumbnailError:
        raise PreprocessError("RAW file has no embedded preview to classify") from None
    except rawpy.LibRawUnsupportedThumbnailError:
        raise PreprocessError("RAW file's embedded preview is in a format that cannot be read") from None
    except rawpy.LibRawFileUnsupportedError:
        raise PreprocessError("not a RAW file that LibRaw can read (unsupported or corrupt)") from None
    except rawpy.LibRawIOError:
        raise PreprocessError("cannot read RAW file: truncated or corrupt") from None
    except (rawpy.LibRawError, rawpy.NotSupportedError, OSError, ValueError) as e:
        raise PreprocessError(f"cannot read RAW file: {_first_line(e)}") from None

    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            img = Image.open(io.BytesIO(thumb.data))
        except Exception as e:
            raise PreprocessError(f"RAW file's embedded preview is not a readable JPEG: {_first_line(e)}") from None
        has_orientation = img.getexif().get(0x0112, 1) != 1
        img = open_image(img, min_side)  # draft mode, EXIF orientation of the preview itself, RGB
    else:
        data = np.asarray(thumb.data)
        if data.ndim == 2:
            data = np.repeat(data[..., None], 3, axis=2)
        if data.ndim != 3 or data.shape[2] < 3:
            raise PreprocessError(f"RAW file's embedded bitmap preview has an odd shape {data.shape}")
        if data.dtype != np.uint8:  # 16-bit bitmap previews: keep the top 8 bits
            data = (data.astype(np.uint32) >> 8).astype(np.uint8) if data.dtype == np.uint16 else data.astype(np.uint8)
        img = Image.fromarray(np.ascontiguousarray(data[..., :3]), "RGB")
        has_orientation = False
    if not has_orientation and flip in _FLIP:
        img = img.transpose(_FLIP[flip])  # the RAW's own orientation; previews rarely carry EXIF of their own
    w, h = img.size
    if min(w, h) < need:
        raise PreprocessError(f"RAW file's embedded preview is only {w}x{h}, smaller than the model's {need}px input")
    return img


def load(path: str | os.PathLike, resize: int, crop: int) -> tuple[np.ndarray | None, str | None]:
    """(model input, None) for a readable photo, (None, one-line reason) otherwise. Never raises for a bad
    file: this runs in the decode pool."""
    try:
        if is_raw(path):
            img = raw_preview(path, resize, crop)
            return np.asarray(center_crop(resize_shorter(img, resize), crop), dtype=np.uint8), None
        return preprocess(path, resize, crop), None
    except PreprocessError as e:
        return None, str(e)
    except MemoryError:
        return None, "out of memory decoding image"
    except Exception as e:  # a decoder bug must not stop the run: report it against this file
        return None, f"cannot decode: {type(e).__name__}: {_first_line(e)}"


__all__ = ["RAW_SUFFIXES", "is_raw", "raw_preview", "load"]
