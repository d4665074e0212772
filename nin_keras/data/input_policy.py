"""How an arbitrary image file becomes a model's input: the ``InputPolicy`` that travels with the weights.

A photo of any size and mode (RGB, RGBA, grayscale, palette, 16-bit PNG, CMYK JPEG, a phone's
EXIF-rotated JPEG) goes through the same steps everywhere the library reads an image file:
``nin-keras predict`` with a zoo name, preset folder or exported artifact (``Predictor``),
``nin-keras eval --data FOLDER``, ``nin-keras finetune`` and ``nin-keras visualize --images``.
A preset stores its policy in ``metadata.json`` (``input_policy``; presets without one get their
data set's default, :func:`default_policy`), and every export writes it, with the steps in words
(:meth:`InputPolicy.describe`), into its metadata JSON so that a deployment can reproduce the
input without nin-keras.

The steps, in order (``InputPolicy.describe`` says them with the policy's values):

1. Decode with Pillow, reading only PNG, JPEG (and MPO), BMP, GIF, WebP and TIFF; the first frame
   of an animation. An image header declaring more than :data:`MAX_IMAGE_PIXELS` pixels is refused
   before any pixel is decoded, and so is one that step 6 would resize to more than
   :data:`MAX_IMAGE_PIXELS` pixels (a very thin image: see :class:`InputPolicy`).
2. Apply the EXIF orientation tag (``PIL.ImageOps.exif_transpose``), as a photo viewer does.
3. Reduce to 8 bits per channel: 16-bit samples keep their high byte (``value // 256``, what
   Pillow does for 16-bit colour PNGs; a plain ``convert("RGB")`` would saturate 16-bit
   grayscale to white); 32-bit integer samples are clipped to 0..65535 first. Floating-point
   images are refused.
4. Composite any transparency (alpha channel, or a palette/``tRNS`` transparent colour) over the
   policy's ``background`` colour.
5. Convert to the model's colour mode: ``rgb`` (grayscale replicated) or ``grayscale`` (ITU-R
   601-2 luma, ``L = (299 R + 587 G + 114 B) / 1000``, Pillow's ``convert("L")``).
6. Resize (unless ``resize`` is off, the strict mode): scale the image by one factor so that it
   covers ``round(height / crop_pct) x round(width / crop_pct)``, each side rounded to the
   nearest pixel, with Pillow's ``resize`` and the policy's ``interpolation`` (Pillow's filters
   widen with the reduction factor: the resize is antialiased); then cut the centre
   ``height x width`` window (offsets ``(new - size) // 2``). An image already of the input size
   with ``crop_pct = 1`` is left unchanged.
7. Invert (``255 - value``) when ``invert`` is set: a digit model trained on white-on-black
   digits then reads dark ink on white paper.

The result is a ``uint8`` array ``(height, width, channels)``; the model's own preprocessing
(GCN, ZCA, scaling) follows inside the model. Steps 1-5, the decoding, are
``nin_keras.data.image_decode.decode_image`` (its names are importable from here too).

Example:
    >>> policy = default_policy("cifar10", (32, 32, 3))
    >>> policy("cat.jpg").shape
    (32, 32, 3)
    >>> policy.to_dict()["interpolation"]
    'bicubic'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from nin_keras.data.image_decode import COLOR_MODES, MAX_IMAGE_PIXELS, ImageSource, decode_image, source_name
# Re-exported: the decoder's names were defined here before it moved to image_decode.py.
from nin_keras.data.image_decode import IMAGE_FORMATS, IMAGE_SUFFIXES  # noqa: F401
from nin_keras.errors import ImageError

INTERPOLATIONS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                  "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
                  "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}
FORMAT = "nin_keras.input_policy"
FORMAT_VERSION = 1

# What the published models were trained on, in words: the question a user's photo must answer.
_EXPECTS = {
    "cifar10": "a colour photo of one object that fills most of the frame (CIFAR-10 images are "
               "32x32 crops centred on one object)",
    "cifar100": "a colour photo of one object that fills most of the frame (CIFAR-100 images are "
                "32x32 crops centred on one object)",
    "svhn": "a colour photo of a house-number digit centred in the frame (SVHN crops)",
    "mnist": "one light (white) digit on a dark (black) background, centred and filling about "
             "20x20 of the 28x28 frame, as in MNIST; dark ink on light paper needs invert=True "
             "(nin-keras predict --invert)",
    "fashion_mnist": "one light garment on a black background, centred and filling the frame, as "
                     "in Fashion-MNIST (its images are inverted product photos); a product photo on "
                     "a white background needs invert=True (nin-keras predict --invert)",
}
# Digit and garment sets are white-on-black: a transparent background is black there.
_DARK_BACKGROUND = ("mnist", "fashion_mnist")


@dataclasses.dataclass(frozen=True)
class InputPolicy:
    """How an image file becomes the model's ``uint8 (height, width, channels)`` input.

    Args:
        size: ``(height, width)`` of the model input.
        color_mode: ``"rgb"`` or ``"grayscale"``.
        resize: ``True``: resize and center-crop images of any size; ``False`` (strict mode,
            ``--no-resize``): images must already have ``size``.
        crop_pct: fraction of the resized image the center crop keeps (timm's ``crop_pct``):
            the image is first scaled to cover ``size / crop_pct``. ``1.0`` keeps the whole
            shorter side.
        interpolation: ``"bicubic"``, ``"bilinear"``, ``"nearest"``, ``"lanczos"``, ``"box"`` or
            ``"hamming"`` (Pillow's filters; antialiased when shrinking).
        background: RGB colour transparent pixels are composited over.
        exif_transpose: apply the EXIF orientation tag.
        invert: replace each value ``v`` by ``255 - v`` after everything else.
        expects: what the model was trained on, in words (which images it can classify, and for
            digits which polarity it expects).

    Memory is bounded before it is spent: the decoded image may have at most
    :data:`MAX_IMAGE_PIXELS` pixels, and so may the image the resize makes before the crop
    (:meth:`resized_size`), both computed from the file's header before any pixel is decoded.
    Covering ``size / crop_pct`` scales the shorter side to the cover size, so a thin image grows
    with its aspect ratio: at 32x32 a 1 x 1,000,000 PNG of 4 kB would become 32 x 32,000,000
    (3 GB). Such an image is refused with an ``ImageError`` naming the file, both sizes and the
    limit; at 32x32 and ``crop_pct`` 1 this allows sides up to 62,500:1. With
    ``exif_transpose`` both orientations are checked, since the tag is applied after decoding.

    Example:
        >>> policy = InputPolicy(size=(28, 28), color_mode="grayscale", invert=True)
        >>> policy(open("digit_on_paper.png", "rb").read()).shape
        (28, 28, 1)
    """

    size: tuple[int, int]
    color_mode: str = "rgb"
    resize: bool = True
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    background: tuple[int, int, int] = (255, 255, 255)
    exif_transpose: bool = True
    invert: bool = False
    expects: str = ""

    def __post_init__(self) -> None:
        # Normalize JSON lists to tuples, then check every field (a policy from a hostile
        # metadata file gets a ValueError naming the field, never a crash later).
        object.__setattr__(self, "size", _int_tuple(self.size, 2, "size", minimum=1))
        object.__setattr__(self, "background", _int_tuple(self.background, 3, "background",
                                                          minimum=0, maximum=255))
        if not isinstance(self.color_mode, str) or self.color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {list(COLOR_MODES)}, got {self.color_mode!r}")
        if not isinstance(self.interpolation, str) or self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, "
                             f"got {self.interpolation!r}")
        if (isinstance(self.crop_pct, bool) or not isinstance(self.crop_pct, (int, float))
                or not 0.05 <= self.crop_pct <= 1.0):
            raise ValueError(f"crop_pct must be a number in [0.05, 1], got {self.crop_pct!r}")
        for name in ("resize", "exif_transpose", "invert"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.expects, str):
            raise ValueError(f"expects must be a string, got {type(self.expects).__name__}")

    @property
    def channels(self) -> int:
        return COLOR_MODES[self.color_mode][1]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)``: the shape :meth:`apply` returns."""
        return (*self.size, self.channels)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """``(new width, new height)`` that step 6 resizes a ``width x height`` image to, before the crop."""
        out_height, out_width = self.size
        scale = max(round(out_height / self.crop_pct) / height, round(out_width / self.crop_pct) / width)
        return max(out_width, round(width * scale)), max(out_height, round(height * scale))

    def _check_resize(self, width: int, height: int, name: str = "image", either_way: bool = False,
                      when: str = "before decoding") -> None:
        """``ImageError`` if resizing a ``width x height`` image would make more than
        :data:`MAX_IMAGE_PIXELS` pixels; ``either_way``: also if the image turned by 90 degrees
        would (what an EXIF orientation tag may do after decoding)."""
        for w, h in ((width, height), (height, width)) if either_way else ((width, height),):
            new_width, new_height = self.resized_size(w, h)
            if new_width * new_height > MAX_IMAGE_PIXELS:
                raise ImageError(f"{name}: a {w}x{h} image would be resized to {new_width}x{new_height} = "
                                 f"{new_width * new_height} pixels (to cover the {self.size[1]}x{self.size[0]} "
                                 f"input with crop_pct {self.crop_pct:g}), more than the limit of "
                                 f"{MAX_IMAGE_PIXELS}; refused {when} (its sides are too unequal)")

    def replace(self, **changes: Any) -> "InputPolicy":
        """A copy with some fields changed (``policy.replace(resize=False)`` is the strict mode)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what presets and export metadata store), with the steps in words."""
        fields = dataclasses.asdict(self)
        fields["size"], fields["background"] = list(self.size), list(self.background)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **fields,
                "max_image_pixels": MAX_IMAGE_PIXELS, "steps": self.describe()}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "InputPolicy":
        """The policy :meth:`to_dict` wrote (``steps`` and ``max_image_pixels`` are informative).

        Raises:
            ValueError: not a policy dict, an unknown format version or field, or a bad value.
        """
        if not isinstance(config, Mapping):
            raise ValueError(f"an input policy must be a JSON object, got {type(config).__name__}")
        if config.get("format", FORMAT) != FORMAT or config.get("format_version", 1) != FORMAT_VERSION:
            raise ValueError(f"input policy format {config.get('format')!r} version "
                             f"{config.get('format_version')!r} is not {FORMAT!r} {FORMAT_VERSION}")
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(config) - names - {"format", "format_version", "steps", "max_image_pixels"})
        if unknown:
            raise ValueError(f"input policy has unknown fields {unknown}; known: {sorted(names)}")
        if "size" not in config:
            raise ValueError("input policy needs a 'size' [height, width]")
        return cls(**{key: value for key, value in config.items() if key in names})

    def describe(self) -> list[str]:
        """The exact steps this policy applies, in plain words with its values, one per item."""
        height, width = self.size
        mode = ("RGB (grayscale images replicated to three channels)" if self.color_mode == "rgb"
                else "grayscale: L = (299 R + 587 G + 114 B) / 1000, rounded (Pillow convert('L'))")
        steps = [
            f"Decode the file with Pillow (PNG, JPEG, BMP, GIF first frame, WebP, TIFF); refuse "
            f"headers declaring more than {MAX_IMAGE_PIXELS} pixels"
            + (f", or an image the resize below would make larger than {MAX_IMAGE_PIXELS} pixels."
               if self.resize else "."),
            "Apply the EXIF orientation tag (PIL.ImageOps.exif_transpose)." if self.exif_transpose
            else "Ignore the EXIF orientation tag.",
            "Reduce to 8 bits per channel: 16-bit samples keep their high byte (value // 256); "
            "32-bit integer samples are clipped to 0..65535 first; floating-point images are refused.",
            f"Composite transparent pixels (alpha or palette transparency) over RGB "
            f"{tuple(self.background)}.",
            f"Convert to {mode}.",
        ]
        if self.resize:
            cover = (round(height / self.crop_pct), round(width / self.crop_pct))
            steps += [
                f"Resize with one scale factor s = max({cover[0]} / image height, {cover[1]} / "
                f"image width), new size round(s * width) x round(s * height), Pillow resize with "
                f"{self.interpolation} interpolation (antialiased when shrinking; crop_pct "
                f"{self.crop_pct:g}).",
                f"Center-crop {width}x{height} (width x height): left = (new width - {width}) // 2, "
                f"top = (new height - {height}) // 2.",
            ]
        else:
            steps.append(f"No resizing (strict): the image must be {width}x{height} (width x height).")
        if self.invert:
            steps.append("Invert: value -> 255 - value.")
        steps.append(f"Result: uint8 array (height {height}, width {width}, channels "
                     f"{self.channels}), values 0..255, fed to the model as float32 without scaling.")
        return steps

    # ------------------------------------------------------------------ applying
    def __call__(self, source: ImageSource, name: str | None = None) -> np.ndarray:
        return self.apply(source, name)

    def apply(self, source: ImageSource, name: str | None = None) -> np.ndarray:
        """The model input for one image: a path, the file's bytes, or a ``PIL.Image``.

        Args:
            source: the image.
            name: how error messages name it (default: the path, or ``"image"``).

        Returns:
            ``uint8`` array ``(height, width, channels)``.

        Raises:
            ImageError: (a ``DataError`` and a ``ValueError``) the file is missing, not an image
                Pillow may decode here, corrupt, larger than ``MAX_IMAGE_PIXELS`` or resized
                to more than that, floating point, or (strict mode) not of ``size``.
        """
        name = source_name(source, name)

        def check_header(width: int, height: int) -> None:
            if self.resize:
                self._check_resize(width, height, name, either_way=self.exif_transpose)

        image = decode_image(source, self.color_mode, self.background, self.exif_transpose, name,
                             check_size=check_header)
        height, width = self.size
        exact = (image.height, image.width) == (height, width)
        if not self.resize and not exact:
            raise ImageError(f"{name}: image is {image.width}x{image.height}, the model takes "
                             f"{width}x{height} (strict mode: no resizing; drop --no-resize / "
                             "resize=False to resize and center-crop)")
        if self.resize and (not exact or self.crop_pct < 1.0):
            # Checked again on the image itself: a PIL.Image source had no header to check.
            self._check_resize(image.width, image.height, name, when="before resizing")
            image = self._resize_and_crop(image)
        array = np.asarray(image, dtype=np.uint8)
        if array.ndim == 2:
            array = array[..., None]
        return 255 - array if self.invert else array

    def _resize_and_crop(self, image: Image.Image) -> Image.Image:
        height, width = self.size
        new_width, new_height = self.resized_size(image.width, image.height)
        resized = image.resize((new_width, new_height), INTERPOLATIONS[self.interpolation])
        left, top = (new_width - width) // 2, (new_height - height) // 2
        return resized.crop((left, top, left + width, top + height))


def default_policy(dataset: str | None, input_shape: Sequence[int | None]) -> InputPolicy:
    """The input policy of a model trained on ``dataset`` taking ``input_shape`` ``(H, W, C)``.

    CIFAR-10/100 and SVHN: RGB, bicubic resize of the shorter side, center crop (``crop_pct``
    1: the whole shorter side), transparency over white. MNIST and Fashion-MNIST: grayscale,
    bilinear, transparency over black, no inversion, and ``expects`` saying that the model wants
    a light digit (garment) on a dark background. Other data sets: by channel count.

    Raises:
        ValueError: ``input_shape`` has no fixed height, width and 1 or 3 channels.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or any(not isinstance(d, int) or d < 1 for d in shape) or shape[2] not in (1, 3):
        raise ValueError(f"input_shape must be (height, width, 1 or 3) with fixed sizes, got {shape}")
    color_mode = "grayscale" if shape[2] == 1 else "rgb"
    dark = dataset in _DARK_BACKGROUND
    return InputPolicy(size=shape[:2], color_mode=color_mode,
                       interpolation="bilinear" if color_mode == "grayscale" else "bicubic",
                       background=(0, 0, 0) if dark else (255, 255, 255),
                       expects=_EXPECTS.get(dataset or "", ""))


def _int_tuple(value: Any, length: int, name: str, minimum: int, maximum: int | None = None) -> tuple:
    ok = (isinstance(value, (list, tuple)) and len(value) == length
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum
                  and (maximum is None or v <= maximum) for v in value))
    if not ok:
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be {length} integers {bound}, got {value!r}")
    return tuple(value)


def policy_from_metadata(metadata: Mapping[str, Any],
                         input_shape: Sequence[int | None]) -> InputPolicy | None:
    """The policy a preset's ``metadata.json`` or an export's metadata JSON records under
    ``input_policy``, else the default for its ``dataset`` (:func:`default_policy`), so presets
    published before policies existed keep loading with their data set's policy. ``None`` when
    nothing is recorded and ``input_shape`` is not a fixed-size 1- or 3-channel image.

    Raises:
        ValueError: the recorded policy is malformed (the message names the field).
    """
    recorded = metadata.get("input_policy")
    if recorded is not None:
        return InputPolicy.from_dict(recorded)
    try:
        return default_policy(metadata.get("dataset"), input_shape)
    except ValueError:  # not an image input of fixed size: no policy applies
        return None
