"""The proof: the generated C, compiled for this machine, against onnxruntime on the same int8
model and the same test images. Every score must be equal, bit for bit.

onnxruntime runs at graph optimization level `graph.OPT_LEVEL` (the fused QLinearConv / QGemm
kernels the C code reproduces), with the model's last DequantizeLinear removed so that its
quantized scores are compared directly.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge.codegen import reference
from mnist_edge.codegen.graph import OPT_LEVEL, IntegerModel
from mnist_edge.errors import CodegenError
from mnist_edge.logs import quiet_onnxruntime

# Strict C99 with every warning an error; no contraction of a*b+c into an FMA (onnxruntime
# rounds the product and the sum separately) and never fast-math.
STRICT = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off")
# The host build `--verify` proves and `bench` times, unless --cflags says otherwise: optimized for
# this machine, so the compiler's macros pick its SIMD kernels (common.c).
HOST_CFLAGS = ("-O3", "-march=native")
HOST_BUILDS = {"O2": ("-O2",), "O3-native": HOST_CFLAGS}
# MNIST_EDGE_ISA values (templates/kernels/common.c) -> what a build runs.
KERNELS = {0: "portable C", 1: "Cortex-M DSP", 2: "x86 AVX2", 3: "x86 AVX-VNNI (256-bit)", 4: "x86 AVX-512 VNNI",
           5: "WebAssembly SIMD"}
TIMING_REPEATS = 20


@dataclass
class Verification:
    images: int
    requant: str  # "float": the C must equal onnxruntime; "fixed": the numpy model of its integer arithmetic
    identical: int  # images whose every score equals the reference's
    top1_agreement: float  # with onnxruntime
    max_score_diff: int  # from onnxruntime's scores, in output steps
    c_accuracy: float
    onnxruntime_accuracy: float
    first_differing: list[int]  # test-set indices
    first_differing_layer: str | None  # where the numpy model of the C arithmetic leaves onnxruntime
    # --requant fixed: each layer run on onnxruntime's own input to it, the largest difference from
    # onnxruntime's output (in steps); the goal is at most 1.
    max_layer_step: int | None = None
    onnxruntime_level: str = OPT_LEVEL
    compiler: str = ""
    flags: list[str] = field(default_factory=list)
    kernels: str = ""  # the kernel family that build ran (KERNELS)

    @property
    def passed(self) -> bool:
        within = self.max_layer_step is None or self.max_layer_step <= 1
        return self.identical == self.images and within


def find_compiler(cc: str) -> str:
    found = shutil.which(cc)
    if found is None:
        raise CodegenError(f"no C compiler {cc!r} on PATH: install gcc (apt-get install gcc) or pass --cc")
    return found


def build_harness(c_dir: Path, work: Path, cc: str, optimization: tuple[str, ...] = HOST_CFLAGS) -> Path:
    """Compile C_DIR's model.c with the host harness (one translation unit: the harness includes
    model.c) into WORK/harness; OPTIMIZATION may carry defines too (-DMNIST_EDGE_SOFT_FLOAT=1: the
    integer requantization of cores without an FPU)."""
    harness = work / "harness.c"
    harness.write_text(resources.files("mnist_edge.codegen").joinpath("templates/harness.c").read_text("utf-8"))
    exe = work / "harness"
    command = [find_compiler(cc), *STRICT, *optimization, "-I", str(c_dir), str(harness), "-o", str(exe)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        first = next((line for line in lines if "error" in line), lines[0])
        raise CodegenError(f"the generated C does not compile with {' '.join(command[:1] + list(STRICT))} "
                           f"{' '.join(optimization)}: {first}")
    return exe


def harness_kernels(exe: Path) -> str:
    """The kernel family a built harness runs (its MNIST_EDGE_ISA)."""
    done = subprocess.run([str(exe), "isa"], capture_output=True, text=True, check=True, timeout=60)
    return KERNELS.get(int(done.stdout), done.stdout.strip())


def c_scores(exe: Path, pixels: np.ndarray, classes: int) -> np.ndarray:
    done = subprocess.run([str(exe)], input=np.ascontiguousarray(pixels, np.uint8).tobytes(), capture_output=True,
                          check=False, timeout=600)
    if done.returncode:
        raise CodegenError(f"the compiled C code failed (exit {done.returncode})")
    return np.frombuffer(done.stdout, np.uint8).reshape(len(pixels), classes)


def c_time_us(exe: Path, pixels: np.ndarray, repeats: int = TIMING_REPEATS) -> float:
    """Mean host time per image, in microseconds, over `repeats` passes."""
    done = subprocess.run([str(exe), str(repeats)], input=np.ascontiguousarray(pixels, np.uint8).tobytes(),
                          capture_output=True, check=True, timeout=600)
    return float(done.stdout) / 1000


def quantized_output_model(model_path: Path) -> bytes:
    """The model cut at its scores' DequantizeLinear (and the float Softmax or layout after it):
    onnxruntime then returns the quantized scores the C returns."""
    import onnx

    model = onnx.load(str(model_path))
    output = model.graph.output[0]
    producers = {out: node for node in model.graph.node for out in node.output}
    tail, name = [], output.name
    while name in producers and producers[name].op_type in ("Softmax", "Reshape", "Flatten", "Identity", "Squeeze"):
        tail.append(producers[name])
        name = producers[name].input[0]
    last = producers.get(name)
    if last is None or last.op_type != "DequantizeLinear":
        raise CodegenError("the model's output is not dequantized int8 scores", model_path)
    for node in [*tail, last]:
        model.graph.node.remove(node)
    output.name = last.input[0]
    output.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    return model.SerializeToString()


def model_input(model: IntegerModel, pixels: np.ndarray) -> np.ndarray:
    """Raw pixels [N, 28, 28] -> the model's float input in its own layout (NCHW, NHWC or flat)."""
    from mnist_edge.data import normalize

    norm = model.normalization
    x = normalize(pixels, norm.scale, norm.mean, norm.std)
    shapes = {"NCHW": (1, 28, 28), "NHWC": (28, 28, 1), "flat": (784,)}
    return np.ascontiguousarray(x.reshape(len(x), *shapes[model.input_layout]))


def onnxruntime_session(model_bytes: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVEL)
    options.intra_op_num_threads = 1
    quiet_onnxruntime(options)
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def onnxruntime_scores(model_path: Path, pixels: np.ndarray, normalization: Any, batch: int = 500,
                       layout: str = "NCHW") -> np.ndarray:
    from mnist_edge.data import normalize

    session = onnxruntime_session(quantized_output_model(model_path))
    name = session.get_inputs()[0].name
    shapes = {"NCHW": (1, 28, 28), "NHWC": (28, 28, 1), "flat": (784,)}
    parts = []
    for start in range(0, len(pixels), batch):
        x = normalize(pixels[start:start + batch], normalization.scale, normalization.mean, normalization.std)
        x = np.ascontiguousarray(x.reshape(len(x), *shapes[layout]))
        parts.append(session.run(None, {name: x})[0].reshape(len(x), -1))
    return np.concatenate(parts)


def verify_against_onnxruntime(model: IntegerModel, c_dir: Path, pixels: np.ndarray, labels: np.ndarray,
                               cc: str = "cc", requant: str = "float",
                               flags: tuple[str, ...] = HOST_CFLAGS) -> Verification:
    """Float requantization: every C score equals onnxruntime's. Fixed: every C score equals the
    numpy model of the integer arithmetic, and each layer stays within a step of onnxruntime's.
    FLAGS: the host build's optimization and defines (recorded in the result)."""
    with tempfile.TemporaryDirectory(prefix="mnist-edge-verify-") as tmp:
        exe = build_harness(c_dir, Path(tmp), cc, flags)
        ours = c_scores(exe, pixels, model.classes)
        kernels = harness_kernels(exe)
    theirs = onnxruntime_scores(model.source, pixels, model.normalization, layout=model.input_layout)
    expected = theirs if requant == "float" else reference.scores(model, pixels, "fixed")
    same = (ours == expected).all(axis=1)
    differing = np.flatnonzero(~same)
    layer_step = _max_layer_step(model, pixels[:1000]) if requant == "fixed" else None
    return Verification(
        images=len(pixels), requant=requant, identical=int(same.sum()),
        top1_agreement=float((ours.argmax(1) == theirs.argmax(1)).mean()),
        max_score_diff=int(np.abs(ours.astype(int) - theirs.astype(int)).max(initial=0)),
        c_accuracy=float((ours.argmax(1) == labels).mean()),
        onnxruntime_accuracy=float((theirs.argmax(1) == labels).mean()),
        first_differing=differing[:10].tolist(),
        first_differing_layer=(_first_differing_layer(model, pixels[differing[:10]], requant)
                               if len(differing) else None),
        max_layer_step=layer_step, compiler=cc, flags=[*STRICT, *flags], kernels=kernels)


def onnxruntime_layer_outputs(model: IntegerModel, pixels: np.ndarray) -> list[np.ndarray]:
    """onnxruntime's own output of every integer layer (uint8), in `model.layers` order, from the
    optimized graph the layers were read from (batch 1: one image at a time)."""
    import onnx

    from mnist_edge.codegen.graph import optimized_graph

    optimized = optimized_graph(model.source, batch=1)
    names = [layer.output for layer in model.layers]
    del optimized.graph.output[:]
    optimized.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UINT8, None) for n in names)
    session = onnxruntime_session(optimized.SerializeToString())
    x = model_input(model, pixels)
    runs = [session.run(None, {session.get_inputs()[0].name: x[i:i + 1]}) for i in range(len(x))]
    return [np.concatenate([np.asarray(run[k]).reshape(1, -1) for run in runs]) for k in range(len(names))]


def _first_differing_layer(model: IntegerModel, pixels: np.ndarray, requant: str) -> str | None:
    """The first layer whose output, in the numpy model of the C arithmetic (`reference`),
    differs from onnxruntime's own intermediate output on these images (None when none does;
    with --requant fixed the first that differs by more than one step)."""
    allowed = 0 if requant == "float" else 1
    mine = reference.layer_outputs(model, pixels, requant)
    for layer, ours, theirs in zip(model.layers, mine, onnxruntime_layer_outputs(model, pixels), strict=True):
        if np.abs(ours.reshape(-1).astype(int) - theirs.reshape(-1).astype(int)).max(initial=0) > allowed:
            return layer.name
    return None


def _max_layer_step(model: IntegerModel, pixels: np.ndarray) -> int:
    """Each layer in fixed point on onnxruntime's own input to it: the largest step from onnxruntime."""
    from mnist_edge.codegen.graph import INPUT

    theirs = dict(zip([layer.output for layer in model.layers], onnxruntime_layer_outputs(model, pixels), strict=True))
    maps = {INPUT: model.input.table[pixels].reshape(len(pixels), -1), **theirs}
    worst = 0
    for layer in model.layers:
        given = [maps[name].reshape(len(pixels), *layer.in_shape) for name in layer.inputs]
        ours = reference.run_layer(layer, given[0], "fixed", given[1] if len(given) > 1 else None)
        expected = theirs[layer.output]
        worst = max(worst, int(np.abs(ours.reshape(-1).astype(int) - expected.reshape(-1).astype(int)).max()))
    return worst
