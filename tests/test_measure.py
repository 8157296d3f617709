"""The arithmetic of `mnist_edge.measure` against a fake, deterministic clock: how many calls the
timing loops make, how long they run, what they report, when warm-up calls latency steady; and
the readers of /proc (cores, ISA flags, memory) on given text. No test here depends on how fast
the machine is: tests/test_bench.py times real models."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

from mnist_edge import measure
from mnist_edge.errors import DataError


class FakeClock:
    """perf_counter / perf_counter_ns of a machine on which only the calls take time."""

    def __init__(self) -> None:
        self.ns = 10**12  # an arbitrary start: nothing may assume the clock starts at zero
        self.reads = 0

    def perf_counter_ns(self) -> int:
        self.reads += 1
        return self.ns

    def perf_counter(self) -> float:
        self.reads += 1
        return self.ns / 1e9

    def spend(self, microseconds: float) -> None:
        self.ns += round(microseconds * 1000)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(measure, "time", types.SimpleNamespace(perf_counter_ns=fake.perf_counter_ns,
                                                               perf_counter=fake.perf_counter))
    return fake


class Call:
    """A call whose n-th run takes durations(n) µs on the fake clock; counts its runs."""

    def __init__(self, clock: FakeClock, durations) -> None:
        self.clock, self.durations, self.count = clock, durations, 0

    def __call__(self) -> None:
        self.clock.spend(self.durations(self.count))
        self.count += 1


# --- the timing loops ---------------------------------------------------------------------------


def test_sample_times_each_call_alone(clock: FakeClock) -> None:
    call = Call(clock, lambda n: [10.0, 20.5, 30.0][n])
    samples = measure._sample(call, 3)
    assert samples.tolist() == [10.0, 20.5, 30.0] and samples.dtype == np.float64
    assert call.count == 3 and clock.reads == 6  # two clock reads per call, nothing else timed


def test_block_size_spans_twenty_milliseconds_within_bounds() -> None:
    assert measure._block_size(100.0) == 200
    assert measure._block_size(3.0) == 6666  # truncated, never rounded up
    assert measure._block_size(0.5) == 10_000 and measure._block_size(1.0) == 10_000  # at most 10,000
    assert measure._block_size(0.0) == 10_000  # a call below the clock's resolution counts as 1 µs
    assert measure._block_size(5000.0) == 5 and measure._block_size(1e6) == 5  # at least 5


def test_warm_up_of_a_steady_call_takes_three_blocks_after_the_resize(clock: FakeClock) -> None:
    call = Call(clock, lambda n: 100.0)
    runs, steady, median = measure.warm_up(call, max_seconds=10.0)
    # the cold call, a first block of 200 (sized from it), then three blocks of 200
    assert (runs, steady, median) == (1 + 200 + 3 * 200, True, 100.0) and call.count == runs


def test_warm_up_is_steady_when_block_medians_agree_within_five_percent(clock: FakeClock) -> None:
    # blocks after the resize: 100, 100, 105 µs: 105 is exactly 5 % above 100, which is steady
    block = measure._block_size(100.0)
    medians = [100.0] * (1 + block) + [100.0] * block + [100.0] * block + [105.0] * block + [50.0] * 10**5
    runs, steady, median = measure.warm_up(Call(clock, medians.__getitem__), max_seconds=10.0)
    assert (runs, steady, median) == (1 + 4 * block, True, 105.0)


def test_warm_up_needs_two_agreements_in_a_row(clock: FakeClock) -> None:
    # after the resize: 100, 106 (6 % apart), 106, 106: the last two pairs agree at the fourth block
    block = measure._block_size(100.0)
    durations = [100.0] * (1 + 2 * block) + [106.0] * (3 * block) + [1.0] * 10**5
    runs, steady, median = measure.warm_up(Call(clock, durations.__getitem__), max_seconds=10.0)
    assert (runs, steady, median) == (1 + 5 * block, True, 106.0)


def test_warm_up_that_never_settles_stops_at_its_deadline(clock: FakeClock) -> None:
    block = measure._block_size(100.0)
    # every block alternates between 100 and 150 µs: never within 5 % of the one before
    call = Call(clock, lambda n: 100.0 if ((n - 1) // block) % 2 == 0 else 150.0)
    start = clock.ns
    runs, steady, median = measure.warm_up(call, max_seconds=0.5)
    elapsed = (clock.ns - start) / 1e9
    assert not steady and call.count == runs
    assert 0.5 < elapsed <= 0.5 + block * 150e-6  # it stops after the first block past the deadline
    assert median == (100.0 if ((runs - 2) // block) % 2 == 0 else 150.0)  # the last block's median


def test_measure_latency_runs_for_its_seconds_after_warm_up(clock: FakeClock) -> None:
    call = Call(clock, lambda n: 100.0)
    stats = measure.measure_latency(call, seconds=0.25, batch_size=4, threads=2)
    assert stats.warmup_runs == 801 and stats.runs == 2500  # 0.25 s of 100 µs calls
    assert call.count == stats.warmup_runs + stats.runs
    assert (stats.batch_size, stats.threads, stats.steady) == (4, 2, True)
    assert stats.p50_us == stats.min_us == stats.max_us == 100.0 and stats.cv == 0.0


def test_measure_latency_takes_at_least_fifty_runs(clock: FakeClock) -> None:
    stats = measure.measure_latency(Call(clock, lambda n: 10_000.0), seconds=0.01, batch_size=1, threads=1)
    assert stats.runs == 50 and stats.p50_us == 10_000.0


def test_latency_warm_up_lasts_at_most_half_the_seconds_or_its_floor(clock: FakeClock,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "LATENCY_WARMUP_FLOOR", 0.2)
    block = measure._block_size(100.0)
    unsteady = Call(clock, lambda n: 100.0 if ((n - 1) // block) % 2 == 0 else 150.0)
    start = clock.ns
    stats = measure.measure_latency(unsteady, seconds=2.0, batch_size=1, threads=1)
    warm = stats.warmup_runs
    assert not stats.steady and any("still changing" in w for w in stats.warnings)
    warm_seconds = sum(unsteady.durations(n) for n in range(warm)) / 1e6
    assert 1.0 < warm_seconds <= 1.0 + block * 150e-6  # half of 2 s, above the 0.2 s floor
    short = Call(clock, lambda n: 100.0 if ((n - 1) // block) % 2 == 0 else 150.0)
    stats = measure.measure_latency(short, seconds=0.1, batch_size=1, threads=1)
    warm_seconds = sum(short.durations(n) for n in range(stats.warmup_runs)) / 1e6
    assert 0.2 < warm_seconds <= 0.2 + block * 150e-6  # the floor, not half of 0.1 s
    assert clock.ns > start


def test_throughput_is_images_over_the_loops_time(clock: FakeClock) -> None:
    call = Call(clock, lambda n: 100.0)
    point = measure.measure_throughput(call, batch_size=8, threads=2, seconds=0.1)
    assert (point.batch_size, point.threads, point.runs) == (8, 2, 1000)
    assert point.seconds == pytest.approx(0.1, abs=1e-12)  # 1,000 calls of 100 µs, nothing else
    assert point.images_per_s == pytest.approx(80_000.0)
    assert call.count == 801 + 1000  # the warm-up's calls, then the timed loop's


def test_throughput_takes_at_least_five_runs(clock: FakeClock) -> None:
    point = measure.measure_throughput(Call(clock, lambda n: 50_000.0), batch_size=1, threads=1, seconds=0.01)
    assert point.runs == 5 and point.images_per_s == pytest.approx(20.0)


def test_throughput_warm_up_lasts_half_the_seconds_above_its_floor(clock: FakeClock,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "THROUGHPUT_WARMUP_FLOOR", 0.2)
    block = measure._block_size(100.0)
    for seconds, warm in ((1.0, 0.5), (0.1, 0.2)):
        start = clock.ns
        call = Call(clock, lambda n: 100.0 if ((n - 1) // block) % 2 == 0 else 150.0)
        point = measure.measure_throughput(call, batch_size=1, threads=1, seconds=seconds)
        warm_seconds = (clock.ns - start) / 1e9 - point.seconds
        assert warm < warm_seconds <= warm + block * 150e-6


def test_cold_start_is_the_median_of_fresh_sessions(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    loads, firsts, made = iter([30.0, 10.0, 20.0]), iter([5.0, 7.0, 6.0]), []

    class Session:
        def run(self, outputs, feeds):
            assert outputs is None and list(feeds) == ["input"]
            clock.spend(next(firsts) * 1000)

    def create_session(path, threads, provider):
        made.append((path, threads, provider))
        clock.spend(next(loads) * 1000)
        return Session()

    monkeypatch.setattr(measure, "create_session", create_session)
    cold = measure.cold_start(Path("m.onnx"), "input", np.zeros(1), threads=2, provider="cpu")
    assert (cold.load_ms, cold.first_inference_ms, cold.total_ms) == pytest.approx((20.0, 6.0, 26.0))
    assert made == [(Path("m.onnx"), 2, "cpu")] * 3


# --- statistics ---------------------------------------------------------------------------------


def test_latency_statistics_exactly() -> None:
    samples = np.arange(1.0, 1001.0)  # 1, 2, ..., 1000 µs
    stats = measure.latency_stats(samples, batch_size=1, threads=1, warmup_runs=7, steady=True)
    assert (stats.p50_us, stats.p90_us, stats.p99_us) == (500.5, 900.1, 990.01)
    assert stats.p999_us == pytest.approx(999.001)
    assert (stats.min_us, stats.max_us, stats.mean_us, stats.runs, stats.warmup_runs) == (1.0, 1000.0, 500.5, 1000, 7)
    assert stats.std_us == pytest.approx(float(np.std(samples, ddof=1)))
    assert stats.cv == pytest.approx(stats.std_us / 500.5)
    assert len(stats.quantiles_us) == 201
    assert stats.quantiles_us[0] == 1.0 and stats.quantiles_us[100] == 500.5 and stats.quantiles_us[-1] == 1000.0
    assert stats.quantiles_us[1] == round(float(np.quantile(samples, 1 / 200)), 3)


def test_latency_warnings_at_their_thresholds() -> None:
    # a CV of exactly 5 % is not noisy; just above it is
    base = np.array([95.0, 105.0] * 500)
    cv = float(base.std(ddof=1)) / 100.0
    scaled = 100.0 + (base - 100.0) * (measure.CV_WARNING / cv)
    exact = measure.latency_stats(scaled, 1, 1, 0, True)
    assert exact.cv == pytest.approx(measure.CV_WARNING, rel=1e-12)
    noisy = measure.latency_stats(100.0 + (base - 100.0) * (measure.CV_WARNING * 1.01 / cv), 1, 1, 0, True)
    assert not any("CV" in w for w in measure.latency_stats(np.full(1000, 7.0), 1, 1, 0, True).warnings)
    assert any(w.startswith("CV 5.1% > 5%: noisy measurement") for w in noisy.warnings)
    # 1,000 runs are enough for p99, 999 are not
    assert measure.latency_stats(np.full(1000, 7.0), 1, 1, 0, True).warnings == []
    few = measure.latency_stats(np.full(999, 7.0), 1, 1, 0, True).warnings
    assert few == ["only 999 runs: p99 rests on fewer than 10 samples (want >= 1000; raise --seconds)"]
    assert measure.latency_stats(np.full(1000, 7.0), 1, 1, 0, False).warnings == [
        "latency was still changing when warm-up time ran out"]


def test_one_sample_has_no_spread() -> None:
    stats = measure.latency_stats(np.array([42.0]), 1, 1, 0, True)
    assert stats.std_us == 0.0 and stats.cv == 0.0 and stats.p50_us == 42.0
    assert measure.latency_stats(np.zeros(3), 1, 1, 0, True).cv == 0.0  # a zero mean: no division


def test_throughput_at_finds_the_point_or_none() -> None:
    latency = measure.latency_stats(np.full(10, 1.0), 1, 1, 0, True)
    points = [measure.ThroughputPoint(1, 1, 10.0, 5, 0.5), measure.ThroughputPoint(8, 1, 80.0, 5, 0.5),
              measure.ThroughputPoint(8, 2, 150.0, 5, 0.5)]
    result = measure.ModelResult("m", "m.onnx", "onnx", False, 1, measure.ColdStart(1.0, 1.0, 2.0), latency,
                                 points, None, None)
    assert result.throughput_at(8, 1) == 80.0 and result.throughput_at(8, 2) == 150.0
    assert result.throughput_at(1, 1) == 10.0 and result.throughput_at(1, 2) is None


# --- memory ---------------------------------------------------------------------------------------


def test_memory_added_is_the_peak_over_the_rss_before() -> None:
    assert measure.memory_added(True, 100, 250) == 150
    assert measure.memory_added(True, 300, 250) == 0  # never negative
    assert measure.memory_added(False, 100, 250) is None  # the peak was not reset: unknown
    assert measure.memory_added(True, None, 250) is None and measure.memory_added(True, 100, None) is None


class FakeFile:
    """Stands in for measure.Path: one file's text, or an OSError."""

    def __init__(self, texts: dict[str, str | None], written: list | None = None) -> None:
        self.texts, self.written = texts, written

    def __call__(self, name: str) -> FakeFile:
        self.name = name
        return self

    def read_text(self, *args, **kwargs) -> str:
        text = self.texts.get(self.name)
        if text is None:
            raise OSError("not here")
        return text

    def write_text(self, text: str) -> None:
        if self.written is None:
            raise OSError("read-only")
        self.written.append((self.name, text))


def test_rss_bytes_reads_proc_status(monkeypatch: pytest.MonkeyPatch) -> None:
    status = "Name:\tpython\nVmPeak:\t 999 kB\nVmHWM:\t    5678 kB\nVmRSS:\t  1234 kB\nThreads: 3\n"
    monkeypatch.setattr(measure, "Path", FakeFile({"/proc/self/status": status}))
    assert measure.rss_bytes() == (1234 * 1024, 5678 * 1024)
    monkeypatch.setattr(measure, "Path", FakeFile({"/proc/self/status": "VmRSS:\t 10 kB\n"}))
    assert measure.rss_bytes() == (10 * 1024, None)


def test_rss_bytes_without_proc_falls_back_to_getrusage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "Path", FakeFile({}))
    monkeypatch.setattr(measure.resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=300))
    monkeypatch.setattr(measure.sys, "platform", "linux")
    assert measure.rss_bytes() == (None, 300 * 1024)  # Linux counts kB
    monkeypatch.setattr(measure.sys, "platform", "darwin")
    assert measure.rss_bytes() == (None, 300)  # macOS counts bytes


def test_reset_peak_rss_writes_clear_refs(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list = []
    monkeypatch.setattr(measure, "Path", FakeFile({}, written))
    assert measure.reset_peak_rss() is True and written == [("/proc/self/clear_refs", "5")]
    monkeypatch.setattr(measure, "Path", FakeFile({}))
    assert measure.reset_peak_rss() is False


# --- the machine ------------------------------------------------------------------------------------

X86_CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni
physical id\t: 0
core id\t\t: 0

processor\t: 1
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni
physical id\t: 0
core id\t\t: 1

processor\t: 2
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni
physical id\t: 0
core id\t\t: 1
"""
ARM_CPUINFO = """processor\t: 0
Features\t: fp asimd asimddp i8mm
Hardware\t: BCM2835
"""


def test_cpu_info_reads_model_flags_and_physical_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "Path", FakeFile({"/proc/cpuinfo": X86_CPUINFO}))
    model, flags, physical, notes = measure._cpu_info()
    assert model == "AMD EPYC 9B14" and physical == 2 and notes == []  # cores 0 and 1: hyperthreads share
    assert flags == {"fpu", "sse2", "avx2", "fma", "avx512f", "avx512_vnni"}
    monkeypatch.setattr(measure, "Path", FakeFile({"/proc/cpuinfo": ARM_CPUINFO}))
    model, flags, physical, _ = measure._cpu_info()
    assert model == "BCM2835" and flags == {"fp", "asimd", "asimddp", "i8mm"} and physical is None


def test_cpu_info_without_proc_asks_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "Path", FakeFile({}))
    monkeypatch.setattr(measure.platform, "processor", lambda: "")
    monkeypatch.setattr(measure.platform, "machine", lambda: "arm64")
    assert measure._cpu_info() == ("arm64", set(), None, [])
    monkeypatch.setattr(measure, "Path", FakeFile({"/proc/cpuinfo": "processor\t: 0\n"}))
    assert measure._cpu_info()[0] == "arm64"  # no model line: what platform knows


def test_environment_names_the_int8_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "_cpu_info", lambda: ("x86 box", {"avx2", "fma"}, 4, []))
    env = measure.environment("cpu")
    assert env.cpu_model == "x86 box" and env.physical_cores == 4 and env.provider == "cpu"
    assert {name for name, present in env.isa.items() if present} == {"avx2", "fma"}
    assert env.int8_dot_product is False and env.notes == []
    monkeypatch.setattr(measure, "_cpu_info", lambda: ("arm box", {"asimd", "asimddp"}, None, []))
    env = measure.environment("cuda")
    assert env.isa["neon"] and env.isa["arm_dotprod"] and not env.isa["avx2"]
    assert env.int8_dot_product is True and env.provider == "cuda"
    monkeypatch.setattr(measure, "_cpu_info", lambda: ("?", set(), None, []))
    env = measure.environment()
    assert env.notes == ["ISA flags unknown on this OS (no /proc/cpuinfo)"] and not any(env.isa.values())
    assert env.usable_cores == measure.usable_cores() >= 1 and env.logical_cores >= 1


def test_usable_cores_follow_the_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert measure.usable_cores() == 3

    def missing(pid: int):
        raise OSError

    monkeypatch.setattr(measure.os, "sched_getaffinity", missing, raising=False)
    monkeypatch.setattr(measure.os, "cpu_count", lambda: 6)
    assert measure.usable_cores() == 6


# --- inputs and batches ------------------------------------------------------------------------------


def test_sample_images_repeat_the_test_set_or_fall_back_to_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    class Split:
        images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)

        def __len__(self) -> int:
            return 3

    test = Split()
    monkeypatch.setattr(measure.data, "load_split", lambda name, download: test)
    images, source = measure.sample_images(7)
    assert source == "MNIST test images" and images.shape == (7, 28, 28)
    assert np.array_equal(images, test.images[[0, 1, 2, 0, 1, 2, 0]])
    assert measure.sample_images(2)[0].shape == (2, 28, 28)

    def missing(name, download):
        raise DataError("no MNIST")

    monkeypatch.setattr(measure.data, "load_split", missing)
    noise, source = measure.sample_images(5, seed=3)
    assert source == "synthetic (MNIST not found)" and noise.shape == (5, 28, 28) and noise.dtype == np.uint8
    assert np.array_equal(noise, measure.sample_images(5, seed=3)[0])
    assert not np.array_equal(noise, measure.sample_images(5, seed=4)[0])


def test_take_repeats_images_when_there_are_too_few() -> None:
    images = np.arange(3 * 2 * 2).reshape(3, 2, 2)
    assert np.array_equal(measure._take(images, 2), images[:2])
    assert np.array_equal(measure._take(images, 3), images)
    assert np.array_equal(measure._take(images, 5), images[[0, 1, 2, 0, 1]])


def test_a_fixed_batch_model_is_measured_at_its_batch_only() -> None:
    notes: list[str] = []
    dynamic = types.SimpleNamespace(batch=None)
    assert measure._usable_batches(dynamic, [1, 8], notes) == [1, 8] and notes == []
    fixed = types.SimpleNamespace(batch=8)
    assert measure._usable_batches(fixed, [1, 8, 64], notes) == [8]
    assert notes == ["fixed batch 8: batch sizes 1, 64 not measurable; measured 8"]
    assert measure._usable_batches(fixed, [8], []) == [8]


# --- onnxruntime's profile ------------------------------------------------------------------------


def _profile(path: Path, runs: list[list[tuple[str, float]]]) -> Path:
    events = [{"cat": "Session", "name": "session_initialization", "dur": 999}]
    for ops in runs:
        for index, (op, duration) in enumerate(ops):
            events.append({"cat": "Node", "name": f"node{index}_kernel_time", "dur": duration,
                           "args": {"op_name": op}})
            events.append({"cat": "Node", "name": f"node{index}_fence_before", "dur": 1000,
                           "args": {"op_name": op}})
        events.append({"cat": "Session", "name": "model_run", "dur": 5000})
    path.write_text(json.dumps(events))
    return path


def test_operator_times_per_run_leave_out_the_warm_up(tmp_path: Path) -> None:
    warm = [("Conv", 900.0), ("Relu", 900.0)]
    measured = [("Conv", 30.0), ("Relu", 5.0), ("Conv", 10.0), ("Gemm", 6.0)]
    ops = measure.operator_times(_profile(tmp_path / "p.json", [warm, warm, measured, measured]), skip_runs=2)
    assert [op.op_type for op in ops] == ["Conv", "Gemm", "Relu"]  # slowest first
    by_type = {op.op_type: op for op in ops}
    assert (by_type["Conv"].calls_per_run, by_type["Conv"].us_per_run) == (2.0, 40.0)
    assert (by_type["Relu"].calls_per_run, by_type["Relu"].us_per_run) == (1.0, 5.0)
    assert by_type["Conv"].share == pytest.approx(40 / 51) and by_type["Gemm"].share == pytest.approx(6 / 51)
    every = measure.operator_times(_profile(tmp_path / "q.json", [measured, measured]))
    assert {op.op_type: op.us_per_run for op in every} == {"Conv": 40.0, "Relu": 5.0, "Gemm": 6.0}


def test_operator_times_of_an_empty_profile(tmp_path: Path) -> None:
    assert measure.operator_times(_profile(tmp_path / "p.json", [[]]), skip_runs=0) == []
    (tmp_path / "none.json").write_text("[]")
    assert measure.operator_times(tmp_path / "none.json", skip_runs=3) == []


def test_cpu_info_keeps_colons_inside_a_value_and_knows_mips_names(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "cpu model\t\t: MIPS 24Kc V7.4\nsystem type\t: Atheros AR9330 rev 1: ap121\nprocessor\t: 0\n"
    monkeypatch.setattr(measure, "Path", FakeFile({"/proc/cpuinfo": text}))
    assert measure._cpu_info()[0] == "MIPS 24Kc V7.4"
    with_colon = "model name\t: Vendor CPU: model 7 @ 2.0GHz\nflags\t: fpu avx2\n"
    monkeypatch.setattr(measure, "Path", FakeFile({"/proc/cpuinfo": with_colon}))
    assert measure._cpu_info()[:2] == ("Vendor CPU: model 7 @ 2.0GHz", {"fpu", "avx2"})


def test_throughput_runs_are_capped_for_calls_that_take_no_time(clock: FakeClock,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "_MAX_RUNS", 700)
    point = measure.measure_throughput(Call(clock, lambda n: 0.01), batch_size=1, threads=1, seconds=0.01)
    assert point.runs == 700


def test_rss_bytes_without_a_current_figure_says_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "Path", FakeFile({"/proc/self/status": "Name:\tpython\nVmHWM:\t 42 kB\n"}))
    assert measure.rss_bytes() == (None, 42 * 1024)


def test_operator_events_without_a_duration_count_as_zero_time(tmp_path: Path) -> None:
    events = [{"cat": "Node", "name": "conv_kernel_time", "args": {"op_name": "Conv"}, "dur": 30},
              {"cat": "Node", "name": "conv_kernel_time", "args": {"op_name": "Conv"}},
              {"cat": "Session", "name": "model_run"}]
    (tmp_path / "profile.json").write_text(json.dumps(events))
    assert measure.operator_times(tmp_path / "profile.json") == [measure.OpTime("Conv", 2.0, 30.0, 1.0)]
