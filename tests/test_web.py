"""Tests for the web export (nin_keras.export.web) and ``nin-keras serve``, in a real browser.

Debian's Chromium runs headless under its own ChromeDriver (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; scripts/setup.sh --test installs both with apt, and the pinned
onnxruntime-web with npm), driven by Selenium. The page is served from a loopback server
(``nin_keras.serve``) and fed photos written here from real MNIST and CIFAR-10 test images, in
several sizes, aspect ratios, formats and modes. Its top classes and probabilities are compared
with ``Predictor`` on the same ``model.onnx``, and its JavaScript input policy with the Python
one (``InputPolicy``) pixel by pixel.

Where Chromium, its driver, Selenium or the runtime package are missing, every test here skips
and says which one (scripts/setup.sh --test installs them; the skip reason names the command).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from nin_keras.errors import ExportError  # noqa: E402
from nin_keras.deploy import Predictor  # noqa: E402
from nin_keras.export import export, samples, web  # noqa: E402
from nin_keras.export.metadata import artifact_digest, read_metadata  # noqa: E402
from nin_keras.export.parity import ParityTolerance  # noqa: E402
from nin_keras.data.input_policy import InputPolicy  # noqa: E402
from nin_keras.serve import make_server, url_of  # noqa: E402
from nin_keras.zoo import registry  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: Chromium started as the machine allows: root needs --no-sandbox; the background-networking
#: flags keep it from calling out (there is no network here, and the page needs none).
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=900,760")
#: JS-vs-Python input policy bound, in uint8 levels. The page reimplements Pillow's resampling
#: in the same fixed point, so the resize adds no difference; what may differ is decoding, which
#: the browser does. Measured with Debian's Chromium 156 and Pillow 13 on every file and policy
#: here: 0 levels, JPEGs included (both decode with libjpeg-turbo's default IDCT and chroma
#: upsampling), except semi-transparent pixels over a coloured background: 1 level (the canvas
#: composites in premultiplied 8 bits, Pillow's alpha_composite rounds its own way). JPEG_LEVELS
#: leaves room for a libjpeg build that rounds its IDCT differently.
ALPHA_LEVELS = 1
JPEG_LEVELS = 2
#: float32 model in the browser (ONNX Runtime Web, wasm) vs ONNX Runtime on this CPU, on the
#: same input pixels: the acceptance bound of the issue.
FLOAT_ATOL = 1e-3


def _missing() -> str | None:
    why = []
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            why.append(f"{path} (apt-get install {package})")
    try:
        import selenium  # noqa: F401
    except ImportError:
        why.append("selenium (pip install -e .[dev])")
    try:
        web.find_runtime()
    except ExportError as err:
        why.append(str(err))
    return "; ".join(why) or None


MISSING = _missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"no headless browser test: missing {MISSING}; "
                                                            "scripts/setup.sh --test installs them")


# --------------------------------------------------------------------------- browser and server


@contextmanager
def chromium():
    """Headless Chromium under Selenium (tests/test_packaging.py drives an installed wheel's page with it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver path is given: Selenium Manager would otherwise try to download one.
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_script_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def driver():
    with chromium() as browser:
        yield browser


@contextmanager
def serving(folder: Path):
    server = make_server(folder, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url_of(server)
    finally:
        server.shutdown()
        server.server_close()


def wait_state(driver, states: tuple[str, ...], timeout: float = 90) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script("return document.documentElement.dataset.state") in states)
    return driver.execute_script("return document.documentElement.dataset.state")


def open_page(driver, url: str) -> str:
    driver.get(url)
    return wait_state(driver, ("ready", "error"))


def choose(driver, path: Path) -> dict:
    """Pick ``path`` in the page's file input; the page's ``window.ninWeb.last`` after the run."""
    picker = driver.find_element("id", "file")
    driver.execute_script("arguments[0].value = ''; document.documentElement.dataset.state = 'ready'", picker)
    picker.send_keys(str(path))
    wait_state(driver, ("done", "error"))
    return driver.execute_script("return window.ninWeb.last")


def message(driver) -> str:
    return driver.find_element("id", "message").text


def console_errors(driver) -> list[dict]:
    """Uncaught exceptions and other script errors logged since the last call (network 404s of
    files a test removed are not script errors)."""
    return [entry for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and entry.get("source") != "network"
            or "Uncaught" in entry["message"]]


def js_policy(driver, data: bytes, policy: dict, max_file_bytes: int = web.MAX_FILE_BYTES) -> dict:
    """The page's JavaScript input policy applied to a file's bytes."""
    return driver.execute_async_script("""
        const [b64, policy, limit, done] = arguments;
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        window.ninWeb.inputPolicy.applyPolicy(new Blob([bytes]), policy, limit).then(
            (r) => done({pixels: Array.from(r.pixels), shape: [r.height, r.width, r.channels]}),
            (e) => done({error: e.name + ": " + e.message}));
    """, base64.b64encode(data).decode(), policy, max_file_bytes)


# --------------------------------------------------------------------------- exports and photos


@pytest.fixture(scope="module")
def mnist_web(tmp_path_factory) -> Path:
    """The pretrained NIN MNIST preset as a float32 web folder."""
    if not registry.get_model_entry("nin_mnist").pretrained:
        pytest.skip("no published weights for nin_mnist in this checkout")
    out = tmp_path_factory.mktemp("web")
    return export("nin_mnist", ("web",), out, parity_samples=64)["web"]


def real(dataset: str, count: int, shape) -> np.ndarray:
    images, labels, described = samples.parity_images(dataset, count, shape)
    if labels is None:
        pytest.skip(f"no local copy of {dataset}: {described}")
    return images


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def digit_photos() -> dict[str, bytes]:
    """MNIST test digits as the files a person might pick: other sizes and aspect ratios,
    RGB, grayscale with alpha, RGBA, palette, EXIF-rotated, 16-bit, every format the page reads."""
    digits = real("mnist", 8, (28, 28, 1))[..., 0]
    pil = [Image.fromarray(d) for d in digits]
    tall = pil[0].resize((200, 300), Image.Resampling.BICUBIC)
    alpha = Image.merge("LA", [Image.new("L", (120, 120), 255), pil[1].resize((120, 120))])
    rgba = pil[2].resize((64, 40)).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.linspace(60, 255, 64 * 40).reshape(40, 64).astype(np.uint8)))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated 90 degrees; the viewer (and both policies) turn it back
    wide16 = Image.fromarray((np.asarray(pil[5].resize((90, 45)), np.uint16) * 257 + 128).astype(np.uint16))
    return {
        "tall_300x200.png": encode(tall, "PNG"),
        "rgb_131x97.jpg": encode(pil[3].resize((131, 97)).convert("RGB"), "JPEG", quality=92),
        "alpha_la_120.png": encode(alpha, "PNG"),
        "rgba_64x40.png": encode(rgba, "PNG"),
        "exif_rotated.jpg": encode(pil[4].resize((60, 80)).transpose(Image.Transpose.ROTATE_90), "JPEG",
                                   quality=95, exif=exif.tobytes()),
        "sixteen_bit_90x45.png": encode(wide16, "PNG"),
        "palette_20x20.gif": encode(pil[6].resize((20, 20)).convert("P"), "GIF"),
        "small_50x70.bmp": encode(pil[7].resize((50, 70)), "BMP"),
        "lossless_64.webp": encode(pil[0].resize((64, 64)).convert("RGB"), "WEBP", lossless=True),
    }


def cifar_photos() -> dict[str, bytes]:
    """CIFAR-10 test images upscaled into photos of other sizes, one grayscale, one with alpha."""
    images = real("cifar10", 4, (32, 32, 3))
    pil = [Image.fromarray(i) for i in images]
    rgba = pil[2].resize((150, 100), Image.Resampling.BICUBIC).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.linspace(0, 255, 150 * 100).reshape(100, 150).astype(np.uint8)))
    return {
        "cifar_640x480.jpg": encode(pil[0].resize((640, 480), Image.Resampling.BICUBIC), "JPEG", quality=90),
        "cifar_gray_77x120.png": encode(pil[1].resize((77, 120)).convert("L"), "PNG"),
        "cifar_alpha_150x100.png": encode(rgba, "PNG"),
        "cifar_256.png": encode(pil[3].resize((256, 256), Image.Resampling.LANCZOS), "PNG"),
    }


def bound(name: str) -> int:
    """The JS-vs-Python pixel bound of a file (see ALPHA_LEVELS and JPEG_LEVELS)."""
    if name.endswith(".jpg"):
        return JPEG_LEVELS
    return ALPHA_LEVELS if "alpha" in name or "rgba" in name else 0


def write(folder: Path, photos: dict[str, bytes]) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    paths = {}
    for name, data in photos.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def overlay_stats(driver) -> dict:
    """Spread of the overlay canvas's pixels, and how many are coloured (the map's colours; the
    input under it is gray for MNIST)."""
    return driver.execute_script("""
        const c = document.getElementById('overlay');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let sum = 0, sq = 0, coloured = 0, n = d.length / 4;
        for (let i = 0; i < d.length; i += 4) {
            const v = (d[i] + d[i + 1] + d[i + 2]) / 3;
            sum += v; sq += v * v;
            if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 40) coloured++;
        }
        return {std: Math.sqrt(sq / n - (sum / n) ** 2), coloured: coloured / n};
    """)


# --------------------------------------------------------------------------- the export itself


def test_web_folder_holds_page_model_runtime_and_metadata(mnist_web):
    runtime = web.find_runtime()
    pinned = json.loads((REPO / "web" / "package.json").read_text())["dependencies"][web.PACKAGE]
    assert runtime["version"] == pinned and runtime["license"] == "MIT"
    names = sorted(p.relative_to(mnist_web).as_posix() for p in mnist_web.rglob("*") if p.is_file())
    assert names == sorted([*web.PAGE_FILES, web.MODEL_FILE, web.METADATA_FILE, "ort/LICENSE.txt",
                            *(f"ort/{n}" for n in web.RUNTIME_FILES)])
    for name in web.RUNTIME_FILES:  # copied unchanged from the npm package
        assert (mnist_web / "ort" / name).read_bytes() == (runtime["dist"] / name).read_bytes()
    notice = (mnist_web / "ort" / "LICENSE.txt").read_text()
    assert f"onnxruntime-web {pinned}" in notice and "MIT License" in notice
    html = (mnist_web / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # nothing fetched from elsewhere

    outer = read_metadata(mnist_web)
    inner = read_metadata(mnist_web / web.MODEL_FILE)
    assert outer["format"] == "web" and inner["format"] == "onnx"
    assert outer["sha256"] == artifact_digest(mnist_web)["sha256"]
    assert inner["sha256"] == artifact_digest(mnist_web / web.MODEL_FILE)["sha256"]
    for info in (outer, inner):
        assert info["parity"]["passed"] and info["parity"]["max_abs_diff"] <= 1e-4
        assert info["quantization"]["mode"] is None  # no ConvWhitening: float32
        assert info["web"]["runtime"] == {"package": "onnxruntime-web", "version": pinned, "license": "MIT",
                                          "script": "ort/ort.webgpu.min.mjs", "license_file": "ort/LICENSE.txt"}
        assert info["web"]["confidence_maps"]["shape"] == [None, 7, 7, 10]
        assert info["web"]["confidence_maps"]["head_max_abs_diff"] <= 1e-5

    import onnx
    graph = onnx.load(mnist_web / web.MODEL_FILE).graph
    assert sorted(o.name for o in graph.output) == ["confidence_maps", "probabilities"]


def test_web_export_refuses_what_it_cannot_make(mnist_web, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="include_preprocessing"):
        export("nin_mnist", ("web",), tmp_path, include_preprocessing=False)
    with pytest.raises(ValueError, match="float16"):
        export("nin_mnist", ("web",), tmp_path, quantize="float16")
    (tmp_path / "nin_mnist.web").mkdir()
    (tmp_path / "nin_mnist.web" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not a web export folder"):
        export("nin_mnist", ("web",), tmp_path, parity_samples=8)
    assert (tmp_path / "nin_mnist.web" / "notes.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="EXIF"):
        web.check_policy(InputPolicy(size=(28, 28), exif_transpose=False).to_dict())
    with pytest.raises(ExportError, match="fixed-size"):
        web.check_policy(None)
    # Without the runtime: refused before any conversion, saying how to install it.
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "package.json").write_text(json.dumps({"dependencies": {"onnxruntime-web": "1.31.1"}}))
    monkeypatch.setenv(web.RUNTIME_ENV, str(tmp_path / "runtime"))
    with pytest.raises(ExportError, match="not installed.*npm ci"):
        export("nin_mnist", ("web",), tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_cli_serve_binds_loopback_serves_wasm_and_stops_on_a_signal(mnist_web, stop_signal):
    """Ctrl-C stops it even when started with SIGINT ignored, as a shell starts a background job
    (the suite itself, run in the background, once hung here); SIGTERM stops it too."""
    process = subprocess.Popen([sys.executable, "-m", "nin_keras.cli", "serve", str(mnist_web), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        line = process.stdout.readline()
        assert "http://127.0.0.1:" in line and "Ctrl-C" in line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url) as response:
            assert b"app.js" in response.read()
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        # Read the headers only and hang up mid-download, as a browser leaving the page does.
        with urllib.request.urlopen(url + "ort/ort-wasm-simd-threaded.asyncify.wasm") as response:
            assert response.headers["Content-Type"] == "application/wasm"
        time.sleep(0.5)  # the request thread meets the closed connection
    finally:
        process.send_signal(stop_signal)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"serve did not stop on {stop_signal.name}; its stderr:\n{err[-3000:]}")
    assert process.returncode == 0 and "stopped" in out
    assert "Traceback" not in err and "GET /ort/ort-wasm" in err  # logged, not reported as a fault
    from nin_keras import cli
    handlers = [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)]
    assert cli.main(["serve", str(mnist_web.parent)]) == 1  # not a web folder: one-line error
    assert [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)] == handlers


# --------------------------------------------------------------------------- in the browser


def test_page_matches_predictor_on_photos_of_any_size(driver, mnist_web, tmp_path):
    predictor = Predictor(mnist_web / web.MODEL_FILE)
    photos = write(tmp_path / "photos", digit_photos())
    with serving(mnist_web) as url:
        assert open_page(driver, url) == "ready", message(driver)
        assert "wasm" in driver.find_element("id", "backend").text
        worst_pixels, worst_probability = {}, 0.0
        for name, path in photos.items():
            last = choose(driver, path)
            assert "error" not in last, (name, last)
            expected_pixels = predictor.input_policy(path)
            page_pixels = np.asarray(last["input"], np.int16).reshape(last["inputShape"])
            worst_pixels[name] = int(np.abs(page_pixels - expected_pixels).max())
            assert worst_pixels[name] <= bound(name), (name, worst_pixels[name])
            page = np.asarray(last["probabilities"])
            # The runtime alone: the page's own input pixels through Predictor.
            same_input = predictor.predict_proba(page_pixels.astype(np.uint8))[0]
            assert np.abs(page - same_input).max() <= FLOAT_ATOL, name
            # End to end, file to answer.
            from_file = predictor.predict_proba(str(path))[0]
            assert last["top"][0]["label"] == predictor.class_names[int(from_file.argmax())], name
            if bound(name) == 0:
                assert np.abs(page - from_file).max() <= FLOAT_ATOL, name
            worst_probability = max(worst_probability, float(np.abs(page - same_input).max()))
            assert [t["label"] for t in last["top"]] == [n for n, _ in predictor.classify(page_pixels.astype(np.uint8))[0]]
            assert last["mapsShape"] == [1, 7, 7, 10] and last["backend"] == "wasm"
            stats = overlay_stats(driver)
            assert stats["std"] > 5 and stats["coloured"] > 0.2, (name, stats)
        driver.save_screenshot(str(tmp_path / "web_page.png"))
        assert console_errors(driver) == []
    assert (tmp_path / "web_page.png").stat().st_size > 10_000
    print(f"JS-vs-Python input pixels, max |Δ| per file: {worst_pixels}; "
          f"browser-vs-Predictor max |Δprobability| {worst_probability:.2g}")


@pytest.mark.parametrize("policy", [
    dict(size=(32, 32), color_mode="rgb", interpolation="bicubic", background=(255, 255, 255)),
    dict(size=(24, 40), color_mode="rgb", interpolation="bilinear", crop_pct=0.875, background=(0, 128, 255)),
    dict(size=(28, 28), color_mode="grayscale", interpolation="lanczos", invert=True),
    dict(size=(30, 30), color_mode="rgb", interpolation="hamming", crop_pct=0.6),
    dict(size=(16, 20), color_mode="grayscale", interpolation="box", background=(0, 0, 0)),
    dict(size=(32, 32), color_mode="rgb", interpolation="nearest"),
], ids=["cifar-bicubic", "crop-bilinear", "gray-lanczos-invert", "hamming", "gray-box", "nearest"])
def test_javascript_input_policy_matches_python(driver, mnist_web, policy):
    policy = InputPolicy(**policy)
    photos = {**cifar_photos(), **{k: v for k, v in digit_photos().items() if "exif" in k or "gif" in k}}
    with serving(mnist_web) as url:
        assert open_page(driver, url) == "ready", message(driver)
        measured = {}
        for name, data in photos.items():
            result = js_policy(driver, data, policy.to_dict())
            assert "error" not in result, (name, result)
            expected = policy(data)
            got = np.asarray(result["pixels"], np.int16).reshape(result["shape"])
            assert got.shape == expected.shape, name
            measured[name] = int(np.abs(got - expected).max())
            assert measured[name] <= bound(name), (name, measured[name])
        print(f"{policy.interpolation}: JS-vs-Python max |Δ| per file {measured}")
        # Strict mode refuses other sizes, as the Python policy does.
        strict = policy.replace(resize=False).to_dict()
        assert "does not resize" in js_policy(driver, photos["cifar_256.png"], strict)["error"]
        assert console_errors(driver) == []


def test_bad_files_get_a_readable_message(driver, mnist_web, tmp_path):
    huge = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    huge[16:24] = (20000).to_bytes(4, "big") * 2  # the header now claims 20000 x 20000
    thin = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    thin[16:24] = (1).to_bytes(4, "big") + (1_000_000).to_bytes(4, "big")  # a 1 x 1,000,000 header
    good = encode(Image.new("L", (40, 40), 200), "PNG")
    files = write(tmp_path / "bad", {
        "thin_1x1000000.png": bytes(thin),
        "notes.txt": b"these are not the pixels you are looking for\n" * 10,
        "scan.tif": encode(Image.new("RGB", (10, 10)), "TIFF"),
        "claims_20000x20000.png": bytes(huge),
        "truncated.png": good[:60],
        "empty.png": b"",
        "fine.png": good,
    })
    expected = {"notes.txt": "not an image this page reads", "scan.tif": "TIFF images are not decoded",
                "claims_20000x20000.png": "20000x20000 = 400000000 pixels, more than the limit of 64000000; refused before decoding",
                "thin_1x1000000.png": "would be resized to 28x28000000 = 784000000 pixels, more than the limit of "
                                      "64000000; refused before decoding",
                "truncated.png": "corrupt or truncated PNG", "empty.png": "the file is empty"}
    with serving(mnist_web) as url:
        assert open_page(driver, url) == "ready", message(driver)
        for name, words in expected.items():
            last = choose(driver, files[name])
            assert words in last["error"], (name, last)
            shown = message(driver)
            assert shown.startswith("This image cannot be used:") and words in shown, (name, shown)
            assert driver.find_element("id", "title").text.startswith("nin_mnist")  # the page is still there
        last = choose(driver, files["fine.png"])  # and it still works
        assert "error" not in last and not driver.find_element("id", "message").is_displayed()
        assert console_errors(driver) == []


def test_file_size_limit_and_incomplete_folders(driver, mnist_web, tmp_path):
    small_limit = tmp_path / "small_limit"
    shutil.copytree(mnist_web, small_limit)
    info = json.loads((small_limit / web.METADATA_FILE).read_text())
    info["web"]["max_file_bytes"] = 1000
    (small_limit / web.METADATA_FILE).write_text(json.dumps(info))
    photo = write(tmp_path / "photo", {"big.png": encode(Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)), "PNG")})["big.png"]
    with serving(small_limit) as url:
        assert open_page(driver, url) == "ready", message(driver)
        last = choose(driver, photo)
        assert "more than this page's limit of 0.0 MiB; refused before reading it" in last["error"]
        assert console_errors(driver) == []
    for removed, words in ((f"ort/{web.RUNTIME_FILES[2]}", f"ort/{web.RUNTIME_FILES[2]} missing"),
                           (web.MODEL_FILE, f"{web.MODEL_FILE} missing"),
                           (web.METADATA_FILE, f"{web.METADATA_FILE} is missing from this folder (HTTP 404)")):
        broken = tmp_path / f"without_{Path(removed).name}"
        shutil.copytree(mnist_web, broken)
        (broken / removed).unlink()
        with serving(broken) as url:
            assert open_page(driver, url) == "error"
            shown = message(driver)
            assert shown.startswith("The model could not be loaded:") and words in shown, shown
            assert console_errors(driver) == []


def test_compact_cifar10_int8_page_matches_predictor(driver, tmp_path):
    """The compact preset goes int8 by default; the page agrees with Predictor on top-1."""
    try:
        registry.get_pretrained_config("nin_cifar10.caffe_compact")
    except (KeyError, ValueError) as err:
        pytest.skip(f"no published weights for nin_cifar10.caffe_compact in this checkout: {err}")
    photos = write(tmp_path / "photos", cifar_photos())
    folder = export("nin_cifar10.caffe_compact", ("web",), tmp_path, parity_samples=64,
                    calibration_samples=64)["web"]
    assert folder.name == "nin_cifar10.caffe_compact.int8.web"
    info = read_metadata(folder)
    assert info["quantization"]["mode"] == "int8"
    assert info["parity"]["top1_agreement"] >= ParityTolerance().min_top1_agreement
    predictor = Predictor(folder / web.MODEL_FILE)
    with serving(folder) as url:
        assert open_page(driver, url) == "ready", message(driver)
        for name, path in photos.items():
            last = choose(driver, path)
            assert "error" not in last, (name, last)
            page_pixels = np.asarray(last["input"], np.uint8).reshape(last["inputShape"])
            reference = predictor.predict_proba(page_pixels)[0]
            page = np.asarray(last["probabilities"])
            # The same int8 graph in two builds of ONNX Runtime: the same top-1 class.
            assert page.argmax() == reference.argmax(), (name, page, reference)
            print(f"int8 {name}: browser-vs-Predictor max |Δprobability| {np.abs(page - reference).max():.3g}")
            assert last["mapsShape"][1:] == [8, 8, 10] and overlay_stats(driver)["std"] > 5
        assert console_errors(driver) == []
