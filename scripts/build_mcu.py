"""Build the shipped microcontroller models: exported/NAME-mcu-int8 (every layer int8) and
exported/NAME-mcu (its C library), each proven.

Run from the repository root (MNIST is needed for calibration, parity and the proofs; the
board runs need gcc-arm-none-eabi and qemu-system-arm):

    MNIST_EDGE_DATA=~/data python scripts/build_mcu.py            # tiny, micro and cnn
    MNIST_EDGE_DATA=~/data python scripts/build_mcu.py micro

For each NAME:
  1. `mnist-edge quantize exported/NAME-fp32 --for mcu --out exported/NAME-mcu-int8`;
  2. parity of the checkpoint, the fp32 ONNX and that int8 model on the 10,000 test images
     (int8 within 0.05 points of fp32), recorded in the int8 manifest;
  3. `mnist-edge codegen exported/NAME-mcu-int8 --out exported/NAME-mcu --verify --board ...` on
     every board: the C equal to onnxruntime on all 10,000 test images on the host and every
     score equal to the host's under QEMU on 1,000, with each board's flash, RAM, instructions
     per image and instructions per step (the manifest holds them all);
  4. the host build with the integer requantization of cores without an FPU
     (-DMNIST_EDGE_SOFT_FLOAT=1), proven on all 10,000 test images;
  5. for tiny, `--requant fixed --board mps2-an385` (integer only, Cortex-M3) into a temporary
     folder (measured, not shipped);
  6. for micro, the model's own size goals (SIZE_GOALS: parameters and multiply-adds per image,
     <= 10 k and <= 0.6 M).
Prints the proofs, a table of boards and a table of steps per library, and which goals
(GOALS: flash, RAM, Cortex-M4 and Cortex-M3 instructions per image) held. Exit status 1 when a
proof or goal fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_edge.codegen import generate, load_integer_model  # noqa: E402
from mnist_edge.codegen.verify import verify_against_onnxruntime  # noqa: E402
from mnist_edge.parity import Thresholds, record_parity  # noqa: E402
from mnist_edge.quantize import default_options, quantize_model  # noqa: E402

EXPORTED = Path("exported")
INT8_MAX_DROP_POINTS = 0.05
ALL_BOARDS = ("mps2-an386", "mps2-an385", "stm32vldiscovery", "microbit", "netduinoplus2")
BOARDS = {"tiny": ALL_BOARDS, "micro": ALL_BOARDS, "cnn": ALL_BOARDS}


@dataclass(frozen=True)
class Goals:
    flash: int  # bytes: the library's object file (.text + .rodata)
    ram: int  # bytes: its static data (the arena) + the painted stack peak
    m4_instructions: int  # per image on the Cortex-M4 (mps2-an386)
    m3_instructions: int | None  # per image on the Cortex-M3 (mps2-an385, float requantization in integers)


# micro, the distilled microcontroller model, is held to tiny's goals at least.
GOALS = {"tiny": Goals(16 * 1024, 4 * 1024, 2_500_000, 4_500_000),
         "micro": Goals(16 * 1024, 4 * 1024, 2_500_000, 4_500_000),
         "cnn": Goals(64 * 1024, 6 * 1024, 4_000_000, None)}
# The model's own goals: (parameters, multiply-adds per image).
SIZE_GOALS = {"micro": (10_000, 600_000)}


def row(name: str, result, report=None) -> str:
    checked = result.verification
    accuracy = (f"{report.score('fp32').accuracy:.2%} | {report.score('int8').accuracy:.2%} "
                f"({report.pair('fp32', 'int8').accuracy_delta_points:+.2f} pt)" if report else "| ")
    flags = " ".join(checked.flags[6:])  # after the strict ones
    return f"| {name} | {accuracy} | {checked.identical:,} / {checked.images:,} ({checked.requant}, {flags}) |"


def board_rows(name: str, result) -> list[str]:
    rows = [f"\n{name}: | board | chip | core | scores equal | library flash | library RAM (arena + stack) | "
            "firmware flash / chip | firmware RAM / chip | instructions / image |"]
    for r in result.boards:
        rows.append(f"| {r.board} | {r.chip} | {r.cpu} | {r.images:,} {'yes' if r.passed else 'NO'} | "
                    f"{r.flash_bytes:,} B | {r.ram_bytes:,} B ({r.ram_static_bytes:,} + {r.stack_peak_bytes:,}) | "
                    f"{r.firmware_flash_bytes:,} / {r.board_flash_bytes:,} | {r.firmware_ram_bytes:,} / "
                    f"{r.board_ram_bytes:,} | {r.instructions_per_inference:,} |")
    steps = [step.step for step in result.boards[0].profile]
    rows.append(f"\n{name} per step: | step | " + " | ".join(r.board for r in result.boards) + " |")
    for i, step in enumerate(steps):
        rows.append(f"| {step} | " + " | ".join(f"{r.profile[i].instructions:,}" for r in result.boards) + " |")
    return rows


def build(name: str) -> tuple[bool, list[str]]:
    int8, library = EXPORTED / f"{name}-mcu-int8", EXPORTED / f"{name}-mcu"
    quantize_model(EXPORTED / f"{name}-fp32", int8, default_options(name, target="mcu"))
    report = record_parity(EXPORTED / "checkpoints" / name, EXPORTED / f"{name}-fp32", int8, report_dirs=[int8],
                           manifests={"int8": int8}, thresholds=Thresholds(1e-5, 1.0, INT8_MAX_DROP_POINTS))
    result = generate(int8, library, verify_images=10_000, boards=BOARDS[name])
    goals, runs = GOALS[name], {r.board: r for r in result.boards}
    m4, m3 = runs["mps2-an386"], runs["mps2-an385"]
    checks = {"parity": report.passed, "proofs": result.passed, "flash": m4.flash_bytes <= goals.flash,
              "RAM": max(r.ram_bytes for r in result.boards) <= goals.ram,
              "M4 instructions": m4.instructions_per_inference <= goals.m4_instructions,
              "M3 instructions": (goals.m3_instructions is None
                                  or m3.instructions_per_inference <= goals.m3_instructions)}
    rows = [row(name, result, report)]
    if name in SIZE_GOALS:
        checks["parameters and multiply-adds"], line = size_check(name)
        rows.append(line)
    with tempfile.TemporaryDirectory() as tmp:
        # The integer requantization of cores without an FPU, proven on the host on every test image.
        integer = verify_against_onnxruntime(load_integer_model(int8), library, *_test_set(),
                                             flags=("-O2", "-DMNIST_EDGE_SOFT_FLOAT=1"))
        checks["integer requantization"] = integer.passed
        rows.append(f"| {name} (integer requantization) | | {integer.identical:,} / {integer.images:,} "
                    f"({' '.join(integer.flags[6:])}) |")
        if name == "tiny":
            fixed = generate(int8, Path(tmp) / f"{name}-mcu-fixed", verify_images=10_000, requant="fixed",
                             boards=("mps2-an385",))
            checks["--requant fixed"] = fixed.passed
            rows.append(row(f"{name} --requant fixed", fixed)
                        + f" mps2-an385: {fixed.boards[0].instructions_per_inference:,} instructions/image")
    rows += board_rows(name, result)
    missed = [check for check, held in checks.items() if not held]
    rows.append(f"{name}: " + ("every goal held" if not missed else f"MISSED: {', '.join(missed)}"))
    return not missed, rows


def _test_set():
    from mnist_edge.data import load_split

    test = load_split("test")
    return test.images, test.labels


def size_check(name: str) -> tuple[bool, str]:
    """Parameters and multiply-adds of the shipped checkpoint against the model's goals."""
    from mnist_edge.checkpoint import load_checkpoint
    from mnist_edge.models import count_macs, count_parameters

    module = load_checkpoint(EXPORTED / "checkpoints" / name).module
    params, macs = count_parameters(module), count_macs(module)
    max_params, max_macs = SIZE_GOALS[name]
    ok = params <= max_params and macs <= max_macs
    return ok, (f"{name}: {params:,} parameters (goal <= {max_params:,}), {macs:,} multiply-adds per image "
                f"(goal <= {max_macs:,}): {'met' if ok else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(BOARDS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BOARDS]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(BOARDS)}")
    if not os.environ.get("MNIST_EDGE_DATA"):
        print("warning: MNIST_EDGE_DATA is not set; MNIST is read from (or downloaded to) the default folder")
    failed = []
    for name in args.names or list(BOARDS):
        ok, rows = build(name)
        print("\n".join(rows), flush=True)
        if not ok:
            failed.append(name)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
