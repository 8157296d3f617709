"""A trained checkpoint -> a checked fp32 ONNX model with its metadata.

What the file holds:
  input   "input"   float32 [batch, 1, 28, 28], x = (pixel / scale - mean) / std
  output  "logits"  float32 [batch, 10]
  metadata_props    labels, input scale/mean/std and layout, arch, checkpoint sha256
Batch norm is folded into the convolution (or linear layer) before it, so the graph is the
plain chain of Conv/Gemm/Relu/MaxPool that runtimes and quantizers handle best.

Exporter: the TorchScript-based one (`torch.onnx.export(..., dynamo=False)`), on purpose.
Measured with torch 2.14 for mlp, lenet5, cnn and tiny at opsets 13, 17, 18 and 20: both
exporters give logits within 3e-7 of PyTorch with a dynamic batch, but the dynamo exporter
only emits opset >= 18 and converts down afterwards, and that conversion silently fails for
`tiny` at 17 (its ReduceMean from AdaptiveAvgPool2d), leaving an opset-18 file when 17 was
asked for; it also writes IR version 10, which onnxruntime < 1.16 cannot read, and takes
3-4 s instead of under 1 s. The TorchScript exporter writes exactly the requested opset for
every architecture. It is deprecated in torch >= 2.9; when a future torch drops it, the
dynamo exporter is used and the opset it produced is checked against the one requested.
"""

from __future__ import annotations

import io
import json
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from mnist_edge import __version__, data
from mnist_edge import manifest as manifest_io
from mnist_edge.checkpoint import WEIGHTS, load_config, load_for_inference
from mnist_edge.config import LABELS, OPSET
from mnist_edge.errors import ConfigError, ModelFileError
from mnist_edge.fileio import atomic_write_bytes, check_creatable, sha256_file
from mnist_edge.ortsession import open_session
from mnist_edge.parity import ParityReport, Thresholds, parity_command, record_parity
from mnist_edge.quantize import QuantizeOptions, QuantizeResult, quantize_model

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
# 13 is the first opset with per-axis QuantizeLinear/DequantizeLinear (per-channel int8).
MIN_OPSET = 13
# The highest opset the TorchScript-based exporter implements (20 in torch 2.2-2.14).
MAX_OPSET = int(getattr(getattr(torch.onnx, "_constants", None), "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))
# An exported model must match PyTorch this closely on the smoke batch checked at export time.
SMOKE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    model_path: Path
    manifest_path: Path
    arch: str
    params: int
    opset: int
    exporter: str
    bytes: int
    smoke_max_abs_diff: float  # fp32 ONNX vs PyTorch on batches of 1 and 7 training-free inputs


def check_opset(opset: int) -> int:
    """Fail before any work when the exporter cannot produce `opset`."""
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(
            f"--opset {opset} cannot be produced: the exporter writes opsets {MIN_OPSET} to {MAX_OPSET} "
            f"(torch {torch.__version__}; below {MIN_OPSET} there is no per-channel int8)")
    return opset


# --- batch-norm folding ----------------------------------------------------------------------


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model with every BatchNorm folded into the Conv/Linear before it.

    Works on nn.Sequential (every architecture here is one), recursively. y = BN(W x + b) is
    rewritten as W' x + b' with W' = W * gamma / sqrt(var + eps) and b' = (b - mean) * gamma /
    sqrt(var + eps) + beta, so the exported graph has no BatchNormalization at all.
    """
    if not isinstance(model, nn.Sequential):
        return model
    layers: list[nn.Module] = []
    for layer in model:
        previous = layers[-1] if layers else None
        if isinstance(layer, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d):
            layers[-1] = fuse_conv_bn_eval(previous, layer)
        elif isinstance(layer, nn.BatchNorm1d) and isinstance(previous, nn.Linear):
            layers[-1] = fuse_linear_bn_eval(previous, layer)
        else:
            layers.append(fold_batch_norm(layer) if isinstance(layer, nn.Sequential) else layer)
    return nn.Sequential(*layers).eval()


# --- export ----------------------------------------------------------------------------------


def export_checkpoint(run_dir: str | Path, out_dir: str | Path, *, opset: int = OPSET,
                      name: str | None = None, checkpoint_hint: str | None = None,
                      recipe_note: dict[str, Any] | None = None) -> ExportResult:
    """RUN_DIR (a training run) -> OUT_DIR/model.onnx + OUT_DIR/manifest.json (no metrics yet).

    Everything is checked before the first byte is written: the opset, the checkpoint, the
    output folder, then the model itself (onnx.checker full check, strict shape inference and
    a smoke comparison with PyTorch). OUT_DIR is built aside and moved into place once both
    files are complete; an old parity report beside an earlier model is removed.
    """
    check_opset(opset)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, config = load_for_inference(run_dir)
    check_creatable(out_dir)
    folded = fold_batch_norm(model)
    norm = config["normalization"]
    proto, exporter = to_onnx(folded, opset)
    add_metadata(proto, arch=config["arch"], normalization=norm,
                 checkpoint_sha256=sha256_file(run_dir / WEIGHTS))
    proto = check_model(proto, opset)
    smoke = smoke_test(proto, model)
    params = sum(p.numel() for p in model.parameters())
    with manifest_io.staged_model_folder(out_dir) as stage:
        staged = atomic_write_bytes(stage / manifest_io.MODEL_FILE, proto.SerializeToString())
        manifest = fp32_manifest(staged, name or out_dir.name, config, params, opset, exporter,
                                 run_dir, checkpoint_hint, recipe_note)
        manifest_io.save(stage, manifest)
    model_path = out_dir / manifest_io.MODEL_FILE
    return ExportResult(model_path, out_dir / manifest_io.FILENAME, config["arch"], params, opset, exporter,
                        model_path.stat().st_size, smoke)


def to_onnx(model: nn.Module, opset: int) -> tuple[onnx.ModelProto, str]:
    """An eval-mode module taking [N, 1, 28, 28] -> (ONNX model with a dynamic batch, exporter)."""
    example = torch.zeros(2, 1, 28, 28)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter's deprecation notice: the choice is explained above.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        try:
            torch.onnx.export(
                model, (example,), buffer, dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}},
                do_constant_folding=True)
            return onnx.load_from_string(buffer.getvalue()), "torchscript"
        except TypeError:  # a torch without the TorchScript exporter (no `dynamo` argument)
            pass
    return _dynamo_export(model, example, opset), "dynamo"


def _dynamo_export(model: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    program = torch.onnx.export(
        model, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim(BATCH_DIM)},),
        external_data=False)
    proto = program.model_proto
    produced = _opset_of(proto)
    if produced != opset:
        raise ConfigError(f"--opset {opset} cannot be produced: the dynamo exporter wrote opset {produced}")
    return proto


def _opset_of(proto: onnx.ModelProto) -> int | None:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def add_metadata(proto: onnx.ModelProto, *, arch: str, normalization: dict[str, float],
                 checkpoint_sha256: str) -> None:
    """Make the file self-describing for tools that never see manifest.json (Netron, other runtimes)."""
    proto.producer_name = "mnist-edge"
    proto.producer_version = __version__
    proto.doc_string = (f"MNIST digit classifier ({arch}). Input float32 [batch, 1, 28, 28] NCHW, "
                        f"x = (pixel / {normalization['scale']:g} - {normalization['mean']}) / "
                        f"{normalization['std']}; output logits [batch, 10] for labels 0-9.")
    values = {
        "labels": json.dumps(list(LABELS)),
        "input_layout": "NCHW",
        "input_scale": repr(float(normalization["scale"])),
        "input_mean": repr(float(normalization["mean"])),
        "input_std": repr(float(normalization["std"])),
        "output": "logits",
        "arch": arch,
        "checkpoint_sha256": checkpoint_sha256,
    }
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, values)


def check_model(proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """onnx.checker full check, then strict shape inference; returns the shape-inferred model."""
    if _opset_of(proto) != opset:
        raise ConfigError(f"--opset {opset} cannot be produced: the exporter wrote opset {_opset_of(proto)}")
    try:
        onnx.checker.check_model(proto, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True,
                                                     data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelFileError(f"exported model fails the ONNX checker: {str(exc).splitlines()[0]}") from exc
    output = inferred.graph.output[0].type.tensor_type.shape.dim
    if len(output) != 2 or output[0].dim_param != BATCH_DIM or output[1].dim_value != len(LABELS):
        raise ModelFileError(f"exported model's output is not [batch, {len(LABELS)}]")
    return inferred


def smoke_test(proto: onnx.ModelProto, model: nn.Module) -> float:
    """Run batches of 1 and 7 through onnxruntime and PyTorch; the largest logit difference."""

    session = open_session(proto.SerializeToString())
    x = torch.randn(7, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    worst = 0.0
    with torch.inference_mode():
        for count in (1, 7):
            (onnx_out,) = session.run([OUTPUT_NAME], {INPUT_NAME: x[:count].numpy()})
            worst = max(worst, float(np.abs(onnx_out - model(x[:count]).numpy()).max()))
    if not worst <= SMOKE_TOLERANCE:
        raise ModelFileError(f"exported model differs from PyTorch by {worst:.3g} (> {SMOKE_TOLERANCE})")
    return worst


# --- manifest ----------------------------------------------------------------------------------


def fp32_manifest(model_path: Path, name: str, config: dict[str, Any], params: int, opset: int,
                  exporter: str, run_dir: Path, checkpoint_hint: str | None,
                  recipe_note: dict[str, Any] | None) -> dict[str, Any]:
    norm = config["normalization"]
    source = {
        "arch": config["arch"], "params": int(params),
        "checkpoint": checkpoint_hint if checkpoint_hint is not None else _path_hint(run_dir),
        "checkpoint_sha256": sha256_file(run_dir / WEIGHTS),
        "recipe": config["recipe"],
    }
    if config.get("teacher"):  # a distilled student: which checkpoint taught it (path, weights' sha256)
        source["teacher"] = config["teacher"]
    if recipe_note:
        source.update(recipe_note)
    return {
        "schema_version": manifest_io.SCHEMA_VERSION,
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": manifest_io.describe_file(model_path),
        "input": {"name": INPUT_NAME, "shape": [BATCH_DIM, 1, 28, 28], "dtype": "float32",
                  "layout": "NCHW", "scale": norm["scale"], "mean": norm["mean"], "std": norm["std"]},
        "output": {"name": OUTPUT_NAME, "shape": [BATCH_DIM, len(LABELS)], "kind": "logits"},
        "labels": list(LABELS),
        "source": source,
        "export": {"opset": opset, "exporter": exporter, "batch_norm_folded": True,
                   "torch": torch.__version__, "onnx": onnx.__version__, "mnist_edge": __version__},
        "quantization": None,
        "metrics": None,
    }


def _path_hint(path: Path) -> str:
    """Where the checkpoint is, relative to the working directory (the repository, by convention)
    when it lies inside it, else absolute. `bench` and `parity` resolve it the same way."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(resolved)


# --- the whole export: fp32, int8, parity ------------------------------------------------------


@dataclass(frozen=True)
class ExportRunResult:
    folders: dict[str, Path]  # "fp32" and, with int8, "int8"
    fp32: ExportResult
    int8: QuantizeResult | None
    parity: ParityReport | None


def output_folders(out: str | Path, int8: bool) -> dict[str, Path]:
    """`--out exported/NAME` -> exported/NAME-fp32 (and exported/NAME-int8).

    A NAME that already ends in -fp32 is not doubled: `--out exported/cnn-fp32` also works.
    """
    out = Path(out)
    base = out.name.removesuffix("-fp32") or out.name
    folders = {"fp32": out.with_name(f"{base}-fp32")}
    if int8:
        folders["int8"] = out.with_name(f"{base}-int8")
    return folders


def export_run(run_dir: str | Path, out: str | Path, *, opset: int = OPSET, int8: bool = True,
               quantize_options: QuantizeOptions | None = None, parity: bool = True,
               thresholds: Thresholds | None = None,
               limit: int = 0, data_dir: Any = None, download: bool = True,
               checkpoint_hint: str | None = None, source_note: dict[str, Any] | None = None,
               figures: bool = True) -> ExportRunResult:
    """RUN_DIR -> NAME-fp32/ and NAME-int8/ (model.onnx + manifest.json each), then parity on
    the test set, whose figures go into both manifests and reports beside them.

    Every option, the checkpoint, the output folders and the MNIST files are checked before
    the first file is written. Both folders are built aside and moved into place only when
    everything worked, so a failure (or Ctrl-C) leaves no new or half-written folder.
    """
    check_opset(opset)
    thresholds = (thresholds or Thresholds()).validate()
    if limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    load_config(run_dir)
    # None: quantize_model takes the architecture's defaults from the fp32 model's manifest.
    options = quantize_options.validate() if int8 and quantize_options is not None else None
    folders = output_folders(out, int8)
    for folder in folders.values():
        check_creatable(folder)
    if int8 or parity:
        data.locate(data_dir, download)
    with ExitStack() as stack:
        staged = {role: stack.enter_context(manifest_io.staged_model_folder(folder))
                  for role, folder in folders.items()}
        fp32, int8_result = _export_models(run_dir, staged, folders, opset, options, checkpoint_hint,
                                           source_note, data_dir, download)
        report = None
        if parity:
            report = _parity_into(run_dir, staged, folders, thresholds, limit, data_dir, download,
                                  checkpoint_hint, figures)
    int8_result = None if int8_result is None else _moved(int8_result, folders["int8"])
    return ExportRunResult(folders, _moved(fp32, folders["fp32"]), int8_result, report)


def _export_models(run_dir: str | Path, staged: dict[str, Path], folders: dict[str, Path], opset: int,
                   options: Any, checkpoint_hint: str | None, source_note: dict[str, Any] | None,
                   data_dir: Any, download: bool) -> tuple[ExportResult, Any]:
    """The fp32 model into staged["fp32"], the int8 one (when asked for) into staged["int8"]."""
    fp32 = export_checkpoint(run_dir, staged["fp32"], opset=opset, name=folders["fp32"].name,
                             checkpoint_hint=checkpoint_hint, recipe_note=source_note)
    if "int8" not in staged:
        return fp32, None
    return fp32, quantize_model(fp32.model_path, staged["int8"], options, name=folders["int8"].name,
                                data_dir=data_dir, download=download)


def _parity_into(run_dir: str | Path, staged: dict[str, Path], folders: dict[str, Path], thresholds: Any,
                 limit: int, data_dir: Any, download: bool, checkpoint_hint: str | None,
                 figures: bool) -> Any:
    """Parity of the staged models; the report names the folders they are about to move to."""
    command = parity_command(checkpoint_hint or run_dir, folders["fp32"], folders.get("int8"),
                             limit=limit, thresholds=thresholds)
    return record_parity(run_dir, staged["fp32"], staged.get("int8"), report_dirs=list(staged.values()),
                         manifests=staged, final_folders=folders, figure=figures, thresholds=thresholds,
                         limit=limit, data_dir=data_dir, download=download, command=command)


def _moved(result: Any, folder: Path) -> Any:
    """An export or quantize result whose files were built aside, pointing at where they are now."""
    return replace(result, model_path=folder / result.model_path.name,
                   manifest_path=folder / result.manifest_path.name)
