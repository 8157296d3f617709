"""report.html from a synthetic run folder: sections, embedded figures, escaping, partial runs, the
`report` command, and a real render in headless Chromium (skipped when it is not installed)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageStat
from typer.testing import CliRunner

from mnist_edge.cli import app
from mnist_edge.errors import ConfigError
from mnist_edge.report import EXPECTED, REPORT_FILE, build_report, missing_parts, render_report
from mnist_edge.units import format_bytes

runner = CliRunner()
EVIL = "<script>alert('x')</script>&"
SECTION_IDS = ("summary", "data", "training", "evaluation", "parity", "bench", "manifests")


# --- a synthetic run folder, shaped like the pipeline's ------------------------------------------


def _png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (64, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).rectangle((8, 8, size[0] - 8, size[1] - 8), fill=color)
    image.save(path)


def _json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")


def _steps(failed_at: str | None = None) -> list[dict]:
    names = ("data", "train", "eval", "export", "quantize", "parity", "bench", "report")
    steps, status = [], "done"
    for name in names:
        if name == failed_at:
            steps.append({"name": name, "status": "failed", "seconds": 0.4,
                          "message": f"{name} broke: <disk full>", "fingerprint": ""})
            status = "pending"
            continue
        steps.append({"name": name, "status": status, "seconds": 1.5 if status == "done" else 0.0,
                      "message": "ok" if status == "done" else "", "fingerprint": "abc"})
    return steps


def _pipeline(root: Path, failed_at: str | None = None) -> None:
    _json(root / "pipeline.json", {"preset_recipe": {"arch": "cnn", "epochs": 2}, "arch": "cnn",
                                   "created": "2025-01-01T00:00:00+00:00", "steps": _steps(failed_at),
                                   "summary": {}})


def _data(root: Path) -> None:
    _json(root / "data/stats.json", {
        "train_count": 60000, "test_count": 10000,
        "train_class_counts": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        "test_class_counts": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
        "pixel_mean": 0.1307, "pixel_std": 0.3081, "folder": "/data/MNIST/raw"})
    for name, color in (("samples", (30, 30, 30)), ("class_counts", (31, 119, 180)),
                        ("class_means", (90, 90, 90)), ("pixel_histogram", (255, 127, 14))):
        _png(root / "data" / f"{name}.png", color)


def _checkpoint(root: Path) -> None:
    epochs = [{"epoch": e, "train_loss": 0.5 / e, "train_acc": 0.9 + e / 100, "val_loss": 0.4 / e,
               "val_acc": 0.95 + e / 100, "lr": 0.05 / e, "seconds": 12.5, "images_per_s": 4400.0}
              for e in (1, 2)]
    recipe = {"arch": "cnn", "epochs": 2, "batch_size": 128, "lr": 0.05, "optimizer": "sgd",
              "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle", "augment": True, "seed": 0}
    _json(root / "checkpoint/config.json", {
        "format": "mnist-edge-checkpoint", "format_version": 1, "arch": "cnn", "recipe": recipe,
        "history": epochs, "params": 21840, "device": "cpu", "versions": {"torch": "2.5.0"}})
    _json(root / "checkpoint/metrics.json", {"epochs": epochs})
    (root / "checkpoint/model.safetensors").write_bytes(b"\0" * 88_000)
    confusion = [[98 if i == j else (2 if (i, j) == (4, 9) else 0) for j in range(10)] for i in range(10)]
    _json(root / "checkpoint/eval.json", {
        "model": "cnn (PyTorch)", "count": 1000, "correct": 980, "accuracy": 0.9912,
        "per_class": [{"label": str(d), "precision": 0.99, "recall": 0.98 if d != 4 else 0.96,
                       "f1": 0.985, "support": 100} for d in range(10)],
        "confusion": confusion,
        "mistakes": [{"index": 7, "true": 4, "predicted": 9, "confidence": 0.97}],
        "split": "test", "images": "the 1,000 test images",
        "beside": {"train": {"count": 55000, "correct": 54857, "accuracy": 0.9974, "images": "training"}}})
    _png(root / "checkpoint/curves.png", (44, 160, 44))
    _png(root / "checkpoint/eval_confusion.png", (8, 81, 156))
    _png(root / "checkpoint/eval_mistakes.png", (214, 39, 40))


def _manifest(root: Path, role: str, size: int, accuracy: float) -> None:
    _json(root / f"exported/{role}/manifest.json", {
        "schema_version": 1, "name": f"cnn-{role}" if role == "fp32" else EVIL, "created": "2025-01-01",
        "files": {"model": "model.onnx", "sha256": "ab" * 32, "bytes": size},
        "input": {"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float32", "layout": "NCHW",
                  "scale": 255, "mean": 0.1307, "std": 0.3081},
        "labels": [str(d) for d in range(10)], "source": {"arch": "cnn", "params": 21840},
        "export": {"opset": 17},
        "quantization": {"method": "static-qdq", "per_channel": True} if role == "int8" else None,
        "metrics": {"test_accuracy": accuracy}})


def _parity(root: Path) -> None:
    def pair(ref: str, cand: str, a: float, b: float, max_diff: float) -> dict:
        return {"reference": ref, "candidate": cand, "reference_accuracy": a, "candidate_accuracy": b,
                "accuracy_delta_points": round((b - a) * 100, 6), "agreement": 0.9991, "agree_count": 9991,
                "disagree_count": 9, "disagreements": [1, 2, 3], "max_abs_logit_diff": max_diff,
                "mean_abs_logit_diff": max_diff / 10}

    _json(root / "parity/parity.json", {
        "images": 10000, "data": "/data",
        "models": [{"role": r, "name": n, "path": "p", "correct": c, "count": 10000, "accuracy": c / 10000}
                   for r, n, c in (("pytorch", "cnn (PyTorch)", 9912), ("fp32", "cnn-fp32", 9912),
                                   ("int8", "cnn-int8", 9907))],
        "pairs": [pair("pytorch", "fp32", 0.9912, 0.9912, 3e-6), pair("fp32", "int8", 0.9912, 0.9907, 0.21),
                  pair("pytorch", "int8", 0.9912, 0.9907, 0.21)],
        "thresholds": {"fp32_max_abs_diff": 1e-4, "fp32_min_agreement": 1.0, "int8_max_drop_points": 0.1},
        "breaches": [{"check": "top-1 agreement", "pair": "fp32 vs pytorch", "measured": 0.9991, "limit": 1.0,
                      "message": "fp32 ONNX and PyTorch disagree on 9 images"}],
        "passed": False, "command": "mnist-edge parity runs/x/checkpoint runs/x/exported/fp32",
        "environment": {"onnxruntime": "1.20"}, "created": "2025-01-01", "disagreements": [],
        "layer_report": None, "files": {"figure": "parity_disagreements.png", "report": "parity.json"}})
    _png(root / "parity/parity_disagreements.png", (148, 103, 189))


def _bench_model(name: str, kind: str, quantized: bool, p50: float, size: int | None) -> dict:
    latency = {"batch_size": 1, "threads": 1, "runs": 5000, "warmup_runs": 500, "steady": True,
               "p50_us": p50, "p90_us": p50 * 1.1, "p99_us": p50 * 1.5, "p999_us": p50 * 2,
               "mean_us": p50, "std_us": 1.0, "cv": 0.02, "min_us": p50 * 0.9, "max_us": p50 * 3,
               "quantiles_us": [p50] * 5, "warnings": []}
    return {"name": name, "path": "x", "kind": kind, "quantized": quantized, "file_bytes": size,
            "cold_start": {"load_ms": 3.0, "first_inference_ms": 0.2, "total_ms": 3.2}, "latency": latency,
            "throughput": [{"batch_size": b, "threads": 1, "images_per_s": 1e6 / p50 * b ** 0.5, "runs": 10,
                            "seconds": 0.5} for b in (1, 64)],
            "peak_rss_bytes": 90_000_000, "rss_before_bytes": 80_000_000, "profile": None,
            "profile_file": None, "notes": []}


def _bench(root: Path) -> None:
    _json(root / "bench/bench.json", {
        "environment": {"cpu_model": "Test CPU @ 3 GHz", "logical_cores": 2, "physical_cores": 1,
                        "usable_cores": 2, "isa": {"avx2": True, "avx512_vnni": False},
                        "int8_dot_product": False, "os": "Linux", "python": "3.11", "numpy": "2.0",
                        "onnxruntime": "1.20", "provider": "cpu",
                        "providers_available": ["CPUExecutionProvider"],
                        "notes": []},
        "settings": {"batch_sizes": [1, 64], "threads": [1], "provider": "cpu", "seconds": 1.0,
                     "throughput_seconds": 0.25, "inputs": "MNIST test images"},
        "models": [_bench_model("cnn-fp32", "onnx", False, 85.0, 88_000),
                   _bench_model(EVIL, "onnx", True, 120.0, 26_000),
                   _bench_model("torch-cnn", "torch", False, 240.0, 88_000),
                   {**_bench_model("cnn-mcu", "c", True, 30.0, 60_000),
                    "build": {"kernels": "x86 AVX2", "source_model": "exported/cnn-mcu-int8/model.onnx",
                              "flags": ["-O3", "-march=native"]}}],
        "ratios": [{"model": EVIL, "baseline": "cnn-fp32", "latency_p50": 1.41, "throughput": {"1@1": 0.7},
                    "file_size": 0.3, "cold_start": 1.1}],
        "explanations": ["int8 is 1.41x slower than cnn-fp32 at batch 1: no VNNI"],
        "created": "2025-01-01", "mnist_edge": "0.1.0", "comparison": None, "notes": []})
    _png(root / "bench/bench.png", (23, 190, 207))


def make_run(root: Path) -> Path:
    """A complete run folder: every JSON file the report reads and 9 small PNGs."""
    _pipeline(root)
    _data(root)
    _checkpoint(root)
    _manifest(root, "fp32", 88_000, 0.9912)
    _manifest(root, "int8", 26_000, 0.9907)
    _parity(root)
    _bench(root)
    return root


PNG_COUNT = 9


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = make_run(tmp_path_factory.mktemp("run"))
    path = build_report(root)
    return root, path.read_text(encoding="utf-8")


# --- the full report --------------------------------------------------------------------------------


def test_report_is_written_into_the_run_folder(full_run):
    root, html = full_run
    assert (root / REPORT_FILE).is_file()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not list(root.glob(".report.html.*"))  # no temporary file left behind


def test_every_section_is_there(full_run):
    _, html = full_run
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in html
        assert f'href="#{sid}"' in html
    for heading in ("Pipeline steps", "Epochs", "Per class", "Model pairs", "Checks",
                    "Throughput (images/s)", "Environment fingerprint"):
        assert heading in html


def test_figures_are_embedded_as_data_uris(full_run):
    _, html = full_run
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    assert len(sources) == PNG_COUNT
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert 'width="64" height="40"' in html  # natural size from the PNG header: no layout jump


def test_nothing_external_and_no_script(full_run):
    _, html = full_run
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html, re.IGNORECASE)
    assert "@import" not in html and "url(" not in html


def test_html_in_names_is_escaped(full_run):
    _, html = full_run
    assert EVIL not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in html


def test_headline_figures(full_run):
    _, html = full_run
    summary = html.split('<section id="data">')[0]
    for text in ("cnn", "21,840", "99.12%", "99.07%", "99.74%", "85.9 KiB", "25.4 KiB", "85.0 µs", "240 µs",
                 "fail"):
        assert text in summary, text
    assert "Not in this run" not in summary  # nothing is missing


def test_sizes_read_as_everywhere_else(full_run):
    """One byte formatter for the project (binary units): a model file shows one size string."""
    _, html = full_run
    manifests = html.split('<section id="manifests">')[1]
    assert f"<td>{format_bytes(88_000)}</td>" in manifests and "<td>25.4 KiB</td>" in manifests
    assert "<td>85.8 MiB</td>" in html  # peak RSS in the benchmark table
    assert not re.search(r"\d (kB|MB|GB)\b", html)


def test_tables_carry_the_numbers(full_run):
    _, html = full_run
    assert "5,923" in html and "0.1307" in html  # data
    assert "4 → 9 (2×)" in html  # the most confused pair from the confusion matrix
    evaluation = html.split('<section id="evaluation">')[1].split("</section>")[0]
    assert "99.74% on 55,000 images (no augmentation, eval mode)" in evaluation  # the training set's
    assert "+0.62 pts" in evaluation  # beside the test set's 99.12 %: the generalisation gap
    assert "3e-06" in html and "0.21" in html  # parity logit differences
    assert "fp32 ONNX and PyTorch disagree on 9 images" in html  # a breach
    assert "static-qdq" in html and "abababababab" in html  # manifests
    assert "no VNNI" in html  # bench explanation
    assert "C, x86 AVX2, from exported/cnn-mcu-int8/model.onnx" in html  # a C library beside the ONNX rows
    assert "Test CPU @ 3 GHz" in html
    assert "<details>" in html and "&quot;schema_version&quot;: 1" in html


def test_render_is_deterministic_apart_from_the_footer(full_run):
    root, html = full_run
    again = render_report(root)
    strip = re.compile(r"<footer>.*</footer>", re.S)
    assert strip.sub("", again) == strip.sub("", html)


# --- partial and broken runs ------------------------------------------------------------------------


def test_partial_run_shows_what_exists_and_names_what_is_missing(tmp_path):
    _pipeline(tmp_path, failed_at="train")
    _data(tmp_path)
    html = build_report(tmp_path).read_text(encoding="utf-8")
    assert "Not in this run" in html
    for rel, _, _ in EXPECTED[2:]:
        assert f"<code>{rel}</code>" in html, rel
    assert "train broke: &lt;disk full&gt;" in html  # the failed step's message, escaped
    assert 'class="badge bad">failed' in html
    assert html.count('src="data:image/png;base64,') == 4  # the data figures only
    assert "5,923" in html
    assert missing_parts(tmp_path)[0].startswith("checkpoint/config.json")


def test_run_without_pipeline_json_still_renders(tmp_path):
    _bench(tmp_path)
    html = render_report(tmp_path)
    assert "<code>pipeline.json</code>" in html
    assert "85.0 µs" in html


def test_broken_files_are_reported_not_fatal(tmp_path):
    make_run(tmp_path)
    (tmp_path / "bench/bench.json").write_text("{not json", encoding="utf-8")
    _json(tmp_path / "parity/parity.json", [1, 2, 3])
    _json(tmp_path / "checkpoint/eval.json", {"accuracy": "high", "per_class": "none", "confusion": {"a": 1},
                                              "count": None})
    _json(tmp_path / "checkpoint/metrics.json", {"epochs": [{"epoch": "one", "val_acc": [1]}, 7]})
    (tmp_path / "data/samples.png").write_bytes(b"not a png")
    html = build_report(tmp_path).read_text(encoding="utf-8")
    assert "bench/bench.json</code> is not valid JSON" in html
    assert "parity/parity.json</code> is not a JSON object" in html
    assert "high" in html
    # Only the broken PNG is left out: figures show even where their JSON is unreadable.
    assert html.count('src="data:image/png;base64,') == PNG_COUNT - 1


def test_section_with_unexpected_shapes_degrades_to_a_note(tmp_path):
    make_run(tmp_path)
    _json(tmp_path / "data/stats.json", {"train_class_counts": "many", "folder": 3, "pixel_mean": "x"})
    _json(tmp_path / "bench/bench.json", {"models": {"a": 1}, "environment": [], "ratios": "r",
                                          "explanations": 5})
    html = render_report(tmp_path)
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in html


# --- the command ------------------------------------------------------------------------------------


def test_cli_writes_the_report(tmp_path):
    make_run(tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / REPORT_FILE}" in result.stdout
    assert (tmp_path / REPORT_FILE).is_file()


def test_cli_json_and_out(tmp_path):
    _pipeline(tmp_path, failed_at="eval")
    out = tmp_path / "elsewhere" / "page.html"
    result = runner.invoke(app, ["report", str(tmp_path), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["report"] == str(out) and out.is_file() and payload["bytes"] > 1000
    assert any(line.startswith("data/stats.json") for line in payload["missing"])


@pytest.mark.parametrize("kind, message", [
    ("absent", "no such folder"),
    ("file", "not a folder"),
    ("empty", "holds no pipeline results"),
])
def test_cli_rejects_what_is_not_a_run_folder(tmp_path, kind, message):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("x")
    elif kind == "empty":
        (target / "data").mkdir(parents=True)
    result = runner.invoke(app, ["report", str(target)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert not (target / REPORT_FILE).exists() if target.is_dir() else True


def test_library_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="holds no pipeline results"):
        build_report(tmp_path)


def test_help_has_an_example():
    result = runner.invoke(app, ["report", "--help"])
    assert result.exit_code == 0
    assert "Example: mnist-edge report runs/fast" in result.stdout


# --- a real browser ---------------------------------------------------------------------------------


def _screenshot_module():
    path = Path(__file__).resolve().parents[1] / "scripts" / "screenshot_report.py"
    spec = importlib.util.spec_from_file_location("screenshot_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_renders_in_headless_chromium(full_run, tmp_path):
    shots = _screenshot_module()
    if shots.find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    root, _ = full_run
    png = shots.screenshot(root / REPORT_FILE, tmp_path / "report.png", width=1280, height=4000)
    with Image.open(png) as image:
        assert image.size == (1280, 4000)
        gray = image.convert("L")
        assert ImageStat.Stat(gray).stddev[0] > 10  # not a blank page
        # the top holds the title: dark text on the light page
        assert gray.crop((0, 0, 1280, 120)).getextrema()[0] < 80


def test_a_staging_folder_a_killed_export_left_is_not_a_model_of_the_run(tmp_path):
    from mnist_edge.report.run_folder import RunFolder, manifest_dirs

    make_run(tmp_path)
    stage = tmp_path / "exported" / ".int8.k3j2x9q1.tmp"
    stage.mkdir(parents=True)
    _json(stage / "manifest.json", {"name": "half-written"})
    assert stage.parent / "int8" in manifest_dirs(tmp_path) and stage not in manifest_dirs(tmp_path)
    assert not any(".tmp" in name for name in RunFolder(tmp_path).manifests())
    assert "half-written" not in render_report(tmp_path)
