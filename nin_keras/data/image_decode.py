"""Steps 1-5 of the input policy: an image file (or its bytes, or a ``PIL.Image``) decoded into an
8-bit ``"RGB"`` or ``"L"`` Pillow image, not resized (``decode_image``).

Only the formats of :data:`IMAGE_FORMATS` are decoded, and a header declaring more than
:data:`MAX_IMAGE_PIXELS` pixels (or a size the caller's ``check_size`` refuses) is refused before
any pixel is; then the EXIF orientation, 8 bits per channel, transparency over a background and the
colour mode. ``nin_keras.data.input_policy`` describes every step and adds the resize, the crop
and the inversion.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from nin_keras.errors import ImageError

#: Images whose header declares more pixels than this are refused before decoding (a 64-megapixel
#: photo, 9248 x 6936, is accepted; a PNG header claiming 20000 x 20000 is not), and so are images
#: the policy's resize would scale to more pixels than this (a 1 x 1,000,000 strip).
MAX_IMAGE_PIXELS = 64_000_000
#: The decoders Pillow may use (``Image.open(formats=...)``): no EPS (it runs Ghostscript), no
#: exotic formats whose plugins are rarely exercised.
IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "GIF", "WEBP", "TIFF")
#: File name endings read as images in class folders.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

COLOR_MODES = {"rgb": ("RGB", 3), "grayscale": ("L", 1)}

ImageSource = Union[str, os.PathLike, bytes, Image.Image]


def source_name(source: ImageSource, name: str | None = None) -> str:
    """How error messages name an image: ``name`` if given, else the path, else ``"image"``."""
    return name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "image")


def decode_image(source: ImageSource, color_mode: str | None = None,
                 background: Sequence[int] = (255, 255, 255), exif_transpose: bool = True,
                 name: str | None = None,
                 check_size: Callable[[int, int], None] | None = None) -> Image.Image:
    """Steps 1-5 of the policy: an 8-bit ``"RGB"`` or ``"L"`` Pillow image, not resized.

    Args:
        source: a path, the file's bytes, or a ``PIL.Image``.
        color_mode: ``"rgb"``, ``"grayscale"``, or ``None`` to keep single-channel images
            grayscale and make everything else RGB.
        background: RGB colour transparency is composited over.
        exif_transpose: apply the EXIF orientation tag.
        name: how error messages name the image.
        check_size: called with the header's ``(width, height)`` before any pixel is decoded,
            to refuse (with ``ImageError``) a size a later step could not afford;
            :meth:`nin_keras.data.input_policy.InputPolicy.apply` checks its resize there.

    Raises:
        ImageError: missing file, not an allowed image format, corrupt data, too many pixels,
            a size ``check_size`` refuses, or a floating-point image.
    """
    name = source_name(source, name)
    if isinstance(source, Image.Image):
        return _to_8bit(source, color_mode, tuple(background), exif_transpose, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        try:
            stream = open(source, "rb")
        except OSError as error:
            raise ImageError(f"cannot read image file {name}: {error.strerror or error}") from error
    else:
        raise ValueError(f"an image must be a path, bytes or a PIL.Image, got {type(source).__name__}")
    with stream:
        try:
            with warnings.catch_warnings():
                # Pillow warns above its own, larger limit; the check below refuses those anyway.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(stream, formats=_registered_formats())
        except Image.DecompressionBombError as error:
            raise ImageError(f"{name}: image header declares more pixels than the limit of "
                             f"{MAX_IMAGE_PIXELS}; refused before decoding (Pillow: {error})") from error
        except Exception as error:  # Pillow's plugins raise many types on hostile headers
            raise ImageError(f"{name}: not a readable image ({_why(error)}); allowed formats: "
                             f"{', '.join(IMAGE_FORMATS)}") from error
        with image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageError(f"{name}: image header declares {width}x{height} = {width * height} "
                                 f"pixels, more than the limit of {MAX_IMAGE_PIXELS}; refused before "
                                 "decoding")
            if width < 1 or height < 1:
                raise ImageError(f"{name}: image has no pixels ({width}x{height})")
            if check_size is not None:
                check_size(width, height)
            try:
                image.load()
                return _to_8bit(image, color_mode, tuple(background), exif_transpose, name)
            except ImageError:
                raise
            except Exception as error:  # truncated or corrupt pixel data, in any decoder's types
                raise ImageError(f"{name}: corrupt or truncated image data ({_why(error)})") from error


def _to_8bit(image: Image.Image, color_mode: str | None, background: tuple[int, int, int],
             exif_transpose: bool, name: str) -> Image.Image:
    """Steps 2-5 on a loaded image."""
    if exif_transpose:
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "F":
        raise ImageError(f"{name}: floating-point images (mode F) are not supported; save it as 8- or 16-bit")
    if mode == "I" or mode.startswith("I;16"):
        wide = np.asarray(image).astype(np.int64)
        image = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), "L")
    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("L" if mode == "1" else "RGB")
    if image.mode == "P" or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (*background, 255))
        image = Image.alpha_composite(canvas, image).convert("RGB")
    target = color_mode or ("grayscale" if image.mode == "L" else "rgb")
    pil_mode = COLOR_MODES[target][0]
    return image if image.mode == pil_mode else image.convert(pil_mode)


def _registered_formats() -> list[str]:
    """:data:`IMAGE_FORMATS` that this Pillow registers. ``Image.open`` raises ``KeyError`` on a
    listed format it does not know, after trying the ones before it: Pillow 13 reads MPO inside
    its JPEG plugin and has no "MPO" entry, so every GIF, BMP, WebP and TIFF failed."""
    Image.init()
    return [name for name in IMAGE_FORMATS if name in Image.OPEN]


def _why(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
