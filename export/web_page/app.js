// The page: load the model described by model.onnx.json with ONNX Runtime Web, then classify
// each photo the person picks or drops. Every failure ends in a readable message on the page
// (#message), never in an uncaught exception. State for tests and people alike:
// <html data-state="loading|ready|busy|done|error">, and window.ninWeb.last after a run.
import { applyPolicy, PolicyError } from "./input_policy.js";
import * as inputPolicy from "./input_policy.js";

const $ = (id) => document.getElementById(id);
const METADATA = "model.onnx.json";

const ninWeb = { inputPolicy, last: null, backend: null, metadata: null };
window.ninWeb = ninWeb;

function setState(state) {
  document.documentElement.dataset.state = state;
}

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

function describe(err) {
  if (err instanceof PolicyError) return `This image cannot be used: ${err.message}.`;
  return `Something went wrong: ${err && err.message ? err.message : err}`;
}

async function fetchOk(name, options) {
  let response;
  try {
    response = await fetch(name, options);
  } catch (err) {
    throw new Error(`cannot fetch ${name} (${err.message}); is the page served over HTTP (nin-keras serve FOLDER)?`);
  }
  if (!response.ok) throw new Error(`${name} is missing from this folder (HTTP ${response.status})`);
  return response;
}

async function loadModel() {
  let metadata;
  try {
    metadata = await (await fetchOk(METADATA)).json();
  } catch (err) {
    throw new Error(`cannot read the model description: ${err.message}`);
  }
  const web = metadata.web;
  if (!web || !Array.isArray(web.files) || !metadata.input_policy || !Array.isArray(metadata.class_names)) {
    throw new Error(`${METADATA} is not a web export's metadata (no web, input_policy or class_names entry)`);
  }
  // Say every missing file at once, before the runtime fails on the first with its own words.
  const checks = await Promise.all(web.files.map(async (name) => {
    try {
      const response = await fetch(name, { method: "HEAD" });
      return response.ok ? null : name;
    } catch {
      return name;
    }
  }));
  const missing = checks.filter(Boolean);
  if (missing.length) {
    throw new Error(`this model folder is incomplete: ${missing.join(", ")} missing. Export it again (nin-keras export NAME --formats web).`);
  }
  const ort = await import(`./${web.runtime.script}`);
  ort.env.logLevel = "error";
  ort.env.wasm.wasmPaths = new URL("ort/", window.location.href).href;
  // Threads need cross-origin isolation (nin-keras serve sends the headers); else one thread.
  ort.env.wasm.numThreads = window.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const model = new Uint8Array(await (await fetchOk(web.model)).arrayBuffer());
  let session = null;
  let backend = "wasm";
  let note = "";
  if (navigator.gpu) {
    try {
      if (await navigator.gpu.requestAdapter()) {
        session = await ort.InferenceSession.create(model, { executionProviders: ["webgpu"] });
        backend = "webgpu";
      } else {
        note = " (the browser has WebGPU but no adapter)";
      }
    } catch (err) {
      note = ` (WebGPU failed: ${err.message || err})`;
    }
  } else {
    note = " (no WebGPU in this browser)";
  }
  if (!session) session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
  return { ort, session, metadata, backend, note };
}

function top(probabilities, names, k) {
  return Array.from(probabilities, (p, i) => ({ label: names[i], probability: p, index: i }))
    .sort((a, b) => b.probability - a.probability || a.index - b.index)
    .slice(0, k);
}

function showTop(rows) {
  const body = $("top5").querySelector("tbody");
  body.replaceChildren(...rows.map(({ label, probability }) => {
    const tr = document.createElement("tr");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * probability).toFixed(1)}%`;
    for (const content of [label, `${(100 * probability).toFixed(2)} %`, bar]) {
      const td = document.createElement("td");
      td.append(content);
      tr.append(td);
    }
    return tr;
  }));
  $("results").hidden = false;
}

// Colour map from blue (low) through green to red (high), for the class confidence map.
function heat(t) {
  const r = Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 3))));
  const g = Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 2))));
  const b = Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 1))));
  return [r, g, b];
}

// The model input (what the network saw), with the top class's confidence map over it.
function drawOverlay(input, maps, classIndex) {
  const canvas = $("overlay");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const { pixels, height, width, channels } = input;
  const image = new ImageData(width, height);
  for (let i = 0; i < height * width; i++) {
    const v = pixels.subarray(i * channels, i * channels + channels);
    image.data.set([v[0], v[channels > 1 ? 1 : 0], v[channels > 1 ? 2 : 0], 255], i * 4);
  }
  const small = new OffscreenCanvas(width, height);
  small.getContext("2d").putImageData(image, 0, 0);
  context.imageSmoothingEnabled = true;
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.drawImage(small, 0, 0, canvas.width, canvas.height);
  if (!maps) {
    $("overlay-caption").textContent = "Model input (this network has no per-class maps).";
    return;
  }
  const [, rows, cols, classes] = maps.dims;
  const values = new Float32Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) values[i] = maps.data[i * classes + classIndex];
  const low = Math.min(...values);
  const span = Math.max(...values) - low || 1;
  const map = new ImageData(cols, rows);
  values.forEach((v, i) => map.data.set([...heat((v - low) / span), 120], i * 4));
  const mapCanvas = new OffscreenCanvas(cols, rows);
  mapCanvas.getContext("2d").putImageData(map, 0, 0);
  context.drawImage(mapCanvas, 0, 0, canvas.width, canvas.height);
  $("overlay-caption").textContent = `Model input with the ${rows}x${cols} confidence map of “${ninWeb.metadata.class_names[classIndex]}” (blue low, red high).`;
}

async function classify(model, file) {
  setState("busy");
  showMessage("");
  try {
    const { ort, session, metadata } = model;
    const policy = metadata.input_policy;
    const input = await applyPolicy(file, policy, metadata.web.max_file_bytes);
    const tensor = new ort.Tensor("float32", Float32Array.from(input.pixels),
      [1, input.height, input.width, input.channels]);
    const started = performance.now();
    const outputs = await session.run({ [metadata.input.name]: tensor });
    const milliseconds = performance.now() - started;
    const probabilities = outputs[metadata.web.outputs.probabilities].data;
    const mapsName = metadata.web.outputs.confidence_maps;
    const maps = mapsName ? outputs[mapsName] : null;
    const rows = top(probabilities, metadata.class_names, 5);
    showTop(rows);
    drawOverlay(input, maps, rows[0].index);
    $("timing").textContent = `${model.backend} backend, inference ${milliseconds.toFixed(1)} ms (${file.name || "image"}, ${input.header.width}x${input.header.height} ${input.header.format})`;
    ninWeb.last = {
      file: file.name, top: rows.map(({ label, probability }) => ({ label, probability })),
      probabilities: Array.from(probabilities), input: Array.from(input.pixels),
      inputShape: [input.height, input.width, input.channels], header: input.header,
      mapsShape: maps ? maps.dims : null, backend: model.backend, milliseconds,
    };
    setState("done");
  } catch (err) {
    ninWeb.last = { file: file.name, error: String(err && err.message ? err.message : err) };
    showMessage(describe(err));
    setState("error");
  }
}

async function main() {
  setState("loading");
  let model;
  try {
    model = await loadModel();
  } catch (err) {
    showMessage(`The model could not be loaded: ${err && err.message ? err.message : err}`);
    setState("error");
    return;
  }
  const { metadata } = model;
  ninWeb.metadata = metadata;
  ninWeb.backend = model.backend;
  const policy = metadata.input_policy;
  document.title = `${metadata.source.model} in the browser`;
  $("title").textContent = `${metadata.source.model}: classify a photo in your browser`;
  $("about").textContent = `${metadata.class_names.length} classes (${metadata.dataset || "own data"}), `
    + `${metadata.quantization.mode || "float32"} ONNX model, onnxruntime-web ${metadata.web.runtime.version} `
    + `(${metadata.web.runtime.license}). Runs offline: nothing leaves this computer.`;
  $("expects").textContent = policy.expects ? `It expects ${policy.expects}.` : "";
  $("backend").textContent = `Runtime backend: ${model.backend}${model.backend === "wasm" ? model.note : ""}`;
  const picker = $("file");
  picker.disabled = false;
  picker.addEventListener("change", () => {
    if (picker.files.length) classify(model, picker.files[0]);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) classify(model, file);
    else showMessage("Nothing to read in what was dropped: drop an image file.");
  });
  setState("ready");
}

// A safety net: whatever escapes still reaches the page as words.
window.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  showMessage(`Something went wrong: ${event.reason && event.reason.message ? event.reason.message : event.reason}`);
  setState("error");
});

main();
