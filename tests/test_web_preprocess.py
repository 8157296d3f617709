"""The web page's preprocessing (mnist_edge/web/assets/preprocess.js, run by Node) against
`mnist_edge.preprocess.to_mnist` on the same canvases: the same 28 x 28 pixels, the same refusals
and the same predictions, so a digit drawn in the browser is classified as `mnist-edge run`
classifies the canvas saved as a PNG.

The canvases are made here with Pillow: MNIST test digits scaled up as black ink on a white
canvas, anti-aliased strokes of many widths, tiny, huge, off-centre and clipped digits, devicePixelRatio
sizes up to one big enough for grayscale()'s reduction, coloured and semi-transparent RGBA
canvases, grey inks around the contrast thresholds, and blank and low-contrast ones that must
be refused by both.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image, ImageDraw

from mnist_edge.data import load_split
from mnist_edge.errors import InputImageError
from mnist_edge.preprocess import grayscale, to_mnist
from mnist_edge.runtime import Predictor

REPO = Path(__file__).resolve().parents[1]
PREPROCESS_JS = REPO / "mnist_edge" / "web" / "assets" / "preprocess.js"
CNN_INT8 = REPO / "exported" / "cnn-int8"
CANVAS = 280  # the page's canvas in CSS pixels; devicePixelRatio multiplies it
NO_DIGIT = "no digit found"
# What the port achieves: every pixel of every canvas identical (Pillow's fixed-point LANCZOS and
# box reduction, numpy's float32 steps and Python's half-to-even rounding are mirrored).
EXPECTED_IDENTICAL = 1.0

# Node reads the canvases (u32 count, then per canvas u32 width, height, channels and the bytes;
# channels 1 is a grey canvas, which the script expands to the opaque RGBA a canvas holds) and
# runs the page's path: luminance(ImageData) -> toMnist. It writes 784 bytes per canvas, the
# luminance of the 4-channel canvases, and each refusal's message.
RUNNER = r"""
import { readFileSync, writeFileSync } from "node:fs";
const [moduleUrl, inPath, outPath, lumPath, messagesPath] = process.argv.slice(2);
const { luminance, toMnist } = await import(moduleUrl);
const input = readFileSync(inPath);
const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
const count = view.getUint32(0, true);
const out = new Uint8Array(count * 784);
const lums = [];
const messages = [];
let at = 4;
for (let i = 0; i < count; i++) {
  const width = view.getUint32(at, true), height = view.getUint32(at + 4, true);
  const channels = view.getUint32(at + 8, true);
  at += 12;
  const pixels = new Uint8Array(input.buffer, input.byteOffset + at, width * height * channels);
  at += pixels.length;
  let rgba = pixels;
  if (channels === 1) {
    rgba = new Uint8ClampedArray(width * height * 4).fill(255);
    for (let p = 0; p < pixels.length; p++) rgba[4 * p] = rgba[4 * p + 1] = rgba[4 * p + 2] = pixels[p];
  }
  const gray = luminance(rgba, width, height);
  if (channels === 4) lums.push(gray);
  try {
    out.set(toMnist(gray, width, height), i * 784);
    messages.push(null);
  } catch (error) {
    messages.push(String(error.message));
  }
}
writeFileSync(outPath, out);
writeFileSync(lumPath, Buffer.concat(lums.map((g) => Buffer.from(g.buffer, g.byteOffset, g.length))));
writeFileSync(messagesPath, JSON.stringify(messages));
"""


@dataclass
class Canvas:
    kind: str
    pixels: np.ndarray  # uint8 [H, W] (a grey canvas) or [H, W, 4] (RGBA)
    must_refuse: bool = False

    @property
    def opaque(self) -> bool:
        return self.pixels.ndim == 2 or bool((self.pixels[..., 3] == 255).all())

    def rgba(self) -> np.ndarray:
        if self.pixels.ndim == 3:
            return self.pixels
        alpha = np.full_like(self.pixels, 255)
        return np.stack([self.pixels, self.pixels, self.pixels, alpha], axis=-1)


# --- canvases --------------------------------------------------------------------------------


def _ink_on_paper(ink: np.ndarray, paper: int = 255, pen: int = 0) -> np.ndarray:
    """An ink coverage layer (0..255) drawn with `pen` on `paper`, as a canvas blends it."""
    cover = ink.astype(np.float64) / 255.0
    return np.rint(paper + (pen - paper) * cover).astype(np.uint8)


def _mnist_ink(digit: np.ndarray, side: int, x: int, y: int, width: int, height: int,
               resample: Image.Resampling) -> np.ndarray:
    """An MNIST digit scaled to side x side and pasted at (x, y), possibly past the edges."""
    layer = Image.new("L", (width, height), 0)
    layer.paste(Image.fromarray(digit).resize((side, side), resample), (x, y))
    return np.asarray(layer)


def _strokes(rng: np.random.Generator, width: int, height: int, pen: float, box: tuple[int, int, int, int],
             lines: int) -> np.ndarray:
    """Anti-aliased polylines: drawn 4x larger and box-averaged, like a browser canvas's edges."""
    big = Image.new("L", (4 * width, 4 * height), 0)
    draw = ImageDraw.Draw(big)
    left, top, right, bottom = box
    for _ in range(lines):
        points = [(4 * rng.uniform(left, right), 4 * rng.uniform(top, bottom)) for _ in range(rng.integers(2, 7))]
        draw.line(points, fill=255, width=max(1, round(4 * pen)), joint="curve")
    return np.asarray(big.reduce(4))


def _shape(width: int, height: int, kind: str, pen: float, box: tuple[float, float, float, float]) -> np.ndarray:
    big = Image.new("L", (4 * width, 4 * height), 0)
    draw = ImageDraw.Draw(big)
    scaled = [4 * v for v in box]
    w = max(1, round(4 * pen))
    if kind == "ring":
        draw.ellipse(scaled, outline=255, width=w)
    elif kind == "bar":
        middle = (scaled[0] + scaled[2]) / 2
        draw.line([(middle, scaled[1]), (middle, scaled[3])], fill=255, width=w)
    else:  # dot
        draw.ellipse(scaled, fill=255)
    return np.asarray(big.reduce(4))


def _mean_at_128(digit: np.ndarray) -> np.ndarray:
    """A canvas in a transparent frame whose opaque pixels average 128 - 1/n exactly, but 128.0 in
    numpy's float32 mean: _composite_alpha then flattens the frame to black, not white."""
    side, frame = 840, 10
    inner = (slice(frame, side - frame),) * 2
    gray = np.full((side, side), 128, np.int64)
    gray[100:600, 170:670] -= np.asarray(Image.fromarray(digit).resize((500, 500), Image.Resampling.BICUBIC)) // 2
    count = (side - 2 * frame) ** 2
    missing = 128 * count - 1 - int(gray[inner].sum())
    lift = np.zeros(200 * (side - 2 * frame), np.int64)  # brighter rows under the digit make up for it
    lift[: missing // 127] = 127
    lift[missing // 127] = missing % 127
    gray[620:820, frame : side - frame] += lift.reshape(200, side - 2 * frame)
    assert gray[inner].sum() == 128 * count - 1 and gray.max() <= 255
    assert float(gray[inner].astype(np.float32).mean()) == 128.0  # what makes this canvas a test
    alpha = np.zeros((side, side), np.int64)
    alpha[inner] = 255
    return np.dstack([gray, gray, gray, alpha]).astype(np.uint8)


def make_canvases(digits: np.ndarray) -> list[Canvas]:
    rng = np.random.default_rng(13)
    canvases: list[Canvas] = []
    add = canvases.append
    resamples = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
    pick = iter(range(len(digits)))

    # MNIST digits, black ink on white, any size from tiny to bigger than the canvas, anywhere.
    for i in range(120):
        side = int(rng.choice([12, 20, 28, 40, 60, 90, 120, 160, 200, 240, 280, 330, 400]))
        x = int(rng.integers(-side // 3, CANVAS - 2 * side // 3 + 1))
        y = int(rng.integers(-side // 3, CANVAS - 2 * side // 3 + 1))
        ink = _mnist_ink(digits[next(pick)], side, x, y, CANVAS, CANVAS, resamples[i % 3])
        add(Canvas("mnist", _ink_on_paper(ink)))
    # The same at devicePixelRatio 1.5, 2, 3 and 8 (8: 2240 px, reduced by grayscale() first).
    for ratio, count in ((1.5, 10), (2, 12), (3, 8), (8, 2)):
        size = round(CANVAS * ratio)
        for _ in range(count):
            side = int(rng.integers(size // 5, size))
            x, y = (int(v) for v in rng.integers(0, size - side // 2, 2))
            add(Canvas(f"mnist@{ratio}x", _ink_on_paper(_mnist_ink(digits[next(pick)], side, x, y, size, size,
                                                                   Image.Resampling.BICUBIC))))
    # Strokes: pens from a hairline to a marker, boxes from a corner to the whole canvas.
    for _ in range(80):
        pen = float(rng.choice([0.7, 1, 2, 3, 5, 8, 12, 16, 20, 28, 40, 56]))
        w, h = (int(v) for v in rng.integers(8, CANVAS + 1, 2))
        x, y = int(rng.integers(0, CANVAS - w + 1)), int(rng.integers(0, CANVAS - h + 1))
        ink = _strokes(rng, CANVAS, CANVAS, pen, (x, y, x + w, y + h), int(rng.integers(1, 4)))
        add(Canvas("strokes", _ink_on_paper(ink)))
    # Shapes at the extremes: tiny, thin, thick, against the edges, a bare dot.
    for pen, box in ((20, (20, 20, 260, 260)), (1, (100, 60, 180, 220)), (60, (0, 0, 280, 280)),
                     (3, (0, 0, 12, 18)), (3, (262, 262, 280, 280)), (4, (130, 5, 150, 275)),
                     (2, (139, 139, 141, 141)), (10, (-50, 100, 60, 200)), (30, (200, -20, 300, 120))):
        for kind in ("ring", "bar", "dot"):
            add(Canvas(f"{kind}-pen{pen}", _ink_on_paper(_shape(CANVAS, CANVAS, kind, pen, box))))
    # A one-pixel line along an edge and a lone speck: crops a few pixels across.
    line = np.full((CANVAS, CANVAS), 255, np.uint8)
    line[:, 0] = 0
    add(Canvas("edge-line", line))
    speck = np.full((CANVAS, CANVAS), 255, np.uint8)
    speck[200, 31] = 0
    add(Canvas("speck", speck))

    # Grey inks and paper: contrast around MIN_CONTRAST (32) and ranges where a pixel's
    # strength is exactly 0.3 (12/40, 15/50, ...) or 0.15 (6/40, ...): numpy compares in float32.
    gradient = np.tile(np.linspace(0, 255, CANVAS).astype(np.uint8), (CANVAS, 1))
    for paper, pen in ((255, 223), (255, 200), (255, 215), (255, 205), (240, 140), (255, 128), (200, 0),
                       (128, 255), (60, 255), (0, 40), (30, 80), (255, 195)):
        ink = np.zeros((CANVAS, CANVAS), np.uint8)
        ink[60:220, 90:190] = gradient[60:220, 60:160]  # every coverage level
        ink[100:180, 120:160] = 255
        add(Canvas(f"grey-{paper}-{pen}", _ink_on_paper(ink, paper, pen)))
    # Paper texture: noise under the ink, some of it above NOISE_FLOOR.
    for i in range(6):
        noisy = _ink_on_paper(_mnist_ink(digits[next(pick)], 200, 40, 40, CANVAS, CANVAS,
                                         Image.Resampling.BICUBIC)).astype(np.int16)
        noisy += rng.normal(0, 6 + 6 * i, noisy.shape).astype(np.int16)
        add(Canvas("noisy", np.clip(noisy, 0, 255).astype(np.uint8)))
    # White ink on black: no inversion.
    for _ in range(6):
        ink = _mnist_ink(digits[next(pick)], int(rng.integers(60, 260)), 20, 20, CANVAS, CANVAS,
                         Image.Resampling.BICUBIC)
        add(Canvas("white-on-black", _ink_on_paper(ink, 0, 255)))

    # Coloured opaque RGBA canvases: luminance() must be Pillow's RGB -> L exactly.
    for i in range(24):
        ink = _strokes(rng, CANVAS, CANVAS, float(rng.choice([4, 10, 20])), (40, 30, 240, 250), 3)
        cover = ink.astype(np.float64)[..., None] / 255.0
        paper = rng.integers(150, 256, 3) if i % 3 else rng.integers(0, 256, 3)
        pen = rng.integers(0, 120, 3) if i % 3 else rng.integers(0, 256, 3)
        rgb = np.rint(paper + (pen - paper) * cover).astype(np.uint8)
        add(Canvas("colour", np.dstack([rgb, np.full((CANVAS, CANVAS), 255, np.uint8)])))
    # Semi-transparent canvases (cleared with clearRect, drawn with alpha): _composite_alpha.
    for i in range(10):
        ink = _mnist_ink(digits[next(pick)], int(rng.integers(80, 260)), 15, 15, CANVAS, CANVAS,
                         Image.Resampling.BICUBIC)
        shade = 255 if i % 2 else 0  # white strokes on transparency too
        rgba = np.zeros((CANVAS, CANVAS, 4), np.uint8)
        rgba[..., :3] = shade if i < 8 else rng.integers(0, 256, (CANVAS, CANVAS, 3))
        rgba[..., 3] = ink if i < 6 else np.maximum(ink, 40 * (i % 4))
        add(Canvas("transparent", rgba))

    add(Canvas("mean-at-128", _mean_at_128(digits[next(pick)])))

    # Already 28 x 28 (returned after the inversion only), odd shapes, tall or wide strips, and
    # strips long enough for grayscale()'s reduction with partial blocks at the ends.
    for i in range(4):
        add(Canvas("28x28", 255 - digits[next(pick)] if i % 2 else digits[next(pick)].copy()))
    add(Canvas("28x28-blank", np.full((28, 28), 255, np.uint8)))
    for width, height in ((100, 37), (37, 100), (300, 3), (3, 300), (1, 60), (60, 1), (29, 28), (1500, 90),
                          (2101, 61), (45, 3001)):
        ink = _strokes(rng, width, height, 1.5, (0, 0, width, height), 2)
        add(Canvas(f"{width}x{height}", _ink_on_paper(ink)))

    # Nothing to find: both must refuse.
    refuse = [np.full((CANVAS, CANVAS), 255, np.uint8), np.zeros((CANVAS, CANVAS), np.uint8),
              np.full((CANVAS, CANVAS), 128, np.uint8), np.full((1, 1), 255, np.uint8),
              np.full((560, 560), 255, np.uint8)]
    for pen in (230, 224, 250):  # contrast 25, 31 and 5: below MIN_CONTRAST
        ink = _mnist_ink(digits[next(pick)], 200, 40, 40, CANVAS, CANVAS, Image.Resampling.BICUBIC)
        refuse.append(_ink_on_paper(ink, 255, pen))
    faint = np.full((CANVAS, CANVAS), 255, np.int16) - rng.integers(0, 20, (CANVAS, CANVAS))
    refuse.append(faint.astype(np.uint8))  # paper texture only
    for pixels in refuse:
        add(Canvas("refused", pixels, must_refuse=True))
    add(Canvas("refused-rgba", np.zeros((CANVAS, CANVAS, 4), np.uint8), must_refuse=True))  # all transparent
    return canvases


# --- running both sides ------------------------------------------------------------------------


def run_node(node: str, canvases: list[Canvas], folder: Path) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    chunks = [struct.pack("<I", len(canvases))]
    for canvas in canvases:
        height, width = canvas.pixels.shape[:2]
        channels = 1 if canvas.pixels.ndim == 2 else 4
        chunks += [struct.pack("<III", width, height, channels), np.ascontiguousarray(canvas.pixels).tobytes()]
    paths = {name: folder / name for name in ("canvases.bin", "out.bin", "luminance.bin", "messages.json")}
    paths["canvases.bin"].write_bytes(b"".join(chunks))
    script = folder / "run_preprocess.mjs"
    script.write_text(RUNNER)
    done = subprocess.run([node, str(script), PREPROCESS_JS.as_uri(), *(str(p) for p in paths.values())],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"node failed:\n{done.stderr[-4000:]}"
    out = np.frombuffer(paths["out.bin"].read_bytes(), np.uint8).reshape(len(canvases), 28, 28)
    messages = json.loads(paths["messages.json"].read_text())
    return out, messages, np.frombuffer(paths["luminance.bin"].read_bytes(), np.uint8)


def python_side(canvas: Canvas, png: Path) -> tuple[list[np.ndarray | str], np.ndarray]:
    """to_mnist of the canvas as an "L" image (opaque canvases) and as the page's RGBA PNG."""
    rgba = Image.fromarray(canvas.rgba(), "RGBA")
    results: list[np.ndarray | str] = []
    sources: list[Image.Image | Path] = []
    if canvas.opaque:
        sources.append(rgba.convert("L"))
    rgba.save(png, compress_level=1)
    sources.append(png)
    for source in sources:
        try:
            results.append(to_mnist(source))
        except InputImageError as exc:
            results.append(exc.reason)
    return results, grayscale(rgba)  # the luminance `run` takes from the PNG (alpha composited)


@pytest.fixture(scope="module")
def digits(mnist_dir: Path) -> np.ndarray:
    return load_split("test", mnist_dir, download=False).images[:300]


def test_preprocess_js_matches_python(digits: np.ndarray, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js) is missing: it runs the page's preprocess.js (apt-get install nodejs)")
    if int(PIL.__version__.split(".")[0]) < 13:
        pytest.skip(f"preprocess.js mirrors Pillow 13's resampling (the order of its two passes changed "
                    f"in python-pillow/Pillow#9549); Pillow {PIL.__version__} is installed")
    canvases = make_canvases(digits)
    assert len(canvases) >= 300
    js, messages, luminances = run_node(node, canvases, tmp_path)

    compared, identical, within_one, refused = 0, 0, 0, 0
    lum_at = 0
    python_images, js_images = [], []
    for index, canvas in enumerate(canvases):
        results, gray = python_side(canvas, tmp_path / "canvas.png")
        what = f"canvas {index} ({canvas.kind}, {canvas.pixels.shape})"
        if canvas.pixels.ndim == 3:  # luminance() is grayscale() of the RGBA image, bit for bit
            size = gray.size
            lum = luminances[lum_at : lum_at + size].reshape(gray.shape)
            lum_at += size
            assert np.array_equal(lum, gray), f"{what}: luminance() differs from preprocess.grayscale()"
        first = results[0]
        for other in results[1:]:  # the "L" image and the RGBA PNG agree in Python itself
            assert type(other) is type(first) and np.array_equal(other, first), f"{what}: Python paths differ"
        if isinstance(first, str):
            assert first.startswith(NO_DIGIT), f"{what}: Python refused with {first!r}"
            assert messages[index] == first, f"{what}: Python refused ({first!r}), JS said {messages[index]!r}"
            refused += 1
            continue
        assert not canvas.must_refuse, f"{what}: Python found a digit on a canvas meant to be refused"
        assert messages[index] is None, f"{what}: JS refused ({messages[index]!r}), Python did not"
        diff = np.abs(js[index].astype(np.int16) - first.astype(np.int16))
        # Every pixel, on every canvas: a digit placed one pixel off differs in far fewer than 1 %.
        assert (diff == 0).all(), f"{what}: {(diff > 0).sum()} pixels differ, {(diff > 1).sum()} by more than one level"
        compared += 1
        identical += int((diff == 0).sum())
        within_one += int((diff <= 1).sum())
        python_images.append(first)
        js_images.append(js[index])
    assert lum_at == luminances.size
    assert refused >= sum(c.must_refuse for c in canvases)

    pixels = compared * 784
    predictor = Predictor.load(CNN_INT8, threads=1)
    py_digits = predictor.predict(np.stack(python_images)).digits
    js_digits = predictor.predict(np.stack(js_images)).digits
    same = int((py_digits == js_digits).sum())
    print(f"\npreprocess.js vs to_mnist: {len(canvases)} canvases ({compared} digits, {refused} refused by both); "
          f"pixels identical {identical}/{pixels} ({identical / pixels:.4%}), within one level "
          f"{within_one}/{pixels} ({within_one / pixels:.4%}); predictions equal {same}/{compared}")
    assert within_one / pixels >= 0.99
    assert identical / pixels >= EXPECTED_IDENTICAL, f"{pixels - identical} pixels not bit-exact"
    assert same == compared, f"{compared - same} predictions differ"


def test_preprocess_js_refuses_bad_arguments(tmp_path: Path) -> None:
    """Wrong sizes are the caller's bug (TypeError), an empty image is refused like Python's check_size."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js) is missing: it runs the page's preprocess.js (apt-get install nodejs)")
    script = tmp_path / "bad.mjs"
    script.write_text(r"""
const { luminance, toMnist } = await import(process.argv[2]);
const attempt = (f) => { try { f(); return "ok"; } catch (e) { return `${e.name}: ${e.message}`; } };
console.log(JSON.stringify([
  attempt(() => toMnist(new Uint8Array(10), 3, 3)),
  attempt(() => toMnist(new Uint8Array(0), 0, 5)),
  attempt(() => luminance(new Uint8Array(35), 3, 3)),
  attempt(() => toMnist(new Uint8Array(9).fill(255), 3, 3)),
]));
""")
    done = subprocess.run([node, str(script), PREPROCESS_JS.as_uri()], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    wrong_size, empty, wrong_rgba, blank = json.loads(done.stdout)
    assert wrong_size.startswith("TypeError: expected 9 bytes")
    assert empty == "Error: image is empty (0x5 pixels)"
    assert wrong_rgba.startswith("TypeError: expected 36 bytes")
    assert blank.startswith(f"Error: {NO_DIGIT}")


@pytest.mark.parametrize("ink_height, ink_width, top, left", [
    (18, 18, 5, 5),  # centre of mass 9.5: 14 - 9.5 = 4.5 goes to 4, where half-up rounding gives 5
    (18, 16, 5, 7),  # across, 8.5: 14 - 8.5 = 5.5 goes to 6, where rounding down gives 5
    (16, 18, 7, 5),  # the same tie down the rows
])
def test_centre_by_mass_rounds_an_exact_half_to_even(tmp_path: Path, ink_height: int, ink_width: int,
                                                    top: int, left: int) -> None:
    """A constructed tie: a solid block of ink whose crop (one pixel of margin around it) is 20
    pixels tall, so it is not resampled, and whose centre of mass lies exactly halfway between two
    pixels. Python's round() and the page's roundHalfEven put it at the even offset; the field
    holds the block at exactly that place, on both sides."""
    canvas = np.full((60, 60), 255, np.uint8)
    canvas[20 : 20 + ink_height, 21 : 21 + ink_width] = 0
    expected = np.zeros((28, 28), np.uint8)
    expected[top : top + ink_height, left : left + ink_width] = 255
    assert np.array_equal(to_mnist(Image.fromarray(canvas)), expected)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js) is missing: it runs the page's preprocess.js (apt-get install nodejs)")
    js, messages, _ = run_node(node, [Canvas("tie", canvas)], tmp_path)
    assert messages == [None] and np.array_equal(js[0], expected)
