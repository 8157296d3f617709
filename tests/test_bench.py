"""Measurement functions of `mnist_edge.measure` and what `mnist_edge.benchmark` concludes from
them, kept to fractions of a second each."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mnist_edge import benchmark, measure
from mnist_edge.benchmark.floor import floor_model, floor_path
from mnist_edge.errors import ConfigError
from mnist_edge.modelfile import external_data_files, model_bytes
from mnist_edge.runtime import create_session
from tests.onnx_models import linear_model, save, write_zoo

try:  # imported once here rather than in the test: mutation testing forks a process per mutant
    import torch
except ImportError:
    torch = None

FAST = {"seconds": 0.05, "throughput_seconds": 0.02}
# No onnxruntime call takes under a microsecond (its fixed overhead alone is several).
MIN_CALL_US = 1.0


@pytest.fixture(scope="module", autouse=True)
def short_warm_ups():
    """Measurements here last a few ms: a warm-up that never settles on a busy machine stops
    after 50 ms instead of the floors real benchmarks keep (0.5 s and 0.2 s)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(measure, "LATENCY_WARMUP_FLOOR", 0.05)
        patch.setattr(measure, "THROUGHPUT_WARMUP_FLOOR", 0.05)
        yield


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, mnist_dir) -> dict[str, Path]:
    return write_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return measure.sample_images(16)[0]


@pytest.fixture(scope="module")
def fp32_result(zoo, images) -> measure.ModelResult:
    return measure.bench_onnx(zoo["exported"], images=images, batch_sizes=[1, 4], threads=[1, 2], **FAST)


def test_environment_fingerprint_lists_cpu_cores_and_int8_flags():
    env = measure.environment()
    assert env.cpu_model and env.logical_cores >= 1 and env.usable_cores >= 1
    assert set(measure.ISA_FLAGS) <= set(env.isa)
    assert env.int8_dot_product == any(env.isa[f] for f in measure.INT8_DOT_FLAGS)
    assert env.onnxruntime and "CPUExecutionProvider" in env.providers_available
    json.dumps(asdict(env))


def test_latency_statistics_and_their_warnings():
    samples = np.concatenate([np.full(990, 100.0), np.full(10, 1000.0)])
    stats = measure.latency_stats(samples, batch_size=1, threads=1, warmup_runs=10, steady=True)
    assert stats.p50_us == 100.0 and stats.p999_us > 900
    assert stats.mean_us == pytest.approx(109.0)
    assert stats.cv == pytest.approx(stats.std_us / stats.mean_us)
    assert any("CV" in w for w in stats.warnings)
    assert not any("runs" in w for w in stats.warnings)  # 1,000 runs are enough for p99
    assert len(stats.quantiles_us) == 201 and stats.quantiles_us[0] == 100.0
    quiet = measure.latency_stats(np.full(200, 50.0), 1, 1, 10, steady=False)
    assert quiet.cv == 0.0
    assert any("only 200 runs: p99" in w for w in quiet.warnings)
    assert any("still changing" in w for w in quiet.warnings)


def test_warm_up_stops_once_latency_is_steady():
    runs, steady, median = measure.warm_up(lambda: time.sleep(0.0005), max_seconds=2.0)
    assert steady and runs >= 3 and 400 < median < 5000


# A generous ceiling on what one x86 core computes in float32 (2 FMA units x 16 lanes x 2 flops
# x 4 GHz): no real measurement of a model can beat work / PEAK_FLOPS.
PEAK_FLOPS_PER_CORE = 256e9
HEAVY = {"width": 1024, "layers": 4}
HEAVY_MACS = 784 * 1024 + 4 * 1024 * 1024 + 1024 * 10


def spin(microseconds: float) -> None:
    """Busy-wait (sleeping would time the scheduler): a call whose cost is known exactly."""
    end = time.perf_counter_ns() + int(microseconds * 1e3)
    while time.perf_counter_ns() < end:
        pass


def counted_spin(microseconds: float) -> tuple[list[int], Callable[[], None]]:
    calls = [0]

    def call() -> None:
        calls[0] += 1
        spin(microseconds)

    return calls, call


def test_latency_times_every_run_of_the_call_it_is_given():
    calls, call = counted_spin(200)
    stats = measure.measure_latency(call, seconds=0.1, batch_size=1, threads=1)
    assert calls[0] == stats.runs + stats.warmup_runs  # each reported run is one timed call
    assert 200 <= stats.min_us <= stats.p50_us < 1000  # a call cannot take less than its spin
    assert stats.runs >= 50


def test_throughput_counts_images_per_second_of_real_calls():
    calls, call = counted_spin(100)
    point = measure.measure_throughput(call, batch_size=8, threads=1, seconds=0.1)
    assert point.images_per_s <= 8 / 100e-6  # 8 images per >= 100 µs call
    assert point.images_per_s > 8 / 500e-6
    assert point.images_per_s == pytest.approx(8 * point.runs / point.seconds)
    assert point.seconds >= point.runs * 100e-6 and calls[0] > point.runs


@pytest.fixture(scope="module")
def heavy(tmp_path_factory) -> Path:
    from tests.onnx_models import heavy_model, save

    return save(heavy_model(**HEAVY), tmp_path_factory.mktemp("heavy") / "heavy.onnx")


def test_models_of_known_cost_are_timed_by_their_work(zoo, heavy, images, monkeypatch):
    sessions = []

    def spy(path, *, threads=None, **kwargs):
        sessions.append(threads)
        return create_session(path, threads=threads, **kwargs)

    monkeypatch.setattr(measure, "create_session", spy)
    light_result = measure.bench_onnx(zoo["exported"], images=images, batch_sizes=[1, 16], threads=[1], **FAST)
    heavy_result = measure.bench_onnx(heavy, images=images, batch_sizes=[1, 16], threads=[1, 2], **FAST)
    floor_us = 2 * HEAVY_MACS / PEAK_FLOPS_PER_CORE * 1e6
    assert heavy_result.latency.p50_us >= floor_us  # ~40 µs: a no-op loop gives a fraction of one
    assert heavy_result.latency.p50_us >= 20 * light_result.latency.p50_us  # 5 M vs 8 k multiply-adds
    for point in heavy_result.throughput:
        assert point.images_per_s <= point.threads * 1e6 / floor_us  # the batch really ran
    batch1 = heavy_result.throughput_at(1, 1)
    # One call, timed two ways: the loop of calls is never faster than the median call allows; a
    # busy machine slows the loop (every interruption counts there, not in the median), so only
    # a wide lower bound holds on any machine.
    assert 0.1 < batch1 / (1e6 / heavy_result.latency.p50_us) < 1.6
    # Per-call overhead dominates the light model: 16 images per call are far cheaper than 16 calls.
    assert light_result.throughput_at(16, 1) > 4 * light_result.throughput_at(1, 1)
    assert 2 in sessions and set(sessions) <= {1, 2}  # the 2-thread points ran on a 2-thread session


def test_an_onnx_model_is_measured_completely(fp32_result):
    result = fp32_result
    assert result.kind == "onnx" and result.name == "linear-fp32" and not result.quantized
    assert result.file_bytes and result.file_bytes > 30_000
    assert result.cold_start.total_ms == pytest.approx(
        result.cold_start.load_ms + result.cold_start.first_inference_ms)
    assert result.latency.batch_size == 1 and result.latency.runs >= 50
    assert MIN_CALL_US <= result.latency.p50_us <= result.latency.p99_us <= result.latency.max_us
    assert {(p.batch_size, p.threads) for p in result.throughput} == {(1, 1), (4, 1), (1, 2), (4, 2)}
    assert all(p.images_per_s <= p.batch_size * p.threads * 1e6 / MIN_CALL_US for p in result.throughput)
    assert result.peak_rss_bytes and result.peak_rss_bytes > 10_000_000


def test_a_fixed_batch_model_is_measured_at_its_batch(zoo, images):
    result = measure.bench_onnx(zoo["fixed8"], images=images, batch_sizes=[1, 4], threads=[1], **FAST)
    assert result.latency.batch_size == 8
    assert [p.batch_size for p in result.throughput] == [8]
    assert any("fixed batch 8" in n for n in result.notes)


def test_profile_gives_per_operator_times(zoo, images, tmp_path):
    result = measure.bench_onnx(zoo["qdq"], images=images, batch_sizes=[1], threads=[1],
                              profile_dir=tmp_path, **FAST)
    assert result.quantized
    ops = {op.op_type: op for op in result.profile}
    assert {"QuantizeLinear", "DequantizeLinear", "Gemm"} <= set(ops)
    assert sum(op.share for op in result.profile) == pytest.approx(1.0)
    assert all(op.calls_per_run >= 1 for op in result.profile)
    assert Path(result.profile_file).is_file()


def test_the_report_is_json_ready_and_has_ratios(fp32_result, zoo, images):
    other = measure.bench_onnx(zoo["uint8"], images=images, batch_sizes=[1, 4], threads=[1, 2], **FAST)
    settings = benchmark.Settings([1, 4], [1, 2], "cpu", 0.05, 0.02, "test")
    report = benchmark.report(measure.environment(), settings, [fp32_result, other])
    (ratio,) = report.ratios
    assert ratio.model == "uint8" and ratio.baseline == "linear-fp32"
    assert ratio.latency_p50 == pytest.approx(other.latency.p50_us / fp32_result.latency.p50_us)
    assert set(ratio.throughput) == {"1@1", "4@1", "1@2", "4@2"}
    json.loads(json.dumps(asdict(report)))


def test_bench_torch_measures_an_eager_module(images):
    if torch is None:
        pytest.skip("torch is not installed (pip install 'mnist-edge[train]')")
    from mnist_edge.models import build

    threads_before = torch.get_num_threads()
    result = measure.bench_torch(build("tiny").eval(), name="torch-tiny", images=images,
                               batch_sizes=[1, 4], threads=[1], load_ms=12.0, **FAST)
    assert result.kind == "torch" and result.cold_start.load_ms == 12.0
    assert result.latency.runs >= 50 and len(result.throughput) == 2
    assert torch.get_num_threads() == threads_before
    json.dumps(asdict(result))


def _model(name: str, p50: float, quantized: bool = False, profile=None, path: str | None = None,
           sha256: str | None = None, sibling: str | None = None) -> measure.ModelResult:
    latency = measure.latency_stats(np.full(100, p50), 1, 1, 10, True)
    return measure.ModelResult(
        name=name, path=path or name, kind="onnx", quantized=quantized, file_bytes=1000,
        cold_start=measure.ColdStart(1.0, 0.1, 1.1), latency=latency,
        throughput=[measure.ThroughputPoint(8, 1, 1e6 / p50, 100, 0.1)],
        peak_rss_bytes=None, rss_before_bytes=None, profile=profile, sha256=sha256,
        fp32_sibling_sha256=sibling)


def test_a_slower_int8_model_gets_its_reasons():
    env = replace(measure.environment(), int8_dot_product=False)
    profile = [measure.OpTime("QuantizeLinear", 1, 30, 0.3), measure.OpTime("Gemm", 1, 70, 0.7)]
    fp32 = _model("fp32", 50, sha256="a" * 64)
    lines = benchmark.explain_int8([fp32, _model("int8", 80, True, profile, sibling="a" * 64)], env)
    (line,) = lines
    assert line.startswith("int8 is 1.60x slower than its fp32 sibling fp32 at batch 1")
    assert "no AVX-512 VNNI" in line and "quantize/dequantize operators take 30%" in line
    assert "fixed per-operator costs dominate" in line
    assert benchmark.explain_int8([fp32, _model("int8", 30, True, sibling="a" * 64)], env) == []


def test_int8_is_explained_against_its_own_fp32_sibling_not_the_first_model():
    """The floor first, then cnn int8 and cnn fp32: the int8 model is compared with cnn fp32
    (named by its manifest's fp32_model_sha256), never with the floor."""
    env = replace(measure.environment(), int8_dot_product=False)
    floor = _model("floor", 3, sha256="f" * 64)
    cnn_fp32 = _model("cnn-fp32", 20, sha256="c" * 64)
    cnn_int8 = _model("cnn-int8", 30, True, sibling="c" * 64)
    (line,) = benchmark.explain_int8([floor, cnn_int8, cnn_fp32], env)
    assert "1.50x slower than its fp32 sibling cnn-fp32" in line
    assert "floor" not in line and "already runs in 20 µs" in line
    # Without its sibling in the run there is nothing to say about int8: the floor is no sibling.
    assert benchmark.explain_int8([floor, cnn_int8], env) == []


def test_an_int8_folder_finds_its_sibling_folder_by_name():
    env = replace(measure.environment(), int8_dot_product=False)
    other_fp32 = _model("mlp-fp32", 5, path="exported/mlp-fp32/model.onnx")
    tiny_fp32 = _model("tiny-fp32", 10, path="exported/tiny-fp32/model.onnx")
    tiny_int8 = _model("tiny-int8", 40, True, path="exported/tiny-int8/model.onnx")
    (line,) = benchmark.explain_int8([other_fp32, tiny_int8, tiny_fp32], env)
    assert "4.00x slower than its fp32 sibling tiny-fp32" in line
    assert benchmark.explain_int8([other_fp32, tiny_int8], env) == []


def test_compare_gives_a_regression_verdict():
    old = {"environment": asdict(measure.environment()),
           "models": [asdict(_model("fp32", 50)), asdict(_model("gone", 50))]}
    settings = benchmark.Settings([8], [1], "cpu", 1, 1, "test")
    env = measure.environment()
    slower = benchmark.report(env, settings, [_model("fp32", 70), _model("new", 10)])
    verdict = benchmark.compare(old, slower, threshold=0.10)
    assert verdict.verdict == "regression"
    worse = {c.metric for c in verdict.changes if c.verdict == "worse"}
    assert worse == {"p50 µs", "p99 µs", "img/s b8·1t"}
    assert sorted(verdict.unmatched_models) == ["gone", "new"]
    for p50, expected in ((52, "no change"), (30, "improvement")):
        assert benchmark.compare(old, benchmark.report(env, settings, [_model("fp32", p50)])).verdict == expected
    with pytest.raises(ConfigError, match="not a bench.json"):
        benchmark.compare({"models": [{"name": "x"}]}, slower)


def test_run_benchmark_works_without_the_cli(zoo, tmp_path):
    from mnist_edge.benchmark import BenchRequest, parse_batch_sizes, parse_threads, run_benchmark, tables

    assert parse_batch_sizes("8,1,8") == (1, 8) and parse_threads("1,N,1", cores=4) == (1, 4)
    with pytest.raises(ConfigError, match="--threshold must be positive"):
        run_benchmark(BenchRequest([zoo["nchw"]], threshold=0))
    request = BenchRequest([str(zoo["exported"]), zoo["qdq"]], batch_sizes=[1, 4], threads=[1],
                           seconds=0.03, out=tmp_path / "bench", no_torch=True)
    announced = []
    outcome = run_benchmark(request, on_model=lambda name, i, n: announced.append((Path(name).name, i, n)))
    assert [m.name for m in outcome.report.models] == ["linear-fp32", "qdq"]
    assert announced == [(Path(zoo["exported"]).name, 0, 2), (Path(zoo["qdq"]).name, 1, 2)]
    assert outcome.comparison is None and not outcome.regression
    saved = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert saved == json.loads(json.dumps(outcome.payload))
    markdown = (tmp_path / "bench" / "bench.md").read_text()
    titles = [title for title, _, _ in tables(outcome.report)]
    assert titles[:3] == ["Footprint", "Latency (batch 1 unless noted)", "Throughput (images/s)"]
    assert all(f"## {title}" in markdown for title in titles) and "| linear-fp32 |" in markdown
    pytest.importorskip("matplotlib")
    assert (tmp_path / "bench" / "bench.png").read_bytes().startswith(b"\x89PNG")
    assert outcome.notes == outcome.payload["notes"] == []


def test_warm_up_sizes_its_blocks_from_a_warm_call_not_the_cold_one(monkeypatch):
    sizes = []

    def fake_sample(_call, runs):
        sizes.append(runs)
        return np.full(runs, 50_000.0 if len(sizes) == 1 else 100.0)  # µs: a slow cold first call

    monkeypatch.setattr(measure, "_sample", fake_sample)
    runs, steady, median = measure.warm_up(lambda: None, max_seconds=1.0)
    block = int(measure._BLOCK_SECONDS * 1e6 / 100.0)
    assert sizes == [1, 5, block, block, block]
    assert steady and median == 100.0 and runs == 1 + 5 + 3 * block


def test_model_bytes_count_external_data_of_any_name(tmp_path, zoo):
    from tests.onnx_models import linear_model, save

    model = save(linear_model(), tmp_path / "foreign.onnx", external_data="weights.bin")
    (tmp_path / "unrelated.bin").write_bytes(b"x" * 1000)
    expected = model.stat().st_size + (tmp_path / "weights.bin").stat().st_size
    assert external_data_files(model) == [(tmp_path / "weights.bin").resolve()]
    assert model_bytes(model) == expected
    assert model_bytes(zoo["nchw"]) == zoo["nchw"].stat().st_size
    assert external_data_files(zoo["escaping"]) == []  # outside the folder: not the model's


def test_the_shipped_floor_model_is_the_one_floor_model_builds():
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'mnist-edge[mcu]')")
    shipped = onnx.load(str(floor_path()))
    assert shipped.SerializeToString() == floor_model().SerializeToString()
    session = create_session(floor_path())
    x = np.arange(784, dtype=np.float32).reshape(1, 1, 28, 28)
    (out,) = session.run(None, {"input": x})
    assert out.tolist() == [list(range(10))]


def _wide_model(path: Path, hidden: int) -> Path:
    """784 -> hidden -> 10: with hidden = 16,384 its first weight alone is 51 MB."""
    rng = np.random.default_rng(0)
    first = numpy_helper.from_array(rng.standard_normal((784, hidden), dtype=np.float32), "W1")
    second = numpy_helper.from_array(rng.standard_normal((hidden, 10), dtype=np.float32), "W2")
    shape = numpy_helper.from_array(np.array([-1, 784], np.int64), "flat_shape")
    nodes = [helper.make_node("Reshape", ["input", "flat_shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "W1"], ["hidden"]),
             helper.make_node("MatMul", ["hidden", "W2"], ["logits"])]
    graph = helper.make_graph(
        nodes, "wide", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], [first, second, shape])
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_memory_added_is_each_models_own_not_the_process_peak(tmp_path, images):
    """A 51 MB model and a 31 kB one, measured while the process holds 300 MB of its own (as
    `pipeline` holds training's): each model's memory added is its own; only the process peak
    column carries the 300 MB."""
    ballast = np.ones(300 * 2**20 // 8)  # written, so resident
    small = save(linear_model("NCHW"), tmp_path / "small.onnx")
    big = _wide_model(tmp_path / "big.onnx", 16_384)
    measured = {name: measure.bench_onnx(path, images=images, batch_sizes=[1], threads=[1], **FAST)
                for name, path in (("small", small), ("big", big))}
    if any(result.memory_added_bytes is None for result in measured.values()):
        pytest.skip("this kernel cannot reset the peak RSS (/proc/self/clear_refs)")
    assert big.stat().st_size > 50e6
    assert measured["big"].memory_added_bytes >= 45e6
    assert measured["small"].memory_added_bytes <= 30e6
    assert measured["big"].memory_added_bytes - measured["small"].memory_added_bytes >= 40e6
    for result in measured.values():
        assert result.peak_rss_bytes >= 300 * 2**20 + result.memory_added_bytes * 0.9
    assert ballast[-1] == 1.0
    headers, rows = benchmark.tables(benchmark.report(
        measure.environment(), benchmark.Settings([1], [1], "cpu", 0.05, 0.02, "test"),
        list(measured.values())))[0][1:]
    assert headers[3].startswith("memory added") and headers[4] == "process peak RSS"
