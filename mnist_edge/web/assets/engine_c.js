// The C engine: the library `mnist-edge codegen` wrote, compiled to WebAssembly by
// `mnist-edge web --engine c` (mnist_edge/web/wasm.py, with c_shim.c). No dependencies.
// The module has no libc and no allocator: the C side owns a static 784-byte input buffer and a
// scores buffer and exports their addresses; predict copies the pixels in, runs the C, copies the
// scores out. They are the C library's scores bit for bit (WebAssembly float32 is IEEE, and the
// build forbids contraction), and the logits are float32 like the Python side's:
// fround((score - zero) * scale) with the zero and scale the C library itself exports.

const PIXELS = 784;

// The smallest module with a SIMD instruction (i8x16.splat, i8x16.popcnt): valid only where the
// engine has WebAssembly SIMD. Asked before anything is fetched, so one module is downloaded.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
  65, 0, 253, 15, 253, 98, 11]);

export function simdSupported() {
  try {
    return WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

// Which of the site's modules to load: the SIMD build where the engine has WebAssembly SIMD, the
// scalar one elsewhere (both give the same scores).
export function moduleFor(info) {
  const engine = info.engine || {};
  return engine.simd_model && simdSupported() ? engine.simd_model : engine.model;
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// The module's bytes from an ArrayBuffer or typed array, a data: URL holding them in base64 (a
// page opened from file://, where fetch is refused), or any other URL (fetched).
async function moduleBytes(source) {
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) return source;
  const url = String(source);
  if (url.startsWith("data:")) return base64Bytes(url.slice(url.indexOf(",") + 1));
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  return response.arrayBuffer();
}

// model.json was written with the module: a page that pairs it with another model's module
// would show the wrong logits, so the two must agree.
function checkInfo(engine, zero, scale) {
  if (engine.score_zero == null) return;
  if (engine.score_zero !== zero || Math.fround(engine.score_scale) !== scale) {
    throw new Error(`the WebAssembly module (score zero ${zero}, scale ${scale}) does not match model.json ` +
      `(${engine.score_zero}, ${engine.score_scale}): build the site again`);
  }
}

export async function loadCEngine(wasmBytesOrUrl, info = {}) {
  const { instance } = await WebAssembly.instantiate(await moduleBytes(wasmBytesOrUrl), {});
  if (typeof performance !== "undefined" && performance.mark) performance.mark("mnist-edge:module-instantiated");
  const c = instance.exports;
  const classes = c.mnist_edge_web_classes();
  const zero = c.mnist_edge_web_score_zero();
  const scale = Math.fround(c.mnist_edge_web_score_scale());
  const engine = info.engine || {};
  checkInfo(engine, zero, scale);
  const inputAt = c.mnist_edge_web_pixels();
  const scoresAt = c.mnist_edge_web_scores();

  const simd = c.mnist_edge_web_simd ? c.mnist_edge_web_simd() === 1 : false;
  return {
    name: "c",
    runtime: `${engine.runtime || "generated C (WebAssembly)"}${simd ? ", SIMD" : ", scalar"}`,
    simd,
    classes,
    // pixels: Uint8Array(784), raw 0-255, 28 x 28, white digit on black (as MNIST).
    predict(pixels) {
      if (!pixels || pixels.length !== PIXELS) throw new RangeError(`predict needs ${PIXELS} pixels`);
      new Uint8Array(c.memory.buffer, inputAt, PIXELS).set(pixels); // views anew: memory may have grown
      const digit = c.mnist_edge_web_predict();
      const scores = new Uint8Array(c.memory.buffer, scoresAt, classes).slice();
      const logits = new Float32Array(classes);
      for (let i = 0; i < classes; i++) logits[i] = Math.fround((scores[i] - zero) * scale);
      return { scores, logits, digit };
    },
  };
}
