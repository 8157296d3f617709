// The onnxruntime-web engine: the page's uint8 28 x 28 digit -> the exported model's scores.
// The input follows model.json, read from the model by `mnist-edge web` exactly as `run` reads it:
// layout (NCHW, NHWC, flat), dtype (float32 normalised, or raw uint8) and a fixed or free batch.
import * as ort from "./ort/ort.wasm.min.mjs";

performance.mark("mnist-edge:engine-imported"); // this module and onnxruntime-web's JavaScript are in

const SHAPES = { NCHW: [1, 28, 28], NHWC: [28, 28, 1], flat: [784] };

// (pixel / scale - mean) / std with float32 rounding at every step, as mnist_edge.runtime's
// normalisation table computes it in numpy float32, so the model sees the same numbers.
function normalisationTable(norm) {
  const f = Math.fround;
  const table = new Float32Array(256);
  for (let p = 0; p < 256; p++) {
    table[p] = f(f(f(p / f(norm.scale)) - f(norm.mean)) / f(norm.std));
  }
  return table;
}

// The page started compiling onnxruntime-web's WebAssembly at once (site.py's early compile):
// when onnxruntime-web instantiates that file, it gets the module already compiled.
function reuseEarlyCompile() {
  const early = globalThis.mnistEdgeOrtModule;
  const streaming = WebAssembly.instantiateStreaming;
  if (!early || !streaming || streaming.mnistEdge) return;
  const reuse = async (source, imports) => {
    const response = await source;
    const module = response && String(response.url).endsWith("/ort-wasm-simd-threaded.wasm") ? await early : null;
    if (!module) return streaming.call(WebAssembly, response, imports);
    response.body?.cancel(); // its second download: the page's own already compiled
    performance.mark("mnist-edge:ort-module-reused");
    return { module, instance: await WebAssembly.instantiate(module, imports) };
  };
  reuse.mnistEdge = true;
  WebAssembly.instantiateStreaming = reuse;
}

export async function loadOrtEngine(info) {
  reuseEarlyCompile();
  ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
  ort.env.wasm.numThreads = 1; // a static site has no cross-origin isolation: no threads anyway
  ort.env.logLevel = "error";
  // The model's bytes are fetched while the runtime's WebAssembly compiles (the page preloads both).
  const model = fetch(new URL(info.engine.model, location.href).href).then((response) => {
    if (!response.ok) throw new Error(`${info.engine.model}: HTTP ${response.status}`);
    return response.arrayBuffer();
  });
  const session = await ort.InferenceSession.create(new Uint8Array(await model), { executionProviders: ["wasm"] });
  performance.mark("mnist-edge:session-created");
  const input = info.input;
  const batch = input.batch || 1;
  const shape = [batch, ...SHAPES[input.layout]];
  const table = input.dtype === "float32" ? normalisationTable(input.normalization) : null;
  const outputName = info.output.name;

  function tensorFor(pixels) {
    if (table === null) {
      const data = new Uint8Array(batch * 784);
      data.set(pixels);
      return new ort.Tensor("uint8", data, shape);
    }
    const data = new Float32Array(batch * 784).fill(table[0]); // padding rows are blank images
    for (let i = 0; i < 784; i++) data[i] = table[pixels[i]];
    return new ort.Tensor("float32", data, shape);
  }

  return {
    name: "ort",
    runtime: info.engine.runtime,
    async predict(pixels) {
      const feeds = { [input.name]: tensorFor(pixels) };
      const results = await session.run(feeds, [outputName]);
      const logits = Float32Array.from(results[outputName].data.slice(0, info.labels.length));
      return { logits, probabilities: info.output.probabilities };
    },
  };
}
