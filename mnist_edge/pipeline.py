"""The main job in one call: data check, train, eval, export, quantize, parity, bench, report.

Everything lands in one folder:
  pipeline.json   step statuses, times and input fingerprints
  data/           stats.json and overview PNGs
  checkpoint/     the training run (config.json, weights, metrics, curves, eval.json + PNGs)
  exported/fp32/  model.onnx + manifest.json;  exported/int8/ likewise
  parity/         parity.json + disagreements.png
  bench/          bench.json, bench.md, bench.png
  report.html     everything above in one self-contained page

A step's fingerprint hashes what it depends on (options and upstream files). With `resume`, a
step already done with the same fingerprint, whose output files are all still there, is skipped;
a half-finished training continues.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnist_edge import data, parity
from mnist_edge.benchmark import BenchRequest, parse_threads, run_benchmark
from mnist_edge.config import BENCH_BATCH_SIZES, BENCH_THREADS, DEVICES, OPSET, PIPELINE_BENCH_SECONDS, Recipe
from mnist_edge.errors import CheckpointError, ConfigError, DataError, MnistEdgeError, OutputError, TrainingInterrupted
from mnist_edge.evaluate import evaluate_any
from mnist_edge.fileio import atomic_write_json, ensure_dir, read_json, sha256_file
from mnist_edge.manifest import PARITY_REPORT
from mnist_edge.quantize import quantize_model
from mnist_edge.report import build_report
from mnist_edge.runlock import is_bookkeeping, run_folder_lock
from mnist_edge.units import format_us

STEPS = ("data", "train", "eval", "export", "quantize", "parity", "bench", "report")
RECORD = "pipeline.json"
_OWNED = ("data", "checkpoint", "exported", "parity", "bench", "site", "report.html", RECORD)
# What each step leaves behind: fingerprints cover a step's inputs, so a resumed run checks these
# too and redoes a step whose outputs were deleted.
STEP_OUTPUTS = {
    "data": ("data/stats.json",),
    "train": ("checkpoint/config.json", "checkpoint/model.safetensors", "checkpoint/metrics.json"),
    "eval": ("checkpoint/eval.json",),
    "export": ("exported/fp32/model.onnx", "exported/fp32/manifest.json"),
    "quantize": ("exported/int8/model.onnx", "exported/int8/manifest.json"),
    "parity": ("parity/parity.json",),
    "bench": ("bench/bench.json",),
    "report": ("report.html",),
}


class PipelineStepError(MnistEdgeError):
    """A step failed; the steps before it are kept and `--resume` starts again from it."""


@dataclass(frozen=True)
class PipelineOptions:
    recipe: Recipe
    out: Path
    device: str = "auto"
    data_dir: Path | None = None
    download: bool = True
    resume: bool = False
    force: bool = False
    opset: int = OPSET
    bench_seconds: float = PIPELINE_BENCH_SECONDS
    batch_sizes: tuple[int, ...] = BENCH_BATCH_SIZES
    threads: tuple[int, ...] | None = None  # None: one thread, then every usable core
    torch_baseline: bool = True
    # Stop the pipeline when parity thresholds are breached; a sweep records the verdict instead.
    parity_gate: bool = True
    steps: tuple[str, ...] = STEPS
    # Also build the browser page of the int8 model in OUT/site (`mnist-edge web`), linked from the report.
    web: bool = False


@dataclass
class StepRecord:
    name: str
    status: str = "pending"  # pending | running | done | skipped | failed | interrupted
    seconds: float = 0.0
    message: str = ""
    fingerprint: str = ""


@dataclass
class PipelineState:
    preset_recipe: dict[str, Any]
    arch: str
    created: str
    steps: list[StepRecord] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str) -> StepRecord:
        return next(s for s in self.steps if s.name == name)


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint"

    @property
    def fp32(self) -> Path:
        return self.root / "exported" / "fp32"

    @property
    def int8(self) -> Path:
        return self.root / "exported" / "int8"

    @property
    def parity(self) -> Path:
        return self.root / "parity"

    @property
    def bench(self) -> Path:
        return self.root / "bench"


Hooks = dict[str, Callable[..., Any]]


def run_pipeline(options: PipelineOptions, hooks: Hooks | None = None) -> PipelineState:
    """Run the steps in order; raise PipelineStepError naming the step that failed.

    Ctrl-C raises TrainingInterrupted (in any step, not only training): the run can be resumed.

    `hooks` (all optional): `step_start(name, index, total)`, `step_end(record)` and the training
    callbacks `train_step`, `train_epoch`, `train_start` (see mnist_edge.train).
    """
    hooks = hooks or {}
    _check_options(options)
    with run_folder_lock(options.out):  # a second pipeline on this --out is refused, not interleaved
        paths = Paths(_prepare_out(options))
        state = _load_or_new_state(options, paths)
        try:
            _run_steps(options, paths, state, hooks)
        except PipelineStepError:
            _report_what_exists(paths, options)
            raise
    return state


def _run_steps(options: PipelineOptions, paths: Paths, state: PipelineState, hooks: Hooks) -> None:
    for index, record in enumerate(state.steps):
        if record.name not in options.steps:
            continue
        if "step_start" in hooks:
            hooks["step_start"](record.name, index, len(state.steps))
        _run_step(record, options, paths, state, hooks)
        _save_state(paths, state)
        if "step_end" in hooks:
            hooks["step_end"](record)


def _report_what_exists(paths: Paths, options: PipelineOptions) -> None:
    """After a failure, a report of the steps that did finish helps more than none."""
    if "report" not in options.steps:
        return
    try:
        build_report(paths.root)
    except MnistEdgeError:
        pass  # the step's own error is the one to show


def _check_options(options: PipelineOptions) -> None:
    # Before any folder is made: otherwise a typo would surface only at the train or bench step.
    if options.device not in DEVICES:
        raise ConfigError(f"unknown device {options.device!r}; choose one of {', '.join(DEVICES)}")
    if not options.bench_seconds > 0:
        raise ConfigError(f"--bench-seconds must be greater than 0, got {options.bench_seconds}")
    unknown = [name for name in options.steps if name not in STEPS]
    if unknown:
        raise ConfigError(f"unknown pipeline steps {', '.join(unknown)}; the steps are {', '.join(STEPS)}")
    _teacher_weights(options)  # a teacher that cannot teach is refused here, not at the train step


def _prepare_out(options: PipelineOptions) -> Path:
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise OutputError("exists and is not a directory", out)
    # The lock file and a killed run's temporaries are ours: they never make a folder foreign.
    entries = {p.name for p in out.iterdir() if not is_bookkeeping(p.name)} if out.is_dir() else set()
    foreign = sorted(entries - set(_OWNED))
    if foreign and not options.force:
        raise OutputError(f"holds files that are not a pipeline run ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new --out, or pass --force",
                          out)
    holds_run = bool(entries & set(_OWNED))
    if holds_run and not (options.resume or options.force):
        raise OutputError("already holds a pipeline run; pass --resume to continue it or --force to "
                          "start over", out)
    if holds_run and options.force and not options.resume:
        for name in _OWNED:  # only what a pipeline writes: never a user's other files
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    return ensure_dir(out)


def _load_or_new_state(options: PipelineOptions, paths: Paths) -> PipelineState:
    record = paths.root / RECORD
    fresh = PipelineState(options.recipe.to_dict(), options.recipe.arch,
                          datetime.now(UTC).isoformat(timespec="seconds"),
                          [StepRecord(name) for name in STEPS])
    if not (options.resume and record.is_file()):
        return fresh
    saved = read_json(record, OutputError)
    if not isinstance(saved, dict):
        raise OutputError("not a pipeline record (expected a JSON object); start over with --force", record)
    if saved.get("preset_recipe") != options.recipe.to_dict():
        raise PipelineStepError(
            f"cannot resume: the recipe differs from the one this run was started with "
            f"({RECORD} holds {saved.get('preset_recipe')})", paths.root)
    steps = {s.name: s for s in _saved_steps(saved.get("steps", []), record)}
    fresh.steps = [steps.get(name, StepRecord(name)) for name in STEPS]
    created, summary = saved.get("created", fresh.created), saved.get("summary", {})
    if not isinstance(created, str) or not isinstance(summary, dict):
        raise OutputError("'created' must be a string and 'summary' an object; start over with --force", record)
    fresh.created, fresh.summary = created, summary
    return fresh


# The JSON types of a saved StepRecord's fields: a hand-edited pipeline.json is refused here,
# not with a TypeError in the middle of a resumed run.
_STEP_TYPES = {"name": str, "status": str, "seconds": (int, float), "message": str, "fingerprint": str}


def _saved_steps(saved: Any, record: Path) -> list[StepRecord]:
    if not isinstance(saved, list) or not all(isinstance(s, dict) for s in saved):
        raise OutputError("'steps' must be a list of objects; start over with --force", record)
    for step in saved:
        wrong = [k for k in step if k not in _STEP_TYPES or not isinstance(step[k], _STEP_TYPES[k])
                 or isinstance(step[k], bool)]
        if wrong or "name" not in step:
            raise OutputError(f"step {step.get('name', '?')!r} has missing or wrong fields "
                              f"({', '.join(wrong) or 'name'}); start over with --force", record)
    return [StepRecord(**step) for step in saved]


def _save_state(paths: Paths, state: PipelineState) -> None:
    atomic_write_json(paths.root / RECORD, asdict(state))


def _run_step(record: StepRecord, options: PipelineOptions, paths: Paths, state: PipelineState,
              hooks: Hooks) -> None:
    fingerprint = _fingerprint(record.name, options, paths)
    if options.resume and record.status in ("done", "skipped") and record.fingerprint == fingerprint \
            and _outputs_exist(record.name, paths):
        record.status = "skipped"
        record.message = "unchanged since the last run"
        return
    record.status, record.fingerprint = "running", fingerprint
    started = time.perf_counter()
    try:
        record.message = STEP_FUNCTIONS[record.name](options, paths, state, hooks) or ""
    except (TrainingInterrupted, KeyboardInterrupt) as exc:
        # Not a failure: the step reruns on --resume (training from its last saved step).
        message = f"step '{record.name}' interrupted; what is done is saved: run the same command with --resume"
        _stopped(record, "interrupted", message, started, paths, state)
        raise TrainingInterrupted(message, paths.root) from exc
    except MnistEdgeError as exc:
        _stopped(record, "failed", str(exc), started, paths, state)
        raise PipelineStepError(f"step '{record.name}' failed: {exc}") from exc
    except Exception as exc:  # a bug: pipeline.json says so, then the traceback shows it
        _stopped(record, "failed", f"{type(exc).__name__}: {exc}", started, paths, state)
        raise
    record.status, record.seconds = "done", round(time.perf_counter() - started, 3)
    # The fingerprint of a step's own outputs changes downstream fingerprints; recompute after.
    record.fingerprint = _fingerprint(record.name, options, paths)


def _stopped(record: StepRecord, status: str, message: str, started: float, paths: Paths,
             state: PipelineState) -> None:
    record.status, record.message = status, message
    record.seconds = round(time.perf_counter() - started, 3)
    _save_state(paths, state)


def _outputs_exist(step: str, paths: Paths) -> bool:
    return all((paths.root / rel).is_file() for rel in STEP_OUTPUTS[step])


# --- fingerprints -----------------------------------------------------------------------------


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_hash(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def _fingerprint(step: str, options: PipelineOptions, paths: Paths) -> str:
    weights = _file_hash(paths.checkpoint / "model.safetensors")
    fp32 = _file_hash(paths.fp32 / "model.onnx")
    int8 = _file_hash(paths.int8 / "model.onnx")
    mnist = _data_checksums(options)
    inputs = {
        "data": (mnist,),
        "train": (options.recipe.to_dict(), mnist, *_teacher_weights(options)),
        "eval": (weights, mnist, "train beside test"),  # runs from before the training set's figure redo it
        "export": (weights, options.opset),
        "quantize": (fp32, mnist),  # calibrated on training images
        "parity": (weights, fp32, int8, mnist),  # measured on the test images
        "bench": (fp32, int8, options.bench_seconds, options.batch_sizes, _bench_threads(options)),
        "report": (time.time(),),  # always rebuilt: it is cheap and reflects every other step
    }[step]
    return _hash(step, *inputs)


def _teacher_weights(options: PipelineOptions) -> tuple[str, ...]:
    """The teacher's weights hash (distilled recipes only: other runs keep their fingerprints)."""
    if not options.recipe.distilled:
        return ()
    from mnist_edge.distill import check_teacher

    return (check_teacher(options.recipe.teacher)[0].sha256,)


def _bench_threads(options: PipelineOptions) -> tuple[int, ...]:
    # Resolved here, so that a run moved to a machine with other cores measures again.
    return options.threads if options.threads is not None else parse_threads(BENCH_THREADS)


def _data_checksums(options: PipelineOptions) -> dict[str, str] | None:
    """sha256 of the MNIST files the steps will read (None before they are downloaded).

    The files, not the folder's name: new files in the same folder must redo what read them.
    """
    try:
        folder = data.locate(options.data_dir, download=False)
    except DataError:
        return None
    return {name: _cached_sha256(path) for name, path in data.files_in(folder).items()}


_SHA256_CACHE: dict[tuple[str, int, int, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    """sha256 of a file, remembered while its inode, size, mtime and ctime stay the same.

    Every step's fingerprint covers the MNIST files (55 MB, 80 ms to hash) before and after
    it runs: hashing them once per process keeps a sweep's many resume checks cheap. ctime
    changes with any write and cannot be set back, so a replaced file is always hashed again.
    """
    info = path.stat()
    key = (str(path.resolve()), info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if key not in _SHA256_CACHE:
        _SHA256_CACHE[key] = sha256_file(path)
    return _SHA256_CACHE[key]


# --- the steps --------------------------------------------------------------------------------


def _step_data(options: PipelineOptions, paths: Paths, state: PipelineState, hooks: Hooks) -> str:
    from mnist_edge.plots import write_overview

    stats = data.stats(options.data_dir, options.download)
    atomic_write_json(ensure_dir(paths.data) / "stats.json", asdict(stats))
    write_overview(paths.data, options.data_dir, options.download)
    state.summary["data"] = {"train": stats.train_count, "test": stats.test_count,
                             "mean": stats.pixel_mean, "std": stats.pixel_std}
    return f"{stats.train_count:,} train / {stats.test_count:,} test images, mean {stats.pixel_mean:.4f}"


def _step_train(options: PipelineOptions, paths: Paths, state: PipelineState, hooks: Hooks) -> str:
    from mnist_edge import checkpoint
    from mnist_edge.train import train

    resume = checkpoint.is_run_dir(paths.checkpoint)
    if resume and (_trained_on(paths.checkpoint / checkpoint.CONFIG) != _data_checksums(options)
                   or _taught_by(paths.checkpoint / checkpoint.CONFIG) != _teacher_weights(options)):
        # The MNIST files or the teacher changed since this training started: continuing would
        # mix two data sets or two teachers (and training refuses to), so the old run is dropped
        # and training starts over.
        shutil.rmtree(paths.checkpoint)
        resume = False
    result = train(options.recipe, paths.checkpoint, device=options.device, data_dir=options.data_dir,
                   download=options.download, resume=resume, force=not resume,
                   on_step=hooks.get("train_step"), on_epoch=hooks.get("train_epoch"),
                   on_start=hooks.get("train_start"))
    last = result.history[-1] if result.history else {}
    state.summary["train"] = {"params": result.params, "device": result.device,
                              "val_acc": last.get("val_acc"),
                              "seconds": sum(h["seconds"] for h in result.history)}
    return f"{result.params:,} parameters on {result.device}, val acc {last.get('val_acc', 0):.2%}"


def _trained_on(config_path: Path) -> dict[str, str] | None:
    """The MNIST checksums a training run's config.json recorded (None when it does not say)."""
    config = read_json(config_path, CheckpointError)
    recorded = config.get("data") if isinstance(config, dict) else None
    return recorded.get("checksums") if isinstance(recorded, dict) else None


def _taught_by(config_path: Path) -> tuple[str, ...]:
    """The teacher's weights hash a training run's config.json recorded (empty without a teacher)."""
    config = read_json(config_path, CheckpointError)
    teacher = config.get("teacher") if isinstance(config, dict) else None
    return (str(teacher.get("sha256")),) if isinstance(teacher, dict) else ()


def _step_eval(options: PipelineOptions, paths: Paths, state: PipelineState, hooks: Hooks) -> str:
    # The training images' accuracy (unaugmented, eval mode) beside the test set's: the gap between
    # them is the generalisation the figures below are about.
    report, _ = evaluate_any(paths.checkpoint, beside=("train",), data_dir=options.data_dir,
                             download=options.download)
    train_accuracy = report.beside["train"].accuracy
    state.summary["eval"] = {"test_accuracy": report.accuracy, "train_accuracy": train_accuracy}
    return f"PyTorch test accuracy {report.accuracy:.2%}, training set {train_accuracy:.2%}"


def _step_export(options: PipelineOptions, paths: Paths, state: PipelineState, hooks: Hooks) -> str:
    from mnist_edge.export import export_checkpoint

    result = export_checkpoint(paths.checkpoint, paths.fp32, opset=options.opset,
                               name=f"{options.recipe.arch}-fp32", checkpoint_hint="../../checkpoint")
    state.summary["export"] = {"bytes": result.bytes, "opset": result.opset, "exporter": result.exporter}
    return f"fp32 ONNX {result.bytes:,} bytes, opset {result.opset} ({result.exporter})"


def _step_quantize(options: PipelineOptions, paths: Paths, state: PipelineState, hooks: Hooks) -> str:
    # The architecture's defaults, taken from the fp32 model's manifest.
    result = quantize_model(paths.fp32, paths.int8, name=f"{options.recipe.arch}-int8",
                            data_dir=options.data_dir, download=options.download)
    state.summary["quantize"] = {"bytes": result.int8_bytes, "size_ratio": result.size_ratio,
                                 "method": result.options.get("method")}
    return f"int8 ONNX {result.int8_bytes:,} bytes ({result.size_ratio:.0%} of fp32), {result.options['method']}"


def _step_parity(options: PipelineOptions, paths: Paths, state: PipelineState, hooks: Hooks) -> str:
    report = parity.record_parity(paths.checkpoint, paths.fp32, paths.int8, report_dirs=[paths.parity],
                                  manifests={"fp32": paths.fp32, "int8": paths.int8},
                                  data_dir=options.data_dir, download=options.download)
    scores = {m.role: m.accuracy for m in report.models}
    state.summary["parity"] = {"accuracy": scores, "passed": report.passed}
    if not report.passed and options.parity_gate:
        broken = "; ".join(f"{b.check}: {b.message}" for b in report.breaches)
        raise PipelineStepError(f"parity thresholds breached ({broken}); see {paths.parity / PARITY_REPORT}")
    verdict = "thresholds met" if report.passed else "thresholds BREACHED"
    return ", ".join(f"{role} {acc:.2%}" for role, acc in scores.items()) + f", {verdict}"


def _step_bench(options: PipelineOptions, paths: Paths, state: PipelineState, hooks: Hooks) -> str:
    request = BenchRequest(models=(paths.fp32, paths.int8), batch_sizes=options.batch_sizes,
                           threads=_bench_threads(options), seconds=options.bench_seconds,
                           out=paths.bench, torch_checkpoint=paths.checkpoint if options.torch_baseline else None,
                           no_torch=not options.torch_baseline)
    report = run_benchmark(request, on_model=hooks.get("bench_model")).report
    p50 = {m.name: m.latency.p50_us for m in report.models}
    state.summary["bench"] = {"p50_us": p50, "threads": report.settings.threads[0]}
    return ", ".join(f"{name} p50 {format_us(us)}" for name, us in p50.items())


def _step_report(options: PipelineOptions, paths: Paths, state: PipelineState, hooks: Hooks) -> str:
    # The report reads pipeline.json; show this step as done in it (a failure overwrites that).
    if options.web:
        state.summary["web"] = _build_web(paths)
    state.step("report").status = "done"
    _save_state(paths, state)
    return str(build_report(paths.root))


def _build_web(paths: Paths) -> dict[str, Any]:
    """The page of the int8 model, built with the report so the report can link it."""
    from mnist_edge.web.site import build_site, site_summary

    site = build_site(paths.int8, paths.root / "site", force=True)
    return {"index": "site/index.html", "engine": site.engine, "bytes": site_summary(site)["gzip_bytes"]}


STEP_FUNCTIONS: dict[str, Callable[..., str]] = {
    "data": _step_data, "train": _step_train, "eval": _step_eval, "export": _step_export,
    "quantize": _step_quantize, "parity": _step_parity, "bench": _step_bench, "report": _step_report,
}
