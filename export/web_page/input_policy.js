// The input policy of nin_keras.data.input_policy.InputPolicy, in the browser.
//
// The steps and their arithmetic follow the Python policy so that the page feeds the model the
// pixels Predictor feeds it: the header is checked before decoding (file size, format, declared
// pixels), the browser decodes and applies the EXIF orientation, transparency is composited over
// the policy's background, grayscale is Pillow's convert("L") luma in the same fixed point, and
// the resize is Pillow's separable convolution resampling (the same filters, support, rounding
// of the coefficients to 22 fractional bits and 8-bit intermediate rows), with Python's
// round-half-to-even for the cover size. What can still differ is the decoding itself (the
// browser's JPEG decoder, its alpha compositing in premultiplied 8 bits): see the bound in
// tests/test_web.py.

/** An image the policy refuses; its message is meant for the person who chose the file. */
export class PolicyError extends Error {
  constructor(message) {
    super(message);
    this.name = "PolicyError";
  }
}

const PRECISION_BITS = 22; // Pillow's fixed point for 8-bit resampling: 32 - 8 - 2

function bicubic(x) {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

function sinc(x) {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

// [kernel, support] per interpolation name, as Pillow defines them.
const FILTERS = {
  box: [(x) => (x > -0.5 && x <= 0.5 ? 1 : 0), 0.5],
  bilinear: [(x) => Math.max(0, 1 - Math.abs(x)), 1],
  hamming: [(x) => {
    x = Math.abs(x);
    if (x === 0) return 1;
    if (x >= 1) return 0;
    x *= Math.PI;
    return (Math.sin(x) / x) * (0.54 + 0.46 * Math.cos(x));
  }, 1],
  bicubic: [bicubic, 2],
  lanczos: [(x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0), 3],
};

/** Python's round(): halves go to the even neighbour. */
export function pyRound(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff === 0.5) return floor % 2 === 0 ? floor : floor + 1;
  return diff < 0.5 ? floor : floor + 1;
}

// Per output pixel: first source index, count, and fixed-point weights (Pillow's
// precompute_coeffs followed by normalize_coeffs_8bpc).
function coefficients(inSize, outSize, interpolation) {
  const [kernel, baseSupport] = FILTERS[interpolation];
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1); // widen the filter when shrinking: antialiasing
  const support = baseSupport * filterScale;
  const step = 1 / filterScale; // Pillow multiplies by the reciprocal: the same doubles here
  const taps = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const weights = new Float64Array(Math.max(xmax, 0));
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      weights[x] = kernel((x + xmin - center + 0.5) * step);
      total += weights[x];
    }
    const fixed = new Float64Array(weights.length);
    for (let x = 0; x < xmax; x++) {
      const w = total !== 0 ? weights[x] / total : weights[x];
      fixed[x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    taps.push([xmin, fixed]);
  }
  return taps;
}

function clip8(sum) {
  const v = Math.floor(sum / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// One pass along an axis of an interleaved uint8 image (height x width x channels).
function resamplePass(src, height, width, channels, outSize, interpolation, horizontal) {
  const taps = coefficients(horizontal ? width : height, outSize, interpolation);
  const outW = horizontal ? outSize : width;
  const outH = horizontal ? height : outSize;
  const out = new Uint8Array(outW * outH * channels);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const [first, weights] = taps[horizontal ? x : y];
      for (let c = 0; c < channels; c++) {
        let sum = half;
        for (let k = 0; k < weights.length; k++) {
          const sy = horizontal ? y : first + k;
          const sx = horizontal ? first + k : x;
          sum += src[(sy * width + sx) * channels + c] * weights[k];
        }
        out[(y * outW + x) * channels + c] = clip8(sum);
      }
    }
  }
  return out;
}

// Source indices of Pillow's nearest-neighbour scaling: it steps a double by in/out from half a
// step and truncates, so the sums' rounding (not (i + 0.5) * in / out) picks the pixel.
function nearestIndices(inSize, outSize) {
  const step = inSize / outSize;
  const indices = new Int32Array(outSize);
  let position = step * 0.5;
  for (let i = 0; i < outSize; i++) {
    indices[i] = Math.min(inSize - 1, Math.trunc(position));
    position += step;
  }
  return indices;
}

function nearest(src, height, width, channels, newHeight, newWidth) {
  const xs = nearestIndices(width, newWidth);
  const ys = nearestIndices(height, newHeight);
  const out = new Uint8Array(newHeight * newWidth * channels);
  for (let y = 0; y < newHeight; y++) {
    for (let x = 0; x < newWidth; x++) {
      for (let c = 0; c < channels; c++) out[(y * newWidth + x) * channels + c] = src[(ys[y] * width + xs[x]) * channels + c];
    }
  }
  return out;
}

/** Pillow's Image.resize of an interleaved uint8 image: horizontal pass, then vertical. */
export function resize(src, height, width, channels, newHeight, newWidth, interpolation) {
  if (!(interpolation in FILTERS) && interpolation !== "nearest") {
    throw new PolicyError(`unknown interpolation ${interpolation}`);
  }
  if (newHeight === height && newWidth === width) return src.slice();
  if (interpolation === "nearest") return nearest(src, height, width, channels, newHeight, newWidth);
  let image = src;
  let w = width;
  if (newWidth !== width) {
    image = resamplePass(image, height, w, channels, newWidth, interpolation, true);
    w = newWidth;
  }
  if (newHeight !== height) image = resamplePass(image, height, w, channels, newHeight, interpolation, false);
  return image;
}

function u16be(b, i) { return (b[i] << 8) | b[i + 1]; }
function u16le(b, i) { return b[i] | (b[i + 1] << 8); }
function u32be(b, i) { return ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3]; }
function i32le(b, i) { return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24); }
function ascii(b, i, n) { return String.fromCharCode(...b.subarray(i, i + n)); }

/**
 * The format and the declared size of an image file, read from its header alone.
 * @param {Uint8Array} b the file's bytes
 * @returns {{format: string, width: number, height: number}}
 */
export function readHeader(b) {
  const fail = (why) => { throw new PolicyError(why); };
  if (b.length >= 24 && b[0] === 0x89 && ascii(b, 1, 3) === "PNG") {
    return { format: "PNG", width: u32be(b, 16), height: u32be(b, 20) };
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) {
    // Walk the segments up to the frame header (SOF0..SOF15 except DHT, JPG and DAC).
    let i = 2;
    while (i + 9 < b.length) {
      if (b[i] !== 0xff) fail("corrupt JPEG header (no segment marker where one belongs)");
      const marker = b[i + 1];
      if (marker === 0xff) { i += 1; continue; }
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        return { format: "JPEG", width: u16be(b, i + 7), height: u16be(b, i + 5) };
      }
      if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) { i += 2; continue; }
      i += 2 + u16be(b, i + 2);
    }
    fail("JPEG header without a frame size (truncated file?)");
  }
  if (b.length >= 10 && (ascii(b, 0, 6) === "GIF87a" || ascii(b, 0, 6) === "GIF89a")) {
    return { format: "GIF", width: u16le(b, 6), height: u16le(b, 8) };
  }
  if (b.length >= 26 && ascii(b, 0, 2) === "BM") {
    return { format: "BMP", width: Math.abs(i32le(b, 18)), height: Math.abs(i32le(b, 22)) };
  }
  if (b.length >= 30 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP") {
    const chunk = ascii(b, 12, 4);
    if (chunk === "VP8 ") return { format: "WEBP", width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff };
    if (chunk === "VP8L") {
      return { format: "WEBP", width: 1 + (b[21] | ((b[22] & 0x3f) << 8)),
               height: 1 + ((b[22] >> 6) | (b[23] << 2) | ((b[24] & 0x0f) << 10)) };
    }
    if (chunk === "VP8X") {
      return { format: "WEBP", width: 1 + (b[24] | (b[25] << 8) | (b[26] << 16)),
               height: 1 + (b[27] | (b[28] << 8) | (b[29] << 16)) };
    }
    fail("WebP file with an unknown chunk layout");
  }
  if (b.length >= 4 && ((ascii(b, 0, 2) === "II" && b[2] === 42) || (ascii(b, 0, 2) === "MM" && b[3] === 42))) {
    fail("TIFF images are not decoded by browsers; save it as PNG or JPEG");
  }
  fail("not an image this page reads (PNG, JPEG, GIF, BMP or WebP)");
}

function mib(bytes) { return (bytes / 1048576).toFixed(1) + " MiB"; }

/**
 * Decode an image file and make the model input, as InputPolicy.apply does.
 * @param {Blob} file the image file
 * @param {object} policy InputPolicy.to_dict() (size, color_mode, resize, crop_pct,
 *     interpolation, background, invert, max_image_pixels)
 * @param {number} maxFileBytes files larger than this are refused before they are read
 * @returns {Promise<{pixels: Uint8Array, height: number, width: number, channels: number,
 *     header: object}>} pixels: uint8, height x width x channels, interleaved
 */
/**
 * The size step 6 resizes a width x height image to before the crop (InputPolicy.resized_size).
 * @returns {[number, number]} [new width, new height]
 */
function resizedSize(policy, width, height) {
  const [sizeH, sizeW] = policy.size;
  const scale = Math.max(pyRound(sizeH / policy.crop_pct) / height, pyRound(sizeW / policy.crop_pct) / width);
  return [Math.max(sizeW, pyRound(width * scale)), Math.max(sizeH, pyRound(height * scale))];
}

export async function applyPolicy(file, policy, maxFileBytes) {
  if (file.size > maxFileBytes) {
    throw new PolicyError(`the file is ${mib(file.size)}, more than this page's limit of ${mib(maxFileBytes)}; refused before reading it`);
  }
  if (file.size === 0) throw new PolicyError("the file is empty");
  const bytes = new Uint8Array(await file.arrayBuffer());
  const header = readHeader(bytes);
  const declared = header.width * header.height;
  if (declared > policy.max_image_pixels) {
    throw new PolicyError(`the ${header.format} header declares ${header.width}x${header.height} = ${declared} pixels, more than the limit of ${policy.max_image_pixels}; refused before decoding`);
  }
  if (declared < 1) throw new PolicyError(`the ${header.format} image has no pixels (${header.width}x${header.height})`);
  if (policy.resize) {
    // The resize below may make a thin image far larger than it is (InputPolicy._check_resize):
    // checked both ways round, since the EXIF orientation is applied while decoding.
    for (const [w, h] of [[header.width, header.height], [header.height, header.width]]) {
      const [newW, newH] = resizedSize(policy, w, h);
      if (newW * newH > policy.max_image_pixels) {
        throw new PolicyError(`a ${w}x${h} image would be resized to ${newW}x${newH} = ${newW * newH} pixels, more than the limit of ${policy.max_image_pixels}; refused before decoding (its sides are too unequal)`);
      }
    }
  }
  let bitmap;
  try {
    // EXIF orientation applied, as the Python policy's exif_transpose; no colour-profile
    // conversion and no premultiplication, as Pillow reads the samples as stored.
    bitmap = await createImageBitmap(new Blob([bytes]), {
      imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none",
    });
  } catch (err) {
    throw new PolicyError(`corrupt or truncated ${header.format} data: the browser could not decode it (${err.message || err})`);
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const [r, g, b] = policy.background;
  context.fillStyle = `rgb(${r}, ${g}, ${b})`;
  context.fillRect(0, 0, width, height);
  context.drawImage(bitmap, 0, 0); // transparency over the background
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;

  const gray = policy.color_mode === "grayscale";
  const channels = gray ? 1 : 3;
  let pixels = new Uint8Array(width * height * channels);
  for (let i = 0, j = 0; i < rgba.length; i += 4) {
    if (gray) {
      // Pillow's convert("L"): L = R * 299/1000 + G * 587/1000 + B * 114/1000 in 16-bit fixed point.
      pixels[j++] = (rgba[i] * 19595 + rgba[i + 1] * 38470 + rgba[i + 2] * 7471 + 0x8000) >> 16;
    } else {
      pixels[j++] = rgba[i]; pixels[j++] = rgba[i + 1]; pixels[j++] = rgba[i + 2];
    }
  }
  const [sizeH, sizeW] = policy.size;
  const exact = height === sizeH && width === sizeW;
  if (!policy.resize && !exact) {
    throw new PolicyError(`the image is ${width}x${height}; this model takes ${sizeW}x${sizeH} and its policy does not resize`);
  }
  if (policy.resize && (!exact || policy.crop_pct < 1)) {
    const [newW, newH] = resizedSize(policy, width, height);
    const resized = resize(pixels, height, width, channels, newH, newW, policy.interpolation);
    const left = Math.floor((newW - sizeW) / 2);
    const top = Math.floor((newH - sizeH) / 2);
    pixels = new Uint8Array(sizeH * sizeW * channels);
    for (let y = 0; y < sizeH; y++) {
      const from = ((top + y) * newW + left) * channels;
      pixels.set(resized.subarray(from, from + sizeW * channels), y * sizeW * channels);
    }
  }
  if (policy.invert) for (let i = 0; i < pixels.length; i++) pixels[i] = 255 - pixels[i];
  return { pixels, height: sizeH, width: sizeW, channels, header };
}
