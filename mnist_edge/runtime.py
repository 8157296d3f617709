"""`Predictor`: run an ONNX digit model with onnxruntime alone (no torch, no onnx package).

It loads an exported folder (trusting its manifest.json for the input convention and labels),
or a bare `.onnx` file, ours or foreign. The input layout comes from the model itself:

    NCHW [N, 1, 28, 28]    NHWC [N, 28, 28, 1]    flat [N, 784]

with a fixed or dynamic batch and float32 (normalised: (pixel / scale - mean) / std) or uint8
(raw pixels) input. Outputs may be logits or probabilities; which one is detected by running
the model once at load time.

External data: onnxruntime itself refuses locations that are absolute or resolve (symlinks
included) outside the model's folder. The check arrived in 1.24.1 (microsoft/onnxruntime#26776)
and 1.24.2 stopped it refusing legitimately symlinked layouts such as the Hugging Face cache
(#27374), hence `onnxruntime>=1.24.2` in pyproject.toml: older releases read any file a model
names. This module turns that refusal into a ModelFileError rather than parsing the protobuf
again: the light install has no onnx package.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from mnist_edge import manifest as manifest_io
from mnist_edge.config import IMAGE_SIZE as SIZE
from mnist_edge.config import LABELS, Normalization
from mnist_edge.errors import ConfigError, InputImageError, ManifestError, ModelFileError, first_line
from mnist_edge.logs import quiet_onnxruntime
from mnist_edge.modelfile import locate_model
from mnist_edge.modelprep import refuse_unbounded_control_flow
from mnist_edge.onnx_ops import operator_types
from mnist_edge.ortsession import open_session
from mnist_edge.units import format_bytes

PIXELS = SIZE * SIZE
# Arrays bigger than this are fed in chunks: memory stays bounded and onnxruntime's
# throughput is already flat at this batch size for digit-sized models.
DEFAULT_CHUNK = 512
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}
_INPUT_DTYPES = {"tensor(float)": np.dtype(np.float32), "tensor(uint8)": np.dtype(np.uint8)}
_OUTPUT_TYPES = ("tensor(float)", "tensor(double)", "tensor(float16)")
# Every exception class onnxruntime's C++ layer raises (Fail, InvalidProtobuf, NotImplemented...);
# they share no base class below Exception.
_ORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    value for value in vars(_ort_state).values()
    if isinstance(value, type) and issubclass(value, Exception)
) + (RuntimeError,)
# A model with a fixed batch gets its inputs padded to that batch: beyond this (200 MB of float32
# pixels) the padding alone would exhaust memory, so such a model is refused at load.
MAX_FIXED_BATCH = 65_536
LAYOUT_SHAPES = {"NCHW": (1, SIZE, SIZE), "NHWC": (SIZE, SIZE, 1), "flat": (PIXELS,)}


@dataclass(frozen=True)
class Prediction:
    digits: np.ndarray  # int64 [N], index into the labels
    confidences: np.ndarray  # float32 [N], probability of the predicted digit
    probabilities: np.ndarray  # float32 [N, classes]

    def top(self, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """The k most probable classes per image, best first: (indices [N, k], probabilities [N, k])."""
        k = min(k, self.probabilities.shape[1])
        order = np.argsort(-self.probabilities, kind="stable")[:, :k]  # along the classes, ties in class order
        return order, np.take_along_axis(self.probabilities, order, axis=1)


@dataclass(frozen=True)
class InputSpec:
    """What the model's single input expects, read from the model itself."""

    name: str
    layout: str  # NCHW, NHWC or flat
    dtype: np.dtype  # float32 or uint8
    batch: int | None  # None when the batch dimension is dynamic
    shape: tuple[Any, ...]  # as declared: ints, or names for symbolic dimensions

    def array_shape(self, count: int) -> tuple[int, ...]:
        return (count, *LAYOUT_SHAPES[self.layout])


class Predictor:
    """A loaded model and its input convention. Build it with `Predictor.load`."""

    def __init__(self, session: ort.InferenceSession, model_path: Path, spec: InputSpec,
                 normalization: Normalization | None, labels: list[str],
                 manifest: dict[str, Any] | None):
        self.session = session
        self.model_path = model_path
        self.spec = spec
        self.normalization = normalization  # None for uint8 models: they take raw pixels
        self.labels = labels
        self.manifest = manifest
        self.output_name = session.get_outputs()[0].name
        self._lut = _normalization_table(normalization)
        self.outputs_probabilities = self._detect_probabilities()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, scale: float | None = None, mean: float | None = None,
             std: float | None = None, threads: int | None = None,
             provider: str = "cpu") -> Predictor:
        """Load an exported folder (with manifest.json) or an `.onnx` file.

        Explicit `scale`, `mean` and `std` override the manifest, which overrides the MNIST
        defaults (255, 0.1307, 0.3081). They do not apply to uint8-input models.
        """
        model_path, manifest = locate_model(path)
        session = create_session(model_path, threads=threads, provider=provider)
        spec = inspect_input(session, model_path)
        if manifest is not None:
            _check_manifest_agrees(manifest, spec, model_path)
        normalization = _normalization(spec, manifest, scale, mean, std)
        labels = list(manifest["labels"]) if manifest else list(LABELS)
        _check_output(session, len(labels), model_path)
        return cls(session, model_path, spec, normalization, labels, manifest)

    # --- attributes the CLI and bench read --------------------------------------------------

    @property
    def input_name(self) -> str:
        return self.spec.name

    @property
    def layout(self) -> str:
        return self.spec.layout

    @property
    def input_dtype(self) -> np.dtype:
        return self.spec.dtype

    @property
    def batch(self) -> int | None:
        return self.spec.batch

    @property
    def name(self) -> str:
        if self.manifest:
            return str(self.manifest["name"])
        return self.model_path.stem

    # --- inference --------------------------------------------------------------------------

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, 28, 28] -> the model's input array (layout, dtype and normalisation)."""
        images = as_image_batch(images)
        # A 256-entry table does the whole normalisation in one gather; the values are the
        # same float32 arithmetic as mnist_edge.data.normalize.
        values = self._lut[images] if self._lut is not None else images
        return np.ascontiguousarray(values.reshape(self.spec.array_shape(len(images))))

    def logits(self, images: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
        """uint8 [N, 28, 28] -> float32 [N, classes]: the model's raw output scores.

        When the model already outputs probabilities (`outputs_probabilities`), they are
        returned as given. Big arrays go through in chunks; fixed-batch models get the last
        chunk padded with blank images.
        """
        images = as_image_batch(images)
        step = self.spec.batch or max(1, chunk)
        scores = np.empty((len(images), len(self.labels)), dtype=np.float32)
        for start in range(0, len(images), step):
            part = images[start : start + step]
            scores[start : start + len(part)] = self._run(self._padded(self.prepare(part)))[: len(part)]
        return scores

    def probabilities(self, images: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
        scores = self.logits(images, chunk)
        return scores if self.outputs_probabilities else softmax(scores)

    def predict(self, images: np.ndarray, chunk: int = DEFAULT_CHUNK) -> Prediction:
        probabilities = self.probabilities(images, chunk)
        digits = probabilities.argmax(axis=1)
        confidences = np.take_along_axis(probabilities, digits[:, None], axis=1)[:, 0]
        return Prediction(digits.astype(np.int64), confidences, probabilities)

    def _padded(self, x: np.ndarray) -> np.ndarray:
        if self.spec.batch is None or len(x) == self.spec.batch:
            return x
        padded = np.empty(self.spec.array_shape(self.spec.batch), dtype=x.dtype)
        padded[: len(x)] = x
        # Blank images, normalised like real ones.
        padded[len(x) :] = self._lut[0] if self._lut is not None else 0
        return padded

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            (out,) = self.session.run([self.output_name], {self.spec.name: x})
        except _ORT_ERRORS as exc:
            raise ModelFileError(f"inference failed: {describe_run_error(exc)}", self.model_path) from None
        out = np.asarray(out)
        if out.ndim < 2 or out.size != len(x) * len(self.labels):
            raise ModelFileError(
                f"model output has shape {list(out.shape)}; expected [{len(x)}, {len(self.labels)}] "
                "(one score per digit)", self.model_path)
        return out.reshape(len(x), len(self.labels)).astype(np.float32, copy=False)

    def _detect_probabilities(self) -> bool:
        """Run a blank and a synthetic stroke image: probabilities lie in [0, 1] and sum to 1."""
        probe = np.zeros((2, SIZE, SIZE), dtype=np.uint8)
        probe[1, 4:24, 12:16] = 255
        out = self.logits(probe)
        in_range = bool(np.all(out >= -1e-6) and np.all(out <= 1 + 1e-6))
        return in_range and bool(np.allclose(out.sum(axis=1), 1.0, atol=1e-3))


# --- finding and opening the model file ---------------------------------------------------


def session_options(threads: int | None = None, profile_prefix: str | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    quiet_onnxruntime(options)  # the CLI prints one error line; onnxruntime's own only with --verbose
    options.inter_op_num_threads = 1  # digit models are a single chain of operators
    if threads:
        options.intra_op_num_threads = threads
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def providers_for(provider: str) -> list[str]:
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[provider][0]
    available = ort.get_available_providers()
    if wanted not in available:
        raise ConfigError(
            f"provider {provider!r} is not available in this onnxruntime build "
            f"(available: {', '.join(available)}); install onnxruntime-gpu for cuda")
    return PROVIDERS[provider]


def create_session(model_path: str | Path, *, threads: int | None = None, provider: str = "cpu",
                   profile_prefix: str | None = None) -> ort.InferenceSession:
    """An onnxruntime session, with its failures turned into one-line ModelFileErrors.

    Hostile models are refused or contained: a loop whose iteration count the model decides
    is refused before it can run, and every CPU tensor comes from one arena capped at
    `memory_limit()` bytes, so a graph that asks for billions of elements fails with a clear
    error instead of exhausting the machine's memory.
    """
    options = session_options(threads, profile_prefix)
    providers = providers_for(provider)
    _cap_cpu_memory(options)
    try:
        # Loading by path (not bytes) lets onnxruntime resolve external data beside the model.
        session = open_session(str(model_path), options, providers)
    except _ORT_ERRORS as exc:
        raise ModelFileError(describe_load_error(exc), model_path) from None
    except UnicodeDecodeError:  # onnxruntime hands a damaged name or error text to Python as UTF-8
        raise ModelFileError("not a valid ONNX model (a name or string in it is not UTF-8: damaged file?)",
                             model_path) from None
    refuse_unbounded_control_flow(operator_types(Path(model_path)) or set(), model_path)
    return session


# The arena's cap, in bytes, for all sessions of the process together. Digit models need a few
# MB (the largest chunk, 512 images through the cnn, about 60 MB); MNIST_EDGE_MEMORY_LIMIT_MB raises it.
DEFAULT_MEMORY_LIMIT = 2 * 1024**3
_arena_registered = False


def memory_limit() -> int:
    text = os.environ.get("MNIST_EDGE_MEMORY_LIMIT_MB", "")
    if text.strip().isdigit() and int(text) > 0:
        return int(text) * 1024**2
    return DEFAULT_MEMORY_LIMIT


def _cap_cpu_memory(options: ort.SessionOptions) -> None:
    """Make the session allocate from the process's shared, capped CPU arena (registered once)."""
    global _arena_registered
    if not _arena_registered:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        # max_mem, then onnxruntime's defaults (-1) for extend strategy, first chunk and dead bytes
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(memory_limit(), -1, -1, -1))
        _arena_registered = True
    options.add_session_config_entry("session.use_env_allocators", "1")


def describe_load_error(exc: BaseException) -> str:
    """onnxruntime's multi-part message -> one line saying what is wrong with the file."""
    text = str(exc)
    if "external data" in text.lower():  # "External data path escapes...", "external data file ..."
        if "escapes" in text or "Absolute path" in text:
            return ("external data location leaves the model's folder (refused: weights must "
                    "sit beside the model file)")
        if "does not exist" in text or "No such file" in text:
            return f"external data file is missing ({_after_colon(text)})"
    if "Failed to allocate memory" in text or "Available memory of" in text:
        return (f"the model asks for more memory than the limit of {format_bytes(memory_limit())} "
                "(set MNIST_EDGE_MEMORY_LIMIT_MB to raise it)")
    if "Protobuf parsing failed" in text or "INVALID_PROTOBUF" in text:
        return "not an ONNX model (protobuf parsing failed: truncated or foreign file?)"
    if "No graph was found" in text:
        return "not an ONNX model (the file holds no graph)"
    operator = _unsupported_operator(text)
    if operator:
        return f"unsupported operator {operator}: onnxruntime has no implementation for it"
    return f"onnxruntime cannot load the model: {_after_colon(text)}"


def describe_run_error(exc: BaseException) -> str:
    """onnxruntime's failure of one run -> one line, without its C++ source paths."""
    text = str(exc)
    node = re.search(r"running (\w+) node", text)
    where = f" (operator {node.group(1)})" if node else ""
    if "Failed to allocate memory" in text or "Available memory of" in text:
        return (f"the model asks for more memory than the limit of {format_bytes(memory_limit())}{where} "
                "(set MNIST_EDGE_MEMORY_LIMIT_MB to raise it)")
    message = re.sub(r"/onnxruntime_src/\S+ [^)]*\)\s*", "", first_line(text))
    return message.split("Status Message: ")[-1].strip() + ("" if "Status Message" not in text else where)


def _unsupported_operator(text: str) -> str | None:
    patterns = (
        r"([\w.]*:?\w+)\(-?\d+\) is not a registered function/op",
        r"No Op registered for (\w+) with domain_version of \d+",
        r"Could not find an implementation for (\w+\(\d+\))",
        r'In Node, \("[^"]*", (\w+), "([^"]*)".*No opset import for domain',
    )
    for pattern in patterns:
        match = re.search(pattern, text, flags=re.DOTALL)
        if match:
            return ":".join(g for g in reversed(match.groups()) if g)
    return None


def _after_colon(text: str) -> str:
    # "[ONNXRuntimeError] : 1 : FAIL : Load model from x failed:reason" -> "reason"
    line = first_line(text)
    return line.rpartition("failed:")[2].split(" : ")[-1].strip()


# --- what the model expects ----------------------------------------------------------------


def inspect_input(session: ort.InferenceSession, model_path: Path) -> InputSpec:
    try:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        for arg in (*inputs, *outputs):  # onnxruntime decodes each name when it is first read
            arg.name, arg.type  # noqa: B018
    except UnicodeDecodeError:
        raise ModelFileError("not a valid ONNX model (an input or output name is not UTF-8)", model_path) from None
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ModelFileError(
            f"model has {len(inputs)} inputs ({names}); expected one digit-image input", model_path)
    arg = inputs[0]
    shape = tuple(arg.shape)
    dtype = _INPUT_DTYPES.get(arg.type)
    if dtype is None:
        raise ModelFileError(
            f"input {arg.name!r} has type {arg.type}; expected float32 or uint8 pixels", model_path)
    layout = detect_layout(shape)
    if layout is None:
        raise ModelFileError(
            f"input {arg.name!r} has shape {_shape_text(shape)}: not a digit image "
            "(expected [N,1,28,28], [N,28,28,1] or [N,784])", model_path)
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    if batch is not None and batch > MAX_FIXED_BATCH:
        raise ModelFileError(f"input {arg.name!r} has a fixed batch of {batch:,} images; mnist-edge feeds at most "
                             f"{MAX_FIXED_BATCH:,} at a time (export it with a dynamic batch)", model_path)
    return InputSpec(arg.name, layout, dtype, batch, shape)


def detect_layout(shape: tuple[Any, ...]) -> str | None:
    """NCHW, NHWC or flat from a declared shape; symbolic dimensions match anything."""

    def fits(dim: Any, size: int) -> bool:
        return dim == size or not isinstance(dim, int) or dim <= 0

    if len(shape) == 2 and fits(shape[1], PIXELS):
        return "flat"
    if len(shape) != 4:
        return None
    _, d1, d2, d3 = shape
    if d1 == 1 and fits(d2, SIZE) and fits(d3, SIZE):
        return "NCHW"
    if d3 == 1 and fits(d1, SIZE) and fits(d2, SIZE):
        return "NHWC"
    if all(not isinstance(d, int) or d <= 0 for d in (d1, d2, d3)):
        return "NCHW"  # fully symbolic: the ONNX convention
    return None


def _shape_text(shape: tuple[Any, ...]) -> str:
    return "[" + ",".join(str(d) if d is not None else "?" for d in shape) + "]"


def _check_output(session: ort.InferenceSession, classes: int, model_path: Path) -> None:
    outputs = session.get_outputs()
    if not outputs:
        raise ModelFileError("model has no outputs; expected one output of digit scores", model_path)
    out = outputs[0]
    if out.type not in _OUTPUT_TYPES:
        raise ModelFileError(f"output {out.name!r} has type {out.type}; expected float scores",
                             model_path)
    last = out.shape[-1] if out.shape else None
    if isinstance(last, int) and last > 0 and last != classes:
        raise ModelFileError(
            f"output {out.name!r} has shape {_shape_text(tuple(out.shape))}; expected "
            f"{classes} scores per image (one per digit)", model_path)


def _check_manifest_agrees(manifest: dict[str, Any], spec: InputSpec, model_path: Path) -> None:
    declared = manifest["input"]
    source = model_path.parent / manifest_io.FILENAME
    if declared["name"] != spec.name:
        raise ManifestError(
            f"manifest names input {declared['name']!r} but the model's input is {spec.name!r}", source)
    if declared["layout"] != spec.layout:
        raise ManifestError(
            f"manifest says layout {declared['layout']} but the model's input "
            f"{_shape_text(spec.shape)} is {spec.layout}", source)
    if np.dtype(declared["dtype"]) != spec.dtype:
        raise ManifestError(
            f"manifest says dtype {declared['dtype']} but the model takes {spec.dtype}", source)


def _normalization(spec: InputSpec, manifest: dict[str, Any] | None, scale: float | None,
                   mean: float | None, std: float | None) -> Normalization | None:
    overrides = {"scale": scale, "mean": mean, "std": std}
    if spec.dtype == np.uint8:
        given = [f"--{k}" for k, v in overrides.items() if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} do not apply: this model takes raw uint8 pixels")
        return None
    base = manifest["input"] if manifest else Normalization().__dict__
    chosen = {k: float(v if v is not None else base[k]) for k, v in overrides.items()}
    if not (chosen["scale"] > 0 and chosen["std"] > 0 and np.isfinite(chosen["mean"])):
        raise ConfigError(f"--scale and --std must be positive and --mean finite, got {chosen}")
    return Normalization(**chosen)


def _normalization_table(normalization: Normalization | None) -> np.ndarray | None:
    if normalization is None:
        return None
    pixels = np.arange(256, dtype=np.float32) / np.float32(normalization.scale)
    return (pixels - np.float32(normalization.mean)) / np.float32(normalization.std)


# --- helpers --------------------------------------------------------------------------------


def as_image_batch(images: np.ndarray) -> np.ndarray:
    """Check for uint8 [N, 28, 28] (one [28, 28] image is promoted to a batch of one)."""
    images = np.asarray(images)
    if images.shape == (SIZE, SIZE):
        images = images[None]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise InputImageError(
            f"expected uint8 images of shape [N, 28, 28], got {images.dtype} {list(images.shape)}")
    return images


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)  # no overflow for large logits
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=1, keepdims=True)
