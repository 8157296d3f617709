"""`mnist-edge web`: the built page driven in headless Chromium (Debian's, through Playwright),
compared with `mnist-edge run` on the very canvas pixels the page classified."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_edge.errors import OutputError, WebError
from mnist_edge.web import serve
from mnist_edge.web.site import C_SITE_BUDGET, build_site
from tests.webpage import CANVAS, canvases, classify_in_page, opened, served

REPO = Path(__file__).resolve().parents[1]
CNN_INT8 = REPO / "exported" / "cnn-int8"
TINY_C = REPO / "exported" / "tiny-mcu"
MNIST_IMAGES = 200
ORT_BUDGET_GZIP = 5 * 1024 * 1024  # the budget for a whole `ort` site
C_BUDGET = C_SITE_BUDGET  # ... and for a `c` site of tiny


@pytest.fixture(scope="module")
def ort_site(tmp_path_factory) -> Path:
    if shutil.which("npm") is None:
        pytest.skip("npm is missing: it fetches onnxruntime-web once (apt-get install npm)")
    return build_site(CNN_INT8, tmp_path_factory.mktemp("web") / "site").folder


@pytest.fixture(scope="module")
def c_site(tmp_path_factory) -> Path:
    for tool in ("clang", "wasm-ld"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing: --engine c compiles with clang and lld (apt-get install clang lld)")
    return build_site(TINY_C, tmp_path_factory.mktemp("web") / "site-c", engine="c").folder


def run_on_pngs(results: list[dict], model: Path, folder: Path) -> dict:
    """`mnist-edge run` on the PNGs the page saved, with its 28 x 28 inputs: {name: (digit, input)}."""
    folder.mkdir()
    for index, result in enumerate(results):
        (folder / f"{index:04d}.png").write_bytes(base64.b64decode(result["png"].split(",", 1)[1]))
    seen = folder.parent / "seen"
    done = subprocess.run([sys.executable, "-m", "mnist_edge", "run", str(model), str(folder), "--json",
                           "--save-preprocessed", str(seen)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    predictions = json.loads(done.stdout)["predictions"]
    saved = {p.stem.split("_", 1)[1]: p for p in seen.glob("*.png")}  # saved as INDEX_STEM.png
    return {Path(p["input"]).stem: (p["digit"], np.asarray(Image.open(saved[Path(p["input"]).stem])))
            for p in predictions}


def compare_with_run(results: list[dict], model: Path, tmp_path: Path) -> tuple[float, float]:
    """Top-1 agreement with `run`, and the share of input pixels within one grey level."""
    by_run = run_on_pngs(results, model, tmp_path / "pngs")
    agree, close = 0, 0
    for index, result in enumerate(results):
        digit, seen = by_run[f"{index:04d}"]
        agree += result["label"] == digit
        page_input = np.asarray(result["input"], dtype=np.int16).reshape(28, 28)
        close += int((np.abs(page_input - seen.astype(np.int16)) <= 1).sum())
    return agree / len(results), close / (784 * len(results))


def test_the_ort_page_predicts_what_run_predicts_on_mnist_images(browser, ort_site: Path, tmp_path: Path) -> None:
    with opened(browser, ort_site) as (page, loaded):
        results = classify_in_page(page, canvases(MNIST_IMAGES))
    assert all(r["digit"] is not None for r in results)
    agreement, within_one = compare_with_run(results, CNN_INT8, tmp_path)
    assert agreement == 1.0 and within_one >= 0.99, (agreement, within_one)


def test_drawn_strokes_are_classified_like_run(browser, ort_site: Path, tmp_path: Path) -> None:
    """Real pointer strokes: a one, a seven and a zero drawn with the mouse."""
    strokes = {
        "1": [[(140, 40), (140, 240)]],
        "7": [[(70, 50), (210, 50), (120, 240)]],
        "0": [[(140 + 70 * np.sin(t), 140 - 95 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 40)]],
    }
    results = []
    with opened(browser, ort_site) as (page, _):
        box = page.locator("#pad").bounding_box()
        scale = box["width"] / CANVAS
        for lines in strokes.values():
            page.click("#clear")
            for line in lines:
                page.mouse.move(box["x"] + line[0][0] * scale, box["y"] + line[0][1] * scale)
                page.mouse.down()
                for x, y in line[1:]:
                    page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=4)
                page.mouse.up()
            results.append({**page.evaluate("window.mnistEdge.classify()"),
                            "png": page.evaluate("window.mnistEdge.canvasPNG()")})
    assert [r["label"] for r in results] == list(strokes)
    agreement, within_one = compare_with_run(results, CNN_INT8, tmp_path)
    assert agreement == 1.0 and within_one >= 0.99, (agreement, within_one)


def test_the_ort_page_compiles_onnxruntime_web_while_it_loads(browser, ort_site: Path) -> None:
    """The page's first script compiles onnxruntime-web's WebAssembly at once, and onnxruntime-web
    instantiates that module instead of compiling its own; the engine is imported while model.json
    is fetched, and every step of the first prediction is marked."""
    with opened(browser, ort_site) as (_, loaded):
        marks = loaded["marks"]
    steps = {"start", "model-json", "engine-imported", "ort-module-reused", "session-created", "first-prediction"}
    assert steps <= set(marks)
    assert marks["start"] <= marks["engine-imported"] <= marks["session-created"] <= marks["first-prediction"]
    html = (ort_site / "index.html").read_text()
    assert 'data-engine="ort"' in html and 'rel="modulepreload" href="ort/ort.wasm.min.mjs"' in html


def test_the_ort_site_is_within_budget_and_offline(browser, ort_site: Path) -> None:
    site_bytes = sum(len(__import__("gzip").compress(p.read_bytes(), 9)) for p in ort_site.rglob("*") if p.is_file())
    assert site_bytes <= ORT_BUDGET_GZIP, site_bytes
    with served(ort_site) as url:
        page = browser.new_page()
        foreign = []
        page.on("request", lambda request: foreign.append(request.url) if not request.url.startswith(url) else None)
        page.goto(url)
        page.evaluate("window.mnistEdge.ready")
        page.close()
    assert foreign == []  # no CDN, no network beyond the site itself


def test_the_c_page_gives_the_c_librarys_scores_bit_for_bit(browser, c_site: Path, tmp_path: Path) -> None:
    """Chromium has WebAssembly SIMD: the page loads the SIMD module (and only it), says so, shows
    the accuracy `codegen --verify` measured, and its scores are the host library's."""
    from mnist_edge.codegen.verify import build_harness, c_scores

    with opened(browser, c_site) as (page, loaded):
        results = classify_in_page(page, canvases(MNIST_IMAGES))
        runtime = page.evaluate("document.getElementById('facts').textContent")
        model_line = page.evaluate("document.getElementById('model-line').textContent")
        fetched = page.evaluate("performance.getEntriesByType('resource').map((r) => r.name.split('/').pop())")
    assert "SIMD" in runtime and "model-simd.wasm" in fetched and "model.wasm" not in fetched
    manifest = json.loads((TINY_C / "manifest.json").read_text())
    assert f"{100 * manifest['verification']['c_accuracy']:.2f} % on the MNIST test set" in model_line
    assert {"model-json", "module-instantiated", "engine-ready", "first-prediction"} <= set(loaded["marks"])
    inputs = np.asarray([r["input"] for r in results], dtype=np.uint8)
    (tmp_path / "host").mkdir()
    expected = c_scores(build_harness(TINY_C, tmp_path / "host", "cc"), inputs, 10)
    assert np.array_equal(np.asarray([r["scores"] for r in results], dtype=np.uint8), expected)
    agreement, within_one = compare_with_run(results, REPO / "exported" / "tiny-mcu-int8", tmp_path)
    assert agreement == 1.0 and within_one >= 0.99, (agreement, within_one)
    total = sum(p.stat().st_size for p in c_site.rglob("*") if p.is_file())
    assert total <= C_BUDGET, total


def test_from_file_the_page_says_it_needs_a_server(browser, ort_site: Path) -> None:
    page = browser.new_page()
    page.goto((ort_site / "index.html").as_uri())
    page.wait_for_selector("#file-warning:not([hidden])")
    page.close()


# --- bad input: one error, nothing written ---------------------------------------------------------

def test_a_folder_without_a_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no manifest.json and 0 .onnx files"):
        build_site(tmp_path / "empty", tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_an_out_holding_other_files_is_refused_without_force(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a site of mnist-edge web"):
        build_site(CNN_INT8, tmp_path / "site")
    assert [p.name for p in (tmp_path / "site").iterdir()] == ["notes.txt"]


def test_engine_c_on_an_onnx_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WebError):
        build_site(CNN_INT8, tmp_path / "site", engine="c")
    assert not (tmp_path / "site").exists()


def test_a_busy_port_is_one_error_line_and_no_site(tmp_path: Path) -> None:
    holder = serve.bind(tmp_path, port=0)
    port = holder.server_address[1]
    try:
        done = subprocess.run([sys.executable, "-m", "mnist_edge", "web", str(CNN_INT8), "--out", str(tmp_path / "s"),
                               "--serve", "--port", str(port)], capture_output=True, text=True, timeout=120)
    finally:
        holder.server_close()
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and f"port {port}" in done.stderr, done.stderr
    assert not (tmp_path / "s").exists()


def test_pipeline_web_builds_the_site_and_the_report_links_it(ort_site: Path, tmp_path: Path) -> None:
    from mnist_edge.pipeline import Paths, _build_web
    from mnist_edge.report import build_report

    run = tmp_path / "run"
    shutil.copytree(CNN_INT8, run / "exported" / "int8")
    (run / "pipeline.json").write_text(json.dumps({"arch": "cnn", "steps": []}))
    summary = _build_web(Paths(run))
    assert summary["index"] == "site/index.html" and (run / "site" / "model.onnx").is_file()
    assert (run / "site" / "model.onnx").read_bytes() == (CNN_INT8 / "model.onnx").read_bytes()
    html = Path(build_report(run)).read_text()
    assert 'href="site/index.html"' in html
    # `pipeline --web --resume` always redoes the report step: the site is rebuilt in place, ort/ included
    assert _build_web(Paths(run)) == summary
