"""fp32 ONNX -> int8 ONNX with onnxruntime.quantization. No torch here.

Path in, path out, options as one frozen dataclass validated before any work (the shape of
onnxruntime.quantization's own API). Static quantization is calibrated on MNIST *training*
images chosen with a seed (the test set is kept for parity), so the same options and seed
give the same bytes.

Steps: onnxruntime's pre-processing (symbolic shape inference and graph clean-up, which the
quantizer relies on), then `quantize_static` (QDQ format by default) or `quantize_dynamic`,
then the ONNX checker; the model file and its manifest are written atomically.
"""

from __future__ import annotations

import io
import tempfile
from contextlib import redirect_stdout
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge import data
from mnist_edge import manifest as manifest_io
from mnist_edge.config import LABELS, Normalization
from mnist_edge.errors import ConfigError, ModelFileError, first_line
from mnist_edge.fileio import atomic_write_bytes, check_creatable, sha256_file
from mnist_edge.modelfile import check_model_file, locate_model, model_bytes
from mnist_edge.modelprep import (
    GIVEN,
    InputConvention,
    input_convention,
    refuse_unbounded_control_flow,
    require_text_names,
    sort_nodes,
)

MODES = ("static", "dynamic")
FORMATS = ("auto", "qdq", "qoperator")
CALIBRATIONS = ("minmax", "entropy", "percentile")
QUANT_TYPES = ("int8", "uint8")
# cpu: the fastest int8 model for onnxruntime (per-architecture defaults below);
# mcu: every layer and the logits integer, for the C generator (`mnist-edge codegen`).
TARGETS = ("cpu", "mcu")
TRAIN_IMAGES = 60000
CALIBRATION_BATCH = 100


@dataclass(frozen=True)
class QuantizeOptions:
    """Everything that decides the int8 model. `validate()` checks it before any work."""

    mode: str = "static"
    target: str = "cpu"
    # auto: QDQ for static (the portable format onnxruntime recommends), QOperator for dynamic
    # (the only format quantize_dynamic writes).
    format: str = "auto"
    calibration: str = "minmax"
    calib_images: int = 1000
    seed: int = 0
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    # 7-bit weights: on x86 CPUs without VNNI (AVX2, AVX-512F) onnxruntime multiplies uint8
    # activations by int8 weights with vpmaddubsw, whose int16 sums saturate with 8-bit
    # weights. Measured on Zen 3 with the previous cnn layout: 14 of 10,000 predictions change
    # without it, 1 with it.
    reduce_range: bool = True
    # Keep the model's output (logits) in float: the last layer dequantizes straight from its
    # int32 accumulator instead of rounding the logits to 8 bits (QDQ format only).
    float_logits: bool = True
    # Operator types to quantize; empty means every type onnxruntime can quantize.
    op_types: tuple[str, ...] = ()
    # Node names (as in the fp32 model) left in float.
    exclude: tuple[str, ...] = ()
    percentile: float = 99.999
    # Run onnxruntime's quantization pre-processing first (recommended by onnxruntime).
    preprocess: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> QuantizeOptions:
        if self.target not in TARGETS:
            raise ConfigError(f"--for must be cpu or mcu, got {self.target!r}")
        if self.target == "mcu":  # first: its message says what the other checks would not
            self._check_integer_only()
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be static or dynamic, got {self.mode!r}")
        if self.format not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.mode == "dynamic" and self.format == "qdq":
            raise ConfigError("--mode dynamic writes QOperator models only; use --format auto or qoperator")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"--calibration must be one of {', '.join(CALIBRATIONS)}, "
                              f"got {self.calibration!r}")
        if not 1 <= self.calib_images <= TRAIN_IMAGES:
            raise ConfigError(f"--calib-images must be between 1 and {TRAIN_IMAGES:,} (training images), "
                              f"got {self.calib_images}")
        for name, value in (("activation", self.activation_type), ("weight", self.weight_type)):
            if value not in QUANT_TYPES:
                raise ConfigError(f"--{name}-type must be int8 or uint8, got {value!r}")
        if self.mode == "dynamic" and self.activation_type != "uint8":
            raise ConfigError("--mode dynamic quantizes activations to uint8 only")
        if not 0 < self.percentile <= 100:
            raise ConfigError(f"percentile must be in (0, 100], got {self.percentile}")
        return self

    def _check_integer_only(self) -> None:
        """--for mcu: what the C generator needs, every layer int8 and the logits quantized."""
        clashes = [flag for flag, clash in (
            ("--mode dynamic", self.mode != "static"), ("--format qoperator", self.resolved_format != "qdq"),
            ("--float-logits", self.float_logits), ("--exclude", bool(self.exclude)),
            ("--op-type", bool(self.op_types)), ("--weight-type uint8", self.weight_type != "int8"),
            ("--activation-type int8", self.activation_type != "uint8")) if clash]
        if clashes:
            raise ConfigError(f"--for mcu quantizes every layer (static QDQ, uint8 activations, int8 weights, "
                              f"quantized logits): drop {', '.join(clashes)}")

    @property
    def resolved_format(self) -> str:
        if self.format != "auto":
            return self.format
        return "qdq" if self.mode == "static" else "qoperator"

    def describe(self) -> dict[str, Any]:
        """The manifest's `quantization` section."""
        static = self.mode == "static"
        return {
            "method": f"{self.mode}-{self.resolved_format}", "target": self.target,
            "tool": "onnxruntime.quantization",
            "mode": self.mode, "format": self.resolved_format,
            "per_channel": self.per_channel, "reduce_range": self.reduce_range,
            "float_logits": self.float_logits and self.resolved_format == "qdq" and static,
            "activation_type": self.activation_type, "weight_type": self.weight_type,
            "op_types": list(self.op_types) or "all", "exclude": list(self.exclude),
            "calibration": self.calibration if static else None,
            "calibration_data": "MNIST training images (never test)" if static else None,
            "images": self.calib_images if static else 0,
            "percentile": self.percentile if static and self.calibration == "percentile" else None,
            "seed": self.seed, "preprocess": self.preprocess, "extra": dict(self.extra),
        }


# Best settings per architecture, measured on the shipped checkpoints on an AMD Zen 3 CPU
# (AVX2, no VNNI), onnxruntime 1.32, batch 1, one thread; docs/export.md has the figures.
#   cnn:  the defaults above. int8 runs in 0.85x the fp32 time, loses 0.01 points, 31 % of the size.
#   tiny: the first convolution (1 input channel) stays float: int8 convolutions with one input
#         channel are slow in onnxruntime's CPU kernels (1.39x fp32 with it, 1.02x without).
#   mlp:  dynamic quantization (activation scales computed per batch): 0 of 10,000 predictions
#         change (2 with static), 2x faster than fp32, 26 % of the size.
#   lenet5: no shipped checkpoint; the defaults above.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    # The first convolution (1 input channel, unpadded) stays in float: as QLinearConv it is
    # slow; measured at batch 1 on one core, 31 us with it in float against 43 us without.
    "cnn": {"exclude": ("/0/Conv",)},
    "tiny": {"exclude": ("/0/Conv",)},
    "strided": {"exclude": ("/0/Conv",)},  # 13.1 us with it in float, 16.8 us without
    "micro": {"exclude": ("/0/Conv",)},
    "mlp": {"mode": "dynamic"},
    "lenet5": {},
}


# Options that only static quantization uses (the flag as the user types it).
STATIC_ONLY = {"calibration": "--calibration", "calib_images": "--calib-images", "seed": "--seed",
               "float_logits": "--float-logits/--quantized-logits"}


# --for mcu: the same for every architecture. reduce_range stays on: onnxruntime's sums are exact
# on CPUs without VNNI only with 7-bit weights, and the C code is proven against onnxruntime.
MCU_DEFAULTS: dict[str, Any] = {"target": "mcu", "mode": "static", "format": "qdq", "exclude": (),
                                "float_logits": False}


def default_options(arch: str | None, **overrides: Any) -> QuantizeOptions:
    """The best options for `arch` (or for a microcontroller, with target="mcu") with explicit
    options (those not None) laid over them."""
    mcu = overrides.get("target") == "mcu"
    base = QuantizeOptions(**(MCU_DEFAULTS if mcu else ARCH_DEFAULTS.get(arch or "", {})))
    chosen = {k: v for k, v in overrides.items() if v is not None}
    options = replace(base, **chosen)
    _refuse_static_only(options, chosen, arch)
    return options.validate()


def _refuse_static_only(options: QuantizeOptions, chosen: dict[str, Any], arch: str | None) -> None:
    """Explicit static-only options with a dynamic mode are an error, not silently ignored.

    Switching to static instead would quietly leave the architecture's measured best mode (the
    mlp's dynamic mode keeps every prediction; static changes 2), so the user decides.
    """
    if options.mode != "dynamic":
        return
    given = [flag for key, flag in STATIC_ONLY.items() if key in chosen]
    given += [f"--{key.replace('_', '-')} {chosen[key]}" for key, static in
              (("format", "qdq"), ("activation_type", "int8")) if chosen.get(key) == static]
    if not given:
        return
    what = f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --mode static"
    if "mode" in chosen:
        raise ConfigError(f"{what} only, not to --mode dynamic")
    raise ConfigError(f"{what}; {arch} defaults to dynamic: add --mode static")


# --- calibration data --------------------------------------------------------------------------


def calibration_images(count: int, seed: int, data_dir: Any = None, download: bool = True) -> np.ndarray:
    """`count` training images (uint8 [count, 28, 28]) chosen with `seed`, in file order."""
    train = data.load_split("train", data_dir, download)
    chosen = np.sort(np.random.default_rng(seed).choice(len(train), size=min(count, len(train)),
                                                        replace=False))
    return train.images[chosen]


def _reader_class() -> type:
    from onnxruntime.quantization import CalibrationDataReader

    class ImageReader(CalibrationDataReader):
        """Feeds normalised images in batches to onnxruntime's calibrator."""

        def __init__(self, images: np.ndarray, input_name: str, normalization: Normalization,
                     batch: int = CALIBRATION_BATCH, layout: str = "NCHW"):
            x = data.normalize(images, normalization.scale, normalization.mean, normalization.std)
            self.x = np.ascontiguousarray(x.reshape(LAYOUT_SHAPES[layout](len(x))))
            self.input_name, self.batch, self.position = input_name, batch, 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.position >= len(self.x):
                return None
            part = self.x[self.position : self.position + self.batch]
            self.position += self.batch
            return {self.input_name: part}

        def rewind(self) -> None:
            self.position = 0

        def __len__(self) -> int:
            return -(-len(self.x) // self.batch)

    return ImageReader


def calibration_reader(images: np.ndarray, input_name: str, normalization: Normalization,
                       batch: int = CALIBRATION_BATCH, layout: str = "NCHW") -> Any:
    """An onnxruntime CalibrationDataReader over uint8 images [N, 28, 28], fed in the model's
    input layout (NCHW, NHWC or flat)."""
    return _reader_class()(images, input_name, normalization, batch, layout)


LAYOUT_SHAPES = {"NCHW": lambda n: (n, 1, 28, 28), "NHWC": lambda n: (n, 28, 28, 1), "flat": lambda n: (n, 784)}


# --- quantization ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizeResult:
    model_path: Path
    manifest_path: Path
    options: dict[str, Any]
    fp32_bytes: int  # the model file and its external data
    int8_bytes: int
    normalization: str = ""  # the input's normalization and where it came from

    @property
    def size_ratio(self) -> float:
        return self.int8_bytes / self.fp32_bytes


def load_model(path: str | Path) -> Any:
    """Load and check an ONNX file (its nodes put in topological order first), turning every way
    it can be bad into a ModelFileError.

    `onnx.load` accepts an empty file (it parses as an empty model), so emptiness and the
    presence of a graph are checked explicitly.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = check_model_file(Path(path))
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"not an ONNX model (protobuf parsing failed: truncated or foreign file?) "
                             f"({type(exc).__name__})", path) from None
    except onnx.checker.ValidationError as exc:  # onnx.load reads external data and checks its location
        raise ModelFileError(f"cannot load external data: {first_line(exc)}", path) from None
    if not model.graph.node or not model.opset_import:
        raise ModelFileError("not an ONNX model (the file holds no graph)", path)
    require_text_names(model.graph, path)
    refuse_unbounded_control_flow({node.op_type for node in model.graph.node}, path)
    # Before any check: the checker refuses an unsorted graph, which onnxruntime (and so `run`) accepts.
    sort_nodes(model.graph, path)
    try:
        onnx.checker.check_model(model, full_check=True)
    # ValueError: the checker meeting an unknown element type ("Invalid tensor data type 99").
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise ModelFileError(f"invalid ONNX model: {str(exc).strip().splitlines()[0]}", path) from None
    return model


def node_names(model: Any) -> list[str]:
    return [node.name for node in model.graph.node]


def arch_of(manifest: dict[str, Any] | None) -> str | None:
    """The architecture an exported model's manifest names (None for a foreign model)."""
    arch = ((manifest or {}).get("source") or {}).get("arch")
    return arch if isinstance(arch, str) else None


def quantize_model(model: str | Path, out_dir: str | Path, options: QuantizeOptions | None = None, *,
                   overrides: dict[str, Any] | None = None, name: str | None = None, data_dir: Any = None,
                   download: bool = True, scale: float | None = None, mean: float | None = None,
                   std: float | None = None) -> QuantizeResult:
    """MODEL (an .onnx file or exported folder) -> OUT_DIR/model.onnx (int8) + OUT_DIR/manifest.json
    (metrics left empty).

    Without `options`, the options are the model's architecture's best (read from its manifest)
    with `overrides` laid over them: the one place the per-architecture defaults are resolved.
    OUT_DIR is built aside and moved into place only once both files are complete: a failure
    leaves no new folder, and an old parity report beside an earlier model is removed.
    `scale`, `mean` and `std`: the input's normalization where the model does not say it (a
    manifest, or its metadata); recorded in the output manifest with where it came from.
    """
    if options is None:
        default_options(None, **(overrides or {}))  # bad options fail before any file is opened
    model_path, source_manifest = locate_model(model)
    options = (options or default_options(arch_of(source_manifest), **(overrides or {}))).validate()
    out_dir = Path(out_dir)
    model = load_model(model_path)
    missing = [n for n in options.exclude if n not in set(node_names(model))]
    if missing:
        raise ConfigError(f"--exclude: no node named {', '.join(map(repr, missing))} in {model_path}; "
                          f"nodes: {', '.join(node_names(model))}")
    check_creatable(out_dir)
    spec = input_convention(model, source_manifest, {"scale": scale, "mean": mean, "std": std}, model_path)
    images = (calibration_images(options.calib_images, options.seed, data_dir, download)
              if options.mode == "static" else None)
    # onnxruntime's calibrators print progress to stdout; a library must not (and `--json` output
    # would break), so it is swallowed.
    with tempfile.TemporaryDirectory(prefix="mnist-edge-quant-") as tmp, redirect_stdout(io.StringIO()):
        # The checked, sorted model in one file (external data inlined) is what gets quantized.
        source = Path(tmp) / "source.onnx"
        source.write_bytes(model.SerializeToString())
        quantized = _quantize(source, Path(tmp), options, spec, images, model_path)
        data = quantized.read_bytes()
    checked = _check(data, model_path)
    with manifest_io.staged_model_folder(out_dir) as stage:
        staged = atomic_write_bytes(stage / manifest_io.MODEL_FILE, data)
        manifest = int8_manifest(staged, name or out_dir.name, model, sha256_file(model_path), source_manifest,
                                 spec, options, checked)
        manifest_io.save(stage, manifest)
    out_path = out_dir / manifest_io.MODEL_FILE
    return QuantizeResult(out_path, out_dir / manifest_io.FILENAME, options.describe(),
                          model_bytes(model_path), out_path.stat().st_size, spec.describe())


def _quantize(model_path: Path, tmp: Path, options: QuantizeOptions, spec: InputConvention,
              images: np.ndarray | None, shown_path: Path) -> Path:
    """Quantize MODEL_PATH (a checked copy in TMP); errors name SHOWN_PATH, the user's file."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = model_path
    if options.preprocess:
        source = tmp / "preprocessed.onnx"
        try:
            quant_pre_process(str(model_path), str(source), skip_symbolic_shape=False)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises many kinds here
            raise ModelFileError(f"quantization pre-processing failed: {first_line(exc)}",
                                 shown_path) from None
    output = tmp / "int8.onnx"
    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    common = {
        "per_channel": options.per_channel, "reduce_range": options.reduce_range,
        "weight_type": types[options.weight_type],
        "op_types_to_quantize": list(options.op_types) or None,
        "nodes_to_exclude": [*options.exclude, *(final_softmax(source) if options.target == "mcu" else [])] or None,
    }
    try:
        if options.mode == "dynamic":
            quantize_dynamic(str(source), str(output), extra_options=dict(options.extra), **common)
        else:
            methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile}
            extra = {"CalibPercentile": options.percentile, **options.extra}
            fmt = QuantFormat.QDQ if options.resolved_format == "qdq" else QuantFormat.QOperator
            reader = calibration_reader(images, spec.name, spec.normalization, layout=spec.layout)
            cache = None
            if options.calibration == "entropy":
                cache = _entropy_ranges(source, tmp, reader, common["op_types_to_quantize"])
            quantize_static(
                str(source), str(output), reader, quant_format=fmt,
                activation_type=types[options.activation_type], calibrate_method=methods[options.calibration],
                extra_options=extra, calibration_cache_path=cache, **common)
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelFileError(f"quantization failed: {first_line(exc)}", shown_path) from None
    if options.float_logits and options.mode == "static" and options.resolved_format == "qdq":
        import onnx

        model = onnx.load(str(output))
        keep_float_outputs(model)
        onnx.save(model, str(output))
    return output


def final_softmax(model_path: Path) -> list[str]:
    """The Softmax nodes whose output reaches a graph output through layout operators only: kept in
    float for a microcontroller (a quantized Softmax's uint8 probabilities, steps of 1/255, merge
    near-ties; the C returns the scores before it and the caller may apply it in float)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    found = []
    for node in graph.node:
        if node.op_type != "Softmax":
            continue
        current = node.output[0]
        while current not in outputs and len(consumers.get(current, [])) == 1 and \
                consumers[current][0].op_type in ("Reshape", "Flatten", "Identity", "Squeeze"):
            current = consumers[current][0].output[0]
        if current in outputs:
            found.append(node.name)
    return found


def _entropy_ranges(model_path: Path, tmp: Path, reader: Any, op_types: list[str] | None) -> Path:
    """Entropy (KL-divergence) calibration with a 2048-bin histogram, saved as a range cache.

    `quantize_static` builds its entropy calibrator with 128 histogram bins for 128 quantized
    bins, which leaves nothing to clip: it returns the min-max range (measured: byte-identical
    models). Calibrating here with 2048 bins, as TensorRT's entropy calibration does, and
    handing the ranges over through `calibration_cache_path` gives the real method.
    """
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data

    calibrator = create_calibrator(
        model_path, op_types, augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": 2048, "num_quantized_bins": 128})
    calibrator.collect_data(reader)
    reader.rewind()
    cache = tmp / "entropy_ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


def keep_float_outputs(model: Any) -> int:
    """Drop the QuantizeLinear -> DequantizeLinear pair in front of each graph output.

    onnxruntime then fuses the last layer into a kernel that writes float directly from its
    int32 accumulator (QGemm / QLinearConv with float output): same speed, unrounded logits.
    Returns how many outputs were changed.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    changed = 0
    for output in model.graph.output:
        dq = producers.get(output.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or consumers.get(dq.input[0]) != 1:
            continue
        source = producers.get(q.input[0])
        if source is None or consumers.get(q.input[0]) != 1:
            continue
        source.output[list(source.output).index(q.input[0])] = output.name
        model.graph.node.remove(q)
        model.graph.node.remove(dq)
        changed += 1
    if changed:
        used = {name for node in model.graph.node for name in node.input}
        for init in [i for i in model.graph.initializer if i.name not in used]:
            model.graph.initializer.remove(init)
    return changed


def _check(data: bytes, model_path: Path) -> Any:
    import onnx

    model = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelFileError(f"quantized model fails the ONNX checker: {first_line(exc)}",
                             model_path) from None
    return model


# --- manifest ----------------------------------------------------------------------------------


def int8_manifest(model_path: Path, name: str, fp32: Any, fp32_sha256: str,
                  source_manifest: dict[str, Any] | None, spec: InputConvention, options: QuantizeOptions,
                  int8: Any) -> dict[str, Any]:
    import onnx
    import onnxruntime

    opset = next((o.version for o in int8.opset_import if o.domain in ("", "ai.onnx")), 0)
    if source_manifest:
        base = {k: source_manifest[k] for k in ("input", "labels", "source")}
        if spec.source == GIVEN:  # --scale/--mean/--std over the manifest's
            base["input"] = {**base["input"], **spec.normalization.__dict__, "normalization_source": GIVEN}
        base["output"] = source_manifest.get("output")
        export = dict(source_manifest["export"])
    else:  # a foreign fp32 model: describe what the file itself says
        dims = [d.dim_param or d.dim_value for d in fp32.graph.input[0].type.tensor_type.shape.dim]
        params = sum(int(np.prod(init.dims)) for init in fp32.graph.initializer)
        base = {"input": {"name": spec.name, "shape": dims, "dtype": "float32", "layout": spec.layout,
                          "scale": spec.normalization.scale, "mean": spec.normalization.mean,
                          "std": spec.normalization.std, "normalization_source": spec.source},
                "labels": list(LABELS), "source": {"arch": fp32.graph.name or "unknown", "params": params}}
        export = {}
    export.update({"opset": opset, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__})
    return {
        "schema_version": manifest_io.SCHEMA_VERSION, "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": manifest_io.describe_file(model_path),
        **base,
        "export": export,
        "quantization": {**options.describe(), "fp32_model_sha256": fp32_sha256},
        "metrics": None,
    }

