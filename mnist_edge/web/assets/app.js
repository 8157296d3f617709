// The page: draw on a canvas, turn it into MNIST's 28 x 28 like `mnist-edge run` does
// (preprocess.js), run the model with the site's engine, show the digit, the ten probabilities,
// the image the model saw and the time it took. window.mnistEdge is the hook tests drive.
import { luminance, toMnist } from "./preprocess.js";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
const STROKE = 20; // in canvas pixels (the canvas is 280 wide): about MNIST's stroke at 28 px
const state = { engine: null, info: null, last: null, pending: false, drawing: false };

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  state.last = null;
  showNothing();
}

function softmax(logits) {
  const top = Math.max(...logits);
  const exps = Array.from(logits, (v) => Math.exp(v - top));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / sum);
}

function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best; // the first highest, as numpy's argmax
}

async function classify() {
  const { width, height } = pad;
  const gray = luminance(ctx.getImageData(0, 0, width, height).data, width, height);
  const started = performance.now();
  let input;
  try {
    input = toMnist(gray, width, height);
  } catch (error) {
    if (!String(error.message).startsWith("no digit found")) throw error;
    showNothing();
    return { digit: null, reason: error.message };
  }
  const prepared = performance.now();
  const out = await state.engine.predict(input);
  const done = performance.now();
  const probabilities = out.probabilities ? Array.from(out.logits) : softmax(out.logits);
  const digit = argmax(out.logits);
  const result = {
    digit, label: state.info.labels[digit], probabilities, logits: Array.from(out.logits),
    scores: out.scores ? Array.from(out.scores) : null, input: Array.from(input),
    preprocessMs: prepared - started, inferenceMs: done - prepared,
  };
  show(result);
  state.last = result;
  return result;
}

function show(result) {
  $("digit").textContent = result.label;
  $("confidence").textContent = `${(100 * result.probabilities[result.digit]).toFixed(1)} %`;
  result.probabilities.forEach((p, i) => {
    const row = $("bars").children[i];
    row.classList.toggle("top", i === result.digit);
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".value").textContent = `${(100 * p).toFixed(1)} %`;
  });
  const seen = $("seen").getContext("2d");
  const image = seen.createImageData(28, 28);
  result.input.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  seen.putImageData(image, 0, 0);
  $("timing").textContent = `inference ${result.inferenceMs.toFixed(2)} ms · preprocessing ` +
    `${result.preprocessMs.toFixed(2)} ms · ${state.engine.runtime}`;
}

function showNothing() {
  $("digit").textContent = "–";
  $("confidence").textContent = "";
  for (const row of $("bars").children) {
    row.classList.remove("top");
    row.querySelector(".fill").style.width = "0";
    row.querySelector(".value").textContent = "";
  }
  $("seen").getContext("2d").clearRect(0, 0, 28, 28);
}

// Live results while drawing: at most one classification per animation frame.
function scheduleClassify() {
  if (state.pending) return;
  state.pending = true;
  requestAnimationFrame(async () => {
    state.pending = false;
    await classify();
  });
}

function pointAt(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}

function listen() {
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  pad.addEventListener("pointerdown", (event) => {
    pad.setPointerCapture(event.pointerId);
    state.drawing = true;
    const [x, y] = pointAt(event);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = STROKE;
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x, y);
    ctx.stroke();
    scheduleClassify();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!state.drawing) return;
    const [x, y] = pointAt(event);
    ctx.lineTo(x, y);
    ctx.stroke();
    scheduleClassify();
  });
  const stop = () => { state.drawing = false; scheduleClassify(); };
  pad.addEventListener("pointerup", stop);
  pad.addEventListener("pointercancel", stop);
  $("clear").addEventListener("click", clearPad);
}

function buildBars(labels) {
  $("bars").replaceChildren(...labels.map((label) => {
    const row = document.createElement("li");
    row.innerHTML = `<span>${label}</span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
    return row;
  }));
}

function showFacts(info, runtime = null) {
  const where = info.accuracy_images == null || info.accuracy_images === 10000 ? "the MNIST test set"
    : `${info.accuracy_images.toLocaleString("en")} MNIST test images`;
  const accuracy = info.accuracy == null ? "not measured" : `${(100 * info.accuracy).toFixed(2)} % on ${where}`;
  $("model-line").textContent = `${info.name}: ${accuracy}`;
  const facts = { model: info.name, engine: runtime || info.engine.runtime, accuracy, "measured with": info.accuracy_measured_with,
    source: info.source };
  $("facts").replaceChildren(...Object.entries(facts).filter(([, v]) => v).flatMap(([k, v]) => {
    const term = document.createElement("dt");
    const value = document.createElement("dd");
    term.textContent = k;
    value.textContent = v;
    return [term, value];
  }));
}

// The engine's module, asked for at once: its name is written into the page by `mnist-edge web`
// (html data-engine), so the module and its runtime load while model.json is fetched.
function importEngine(name) {
  if (name === "c") return import("./engine_c.js");
  if (name === "ort") return import("./engine_ort.js");
  return null;
}

async function loadEngine(info, early) {
  if (info.engine.name === "c") {
    const { loadCEngine, moduleFor } = await (early || import("./engine_c.js"));
    return loadCEngine(new URL(moduleFor(info), location.href).href, info);
  }
  const { loadOrtEngine } = await (early || import("./engine_ort.js"));
  return loadOrtEngine(info);
}

// Where the time to the first prediction went: the page's marks (mnist-edge:*, also set by the
// engines) in ms since navigation started.
function marks() {
  const found = {};
  for (const mark of performance.getEntriesByType("mark")) {
    if (mark.name.startsWith("mnist-edge:")) found[mark.name.slice(11)] = mark.startTime;
  }
  return found;
}

async function start() {
  if (location.protocol === "file:") {
    $("file-warning").hidden = false;
    throw new Error("opened from file://: this page needs a web server");
  }
  performance.mark("mnist-edge:start");
  const early = importEngine(document.documentElement.dataset.engine);
  const info = await (await fetch("model.json")).json();
  performance.mark("mnist-edge:model-json");
  state.info = info;
  buildBars(info.labels);
  showFacts(info);
  state.engine = await loadEngine(info, early);
  performance.mark("mnist-edge:engine-ready");
  showFacts(info, state.engine.runtime); // now with what the engine loaded (the C engine: SIMD or not)
  await state.engine.predict(new Uint8Array(784)); // the first prediction: the engine is warm
  performance.mark("mnist-edge:first-prediction");
  // Both since the page's navigation started: the budget counts from the load event.
  const firstPredictionMs = performance.now();
  listen();
  clearPad();
  // A page that is ready before its load event ends reports it (loadEventEnd is set once the load
  // handlers have returned): a negative time after the load event.
  if (document.readyState !== "complete") await new Promise((done) => addEventListener("load", done, { once: true }));
  await new Promise((done) => setTimeout(done, 0));
  const [navigation] = performance.getEntriesByType("navigation");
  return { firstPredictionMs, loadEventMs: navigation ? navigation.loadEventEnd || null : null, marks: marks() };
}

const ready = start();

// For tests and measurements: draw given pixels, classify, read the canvas back, time predictions.
window.mnistEdge = {
  ready,
  get info() { return state.info; },
  classify,
  clear: clearPad,
  putGray(gray, width, height) {
    pad.width = width;
    pad.height = height;
    const image = ctx.createImageData(width, height);
    for (let i = 0; i < width * height; i++) image.data.set([gray[i], gray[i], gray[i], 255], 4 * i);
    ctx.putImageData(image, 0, 0);
  },
  canvasPNG: () => pad.toDataURL("image/png"),
  async timePredictions(count) {
    const input = state.last ? Uint8Array.from(state.last.input) : new Uint8Array(784);
    const times = [];
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      await state.engine.predict(input);
      times.push(performance.now() - started);
    }
    return times;
  },
  // Mean ms per prediction over blocks of `size` back-to-back predictions: the browser's timer
  // steps by 100 µs (or more), so a single call's time is meaningless; a block's is not.
  async timeBlocks(blocks, size) {
    const input = state.last ? Uint8Array.from(state.last.input) : new Uint8Array(784);
    const means = [];
    for (let b = 0; b < blocks; b++) {
      const started = performance.now();
      for (let i = 0; i < size; i++) await state.engine.predict(input);
      means.push((performance.now() - started) / size);
    }
    return means;
  },
};
