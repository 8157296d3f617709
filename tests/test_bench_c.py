"""`bench` measures a C library (a `codegen` folder) as one more kind of model: compiled into a
shared library, called through ctypes with the raw pixels, timed by measure.py's primitives, its
rows beside onnxruntime's with the kernels and the source model named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from mnist_edge import measure  # noqa: E402
from mnist_edge.benchmark.clibrary import Runner, bench_c_library, build_shared_library, is_c_library  # noqa: E402
from mnist_edge.cli import app  # noqa: E402
from mnist_edge.codegen import generate, load_integer_model, reference  # noqa: E402
from mnist_edge.quantize import default_options, quantize_model  # noqa: E402

FAST = {"seconds": 0.05, "throughput_seconds": 0.02}
# No core multiplies int8 faster than this (AVX-512 VNNI: 64 per instruction, two a cycle, 5 GHz
# would be 640 G): a library that reports less time per image than its work allows did not run it.
PEAK_MACS_PER_S = 1e12
HEAVY_MACS = 26 * 26 * 32 * 9 + 24 * 24 * 64 * 32 * 9 + 64 * 10


@pytest.fixture(scope="module", autouse=True)
def short_warm_ups():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(measure, "LATENCY_WARMUP_FLOOR", 0.05)
        patch.setattr(measure, "THROUGHPUT_WARMUP_FLOOR", 0.05)
        yield


def _library(folder: Path, net, name: str) -> Path:
    fp32 = folder / f"{name}.onnx"
    torch.onnx.export(net.eval(), torch.zeros(1, 1, 28, 28), str(fp32), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    quantize_model(fp32, folder / f"{name}-int8", default_options(None, target="mcu", calib_images=50),
                   download=False)
    generate(folder / f"{name}-int8", folder / name, download=False)
    return folder / name


@pytest.fixture(scope="module")
def libraries(tmp_path_factory, mnist_dir) -> dict[str, Path]:
    from torch import nn

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clib")
    heavy = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(64, 10))
    light = nn.Sequential(nn.MaxPool2d(4), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 10))
    return {"heavy": _library(folder, heavy, "heavy"), "light": _library(folder, light, "light")}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return measure.sample_images(16)[0]


def test_a_c_library_is_recognised_and_built_with_its_flags(libraries, tmp_path):
    assert is_c_library(libraries["heavy"]) and not is_c_library(libraries["heavy"].parent / "heavy-int8")
    build = build_shared_library(libraries["heavy"], tmp_path, cflags=("-O2",))
    assert build.library.is_file() and build.flags[-3:] == ["-O2", "-fPIC", "-shared"]
    assert build.kernels == "portable C" and "-std=c99" in build.flags and "-ffp-contract=off" in build.flags


def test_the_loaded_library_gives_the_c_scores(libraries, images, tmp_path):
    """Through ctypes, a batch of 16 in one call: the scores of the library's arithmetic."""
    build = build_shared_library(libraries["heavy"], tmp_path)
    classify, scores = Runner(build.library).call(images)
    classify()
    model = load_integer_model(libraries["heavy"].parent / "heavy-int8")
    assert np.array_equal(scores, reference.scores(model, images))


def test_c_libraries_of_known_cost_are_timed_by_their_work(libraries, images):
    heavy = bench_c_library(libraries["heavy"], images=images, batch_sizes=[1, 16], **FAST)
    light = bench_c_library(libraries["light"], images=images, batch_sizes=[1, 16], **FAST)
    floor_us = HEAVY_MACS / PEAK_MACS_PER_S * 1e6
    assert heavy.latency.p50_us >= floor_us  # a no-op library takes a fraction of that
    assert heavy.latency.p50_us >= 10 * light.latency.p50_us  # 10.8 M against a few thousand multiply-adds
    for point in heavy.throughput:
        assert point.threads == 1 and point.images_per_s <= 1e6 / floor_us  # every image of the batch ran
    # one call timed two ways: never faster than the median call allows (a busy machine slows the loop)
    assert 0.1 < heavy.throughput_at(1, 1) / (1e6 / heavy.latency.p50_us) < 1.6
    assert heavy.kind == "c" and heavy.latency.threads == 1 and heavy.cold_start.first_inference_ms > 0
    assert heavy.build["source_model"].endswith("heavy-int8/model.onnx") and heavy.build["kernels"]


def test_bench_puts_a_c_library_beside_its_onnx_model(libraries, tmp_path):
    heavy = libraries["heavy"]
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", str(heavy), str(heavy.parent / "heavy-int8"), "--threads", "1",
                                      "--batch-sizes", "1,4", "--seconds", "0.05", "--no-torch", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "heavy (C, " in result.stdout and "C library generated from" in result.stdout
    payload = json.loads((out / "bench.json").read_text())
    kinds = [model["kind"] for model in payload["models"]]
    assert kinds == ["c", "onnx"] and payload["models"][0]["build"]["flags"][-4:-2] == ["-O3", "-march=native"]
    assert "heavy (C, " in (out / "bench.md").read_text()


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_a_broken_compile_or_a_missing_compiler_is_one_error_line(libraries, tmp_path):
    heavy = str(libraries["heavy"])
    line = _one_error_line(CliRunner().invoke(app, ["bench", heavy, "--cflags", "-mno-such-flag", "--no-torch"]))
    assert line.startswith("error: ") and "does not compile with cc -mno-such-flag" in line
    line = _one_error_line(CliRunner().invoke(app, ["bench", heavy, "--cc", "no-such-cc", "--no-torch"]))
    assert "no C compiler 'no-such-cc'" in line
    line = _one_error_line(CliRunner().invoke(app, ["bench", heavy, "--cflags", "", "--no-torch"]))
    assert "--cflags is empty" in line
    onnx_only = str(libraries["heavy"].parent / "heavy-int8")
    line = _one_error_line(CliRunner().invoke(app, ["bench", onnx_only, "--cflags", "-O2", "--no-torch"]))
    assert "--cflags applies to C libraries" in line
