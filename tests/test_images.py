"""Your own images: the input policy, predict on any photo, eval on any folder, fine-tune on a folder.

Every photo here is written by the test with Pillow: upscaled crops of CIFAR-10 (JPEG copy) test
images from ../shared (tests needing them skip when it is absent), in every mode a user's files
come in. The policy is compared against references written out step by step with Pillow and
NumPy in this file, with the geometry worked out by hand.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import struct
import tarfile
import time
import warnings
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from nin_keras.data import image_folder  # noqa: E402
from nin_keras.data.input_policy import (MAX_IMAGE_PIXELS, InputPolicy, decode_image,  # noqa: E402
                                         default_policy)
from nin_keras.errors import DataError, ImageError  # noqa: E402

CIFAR_JPEG = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
BICUBIC = Image.Resampling.BICUBIC


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch, tmp_path):
    """No test writes the user's cache or reads the user's data folder."""
    monkeypatch.setenv("NIN_KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NIN_KERAS_DATA_DIR", raising=False)


# --------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=4)
def _cifar_members(split: str, per_class: int) -> dict[str, tuple[bytes, ...]]:
    from nin_keras.data.archive import iter_files

    found: dict[str, list[bytes]] = {}

    def wanted(path):
        return (len(path.parts) == 3 and path.parts[0] == split
                and len(found.setdefault(path.parts[1], [])) < per_class)

    for path, data in iter_files(CIFAR_JPEG, wanted):
        found[path.parts[1]].append(data)
    return {name: tuple(files) for name, files in found.items()}


def cifar_jpegs(split: str, per_class: dict[str, int]) -> dict[str, list[bytes]]:
    """The first ``per_class[name]`` JPEG files of each class folder of the CIFAR-10 JPEG copy
    (the archive is streamed once per split and count, then reused)."""
    if not CIFAR_JPEG.is_file():
        pytest.skip(f"{CIFAR_JPEG} is absent")
    most = max(per_class.values())
    members = _cifar_members(split, 16 if split == "test" and most <= 16 else most)
    return {name: list(members[name][:count]) for name, count in per_class.items()}


def photo(data: bytes, size=(451, 300)) -> Image.Image:
    """A CIFAR image blown up to a photo-like size (bicubic, not square)."""
    return Image.open(io.BytesIO(data)).convert("RGB").resize(size, BICUBIC)


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB): ``array`` (H, W, C) uint16."""
    height, width, channels = array.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))
    return png_bytes(width, height, 16, color_type, zlib.compress(rows))


def png_bytes(width: int, height: int, depth: int, color_type: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


CIFAR = default_policy("cifar10", (32, 32, 3))


# --------------------------------------------------------------------------- the policy


def landscape_reference(image: Image.Image) -> np.ndarray:
    """451x300 -> shorter side 32: 451 * 32 / 300 = 48.1 -> 48x32, centre crop x 8..40."""
    return np.asarray(image.resize((48, 32), BICUBIC).crop((8, 0, 40, 32)))


def test_rgb_jpeg_of_any_size_matches_the_pil_reference():
    data = cifar_jpegs("test", {"cat": 1})["cat"][0]
    jpeg = encoded(photo(data), "JPEG", quality=92)
    expected = landscape_reference(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    np.testing.assert_array_equal(CIFAR(jpeg), expected)
    # Portrait: 300x451 -> 32x48, centre crop y 8..40.
    portrait = Image.open(io.BytesIO(data)).convert("RGB").resize((300, 451), BICUBIC)
    expected = np.asarray(portrait.resize((32, 48), BICUBIC).crop((0, 8, 32, 40)))
    np.testing.assert_array_equal(CIFAR(portrait), expected)
    # Blown up 14x and brought back, the photo is close to the original 32x32 image.
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float64)
    square = CIFAR(photo(data, (448, 448))).astype(np.float64)
    assert np.abs(square - original).mean() < 4.0


def test_image_of_the_input_size_is_left_unchanged():
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    np.testing.assert_array_equal(CIFAR(encoded(Image.fromarray(pixels), "PNG")), pixels)


def test_crop_pct_covers_size_over_crop_pct_then_crops_the_centre():
    image = photo(cifar_jpegs("test", {"ship": 1})["ship"][0])
    policy = CIFAR.replace(crop_pct=0.875, interpolation="bilinear")
    # round(32 / 0.875) = 37; s = 37 / 300; 451 s = 55.6 -> 56x37; crop x 12..44, y 2..34.
    expected = np.asarray(image.resize((56, 37), Image.Resampling.BILINEAR).crop((12, 2, 44, 34)))
    np.testing.assert_array_equal(policy(image), expected)


def test_rgba_is_composited_over_the_background():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (40, 40, 3), np.uint8)
    alpha = rng.integers(0, 256, (40, 40, 1), np.uint8)
    png = encoded(Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA"), "PNG")
    for background in ((255, 255, 255), (0, 0, 0), (10, 200, 30)):
        policy = CIFAR.replace(background=background, resize=False, size=(40, 40))
        a = alpha / 255.0
        expected = a * rgb + (1 - a) * np.array(background)
        assert np.abs(policy(png).astype(np.float64) - expected).max() <= 1.0


def test_palette_transparency_is_composited():
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([200, 10, 10] + [10, 10, 200] * 255)
    palette.paste(1, (0, 0, 4, 8))
    png = encoded(palette, "PNG", transparency=0)
    out = CIFAR.replace(size=(8, 8))(png)
    np.testing.assert_array_equal(out[:, :4], np.full((8, 4, 3), (10, 10, 200), np.uint8))
    np.testing.assert_array_equal(out[:, 4:], np.full((8, 4, 3), 255, np.uint8))


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_every_allowed_format_decodes_in_a_fresh_process(fmt, tmp_path):
    """Pillow 13 has no "MPO" entry (its JPEG plugin reads MPO files): listing it made every
    format after it fail with KeyError in a process that had not opened a JPEG yet."""
    import subprocess
    import sys

    path = tmp_path / f"image.{fmt.lower()}"
    Image.new("RGB", (9, 7), (10, 200, 30)).save(path, fmt)
    script = ("import sys; from nin_keras.data.input_policy import default_policy; "
              "print(default_policy('cifar10', (32, 32, 3))(sys.argv[1]).shape)")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0 and "(32, 32, 3)" in done.stdout, done.stderr[-2000:]


def test_grayscale_and_16_bit_pngs():
    rng = np.random.default_rng(2)
    gray8 = rng.integers(0, 256, (64, 96), np.uint8)
    # 16-bit: the high byte is the 8-bit value, the low byte noise that must not matter.
    gray16 = gray8.astype(np.uint16) * 256 + rng.integers(0, 256, gray8.shape).astype(np.uint16)
    reference = np.asarray(Image.fromarray(gray8).resize((48, 32), BICUBIC).crop((8, 0, 40, 32)))
    for data in (encoded(Image.fromarray(gray8), "PNG"), png16(gray16[..., None])):
        out = CIFAR(data)
        np.testing.assert_array_equal(out, np.repeat(reference[..., None], 3, axis=-1))
    # A plain convert("RGB") would saturate: almost every pixel of the 16-bit file at 255.
    assert (np.asarray(Image.open(io.BytesIO(png16(gray16[..., None]))).convert("RGB")) == 255).mean() > 0.9
    grayscale = default_policy("mnist", (28, 28, 1))
    assert grayscale(png16(gray16[..., None])).shape == (28, 28, 1)
    rgb16 = rng.integers(0, 65536, (32, 32, 3)).astype(np.uint16)
    np.testing.assert_array_equal(CIFAR(png16(rgb16)), (rgb16 >> 8).astype(np.uint8))
    # 16-bit gray + alpha: gray composited over white.
    la16 = np.stack([gray16[:32, :32], np.full((32, 32), 65535, np.uint16)], -1)
    np.testing.assert_array_equal(CIFAR(png16(la16))[..., 0], gray8[:32, :32])


def test_grayscale_policy_uses_luma_and_states_digit_polarity():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (28, 28, 3), np.uint8)
    policy = default_policy("mnist", (28, 28, 1))
    luma = (rgb.astype(np.int64) @ np.array([299, 587, 114]) + 500) // 1000
    assert np.abs(policy(Image.fromarray(rgb)).astype(np.int64)[..., 0] - luma).max() <= 1
    assert "white" in policy.expects and "black" in policy.expects and "invert" in policy.expects
    assert policy.invert is False and policy.background == (0, 0, 0)
    inverted = policy.replace(invert=True)
    np.testing.assert_array_equal(inverted(Image.fromarray(rgb)), 255 - policy(Image.fromarray(rgb)))
    assert any("Invert" in step for step in inverted.describe())


def test_cmyk_jpeg_and_exif_rotation():
    data = cifar_jpegs("test", {"horse": 1})["horse"][0]
    display = photo(data)
    rgb_jpeg = encoded(display, "JPEG", quality=95)
    cmyk_jpeg = encoded(display.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(cmyk_jpeg)).mode == "CMYK"
    expected = landscape_reference(Image.open(io.BytesIO(cmyk_jpeg)).convert("RGB"))
    np.testing.assert_array_equal(CIFAR(cmyk_jpeg), expected)
    assert np.abs(CIFAR(cmyk_jpeg).astype(float) - CIFAR(rgb_jpeg)).mean() < 3.0
    # A phone stores the pixels turned and says "rotate 90 degrees clockwise" (orientation 6).
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = encoded(display.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)
    upright = np.rot90(np.asarray(Image.open(io.BytesIO(stored)).convert("RGB")), k=-1)
    assert upright.shape == (300, 451, 3)
    np.testing.assert_array_equal(CIFAR(stored), landscape_reference(Image.fromarray(upright)))
    assert np.abs(CIFAR(stored).astype(float) - CIFAR(rgb_jpeg)).mean() < 3.0
    assert CIFAR.replace(exif_transpose=False)(stored).shape == (32, 32, 3)


def test_strict_mode_keeps_todays_behaviour():
    strict = CIFAR.replace(resize=False)
    pixels = np.random.default_rng(4).integers(0, 256, (32, 32, 3), np.uint8)
    np.testing.assert_array_equal(strict(Image.fromarray(pixels)), pixels)
    with pytest.raises(ImageError, match=r"451x300, the model takes 32x32 \(strict"):
        strict(Image.fromarray(np.zeros((300, 451, 3), np.uint8)), "cat.jpg")
    assert any("No resizing" in step for step in strict.describe())


def test_policy_round_trips_and_rejects_bad_fields():
    policy = default_policy("fashion_mnist", (28, 28, 1)).replace(crop_pct=0.9, invert=True)
    stored = json.loads(json.dumps(policy.to_dict()))
    assert stored["steps"] == policy.describe() and stored["max_image_pixels"] == MAX_IMAGE_PIXELS
    assert InputPolicy.from_dict(stored) == policy
    for bad, field in [({"size": [0, 32]}, "size"), ({"size": [32]}, "size"),
                       ({"color_mode": "cmyk"}, "color_mode"), ({"crop_pct": 0}, "crop_pct"),
                       ({"crop_pct": True}, "crop_pct"), ({"interpolation": "magic"}, "interpolation"),
                       ({"background": [0, 0, 256]}, "background"), ({"invert": "yes"}, "invert"),
                       ({"colour": "rgb"}, "unknown"), ({"format_version": 9}, "version")]:
        with pytest.raises(ValueError, match=field):
            InputPolicy.from_dict({**stored, **bad})
    with pytest.raises(ValueError, match="size"):
        InputPolicy.from_dict({"color_mode": "rgb"})
    with pytest.raises(ValueError, match="input_shape"):
        default_policy("cifar10", (None, None, 3))


def test_fuzz_policy_parser_accepts_or_raises_value_error():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-300, 300) | st.floats(allow_nan=True) | st.text(max_size=8)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=8)
    fields = st.sampled_from(["size", "color_mode", "resize", "crop_pct", "interpolation", "background",
                              "exif_transpose", "invert", "expects", "format", "format_version", "other"])

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(st.dictionaries(fields, values, max_size=6))
    def check(changes):
        try:
            policy = InputPolicy.from_dict({**CIFAR.to_dict(), **changes})
        except ValueError:
            return
        assert InputPolicy.from_dict(policy.to_dict()) == policy

    check()


# --------------------------------------------------------------------------- hostile images


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width x height`` with a few bytes of data."""
    return png_bytes(width, height, 8, 2, zlib.compress(b"\x00" * 16))


@pytest.mark.parametrize("width, height", [(20000, 20000), (8001, 8001)])
def test_header_with_too_many_pixels_is_refused_before_decoding(width, height, tmp_path):
    # 20000x20000 trips Pillow's own bomb check, 8001x8001 = 64,016,001 pixels only ours.
    data = bomb_png(width, height)
    start = time.perf_counter()
    with pytest.raises(ImageError, match=str(MAX_IMAGE_PIXELS)) as raised:
        CIFAR(data, "huge.png")
    assert isinstance(raised.value, DataError) and isinstance(raised.value, ValueError)
    assert "huge.png" in str(raised.value) and "before decoding" in str(raised.value)
    assert time.perf_counter() - start < 1.0
    (tmp_path / "pets" / "cat").mkdir(parents=True)
    (tmp_path / "pets" / "dog").mkdir(parents=True)
    (tmp_path / "pets" / "cat" / "huge.png").write_bytes(data)
    (tmp_path / "pets" / "dog" / "ok.png").write_bytes(encoded(Image.new("RGB", (4, 4)), "PNG"))
    with pytest.raises(DataError, match=r"cat/huge.png.*" + str(MAX_IMAGE_PIXELS)):
        image_folder.read_labelled_images(tmp_path / "pets")


def thin_png(width: int, height: int) -> bytes:
    """A valid 8-bit grayscale PNG of zeros, ``width x height``, compressed as a stream (a
    1 x 64,000,000 image is 125 kB, and writing it never holds its 128 MB of rows)."""
    compressor, row = zlib.compressobj(9), b"\x00" * (1 + width)  # filter byte + samples
    parts, left = [], height
    while left:
        rows = min(left, 1 << 16)
        parts.append(compressor.compress(row * rows))
        left -= rows
    return png_bytes(width, height, 8, 0, b"".join(parts) + compressor.flush())


_MEASURE_IN_A_FRESH_PROCESS = """
import resource, sys
from nin_keras.data.input_policy import default_policy
from nin_keras.errors import ImageError
policy = default_policy("cifar10", (32, 32, 3))
policy(sys.argv[2])  # any PNG first: Pillow's plugins are loaded before measuring
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    policy(sys.argv[1])
except ImageError as error:
    print(error)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.parametrize("height", [1_000_000, 64_000_000])
def test_thin_image_is_refused_from_its_header_before_the_resize(height, tmp_path):
    """A 1 x 1,000,000 PNG passed the pixel check, and covering 32x32 made it 32 x 32,000,000:
    6.5 GB and 25 s in predict. 1 x 64,000,000 is exactly MAX_IMAGE_PIXELS."""
    import subprocess
    import sys

    path, small = tmp_path / "thin.png", tmp_path / "small.png"
    path.write_bytes(thin_png(1, height))
    small.write_bytes(encoded(Image.new("RGB", (40, 30)), "PNG"))
    assert path.stat().st_size < 200_000
    run = subprocess.run([sys.executable, "-c", _MEASURE_IN_A_FRESH_PROCESS, str(path), str(small)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    message, grown_kb = run.stdout.strip().splitlines()
    assert f"thin.png: a 1x{height} image would be resized to 32x{32 * height}" in message
    assert str(MAX_IMAGE_PIXELS) in message and "refused before decoding" in message
    assert int(grown_kb) < 50_000  # peak memory (maxrss) grew by under 50 MB


def test_resize_bound_is_exact_and_holds_for_every_source():
    assert CIFAR.resized_size(1, 62_500) == (32, 2_000_000)  # 64,000,000 pixels: the limit itself
    with pytest.raises(ImageError, match=r"edge.png: a 1x62501 image would be resized to 32x2000032"):
        CIFAR(bomb_png(1, 62_501), "edge.png")
    # A PIL.Image has no header: the same bound is checked before its resize.
    with pytest.raises(ImageError, match=r"a 1000000x1 image would be resized to 32000000x32"):
        CIFAR(Image.new("L", (1_000_000, 1)))
    # crop_pct enlarges the cover size; strict mode never resizes, so the bound does not apply.
    CIFAR._check_resize(1, 50_000)  # 32 x 1,600,000 fits
    with pytest.raises(ImageError, match=r"resized to 40x2000000 .*crop_pct 0.8"):
        CIFAR.replace(crop_pct=0.8)(bomb_png(1, 50_000), "thin.png")
    with pytest.raises(ImageError, match="strict mode"):
        CIFAR.replace(resize=False)(bomb_png(1, 1_000_000), "thin.png")
    # With EXIF orientation applied after decoding, a non-square input is checked both ways.
    tall = InputPolicy(size=(64, 2))
    assert tall.resized_size(1, 64) == (2, 128) and tall.resized_size(64, 1) == (4096, 64)
    with pytest.raises(ImageError, match="a 1000000x1 image"):
        tall(bomb_png(1, 1_000_000), "turned.png")
    tall.replace(exif_transpose=False)._check_resize(1, 1_000_000)  # 2 x 2,000,000 fits


def test_thin_image_in_a_folder_stops_eval_and_finetune(tmp_path):
    from nin_keras.train import finetune

    write_folder(tmp_path / "pets")
    (tmp_path / "pets" / "cat" / "thin.png").write_bytes(thin_png(1, 1_000_000))
    words = r"cat/thin.png: a 1x1000000 image would be resized to 32x32000000 .*" + str(MAX_IMAGE_PIXELS)
    with pytest.raises(DataError, match=words):
        image_folder.read_labelled_images(tmp_path / "pets", policy=CIFAR)
    with pytest.raises(DataError, match=words):
        finetune("nin_cifar10", tmp_path / "pets", tmp_path / "out", verbose=0)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.run").exists()
    code, _, err = run_cli("eval", "nin_cifar10", "--data", str(tmp_path / "pets"))
    assert code == 1 and "thin.png: a 1x1000000 image would be resized" in err


def fuzz_seeds() -> list[bytes]:
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, (12, 10, 3), np.uint8)
    image = Image.fromarray(pixels)
    seeds = [encoded(image, fmt) for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")]
    seeds += [encoded(image.convert("RGBA"), "PNG"), encoded(image.convert("L"), "PNG"),
              encoded(image.convert("CMYK"), "JPEG"), png16(rng.integers(0, 65536, (6, 5, 1)).astype(np.uint16))]
    return seeds


def test_fuzz_image_decoder_raises_only_image_errors():
    """Seeded mutations of small files of every allowed format: an image or an ImageError."""
    rng = np.random.default_rng(2024)
    seeds = fuzz_seeds()
    outcomes = {"image": 0, "error": 0}
    start = time.perf_counter()
    for case in range(5000):
        data = bytearray(seeds[case % len(seeds)])
        kind = case % 5
        if kind == 0:  # flip bytes
            for position in rng.integers(0, len(data), rng.integers(1, 8)):
                data[position] = rng.integers(0, 256)
        elif kind == 1:  # truncate
            data = data[: rng.integers(0, len(data))]
        elif kind == 2:  # insert random bytes
            position = int(rng.integers(0, len(data)))
            data[position:position] = rng.integers(0, 256, rng.integers(1, 64), np.uint8).tobytes()
        elif kind == 3:  # overwrite a header field with extreme values
            position = int(rng.integers(0, min(len(data), 64)))
            data[position:position + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"])
        else:  # random bytes behind a real signature
            data = data[:8] + rng.integers(0, 256, rng.integers(0, 200), np.uint8).tobytes()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = CIFAR(bytes(data), f"case{case}")
        except ImageError as error:
            assert f"case{case}" in str(error)
            outcomes["error"] += 1
        else:
            assert out.shape == (32, 32, 3) and out.dtype == np.uint8
            outcomes["image"] += 1
    assert time.perf_counter() - start < 60
    assert outcomes["image"] > 200 and outcomes["error"] > 1000, outcomes
    for junk in (b"", b"\x00", b"GIF89a", b"%!PS-Adobe-3.0 EPSF-3.0\n"):
        with pytest.raises(ImageError, match="not a readable image"):
            decode_image(junk)


# --------------------------------------------------------------------------- class folders


def write_folder(root: Path, classes=("cat", "dog"), per_class=3, sizes=((40, 30), (64, 64), (20, 50))):
    """Random photos of several sizes, ``root/<class>/<i>.png``; returns the files per class."""
    rng = np.random.default_rng(9)
    files = {}
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        files[name] = []
        for i in range(per_class):
            width, height = sizes[i % len(sizes)]
            path = root / name / f"{i}.png"
            Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(path)
            files[name].append(path)
    return files


def test_folder_of_any_size_through_the_policy_as_folder_zip_and_tar(tmp_path):
    import zipfile

    files = write_folder(tmp_path / "pets" / "train")
    write_folder(tmp_path / "pets" / "test", per_class=2)
    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as archive:
        for path in sorted((tmp_path / "pets").rglob("*")):
            archive.write(path, path.relative_to(tmp_path).as_posix())
    with tarfile.open(tmp_path / "pets.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "pets", arcname="pets")
    for root in (tmp_path / "pets", tmp_path / "pets.zip", tmp_path / "pets.tar.gz"):
        found = image_folder.read_labelled_images(root, policy=CIFAR)
        assert found.class_names == ("cat", "dog") and found.has_splits
        images, labels = found.splits["train"]
        assert images.shape == (6, 32, 32, 3) and labels.tolist() == [0, 0, 0, 1, 1, 1]
        np.testing.assert_array_equal(images[4], CIFAR(files["dog"][1]))
        assert found.splits["test"][0].shape == (4, 32, 32, 3)
    # Without a policy the sizes differ, and the error says what to do.
    with pytest.raises(DataError, match="different shapes.*policy"):
        image_folder.read_labelled_images(tmp_path / "pets")


@pytest.mark.filterwarnings("ignore:.*skipped 2 file")
def test_folder_bad_input_names_the_files(tmp_path):
    root = tmp_path / "pets"
    write_folder(root)
    (root / "notes.txt").write_text("not an image")
    (root / "cat" / ".DS_Store").write_bytes(b"\x00\x01")
    with pytest.warns(UserWarning, match=r"skipped 2 file.*notes.txt"):
        found = image_folder.read_labelled_images(root, policy=CIFAR)
    assert sorted(found.skipped) == ["cat/.DS_Store", "notes.txt"] and not found.has_splits
    # Undecodable image files are refused, every one listed with its reason.
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "dog" / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"2 image file\(s\) cannot be decoded") as raised:
        image_folder.read_labelled_images(root, policy=CIFAR)
    assert "cat/broken.jpg" in str(raised.value) and "dog/empty.png" in str(raised.value)
    (root / "cat" / "broken.jpg").unlink()
    (root / "dog" / "empty.png").unlink()
    (root / "bird").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) \['bird'\] hold no images"):
        image_folder.read_labelled_images(root, policy=CIFAR)
    (root / "bird").rmdir()
    with pytest.raises(DataError, match=r"class folders \['dog'\] are not among the classes \['cat', 'horse'\]"):
        image_folder.read_labelled_images(root, ("cat", "horse"), policy=CIFAR)
    single = tmp_path / "single"
    write_folder(single, classes=("cat",))
    with pytest.raises(DataError, match=r"1 class folder\(s\) \['cat'\]; at least 2"):
        image_folder.read_labelled_images(single, policy=CIFAR, min_classes=2)


def test_symlinked_class_folders_and_images_are_followed_and_broken_links_refused(tmp_path):
    """Before: a linked class folder was dropped (three folders, a two-class preset) and a class
    of linked images held "no images". Links are followed wherever they point, in the class-folder
    reader and in predict's folder listing alike; a loop, a link to nothing and a FIFO are refused."""
    photos = write_folder(tmp_path / "photos", classes=("cats", "dogs"))  # outside the data set
    data = tmp_path / "data"
    write_folder(data, classes=("bird",))
    (data / "cat").symlink_to(tmp_path / "photos" / "cats", target_is_directory=True)
    (data / "dog").mkdir()
    for i, original in enumerate(photos["dogs"]):
        (data / "dog" / f"{i}.png").symlink_to(original)
    found = image_folder.read_labelled_images(data, policy=CIFAR)
    assert found.class_names == ("bird", "cat", "dog")
    images, labels = found.splits["train"]
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    np.testing.assert_array_equal(images[4], CIFAR(photos["cats"][1]))
    np.testing.assert_array_equal(images[8], CIFAR(photos["dogs"][2]))
    listed = image_folder.list_image_files([data])
    assert len(listed) == 9 and str(data / "cat" / "0.png") in listed and str(data / "dog" / "2.png") in listed

    def refused(words):
        for read in (lambda: image_folder.read_labelled_images(data, policy=CIFAR),
                     lambda: image_folder.list_image_files([data])):
            with pytest.raises(DataError, match=words):
                read()

    (data / "bird" / "again").symlink_to(data, target_is_directory=True)
    refused(r"bird/again is a link to .*data, a folder it sits in \(a loop\)")
    (data / "bird" / "again").unlink()
    (data / "dog" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    refused(r"dog/gone.png is a symbolic link to .*nowhere.png', which does not exist")
    (data / "dog" / "gone.png").unlink()
    os.mkfifo(data / "dog" / "pipe.png")
    refused(r"dog/pipe.png is a FIFO, not a regular file; refusing to read it")
    assert sorted(p.name for p in (tmp_path / "photos" / "cats").iterdir()) == ["0.png", "1.png", "2.png"]


def test_class_folder_names_that_are_not_utf8_are_refused(tmp_path):
    """A Latin-1 folder name became the class "caf\\udce9", which predict then failed to print."""
    root = tmp_path / "pets"
    write_folder(root, classes=("dog",))
    latin1 = root / os.fsdecode(b"caf\xe9")
    latin1.mkdir()
    (latin1 / "0.png").write_bytes(encoded(Image.new("RGB", (40, 30)), "PNG"))
    with pytest.raises(DataError, match=r"class folder name\(s\) caf\\xe9 are not valid UTF-8"):
        image_folder.read_labelled_images(root, policy=CIFAR)
    archive = tmp_path / "pets.tar"
    with tarfile.open(archive, "w") as tar:  # tarfile keeps the raw bytes (surrogateescape)
        tar.add(root, arcname="pets")
    with pytest.raises(DataError, match=r"caf\\xe9 are not valid UTF-8"):
        image_folder.read_labelled_images(archive, policy=CIFAR)


# --------------------------------------------------------------------------- decoding in worker processes


_SUFFIXES = ("jpg", "jpg", "png", "png", "png", "png", "gif", "bmp")


def mixed_file(array: np.ndarray, kind: int) -> bytes:
    """``array`` (H, W, 3) as the ``kind``-th of: RGB JPEG, CMYK JPEG, grayscale PNG, palette PNG
    with a transparent colour, RGBA PNG, 16-bit RGB PNG, GIF, BMP (suffixes in ``_SUFFIXES``)."""
    image = Image.fromarray(array)
    return [lambda: encoded(image, "JPEG", quality=90),
            lambda: encoded(image.convert("CMYK"), "JPEG", quality=90),
            lambda: encoded(image.convert("L"), "PNG"),
            lambda: encoded(image.convert("P"), "PNG", transparency=0),
            lambda: encoded(Image.fromarray(np.dstack([array, array[..., :1]])), "PNG"),
            lambda: png16(array.astype(np.uint16) * 257 + 100),
            lambda: encoded(image, "GIF"),
            lambda: encoded(image, "BMP")][kind]()


def write_mixed_folder(root: Path, per_class: int = 100) -> list[tuple[str, Path]]:
    """``per_class`` images of random sizes in each of three class folders, in eight modes and
    formats (``mixed_file``), named ``0.jpg`` ... ``99.bmp`` so that the natural order (2 before
    10) is not the order of the names as text. Returns ``(class, path)`` in the order a reader gives."""
    rng = np.random.default_rng(28)
    files = []
    for name in ("cat", "dog", "frog"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            height, width = rng.integers(6, 90, 2)
            path = root / name / f"{i}.{_SUFFIXES[i % 8]}"
            path.write_bytes(mixed_file(rng.integers(0, 256, (height, width, 3), np.uint8), i % 8))
            files.append((name, path))
    return files


def test_worker_processes_decode_byte_for_byte_what_one_process_does_in_order(tmp_path, monkeypatch):
    from nin_keras.data import decode_pool

    files = write_mixed_folder(tmp_path / "mixed")
    assert len(files) > 2 * decode_pool.CHUNK_FILES  # several chunks: they go to the workers
    with tarfile.open(tmp_path / "mixed.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "mixed", arcname="mixed")
    started = []

    class Recorded(decode_pool.ProcessPoolExecutor):
        def __init__(self, workers, mp_context):
            started.append((workers, mp_context.get_start_method()))
            super().__init__(workers, mp_context=mp_context)

    monkeypatch.setattr(decode_pool, "ProcessPoolExecutor", Recorded)
    one = image_folder.read_labelled_images(tmp_path / "mixed", policy=CIFAR, workers=1)
    assert started == []
    # The reference: each file through the policy on its own, in natural order within each class.
    reference = np.stack([CIFAR(path) for _, path in files])
    labels = [("cat", "dog", "frog").index(name) for name, _ in files]
    np.testing.assert_array_equal(one.splits["train"][0], reference)
    for root in (tmp_path / "mixed", tmp_path / "mixed.tar.gz"):
        two = image_folder.read_labelled_images(root, policy=CIFAR, workers=2)
        images = two.splits["train"][0]
        assert images.dtype == np.uint8 and images.shape == (300, 32, 32, 3)
        assert images.tobytes() == one.splits["train"][0].tobytes()
        assert two.splits["train"][1].tolist() == labels and two.class_names == ("cat", "dog", "frog")
    assert started == [(2, "forkserver")] * 2
    # Without a policy (the CIFAR JPEG copy's case) too: each image at its own size.
    same_size = tmp_path / "same_size"
    for name, path in files[::10]:
        (same_size / name).mkdir(parents=True, exist_ok=True)
        (same_size / name / path.name).write_bytes(encoded(Image.open(path).convert("RGB").resize((9, 7)), "PNG"))
    items = [(i, (same_size / name / path.name).read_bytes(), path.name) for i, (name, path) in enumerate(files[::10])]
    monkeypatch.setattr(decode_pool, "CHUNK_FILES", 4)
    decoded = list(decode_pool.decode_files(items, None, workers=2))
    assert [key for key, _ in decoded] == list(range(30))
    np.testing.assert_array_equal(np.stack([image for _, image in decoded]),
                                  np.stack([np.asarray(Image.open(io.BytesIO(data))) for _, data, _ in items]))


def test_an_image_a_worker_cannot_decode_is_named_as_in_one_process(tmp_path):
    from nin_keras.data import decode_pool

    root = tmp_path / "mixed"
    files = write_mixed_folder(root)
    (root / "dog" / "3.png").write_bytes(b"")
    (root / "frog" / "57.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")  # in the last chunk
    messages = {}
    for workers in (1, 2):
        with pytest.raises(DataError, match=r"2 image file\(s\) cannot be decoded") as raised:
            image_folder.read_labelled_images(root, policy=CIFAR, workers=workers)
        # Pillow names the in-memory file by its address, which differs from call to call.
        messages[workers] = re.sub(r" at 0x[0-9a-f]+", "", str(raised.value))
    assert messages[2] == messages[1]
    assert f"{root}:dog/3.png: not a readable image" in messages[2]
    assert f"{root}:frog/57.jpg: not a readable image" in messages[2]
    # decode_files hands each failure back as the ImageError, in its place.
    results = [image for _, image in
               decode_pool.decode_files([(i, path.read_bytes(), str(path)) for i, (_, path) in enumerate(files)],
                                        CIFAR, workers=2)]
    failed = [i for i, image in enumerate(results) if isinstance(image, ImageError)]
    assert failed == [103, 257] and str(results[257]).startswith(str(root / "frog" / "57.jpg"))


@pytest.mark.parametrize("workers", [0, -2, 1.5, True, "2"])
def test_workers_below_one_or_not_whole_are_refused_by_name(workers, tmp_path):
    from nin_keras.train import evaluate_preset, finetune

    write_folder(tmp_path / "pets")
    with pytest.raises(ValueError, match=rf"workers must be an integer >= 1, got {workers!r}"):
        image_folder.read_labelled_images(tmp_path / "pets", policy=CIFAR, workers=workers)
    # Before anything is loaded or written.
    with pytest.raises(ValueError, match="workers must be None or an integer >= 1"):
        finetune("nin_cifar10", tmp_path / "pets", tmp_path / "out", workers=workers)
    with pytest.raises(ValueError, match="workers must be None or an integer >= 1"):
        evaluate_preset("no_such_preset", tmp_path / "pets", workers=workers)
    assert not (tmp_path / "out").exists()


_DECODE_IN_WORKERS = """
import sys
from nin_keras.data.image_folder import read_labelled_images
from nin_keras.data.input_policy import default_policy


def main():
    found = read_labelled_images(sys.argv[1], policy=default_policy("cifar10", (32, 32, 3)), workers=2)
    print(len(found.splits["train"][0]), "tensorflow" in sys.modules, "keras" in sys.modules)


if __name__ == "__main__":
    main()
"""


def test_workers_import_no_tensorflow_and_a_script_without_the_main_guard_is_told(tmp_path):
    """A script's workers import its main module (forkserver, never fork): with the guard they
    decode without TensorFlow or Keras; without it the worker dies and the error says why."""
    import subprocess
    import sys

    write_mixed_folder(tmp_path / "mixed")
    blocked = tmp_path / "blocked" / "tensorflow"  # any import of TensorFlow, in any process, fails
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('TensorFlow was imported')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(blocked.parent), os.environ.get("PYTHONPATH")]))}
    script = tmp_path / "decode.py"
    script.write_text(_DECODE_IN_WORKERS)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "mixed")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["300", "False", "False"]
    script.write_text(_DECODE_IN_WORKERS.replace('if __name__ == "__main__":\n    main()', "main()"))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "mixed")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    assert "DataError: a decoding worker process stopped while decoding 128 file(s)" in done.stderr
    assert f"{tmp_path / 'mixed'}:cat/0.jpg ... " in done.stderr and "__main__':` guard" in done.stderr


def test_predict_prints_file_names_that_are_not_utf8_on_a_strict_stdout(tmp_path):
    import contextlib

    from nin_keras import cli

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.png")).write_bytes(encoded(Image.new("RGB", (40, 30), (200, 30, 30)), "PNG"))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")  # a pipe under a UTF-8 locale
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()) as err:
        code = cli.main(["predict", "nin_cifar10", str(folder)])
    stdout.flush()
    assert code == 0, err.getvalue()
    assert stdout.buffer.getvalue().decode("utf-8").startswith(f"{folder}/caf\\xe9.png: ")


# --------------------------------------------------------------------------- predict on any photo


def run_cli(*args: str) -> tuple[int, str, str]:
    import contextlib

    from nin_keras import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def write_photos(folder: Path) -> dict[str, tuple[Path, bytes]]:
    """One CIFAR-10 test image per mode, blown up to a photo: ``{mode: (file, original JPEG)}``."""
    folder.mkdir(parents=True, exist_ok=True)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse"]
    originals = {name: files[0] for name, files in cifar_jpegs("test", {c: 1 for c in classes}).items()}
    modes = {}

    def save(mode, name, data, suffix):
        path = folder / f"{mode}{suffix}"
        path.write_bytes(data)
        modes[mode] = (path, originals[name])

    save("rgb", "airplane", encoded(photo(originals["airplane"]), "JPEG", quality=92), ".jpg")
    rgba = photo(originals["automobile"], (300, 451)).convert("RGBA")
    alpha = np.full((451, 300), 255, np.uint8)
    alpha[:40], alpha[-40:] = 0, 0  # transparent bands outside the centre crop
    rgba.putalpha(Image.fromarray(alpha))
    save("rgba", "automobile", encoded(rgba, "PNG"), ".png")
    save("grayscale", "bird", encoded(photo(originals["bird"], (96, 96)).convert("L"), "PNG"), ".png")
    gray = np.asarray(photo(originals["cat"], (120, 80)).convert("L")).astype(np.uint16)
    save("gray16", "cat", png16((gray * 257)[..., None]), ".png")
    save("gray8_of_gray16", "cat", encoded(Image.fromarray(gray.astype(np.uint8)), "PNG"), ".png")
    rgb16 = np.asarray(photo(originals["deer"], (64, 48))).astype(np.uint16) * 257
    save("rgb16", "deer", png16(rgb16), ".png")
    save("cmyk", "dog", encoded(photo(originals["dog"]).convert("CMYK"), "JPEG", quality=95), ".jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = photo(originals["frog"]).transpose(Image.Transpose.ROTATE_90)
    save("exif_rotated", "frog", encoded(turned, "JPEG", quality=95, exif=exif), ".jpg")
    save("exact_size", "horse", originals["horse"], ".jpg")
    return modes


@pytest.fixture(scope="module")
def photo_exports(tmp_path_factory):
    """The photos, and nin_cifar10 exported to all three formats, parity-checked on the photos'
    policy outputs (no data set is read)."""
    from nin_keras.export import export

    root = tmp_path_factory.mktemp("photos")
    modes = write_photos(root / "photos")
    policy = default_policy("cifar10", (32, 32, 3))
    raw = np.stack([policy(path) for path, _ in modes.values()])
    paths = export("nin_cifar10", ("savedmodel", "tflite", "onnx"), root / "exported",
                   parity_data=(raw, None))
    return modes, paths, raw


def predictions(code_out_err) -> dict:
    code, out, err = code_out_err
    assert code == 0, err
    return json.loads(out)


def test_predict_any_photo_gives_one_top1_on_zoo_name_preset_folder_and_every_export(photo_exports, tmp_path):
    from nin_keras.zoo import load_preset

    modes, paths, raw = photo_exports
    folder = str(next(iter(modes.values()))[0].parent)
    by_zoo = predictions(run_cli("predict", "nin_cifar10", folder, "--json", "--top-k", "3"))
    assert by_zoo["format"] == "preset" and by_zoo["runtime"] == "keras"
    assert by_zoo["input_policy"] == CIFAR.to_dict()
    images = [entry["image"] for entry in by_zoo["predictions"]]
    assert sorted(Path(i).stem for i in images) == sorted(modes)
    top1 = [entry["top_k"][0]["label"] for entry in by_zoo["predictions"]]
    # Same network, its policy applied here by hand: the same probabilities.
    keras_model = load_preset("nin_cifar10").inference_model("float32")
    by_hand = np.asarray(keras_model(np.stack([CIFAR(i) for i in images]).astype(np.float32)))
    reported = np.array([entry["top_k"][0]["probability"] for entry in by_zoo["predictions"]])
    np.testing.assert_allclose(by_hand.max(1), reported, atol=1e-5)
    preset_folder = str(load_preset("nin_cifar10").path)  # the bundled folder of the default tag
    runs = [("preset folder", (preset_folder,)), ("savedmodel", (str(paths["savedmodel"]),)),
            ("tflite", (str(paths["tflite"]),)), ("onnx", (str(paths["onnx"]),)),
            ("openvino", (str(paths["onnx"]), "--runtime", "openvino"))]
    for what, model in runs:
        result = predictions(run_cli("predict", *model, *images, "--json"))
        assert [entry["top_k"][0]["label"] for entry in result["predictions"]] == top1, what
        assert result["input_policy"]["steps"] == CIFAR.describe(), what
    # The 16-bit PNG is its 8-bit copy, not a saturated white picture.
    by_mode = {Path(entry["image"]).stem: entry["top_k"] for entry in by_zoo["predictions"]}
    assert by_mode["gray16"] == by_mode["gray8_of_gray16"]
    # Blown up and brought back by the policy, most photos keep the 32x32 original's answer.
    originals = np.stack([np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for _, data in modes.values()])
    original_top1 = np.asarray(keras_model(originals.astype(np.float32))).argmax(1)
    agree = np.mean(original_top1 == np.asarray(keras_model(raw.astype(np.float32))).argmax(1))
    assert agree > 0.5, agree  # 6 of 9 for nin_cifar10.modern, 7 of 9 for the Caffe weights


def test_exports_record_the_policy_and_strict_mode_keeps_the_old_error(photo_exports, tmp_path):
    import shutil

    from nin_keras.deploy import Predictor
    from nin_keras.export.metadata import metadata_path

    modes, paths, _ = photo_exports
    info = json.loads(metadata_path(paths["tflite"]).read_text())
    assert InputPolicy.from_dict(info["input_policy"]) == CIFAR
    assert any("Center-crop 32x32" in step for step in info["input_policy"]["steps"])
    rgb = str(modes["rgb"][0])
    code, _, err = run_cli("predict", str(paths["onnx"]), rgb, "--no-resize")
    assert code == 1 and "451x300, the model takes 32x32" in err
    assert run_cli("predict", str(paths["onnx"]), str(modes["exact_size"][0]), "--no-resize")[0] == 0
    # An artifact whose metadata predates policies gets its data set's default.
    old = tmp_path / paths["onnx"].name
    shutil.copy(paths["onnx"], old)
    metadata_path(old).write_text(json.dumps({k: v for k, v in info.items() if k != "input_policy"}))
    assert Predictor(old).input_policy == CIFAR
    assert Predictor(old).classify([rgb])[0][0][0] == Predictor(paths["onnx"]).classify([rgb])[0][0][0]
    # Hostile files through predict: the bomb header and a glob matching nothing.
    (tmp_path / "huge.png").write_bytes(bomb_png(20000, 20000))
    code, _, err = run_cli("predict", "nin_cifar10", str(tmp_path / "huge.png"))
    assert code == 1 and "huge.png" in err and str(MAX_IMAGE_PIXELS) in err
    code, _, err = run_cli("predict", "nin_cifar10", str(tmp_path / "none*.jpg"))
    assert code == 1 and "matches no file" in err


# --------------------------------------------------------------------------- eval on any folder


def test_eval_on_a_folder_of_photos_and_class_mismatch(tmp_path):
    import zipfile

    from nin_keras.zoo import load_preset

    chosen = cifar_jpegs("test", {"cat": 4, "ship": 4, "truck": 4})
    for name, files in chosen.items():
        (tmp_path / "photos" / "test" / name).mkdir(parents=True)
        for i, data in enumerate(files):
            photo(data, (96 + 8 * i, 72)).save(tmp_path / "photos" / "test" / name / f"{i}.jpg", quality=92)
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as archive:
        for path in sorted((tmp_path / "photos").rglob("*.jpg")):
            archive.write(path, path.relative_to(tmp_path).as_posix())
    model = load_preset("nin_cifar10").inference_model("float32")
    names = list(load_preset("nin_cifar10").class_names)
    files = sorted((tmp_path / "photos" / "test").rglob("*.jpg"))
    labels = np.array([names.index(f.parent.name) for f in files])
    inputs = np.stack([CIFAR(f) for f in files]).astype(np.float32)
    expected = float(np.mean(np.asarray(model(inputs)).argmax(1) == labels))
    for data in (tmp_path / "photos", tmp_path / "photos.zip"):
        result = predictions(run_cli("eval", "nin_cifar10", "--data", str(data), "--json"))
        assert result["examples"] == 12 and result["split"] == "test"
        assert result["accuracy"] == pytest.approx(expected)
        assert result["input_policy"]["size"] == [32, 32]
    # Per class: the matrix covers the preset's ten classes, the table only the folder's three.
    result = predictions(run_cli("eval", "nin_cifar10", "--data", str(tmp_path / "photos"), "--per-class", "--json"))
    predicted = np.asarray(model(inputs)).argmax(1)
    assert result["class_names"] == names
    for label, row in enumerate(result["confusion"]):
        assert row == np.bincount(predicted[labels == label], minlength=10).tolist()
    code, out, _ = run_cli("eval", "nin_cifar10", "--data", str(tmp_path / "photos"), "--per-class")
    table = out.split("most often taken for\n")[1].splitlines()
    assert code == 0 and [line.split()[0] for line in table] == ["cat", "ship", "truck"]
    (tmp_path / "photos" / "test" / "ship").rename(tmp_path / "photos" / "test" / "boats")
    code, _, err = run_cli("eval", "nin_cifar10", "--data", str(tmp_path / "photos"))
    assert code == 1 and "['boats']" in err and "'airplane', 'automobile'" in err
    code, _, err = run_cli("eval", "nin_cifar10", "--data", str(tmp_path / "nowhere"))
    assert code == 1 and "neither a data set name" in err


# --------------------------------------------------------------------------- fine-tune on a folder


def write_class_folder(root: Path, per_class: dict[str, tuple[int, int]], seed: int = 0) -> Path:
    """``root/{train,test}/<class>/<n>.jpg``: CIFAR-10 (JPEG copy) images blown up to random photo
    sizes (40-110 pixels a side, not square), ``per_class[name] = (train count, test count)``."""
    rng = np.random.default_rng(seed)
    for split, index in (("train", 0), ("test", 1)):
        chosen = cifar_jpegs(split, {name: counts[index] for name, counts in per_class.items()})
        for name, files in chosen.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i, data in enumerate(files):
                size = tuple(int(v) for v in rng.integers(40, 111, 2))
                photo(data, size).save(root / split / name / f"{i}.jpg", quality=90)
    return root


def layer_weights(preset, name: str) -> list[np.ndarray]:
    return [np.asarray(w) for w in preset.model.get_layer(name).weights]


@pytest.mark.filterwarnings("ignore:.*skipped 1 file")
def test_finetune_freezes_checkpoints_resumes_and_its_preset_exports_and_predicts(tmp_path):
    from nin_keras.export.metadata import metadata_path
    from nin_keras.zoo import load_preset

    data = write_class_folder(tmp_path / "pets", {"cat": (12, 3), "ship": (12, 3)})
    (data / "train" / "README.txt").write_text("two classes")
    out, run = tmp_path / "pets_nin", tmp_path / "pets_nin.run"
    command = ["finetune", "nin_cifar10", str(data), "--out", str(out), "--epochs", "2", "--batch-size", "8",
               "--freeze-body-epochs", "1", "--min-steps", "0", "--head", "random", "--quiet"]
    code, printed, err = run_cli(*command, "--max-steps", "2")
    assert code == 0, err
    assert "classes: cat, ship" in printed and (run / "checkpoint.npz").is_file()
    first = load_preset(out)
    source = load_preset("nin_cifar10")
    # Epoch 1 trained the classifier only: the body is the pretrained one, bit for bit.
    for name in ("mlpconv1", "mlpconv2"):
        for got, expected in zip(layer_weights(first, name), layer_weights(source, name)):
            np.testing.assert_array_equal(got, expected)
    assert [w.shape for w in layer_weights(first, "mlpconv3")][-2:] == [(1, 1, 192, 2), (2,)]
    assert first.class_names == ["cat", "ship"] and first.metadata["dataset"] == "image_folder:pets"
    assert InputPolicy.from_dict(first.metadata["input_policy"]) == CIFAR
    assert first.metadata["evaluated_on"].endswith("test split") and first.metadata["metrics"]["test_examples"] == 6
    # The same command again resumes into epoch 2, where the body trains too.
    code, _, err = run_cli(*command)
    assert code == 0, err
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2] and all("val_accuracy" in row for row in history)
    second = load_preset(out)
    assert not np.array_equal(layer_weights(second, "mlpconv1")[0], layer_weights(source, "mlpconv1")[0])
    # A normal preset: eval on the folder, export, predict with the folder's class names.
    result = predictions(run_cli("eval", str(out), "--data", str(data), "--json"))
    assert result["examples"] == 6 and result["class_names"] == ["cat", "ship"]
    code, _, err = run_cli("eval", str(out))
    assert code == 1 and "fine-tuned on" in err
    code, _, err = run_cli("export", str(out), "--formats", "onnx", "--out", str(tmp_path / "exported"),
                           "--parity-samples", "4")
    assert code == 0, err
    onnx = next((tmp_path / "exported").glob("*.onnx"))
    assert json.loads(metadata_path(onnx).read_text())["class_names"] == ["cat", "ship"]
    test_files = sorted((data / "test").rglob("*.jpg"))
    by_onnx = predictions(run_cli("predict", str(onnx), *map(str, test_files), "--json"))
    by_keras = predictions(run_cli("predict", str(out), *map(str, test_files), "--json"))
    assert [p["top_k"][0]["label"] for p in by_onnx["predictions"]] == \
        [p["top_k"][0]["label"] for p in by_keras["predictions"]]
    assert {p["top_k"][0]["label"] for p in by_onnx["predictions"]} <= {"cat", "ship"}


def test_finetune_refuses_bad_folders_and_writes_nothing(tmp_path):
    from nin_keras.train import finetune

    single = tmp_path / "single"
    write_folder(single, classes=("cat",))
    with pytest.raises(DataError, match=r"1 class folder\(s\) \['cat'\]; at least 2"):
        finetune("nin_cifar10", single, tmp_path / "out", verbose=0)
    thin = tmp_path / "thin"
    write_folder(thin, classes=("cat", "dog"))
    (thin / "dog" / "1.png").unlink()
    (thin / "dog" / "2.png").unlink()
    with pytest.raises(DataError, match=r"\['dog'\] have fewer than two training images"):
        finetune("nin_cifar10", thin, tmp_path / "out", verbose=0)
    with pytest.raises(ValueError, match="whitening"):
        finetune("nin_cifar10", thin, tmp_path / "out", whitening="sometimes", verbose=0)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.run").exists()


@pytest.mark.slow
def test_finetune_from_nin_cifar10_beats_random_init_on_the_same_budget(tmp_path):
    """Three classes, 300 training photos each (10% held out for validation), 100 test photos
    each, all blown up to random sizes; two epochs of batch 32 from the pretrained body and from
    random weights, same data order, augmentation and schedule."""
    from nin_keras.train import finetune

    data = write_class_folder(tmp_path / "three", {"bird": (300, 100), "dog": (300, 100), "truck": (300, 100)})
    results = {}
    for pretrained in (True, False):
        start = time.perf_counter()
        # min_steps=0: exactly the two epochs; the random network gets a random classifier too.
        result = finetune("nin_cifar10", data, tmp_path / f"out_{pretrained}", epochs=2, batch_size=32,
                          learning_rate=0.01, pretrained=pretrained, head="fit" if pretrained else "random",
                          min_steps=0, verbose=0)
        results[pretrained] = (result.test_metrics["accuracy"], time.perf_counter() - start)
    print(f"fine-tuned: {results[True]}, from scratch: {results[False]}")
    # Measured here: 81.0% fine-tuned, 33.3% (chance) from random weights.
    assert results[True][0] >= 0.75, results
    assert results[False][0] <= 0.5, results


def test_zip_member_declaring_too_many_bytes_is_refused(tmp_path, monkeypatch):
    import zipfile

    from nin_keras.data import archive as archives
    from nin_keras.data.archive import MAX_ZIP_MEMBER_BYTES

    # The archive's total limit (32x its size) would refuse it first; this is the large archive's case.
    monkeypatch.setattr(archives, "MIN_EXPANDED_BYTES", 1 << 30)
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cat/0.png", encoded(Image.new("RGB", (4, 4)), "PNG"))
        archive.writestr("dog/0.png", encoded(Image.new("RGB", (4, 4)), "PNG"))
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")  # first central directory entry: its uncompressed size at +24
    data[central + 24:central + 28] = struct.pack("<I", MAX_ZIP_MEMBER_BYTES + 1)
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"'cat/0.png' declares \d+ bytes.*refused"):
        image_folder.read_labelled_images(path, policy=CIFAR)
