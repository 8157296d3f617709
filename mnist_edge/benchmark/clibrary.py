"""A C library that `mnist-edge codegen` wrote (model.c, model.h, manifest.json) as one more kind
of model for `bench`: compiled by the system C compiler into a shared library (the strict flags,
-fPIC, and -O3 -march=native unless --cflags says otherwise: the build `codegen --verify`
proves), loaded with ctypes, fed the very raw pixels onnxruntime gets (the C takes 0-255), and
timed with measure.py's primitives, so its rows stand beside onnxruntime's.

The library is single-threaded: it is measured at one thread. A batch is one ctypes call that
classifies the images back to back (templates/bench_shim.c). No torch, no onnx: the light
install benchmarks a C library as it benchmarks an ONNX model.
"""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge import measure
from mnist_edge.codegen.verify import HOST_CFLAGS, KERNELS, STRICT, find_compiler
from mnist_edge.errors import CodegenError
from mnist_edge.fileio import read_json, sha256_file

SHIM = "bench_shim.c"
SOURCE = "model.c"
KIND = "c-library"


def is_c_library(path: str | Path) -> bool:
    """A folder holding a generated C library (model.c and a c-library manifest)."""
    folder = Path(path)
    if not (folder.is_dir() and (folder / SOURCE).is_file() and (folder / "manifest.json").is_file()):
        return False
    manifest = read_json(folder / "manifest.json", CodegenError)
    return isinstance(manifest, dict) and manifest.get("kind") == KIND


@dataclass(frozen=True)
class Build:
    library: Path  # the shared library
    compiler: str
    flags: list[str]  # every flag it was compiled with
    kernels: str  # the kernel family the build chose
    seconds: float  # compile time


def build_shared_library(c_dir: Path, work: Path, cc: str = "cc", cflags: Sequence[str] = HOST_CFLAGS) -> Build:
    """C_DIR's model.c with the bench shim, as one shared library in WORK; a compile error is one
    CodegenError naming the compiler's first error line."""
    compiler = find_compiler(cc)
    shim = work / SHIM
    shim.write_text(resources.files("mnist_edge.codegen").joinpath(f"templates/{SHIM}").read_text("utf-8"))
    library = work / "libmnist_edge_model.so"
    flags = [*STRICT, *cflags, "-fPIC", "-shared"]
    start = time.perf_counter()
    done = subprocess.run([compiler, *flags, "-I", str(c_dir), str(shim), "-o", str(library)], capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        first = next((line for line in lines if "error" in line), lines[0])
        raise CodegenError(f"the C library does not compile with {cc} {' '.join(cflags)}: {first}", c_dir)
    isa = ctypes.CDLL(str(library)).mnist_edge_bench_isa()
    return Build(library, cc, flags, KERNELS.get(isa, str(isa)), seconds)


class Runner:
    """A loaded library and one bound call per batch: the pixels and the scores buffer are made
    before the clock starts, so a timed call is the C and one ctypes crossing."""

    def __init__(self, library: Path):
        self.handle = ctypes.CDLL(str(library))
        self.handle.mnist_edge_bench_run.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self.handle.mnist_edge_bench_run.restype = None
        self.classes = int(self.handle.mnist_edge_bench_classes())

    def call(self, pixels: np.ndarray) -> tuple[Callable[[], object], np.ndarray]:
        """(a call that classifies PIXELS, the array it writes the scores into)."""
        pixels = np.ascontiguousarray(pixels, np.uint8)
        scores = np.zeros((len(pixels), self.classes), np.uint8)
        run, count = self.handle.mnist_edge_bench_run, len(pixels)
        source, target = pixels.ctypes.data, scores.ctypes.data
        self._keep = (pixels, scores)  # the buffers outlive the call

        def classify() -> None:
            run(source, count, target)

        return classify, scores


def bench_c_library(path: str | Path, *, images: np.ndarray, batch_sizes: Sequence[int], seconds: float = 2.0,
                    throughput_seconds: float = 0.5, cc: str = "cc",
                    cflags: Sequence[str] = HOST_CFLAGS) -> measure.ModelResult:
    """Measure one C library folder as `measure.bench_onnx` measures an ONNX model: cold start
    (loading the shared library, then the first image), batch-1 latency after a steady warm-up,
    images/s at every batch size (one thread), the memory it adds."""
    folder = Path(path)
    manifest = read_json(folder / "manifest.json", CodegenError)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-bench-c-") as tmp:
        build = build_shared_library(folder, Path(tmp), cc, cflags)
        memory_reset = measure.reset_peak_rss()
        rss_before, _ = measure.rss_bytes()
        start = time.perf_counter()
        runner = Runner(build.library)
        load_ms = (time.perf_counter() - start) * 1e3
        first, _ = runner.call(images[:1])
        start = time.perf_counter()
        first()
        first_ms = (time.perf_counter() - start) * 1e3
        latency = measure.measure_latency(first, seconds, 1, 1)
        points = [measure.measure_throughput(runner.call(_take(images, batch))[0], batch, 1, throughput_seconds)
                  for batch in batch_sizes]
        _, peak = measure.rss_bytes()
        library_bytes = build.library.stat().st_size
    return measure.ModelResult(
        name=folder.name, path=str(folder / SOURCE), kind="c", quantized=True, file_bytes=library_bytes,
        cold_start=measure.ColdStart(load_ms, first_ms, load_ms + first_ms), latency=latency, throughput=points,
        peak_rss_bytes=peak, rss_before_bytes=rss_before,
        notes=_notes(manifest, build, memory_reset),
        memory_added_bytes=measure.memory_added(memory_reset, rss_before, peak), sha256=sha256_file(folder / SOURCE),
        build=_build_record(manifest, build))


def _take(images: np.ndarray, count: int) -> np.ndarray:
    return images[:count] if len(images) >= count else np.resize(images, (count, *images.shape[1:]))


def _build_record(manifest: dict[str, Any], build: Build) -> dict[str, Any]:
    source = (manifest.get("source_model") or {}) if isinstance(manifest, dict) else {}
    verification = (manifest.get("verification") or {}) if isinstance(manifest, dict) else {}
    return {"compiler": build.compiler, "flags": build.flags, "kernels": build.kernels,
            "compile_seconds": round(build.seconds, 3), "source_model": source.get("path"),
            "source_sha256": source.get("sha256"), "verified_flags": verification.get("flags"),
            "verified_identical": verification.get("identical"), "verified_images": verification.get("images")}


def _notes(manifest: dict[str, Any], build: Build, memory_reset: bool) -> list[str]:
    source = (manifest.get("source_model") or {}).get("path", "?") if isinstance(manifest, dict) else "?"
    notes = [f"C library generated from {source}; {build.kernels} kernels ({' '.join(build.flags[len(STRICT):])}); "
             "single-threaded: measured at 1 thread"]
    if not memory_reset:
        notes.append(measure.NO_RESET_NOTE)
    return notes


__all__ = ["Build", "Runner", "bench_c_library", "build_shared_library", "is_c_library"]
