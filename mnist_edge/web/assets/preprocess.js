// The page's canvas -> the model's 28 x 28 input, by the same rules as `mnist-edge run` applies to
// an image file (mnist_edge/preprocess.py), so that a digit drawn in the browser and the same
// digit saved as a PNG and given to `run` reach the model as the same pixels.
//
// Bit-exact by construction, including Pillow's resampling (Pillow 13, src/libImaging/Resample.c
// and Reduce.c, ported below) and numpy's float32 arithmetic; tests/test_web_preprocess.py checks
// it against the installed Pillow and numpy. Which Python each function mirrors:
//
//   luminance(rgba, w, h)   preprocess.grayscale() of an RGBA image (a canvas saved as PNG):
//                           _composite_alpha(), that is Pillow's RGBA -> "LA" (Convert.c rgba2la,
//                           the ITU-R 601-2 luminance L = (R*19595 + G*38470 + B*7471 + 0x8000)
//                           >> 16) composited over a background contrasting with the ink. For an
//                           opaque canvas the compositing is the identity: Pillow's RGB -> "L".
//   compositeAlpha          preprocess._composite_alpha(), numpySum32 its float32 mean
//   toMnist(gray, w, h)     preprocess.to_mnist() of a Pillow "L" image: check_size(), the
//                           WORKING_SIDE reduction of grayscale(), then mnist_like()
//   mnistLike               preprocess.mnist_like(): inversion, contrast stretch, crop, fit, centre
//   borderMedian            preprocess._border_median()
//   strengthTables          mnist_like's contrast stretch and NOISE_FLOOR, _crop_to_ink's
//                           INK_LEVEL test and _fit_box's np.rint(strength * 255), per grey level
//   cropToInk               preprocess._crop_to_ink()
//   fitBox                  preprocess._fit_box(): Image.resize(size, LANCZOS, reducing_gap=3.0)
//   pillowResize            PIL.Image.Image.resize() with reducing_gap (and _get_safe_box())
//   pillowReduce            PIL.Image.Image.reduce() -> ImagingReduce (Reduce.c)
//   pillowResample          ImagingResampleInner, precompute_coeffs, normalize_coeffs_8bpc and
//                           the 8-bit horizontal and vertical passes (Resample.c)
//   centreByMass            preprocess._centre_by_mass()
//
// Numbers: JavaScript computes in doubles. Where numpy or Pillow compute in float32 the code
// rounds with Math.fround at the same steps (a double result of one +, -, *, / on float32
// operands rounds to the correctly rounded float32 result); integer sums stay far below 2^53.
// Python's round() and numpy's rint() round halves to even, unlike Math.round: see roundHalfEven.
//
// Limits: the order of Pillow's two resampling passes changed in Pillow 13 (see pillowResample);
// with an older Pillow, `mnist-edge run` differs by a few grey levels on some digits. LANCZOS
// weights use Math.sin, which may differ from the C library's sin in the last bit for some
// arguments; a weight changes only if that bit moves it across a rounding boundary of the 22-bit
// fixed point (not seen in testing). A C compiler that fuses multiply-adds (FMA, e.g. on arm64)
// could round Pillow's coefficient arithmetic differently from these doubles in the same way.

const SIZE = 28; // mnist_edge.config.IMAGE_SIZE
const BOX = 20;
const MAX_PIXELS = 50_000_000;
const WORKING_SIDE = 1024;
const MIN_CONTRAST = 32;
// numpy compares a float32 array with a Python float in float32 (NEP 50), so the thresholds are
// the float32 roundings of 0.15 and 0.3; this matters for 0.3 itself (12/40, 15/50, ...).
const NOISE_FLOOR = Math.fround(0.15);
const INK_LEVEL = Math.fround(0.3);
const REDUCING_GAP = 3.0;
const NO_DIGIT = "no digit found (blank or very low-contrast image)";

const f32 = Math.fround;

/** Python's round() and numpy's rint(): to the nearest integer, halves to the even one. */
function roundHalfEven(x) {
  const r = Math.round(x); // halves go up, towards +infinity; r - x is exact
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Canvas RGBA (ImageData.data) -> one luminance byte per pixel, as Pillow and grayscale() make it.
 * @param {Uint8Array|Uint8ClampedArray} rgba width * height * 4 bytes
 * @returns {Uint8Array} width * height bytes
 */
export function luminance(rgba, width, height) {
  const count = checkShape(rgba, width, height, 4);
  const gray = new Uint8Array(count);
  let opaque = true;
  for (let i = 0, p = 0; i < count; i++, p += 4) {
    // The sum is below 2^24: int32 shifts are exact.
    gray[i] = (rgba[p] * 19595 + rgba[p + 1] * 38470 + rgba[p + 2] * 7471 + 0x8000) >> 16;
    if (rgba[p + 3] !== 255) opaque = false;
  }
  // grayscale() sends every RGBA image through _composite_alpha; with alpha 255 everywhere its
  // float32 arithmetic gives back the luminance exactly (gray * 1 + background * 0).
  return opaque ? gray : compositeAlpha(gray, rgba, count);
}

/** preprocess._composite_alpha on Pillow's "LA" values (float32 throughout, as numpy). */
function compositeAlpha(gray, rgba, count) {
  const alpha = new Float32Array(count);
  const opaque = new Float32Array(count); // gray[alpha > 0.5], in order
  let opaqueCount = 0;
  for (let i = 0; i < count; i++) {
    alpha[i] = rgba[4 * i + 3] / 255; // stored as float32: la[..., 1] / 255.0
    if (alpha[i] > 0.5) opaque[opaqueCount++] = gray[i];
  }
  // float(gray[opaque].mean()): numpy's float32 sum divided in float32. Past 2^24 the sum rounds,
  // which can move a mean that is within 1e-5 of 128 to the other side.
  const ink = opaqueCount > 0 ? f32(numpySum32(opaque, 0, opaqueCount) / opaqueCount) : 0.0;
  const background = ink < 128.0 ? 255.0 : 0.0;
  const flat = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const a = alpha[i];
    const value = f32(f32(gray[i] * a) + f32(background * f32(1.0 - a)));
    flat[i] = roundHalfEven(value);
  }
  return flat;
}

/**
 * numpy's float32 np.add.reduce of a contiguous array (pairwise_sum in loops_utils.h): runs of at
 * most 128 go through eight interleaved accumulators, longer runs split in halves (a multiple of 8).
 */
function numpySum32(values, start, n) {
  if (n < 8) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum = f32(sum + values[start + i]);
    return sum;
  }
  if (n <= 128) {
    const r = Array.from(values.subarray(start, start + 8));
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = f32(r[j] + values[start + i + j]);
    let sum = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
    for (; i < n; i++) sum = f32(sum + values[start + i]);
    return sum;
  }
  let half = Math.floor(n / 2);
  half -= half % 8;
  return f32(numpySum32(values, start, half) + numpySum32(values, start + half, n - half));
}

/**
 * Luminance pixels (row-major) -> the model's input: Uint8Array(784), 28 x 28 row-major, white
 * digit on black, as preprocess.to_mnist() of the same pixels as a Pillow "L" image.
 * Throws an Error whose message starts with "no digit found" for a blank or low-contrast image.
 * @param {Uint8Array|Uint8ClampedArray} gray width * height bytes
 * @returns {Uint8Array}
 */
export function toMnist(gray, width, height) {
  const count = checkShape(gray, width, height, 1);
  if (count > MAX_PIXELS) {
    const grouped = (n) => n.toLocaleString("en-US"); // Python's {:,}
    throw new Error(`image too large: ${width}x${height} = ${grouped(count)} pixels ` +
      `(limit ${grouped(MAX_PIXELS)}; possible decompression bomb)`);
  }
  let image = { data: Uint8Array.from(gray), width, height };
  // grayscale(): big images are box-reduced to about WORKING_SIDE before the rest.
  const factor = Math.floor(Math.max(width, height) / WORKING_SIDE);
  if (factor >= 2) image = pillowReduce(image, factor, factor, [0, 0, width, height]);
  return mnistLike(image);
}

function checkShape(pixels, width, height, channels) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0) {
    throw new TypeError(`width and height must be non-negative integers (got ${width}, ${height})`);
  }
  if (width === 0 || height === 0) throw new Error(`image is empty (${width}x${height} pixels)`);
  const count = width * height;
  if (!pixels || pixels.length !== count * channels) {
    throw new TypeError(`expected ${count * channels} bytes for ${width}x${height}x${channels}, ` +
      `got ${pixels ? pixels.length : pixels}`);
  }
  return count;
}

/** preprocess.mnist_like on {data, width, height} (uint8). */
function mnistLike(image) {
  const { data, width, height } = image;
  let background = borderMedian(image);
  const inverted = background > 127; // dark ink on light paper: MNIST is the other way round
  if (inverted) {
    for (let i = 0; i < data.length; i++) data[i] = 255 - data[i]; // toMnist's private copy
    background = 255 - background;
  }
  if (width === SIZE && height === SIZE) return data; // already MNIST-formatted
  let ink = 0;
  for (let i = 0; i < data.length; i++) if (data[i] > ink) ink = data[i];
  if (ink - background < MIN_CONTRAST) throw new Error(NO_DIGIT);
  // Up to the uint8 image that _fit_box resizes, each step depends on the pixel's grey level
  // alone, so one 256-entry table per step gives numpy's values without per-pixel float work.
  const { isInk, levels } = strengthTables(background, ink);
  const box = cropToInk(image, isInk);
  const pixels = new Uint8Array(box.width * box.height);
  for (let y = 0; y < box.height; y++) {
    for (let x = 0; x < box.width; x++) pixels[y * box.width + x] = levels[data[(box.top + y) * width + box.left + x]];
  }
  return centreByMass(fitBox({ data: pixels, width: box.width, height: box.height }));
}

/**
 * Per grey level: the stretch np.clip((gray.astype(float32) - background) / (ink - background),
 * 0, 1) with values under NOISE_FLOOR zeroed (a float32 quotient, as numpy's), whether it is ink
 * for _crop_to_ink (> INK_LEVEL), and _fit_box's np.rint(strength * 255.0).astype(uint8).
 */
function strengthTables(background, ink) {
  const isInk = new Uint8Array(256);
  const levels = new Uint8Array(256);
  for (let value = 0; value < 256; value++) {
    let s = f32((value - background) / (ink - background));
    s = s < 0 ? 0 : s > 1 ? 1 : s;
    if (s < NOISE_FLOOR) s = 0;
    isInk[value] = s > INK_LEVEL ? 1 : 0;
    levels[value] = roundHalfEven(f32(s * 255.0)); // a float32 product, rounded half to even
  }
  return { isInk, levels };
}

/** The median of the outermost rows and columns (corners counted twice, as the concatenation). */
function borderMedian({ data, width, height }) {
  const counts = new Uint32Array(256);
  for (let x = 0; x < width; x++) {
    counts[data[x]]++;
    counts[data[(height - 1) * width + x]]++;
  }
  for (let y = 0; y < height; y++) {
    counts[data[y * width]]++;
    counts[data[y * width + width - 1]]++;
  }
  // np.partition(border, middle)[middle]: the value of rank `middle` (from 0) in sorted order.
  const middle = Math.floor((2 * width + 2 * height) / 2);
  let seen = 0;
  for (let value = 0; value < 256; value++) {
    seen += counts[value];
    if (seen > middle) return value;
  }
  return 255; // not reached
}

/** The bounding box of the ink pixels, one pixel of margin, clipped to the image. */
function cropToInk({ data, width, height }, isInk) {
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (isInk[data[y * width + x]]) {
        if (y < top) top = y;
        bottom = y;
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
  }
  if (bottom < 0) throw new Error(NO_DIGIT);
  const y0 = Math.max(top - 1, 0), y1 = Math.min(bottom + 2, height);
  const x0 = Math.max(left - 1, 0), x1 = Math.min(right + 2, width);
  return { top: y0, left: x0, width: x1 - x0, height: y1 - y0 };
}

/** Scale so the longer side is BOX pixels, keeping the aspect ratio: Pillow's LANCZOS resize. */
function fitBox(image) {
  const { width, height } = image;
  const scale = BOX / Math.max(height, width);
  const outWidth = Math.max(1, roundHalfEven(width * scale));
  const outHeight = Math.max(1, roundHalfEven(height * scale));
  return pillowResize(image, outWidth, outHeight);
}

/** Place the digit in the 28 x 28 field with its centre of mass at the centre. */
function centreByMass({ data, width, height }) {
  // Integer sums: exact, as numpy's float32 sums of at most 400 bytes are.
  let total = 0, rowMoment = 0, colMoment = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = data[y * width + x];
      total += v;
      rowMoment += v * y;
      colMoment += v * x;
    }
  }
  if (total === 0) throw new Error(NO_DIGIT);
  const centreY = rowMoment / total, centreX = colMoment / total;
  const top = Math.min(Math.max(roundHalfEven(SIZE / 2 - centreY), 0), SIZE - height);
  const left = Math.min(Math.max(roundHalfEven(SIZE / 2 - centreX), 0), SIZE - width);
  const field = new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < height; y++) field.set(data.subarray(y * width, (y + 1) * width), (top + y) * SIZE + left);
  return field;
}

// --- Pillow ----------------------------------------------------------------------------------

/**
 * Image.resize((outWidth, outHeight), Resampling.LANCZOS, reducing_gap=3.0) of an "L" image.
 * With a reducing gap, Pillow first box-reduces by the integer factor that leaves at least the
 * gap for the resampling, then resamples the (fractional) box of the reduced image.
 */
function pillowResize(image, outWidth, outHeight) {
  const { width, height } = image;
  let box = [0, 0, width, height];
  if (width === outWidth && height === outHeight) return image; // self.copy()
  // int(x) or 1: truncation, and a zero factor means no reduction.
  const factorX = Math.trunc((box[2] - box[0]) / outWidth / REDUCING_GAP) || 1;
  const factorY = Math.trunc((box[3] - box[1]) / outHeight / REDUCING_GAP) || 1;
  if (factorX > 1 || factorY > 1) {
    const reduceBox = safeBox(image, outWidth, outHeight, box);
    image = pillowReduce(image, factorX, factorY, reduceBox);
    box = [
      (box[0] - reduceBox[0]) / factorX, (box[1] - reduceBox[1]) / factorY,
      (box[2] - reduceBox[0]) / factorX, (box[3] - reduceBox[1]) / factorY,
    ];
  }
  // _imaging.c's resize parses the box as C floats ("(ffff)").
  return imagingResize(image, outWidth, outHeight, box.map(f32));
}

/** Image._get_safe_box: the box grown by the pixels the LANCZOS filter (support 3) reaches. */
function safeBox(image, outWidth, outHeight, box) {
  const support = 3.0 - 0.5;
  const supportX = support * ((box[2] - box[0]) / outWidth);
  const supportY = support * ((box[3] - box[1]) / outHeight);
  return [
    Math.max(0, Math.trunc(box[0] - supportX)), Math.max(0, Math.trunc(box[1] - supportY)),
    Math.min(image.width, Math.ceil(box[2] + supportX)), Math.min(image.height, Math.ceil(box[3] + supportY)),
  ];
}

/**
 * Image.reduce((factorX, factorY), box) of an "L" image: ImagingReduce averages each
 * factorX x factorY block (the last column and row take the partial blocks) with Reduce.c's
 * fixed-point rounding: ((sum + n / 2) * multiplier) >> 24, multiplier = (UINT32)(2^32 / (256 n))
 * in float. The specialised kernels (1x2, 2x2, 3x3, 4x4, 5x5...) compute the same value.
 */
function pillowReduce(image, factorX, factorY, box) {
  const [x0, y0] = box;
  if (factorX === 1 && factorY === 1) return crop(image, box);
  const boxWidth = box[2] - x0, boxHeight = box[3] - y0; // C's box is (left, top, width, height)
  const outWidth = Math.ceil(boxWidth / factorX), outHeight = Math.ceil(boxHeight / factorY);
  const out = new Uint8Array(outWidth * outHeight);
  const src = image.data, stride = image.width;
  for (let y = 0; y < outHeight; y++) {
    const yFrom = y0 + y * factorY, yTo = Math.min(yFrom + factorY, y0 + boxHeight);
    for (let x = 0; x < outWidth; x++) {
      const xFrom = x0 + x * factorX, xTo = Math.min(xFrom + factorX, x0 + boxWidth);
      let sum = 0;
      for (let yy = yFrom; yy < yTo; yy++) for (let xx = xFrom; xx < xTo; xx++) sum += src[yy * stride + xx];
      const n = (yTo - yFrom) * (xTo - xFrom);
      const multiplier = Math.trunc(f32(4294967296 / f32(256 * n))); // division_UINT32(n, 8)
      // (sum + n / 2) * multiplier < 2^32: no UINT32 wrap-around to mirror.
      out[y * outWidth + x] = Math.floor(((sum + Math.floor(n / 2)) * multiplier) / 16777216);
    }
  }
  return { data: out, width: outWidth, height: outHeight };
}

function crop({ data, width }, [x0, y0, x1, y1]) {
  const out = new Uint8Array((x1 - x0) * (y1 - y0));
  for (let y = y0; y < y1; y++) out.set(data.subarray(y * width + x0, y * width + x1), (y - y0) * (x1 - x0));
  return { data: out, width: x1 - x0, height: y1 - y0 };
}

/** _imaging.c resize(): an integer box of exactly the output size is a crop, else a resample. */
function imagingResize(image, outWidth, outHeight, box) {
  if (box[0] === Math.trunc(box[0]) && f32(box[2] - box[0]) === outWidth &&
      box[1] === Math.trunc(box[1]) && f32(box[3] - box[1]) === outHeight) {
    return crop(image, box.map(Math.trunc));
  }
  return pillowResample(image, outWidth, outHeight, box);
}

const PRECISION_BITS = 32 - 8 - 2;
const LANCZOS_SUPPORT = 3.0;

function sinc(x) {
  if (x === 0.0) return 1.0;
  x = x * Math.PI;
  return Math.sin(x) / x;
}

function lanczos(x) {
  return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
}

/**
 * precompute_coeffs + normalize_coeffs_8bpc: for each output pixel, the first input pixel,
 * the number of input pixels, and the LANCZOS weights as fixed-point integers (PRECISION_BITS).
 * in0 and in1 are C floats; the rest is double, as in Resample.c.
 */
function precomputeCoeffs(inSize, in0, in1, outSize) {
  const scale = f32(in1 - in0) / outSize;
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = LANCZOS_SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const invFilterscale = 1.0 / filterscale;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    // (int) casts truncate towards zero.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      const w = lanczos((x + xmin - center + 0.5) * invFilterscale);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0.0 ? k[x] / ww : k[x];
      // normalize_coeffs_8bpc: round half away from zero, then truncate to int.
      kk[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

/** clip8: the fixed-point sum (rounding offset included) >> PRECISION_BITS, clamped to 0..255. */
function clip8(ss) {
  const v = Math.floor(ss / (1 << PRECISION_BITS)); // C's >> on a negative int floors too
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function horizontalPass(src, srcWidth, firstRow, rows, outWidth, { ksize, bounds, kk }) {
  const out = new Uint8Array(outWidth * rows);
  for (let yy = 0; yy < rows; yy++) {
    const line = (yy + firstRow) * srcWidth;
    for (let xx = 0; xx < outWidth; xx++) {
      const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], k = xx * ksize;
      let ss = 1 << (PRECISION_BITS - 1);
      for (let x = 0; x < xmax; x++) ss += src[line + x + xmin] * kk[k + x];
      out[yy * outWidth + xx] = clip8(ss);
    }
  }
  return out;
}

function verticalPass(src, width, outHeight, rowShift, { ksize, bounds, kk }) {
  const out = new Uint8Array(width * outHeight);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2] - rowShift, ymax = bounds[yy * 2 + 1], k = yy * ksize;
    for (let xx = 0; xx < width; xx++) {
      let ss = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < ymax; y++) ss += src[(y + ymin) * width + xx] * kk[k + y];
      out[yy * width + xx] = clip8(ss);
    }
  }
  return out;
}

/**
 * ImagingResampleInner for an 8-bit single-band image and the LANCZOS filter: two separable
 * passes, each rounding to 8 bits, so their order changes the result. Pillow 13 runs the
 * vertical pass first when the height shrinks by more than twice as many pixels as the width
 * (python-pillow/Pillow#9549); the rule here was measured against the installed Pillow 13.0.0
 * (any sizes, fractional boxes), whose C source was not at hand. A pass is skipped when its axis
 * neither scales nor shifts.
 */
function pillowResample(image, outWidth, outHeight, box) {
  const { width, height } = image;
  const needHorizontal = outWidth !== width || box[0] !== 0 || box[2] !== outWidth;
  const needVertical = outHeight !== height || box[1] !== 0 || box[3] !== outHeight;
  const horizontalFirst = !(outHeight < height && height - outHeight > 2 * (width - outWidth));
  const vertical = precomputeCoeffs(height, box[1], box[3], outHeight);
  const horizontal = needHorizontal ? precomputeCoeffs(width, box[0], box[2], outWidth) : null;
  let data = image.data, w = width;
  if (horizontalFirst) {
    if (needHorizontal) {
      // Only the rows the vertical pass reads: bounds_vert's first and last.
      const first = vertical.bounds[0];
      const last = vertical.bounds[outHeight * 2 - 2] + vertical.bounds[outHeight * 2 - 1];
      data = horizontalPass(data, w, first, last - first, outWidth, horizontal);
      w = outWidth;
      if (needVertical) data = verticalPass(data, w, outHeight, first, vertical);
      return { data, width: w, height: needVertical ? outHeight : last - first };
    }
    if (needVertical) data = verticalPass(data, w, outHeight, 0, vertical);
    return { data, width: w, height: needVertical ? outHeight : height };
  }
  if (needVertical) data = verticalPass(data, w, outHeight, 0, vertical);
  if (needHorizontal) {
    data = horizontalPass(data, w, 0, needVertical ? outHeight : height, outWidth, horizontal);
    w = outWidth;
  }
  return { data, width: w, height: needVertical ? outHeight : height };
}
