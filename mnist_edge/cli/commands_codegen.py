"""`mnist-edge codegen`: an all-int8 model -> a C99 library, optionally proven against onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

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
from mnist_edge.errors import ConfigError


def parse_cflags(text: str) -> tuple[str, ...]:
    """--cflags "-O2 -mavx2" -> ("-O2", "-mavx2"): shell words, at least one."""
    import shlex

    try:
        flags = tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(f"--cflags: {exc}") from None
    if not flags:
        raise ConfigError("--cflags is empty; leave it out for the default -O3 -march=native")
    return flags


@command(name="codegen")
def codegen_command(
    model: Annotated[Path, typer.Argument(help="An int8 model quantized with `quantize --for mcu` "
                                               "(folder or .onnx file).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for model.h, model.c and manifest.json.")],
    verify: Annotated[bool, typer.Option("--verify", help="Compile the C for this machine and check every "
                                                          "score against onnxruntime on the test images.")] = False,
    images: Annotated[int, typer.Option("--images", help="Test images --verify runs (default: all 10,000).")]
    = 10_000,
    max_ram: Annotated[int | None, typer.Option("--max-ram", help="Refuse a model whose arena needs more "
                                                                  "bytes than this.")] = None,
    cc: Annotated[str, typer.Option("--cc", help="Host C compiler for --verify.")] = "cc",
    cflags: Annotated[str | None, typer.Option("--cflags", help="Optimization flags of the --verify build "
                                               "(default: -O3 -march=native, as `bench` builds it; the strict "
                                               "C99 flags are always added).")] = None,
    requant: Annotated[str, typer.Option("--requant", help="float: onnxruntime's float32 requantization, "
                                         "bit for bit (default); fixed: integer only, for cores without an FPU "
                                         "(Cortex-M0/M3), within one step of onnxruntime per layer.")] = "float",
    board: Annotated[list[str] | None, typer.Option(
        "--board", help="Also cross-compile and run under QEMU, every score compared with the host's: mps2-an386 "
                        "(Cortex-M4F), mps2-an385 (Cortex-M3), stm32vldiscovery (STM32F100, 8 KiB RAM), microbit "
                        "(nRF51, Cortex-M0), netduinoplus2 (STM32F405); repeatable.")] = None,
    board_images: Annotated[int, typer.Option("--board-images", help="Test images each board classifies "
                                                                     "(read over semihosting; default 1,000).")] = 1000,
    scale: float | None = scale_option(),
    mean: float | None = mean_option(),
    std: float | None = std_option(),
    json_output: JsonOption = False,
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
) -> None:
    """Generate C99 code for a microcontroller: one function, integer-only, no malloc.

    `mnist_edge_predict(pixels, scores)` takes raw 0-255 pixels and returns the digit; its scores
    equal onnxruntime's int8 output bit for bit. Exit code 1 when --verify finds a difference.

    Example: mnist-edge codegen exported/tiny-mcu-int8 --out exported/tiny-mcu --verify
    Example: mnist-edge codegen exported/tiny-mcu-int8 --out exported/tiny-mcu --verify --board mps2-an386
    Example: mnist-edge codegen exported/tiny-mcu-int8 --out tiny-m3 --requant fixed --verify --board mps2-an385
    """
    from mnist_edge.codegen import generate
    from mnist_edge.codegen.verify import HOST_CFLAGS

    result = generate(model, out, verify_images=images if verify else 0, max_ram=max_ram, cc=cc,
                      boards=tuple(board or ()), board_images=board_images, requant=requant, data_dir=data_dir,
                      download=download, cflags=parse_cflags(cflags) if cflags is not None else HOST_CFLAGS,
                      normalization={"scale": scale, "mean": mean, "std": std})
    checked = result.verification
    if json_output:
        print_json(result.manifest)
    else:
        console.print(f"C library: {escape(str(out))} (arena {result.arena_bytes:,} bytes, constants "
                      f"{result.weight_bytes:,} bytes)")
        _print_conventions(result.manifest)
        if checked is not None:
            against = ("onnxruntime" if checked.requant == "float"
                       else "the numpy model of the fixed-point arithmetic")
            console.print(f"verified on {checked.images:,} test images ({checked.kernels} kernels, "
                          f"{' '.join(checked.flags[6:])}): {checked.identical:,} identical to "
                          f"{against} ({checked.onnxruntime_level}), top-1 agreement with onnxruntime "
                          f"{checked.top1_agreement:.2%}, accuracy C {checked.c_accuracy:.2%} / onnxruntime "
                          f"{checked.onnxruntime_accuracy:.2%}")
            if checked.max_layer_step is not None:
                console.print(f"fixed point vs onnxruntime, each layer on onnxruntime's own input: at most "
                              f"{checked.max_layer_step} step(s); scores differ by at most {checked.max_score_diff}")
            if not checked.passed:
                console.print(f"DIFFERENT: {checked.images - checked.identical} images, by up to "
                              f"{checked.max_score_diff} steps; first: {checked.first_differing}; first layer "
                              f"that differs: {checked.first_differing_layer or 'none found in numpy'}")
        for run in result.boards:
            _print_board(run)
    if not result.passed:
        raise typer.Exit(1)


def _print_conventions(manifest: dict) -> None:
    """How the C reads pixels (normalization and where it came from) and what its scores are."""
    from mnist_edge.codegen import SCORES_BEFORE_SOFTMAX
    from mnist_edge.config import Normalization
    from mnist_edge.modelprep import InputConvention

    given = manifest["input"]
    norm = Normalization(given["scale"], given["mean"], given["std"])
    convention = InputConvention("", given["layout"], norm, given["normalization_source"])
    console.print(f"input normalization (in the C's input table): {escape(convention.describe())}")
    if manifest["api"]["scores"] == SCORES_BEFORE_SOFTMAX:
        console.print(f"scores: {SCORES_BEFORE_SOFTMAX}")


def _print_board(run) -> None:
    same = "every score equal to the host's" if run.passed else f"DIFFERENT scores, first images {run.first_differing}"
    console.print(f"{run.board} ({run.chip}, {run.cpu}, QEMU): {run.images:,} images, {same} (hash {run.scores_hash}); "
                  f"library flash {run.flash_bytes:,} B, RAM {run.ram_bytes:,} B ({run.ram_static_bytes:,} static + "
                  f"{run.stack_peak_bytes:,} stack); whole firmware {run.firmware_flash_bytes:,} B of "
                  f"{run.board_flash_bytes:,} flash, {run.firmware_ram_bytes:,} B of {run.board_ram_bytes:,} RAM; "
                  f"{run.instructions_per_inference:,} instructions/image")
    for step in run.profile:
        console.print(f"  {escape(step.step)}: {step.instructions:,} instructions/image")
