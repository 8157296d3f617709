"""`mnist-edge export`, `quantize` and `parity`: from a checkpoint to ONNX models proven against it.

torch, onnx and onnxruntime.quantization are imported inside the commands.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from mnist_edge import manifest as manifest_io
from mnist_edge.cli.common import (
    DataDirOption,
    DownloadOption,
    JsonOption,
    command,
    console,
    mean_option,
    print_json,
    scale_option,
    std_option,
)
from mnist_edge.config import OPSET
from mnist_edge.fileio import check_creatable

LimitOption = typer.Option(0, "--limit", help="Compare on the first N test images only (0: all 10,000).")


def _max_logit_diff_option() -> Any:
    return typer.Option(1e-4, "--max-logit-diff",
                        help="Largest allowed |fp32 ONNX - PyTorch| logit difference.")


def _min_agreement_option() -> Any:
    return typer.Option(100.0, "--min-agreement", help="Smallest allowed fp32/PyTorch top-1 agreement, in %.")


def _max_int8_drop_option() -> Any:
    return typer.Option(0.1, "--max-int8-drop", help="Largest allowed int8 accuracy loss vs fp32, in "
                        "percentage points.")


def _thresholds(max_logit_diff: float, min_agreement: float, max_int8_drop: float) -> Any:
    from mnist_edge.parity import Thresholds

    return Thresholds(max_logit_diff, min_agreement / 100, max_int8_drop).validate()


# --- export ----------------------------------------------------------------------------------


@command()
def export(
    run_dir: Path = typer.Argument(..., help="Training run folder (config.json + model.safetensors)."),
    out: Path = typer.Option(..., "--out", help="exported/NAME: writes NAME-fp32/ and NAME-int8/ beside it."),
    opset: int = typer.Option(OPSET, "--opset", help="ONNX opset (13 to 20)."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Also write the int8 model, quantized with "
                              "the best settings for the architecture."),
    parity: bool = typer.Option(True, "--parity/--no-parity", help="Prove the models against the "
                                "checkpoint on the test set and record the figures in the manifests."),
    limit: int = LimitOption,
    max_logit_diff: float = _max_logit_diff_option(),
    min_agreement: float = _min_agreement_option(),
    max_int8_drop: float = _max_int8_drop_option(),
    json_output: JsonOption = False,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
) -> None:
    """Export a checkpoint to ONNX: fp32 (batch norm folded, dynamic batch) and int8, each with
    a manifest.json, then run parity against the checkpoint on the test set.

    Exit code 1 when parity breaches a threshold (the models are written all the same, and
    their manifests say so).

    Example: mnist-edge export runs/default --out exported/cnn
    """
    from mnist_edge.export import export_run

    result = export_run(run_dir, out, opset=opset, int8=int8, parity=parity, limit=limit,
                        thresholds=_thresholds(max_logit_diff, min_agreement, max_int8_drop),
                        data_dir=data_dir, download=download)
    payload = {
        "folders": {role: str(folder) for role, folder in result.folders.items()},
        "fp32": {**asdict(result.fp32), "model_path": str(result.fp32.model_path),
                 "manifest_path": str(result.fp32.manifest_path)},
        "int8": None if result.int8 is None else {
            "model_path": str(result.int8.model_path), "bytes": result.int8.int8_bytes,
            "size_ratio": result.int8.size_ratio, "quantization": result.int8.options},
        "parity": None if result.parity is None else result.parity.to_dict(),
    }
    if json_output:
        print_json(payload)
    else:
        fp32 = result.fp32
        console.print(f"fp32: {escape(str(fp32.model_path))} ({fp32.bytes:,} bytes, opset {fp32.opset}, {fp32.arch}, "
                      f"{fp32.params:,} parameters)")
        if result.int8 is not None:
            q = result.int8.options
            console.print(f"int8: {escape(str(result.int8.model_path))} ({result.int8.int8_bytes:,} bytes, "
                          f"{result.int8.size_ratio:.1%} of fp32; {q['method']}, "
                          f"{'per-channel' if q['per_channel'] else 'per-tensor'}, "
                          f"{q['calibration']} on {q['images']} training images)")
        if result.parity is not None:
            _render_parity(result.parity)
        else:
            console.print("parity not run: mnist-edge parity " + " ".join(
                [str(run_dir), *map(str, result.folders.values())]))
    if result.parity is not None and not result.parity.passed:
        raise typer.Exit(1)


# --- quantize --------------------------------------------------------------------------------


@command()
def quantize(
    model: Path = typer.Argument(..., help="fp32 model: an .onnx file or an exported folder."),
    out: Path = typer.Option(..., "--out", help="Folder for model.onnx and manifest.json."),
    target: str = typer.Option("cpu", "--for", help="cpu: fastest in onnxruntime (per-architecture "
                               "defaults); mcu: every layer and the logits int8, for `mnist-edge codegen`."),
    mode: str | None = typer.Option(None, "--mode", help="static (calibrated; default) or dynamic."),
    calibration: str | None = typer.Option(None, "--calibration", help="minmax (default), entropy or "
                                              "percentile."),
    calib_images: int | None = typer.Option(None, "--calib-images", help="Training images to calibrate "
                                               "on (default 1000; never test images)."),
    per_channel: bool | None = typer.Option(None, "--per-channel/--per-tensor", help="Weight scales per "
                                               "output channel (default) or one per tensor."),
    exclude: list[str] | None = typer.Option(None, "--exclude", help="Node name to leave in float "
                                                "(repeatable; `parity` suggests them)."),
    quant_format: str | None = typer.Option(None, "--format", help="auto (QDQ for static; default), qdq "
                                               "or qoperator."),
    activation_type: str | None = typer.Option(None, "--activation-type", help="uint8 (default) or int8."),
    weight_type: str | None = typer.Option(None, "--weight-type", help="int8 (default) or uint8."),
    reduce_range: bool | None = typer.Option(None, "--reduce-range/--full-range", help="7-bit weights "
                                                "(default; avoids int16 saturation on CPUs without VNNI)."),
    float_logits: bool | None = typer.Option(None, "--float-logits/--quantized-logits", help="Keep the "
                                                "output logits in float (default; QDQ only)."),
    op_types: list[str] | None = typer.Option(None, "--op-type", help="Only quantize this operator type "
                                                 "(repeatable; default: all)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed choosing the calibration images (default 0)."),
    scale: float | None = scale_option(),
    mean: float | None = mean_option(),
    std: float | None = std_option(),
    json_output: JsonOption = False,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
) -> None:
    """Quantize an fp32 ONNX model to int8 with onnxruntime.quantization.

    Defaults are the best measured settings for the model's architecture (from its manifest);
    explicit options override them. The result's manifest records every setting.

    A bare .onnx states no normalization: --scale, --mean and --std say how its pixels were
    normalized in training (else its metadata's input_scale/input_mean/input_std, else MNIST's,
    which the output calls an assumption); the output manifest records them for run, eval,
    codegen and web.

    Example: mnist-edge quantize exported/cnn-fp32 --out exported/cnn-int8 --calibration entropy
    Example: mnist-edge quantize exported/tiny-fp32 --for mcu --out exported/tiny-int8-mcu
    Example: mnist-edge quantize keras_mnist.onnx --for mcu --scale 255 --mean 0 --std 1 --out keras-int8
    """
    from mnist_edge.quantize import quantize_model

    overrides = {
        "mode": mode, "calibration": calibration, "calib_images": calib_images, "per_channel": per_channel,
        "exclude": tuple(exclude) if exclude else None, "format": quant_format,
        "activation_type": activation_type, "weight_type": weight_type, "reduce_range": reduce_range,
        "float_logits": float_logits, "op_types": tuple(op_types) if op_types else None, "seed": seed,
        "target": target,
    }
    # The architecture's best settings (from the manifest), with the explicit options over them.
    result = quantize_model(model, out, overrides=overrides, data_dir=data_dir, download=download, scale=scale,
                            mean=mean, std=std)
    if json_output:
        print_json({"model_path": str(result.model_path), "manifest_path": str(result.manifest_path),
                    "fp32_bytes": result.fp32_bytes, "int8_bytes": result.int8_bytes,
                    "size_ratio": result.size_ratio, "quantization": result.options,
                    "normalization": result.normalization})
        return
    q = result.options
    console.print(f"int8: {escape(str(result.model_path))} ({result.int8_bytes:,} bytes, {result.size_ratio:.1%} of "
                  f"{result.fp32_bytes:,}); {q['method']}, "
                  f"{'per-channel' if q['per_channel'] else 'per-tensor'}, "
                  f"{'reduce-range, ' if q['reduce_range'] else ''}"
                  + (f"{q['calibration']} on {q['images']} training images (seed {q['seed']})"
                     if q["mode"] == "static" else "dynamic activations"))
    console.print(f"input normalization: {escape(result.normalization)}")
    if q["target"] == "mcu":
        console.print(f"Next: mnist-edge codegen {escape(str(out))} --out DIR --verify")
    else:
        console.print(f"Next: mnist-edge parity RUN_DIR {escape(str(model))} {escape(str(out))}")


# --- parity ----------------------------------------------------------------------------------


@command()
def parity(
    run_dir: Path = typer.Argument(..., help="Training run folder (the PyTorch original)."),
    models: list[Path] = typer.Argument(..., help="exported/NAME (its -fp32 and -int8 folders), or the "
                                        "fp32 and int8 models (folders or .onnx files)."),
    max_logit_diff: float = _max_logit_diff_option(),
    min_agreement: float = _min_agreement_option(),
    max_int8_drop: float = _max_int8_drop_option(),
    limit: int = LimitOption,
    layers: str = typer.Option("auto", "--layers", help="Per-layer int8 error: auto (when int8 breaches "
                               "its threshold), always or never."),
    out: Path | None = typer.Option(None, "--out", help="Folder for parity.json and the PNG (default: "
                                       "each compared model's folder)."),
    update_manifest: bool = typer.Option(False, "--update-manifest", help="Record the figures in the "
                                         "models' manifest.json files."),
    figure: bool = typer.Option(True, "--figure/--no-figure", help="Draw the disagreeing digits."),
    json_output: JsonOption = False,
    threads: int | None = typer.Option(None, "--threads", help="onnxruntime threads (default: all)."),
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
) -> None:
    """Compare the PyTorch checkpoint, the fp32 ONNX and the int8 ONNX on the 10,000 test images.

    For each pair: accuracies, top-1 agreement (and the disagreeing images), max and mean
    absolute logit difference. Exit code 1 when a threshold is breached; the JSON report and
    the PNG of the disagreeing digits are written either way.

    Example: mnist-edge parity runs/default exported/cnn --max-int8-drop 0.05
    """
    from mnist_edge.parity import folder_of, parity_command, record_parity, resolve_models

    thresholds = _thresholds(max_logit_diff, min_agreement, max_int8_drop)
    if out is not None:
        check_creatable(out)  # before the evaluation, not after it
    targets = resolve_models(list(models))
    folders = {role: folder_of(path) for role, path in (("fp32", targets.fp32), ("int8", targets.int8)) if path}
    report_dirs = [out] if out is not None else list(dict.fromkeys(folders.values()))
    report = record_parity(run_dir, targets.fp32, targets.int8, report_dirs=report_dirs,
                           manifests=folders if update_manifest else None, figure=figure,
                           thresholds=thresholds, limit=limit, layers=layers, data_dir=data_dir,
                           download=download, threads=threads,
                           command=parity_command(run_dir, targets.fp32, targets.int8, limit=limit,
                                                  thresholds=thresholds))
    if json_output:
        print_json(report.to_dict())
    else:
        _render_parity(report)
        for folder in report_dirs:
            if figure:
                console.print(f"wrote {escape(str(folder / manifest_io.PARITY_FIGURE))}")
            console.print(f"wrote {escape(str(folder / manifest_io.PARITY_REPORT))}")
        for folder in folders.values() if update_manifest else ():
            console.print(f"wrote {escape(str(folder / manifest_io.FILENAME))}")
    if not report.passed:
        raise typer.Exit(1)


# --- rendering -------------------------------------------------------------------------------

_NAMES = {"pytorch": "PyTorch", "fp32": "fp32 ONNX", "int8": "int8 ONNX"}


def _render_parity(report: Any) -> None:
    table = Table(title=f"parity on {report.images:,} test images")
    for column in ("pair", "accuracy", "Δ points", "top-1 agreement", "max |Δ logit|", "mean |Δ logit|"):
        table.add_column(column, justify="left" if column == "pair" else "right")
    for p in report.pairs:
        table.add_row(f"{_NAMES[p.candidate]} vs {_NAMES[p.reference]}",
                      f"{p.candidate_accuracy:.2%} / {p.reference_accuracy:.2%}",
                      f"{p.accuracy_delta_points:+.2f}",
                      f"{p.agreement:.2%} ({p.disagree_count} differ)", f"{p.max_abs_logit_diff:.3g}",
                      f"{p.mean_abs_logit_diff:.3g}")
    console.print(table)
    if report.breaches:
        broken = Table(title="[bold red]thresholds breached[/]")
        for column in ("check", "pair", "measured", "limit"):
            broken.add_column(column)
        for b in report.breaches:
            broken.add_row(b.check, b.pair, f"{b.measured:.4g}", f"{b.limit:.4g}")
        console.print(broken)
    else:
        console.print("[green]parity passed[/]: " + ", ".join(
            f"{_NAMES[m.role]} {m.accuracy:.2%}" for m in report.models))
    if report.layer_report is not None:
        _render_layers(report.layer_report)


def _render_layers(layer_report: Any) -> None:
    table = Table(title=f"int8 error per layer ({layer_report.images} images; SQNR in dB, higher is better)")
    for column in ("node", "op", "weight", "own output", "output vs fp32"):
        table.add_column(column, justify="left" if column in ("node", "op") else "right")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for e in layer_report.layers:
        mark = " ◀" if e.node in layer_report.suspects[:2] else ""
        table.add_row(e.node + mark, e.op_type, fmt(e.weight_db), fmt(e.own_qdq_db), fmt(e.vs_fp32_db))
    console.print(table)
    check = layer_report.kernel_check
    if check is not None:
        console.print(f"int8 kernels vs the simulated int8 graph: max |Δ logit| "
                      f"{check.max_abs_logit_diff:.3g}, {check.disagreements} of {check.images} "
                      "predictions differ"
                      + (" [bold red](saturation suspected)[/]" if check.saturation_suspected else ""))
    for line in layer_report.advice:
        console.print(f"advice: {line}")
