"""Build the shipped microcontroller models: exported/NAME-mcu-int8 (every layer int8) and
exported/NAME-mcu (its C library), each proven.

Run from the repository root (MNIST is needed for calibration, parity and the proofs; the
board runs need gcc-arm-none-eabi and qemu-system-arm):

    MNIST_EDGE_DATA=~/data python scripts/build_mcu.py            # tiny and cnn
    MNIST_EDGE_DATA=~/data python scripts/build_mcu.py tiny

For each NAME:
  1. `mnist-edge quantize exported/NAME-fp32 --for mcu --out exported/NAME-mcu-int8`;
  2. parity of the checkpoint, the fp32 ONNX and that int8 model on the 10,000 test images
     (int8 within 0.05 points of fp32), recorded in the int8 manifest;
  3. `mnist-edge codegen exported/NAME-mcu-int8 --out exported/NAME-mcu --verify --board ...`:
     the C equal to onnxruntime on all 10,000 test images and under QEMU on 1,000;
  4. for tiny, the same with `--requant fixed --board mps2-an385` (integer only, Cortex-M3) into a
     temporary folder (measured, not shipped).
Prints one summary row per library. Exit status 1 when a proof or target fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_edge.codegen import generate  # noqa: E402
from mnist_edge.parity import Thresholds, record_parity  # noqa: E402
from mnist_edge.quantize import default_options, quantize_model  # noqa: E402

EXPORTED = Path("exported")
INT8_MAX_DROP_POINTS = 0.05
BOARDS = {"tiny": ("mps2-an386", "mps2-an385"), "cnn": ("mps2-an386",)}
# Goals (bytes): flash of the library's object file, and RAM = static data + peak stack.
GOALS = {"tiny": (16 * 1024, 8 * 1024), "cnn": (64 * 1024, 16 * 1024)}


def row(name: str, result, report=None) -> str:
    checked = result.verification
    accuracy = (f"{report.score('fp32').accuracy:.2%} | {report.score('int8').accuracy:.2%} "
                f"({report.pair('fp32', 'int8').accuracy_delta_points:+.2f} pt)" if report else "| ")
    return (f"| {name} | {accuracy} | {checked.identical:,} / {checked.images:,} ({checked.requant}) | "
            + " | ".join(f"{r.board}: {r.images:,} equal={r.passed}, flash {r.flash_bytes:,} B, RAM {r.ram_bytes:,} B "
                         f"({r.ram_static_bytes:,} + {r.stack_peak_bytes:,} stack), "
                         f"{r.instructions_per_inference:,} instr/image" for r in result.boards) + " |")


def build(name: str) -> tuple[bool, list[str]]:
    int8, library = EXPORTED / f"{name}-mcu-int8", EXPORTED / f"{name}-mcu"
    quantize_model(EXPORTED / f"{name}-fp32", int8, default_options(name, target="mcu"))
    report = record_parity(EXPORTED / "checkpoints" / name, EXPORTED / f"{name}-fp32", int8, report_dirs=[int8],
                           manifests={"int8": int8}, thresholds=Thresholds(1e-5, 1.0, INT8_MAX_DROP_POINTS))
    result = generate(int8, library, verify_images=10_000, boards=BOARDS[name])
    flash_goal, ram_goal = GOALS[name]
    m4 = result.boards[0]
    ok = report.passed and result.passed and m4.flash_bytes <= flash_goal and m4.ram_bytes <= ram_goal
    rows = [row(name, result, report)]
    if name == "tiny":
        with tempfile.TemporaryDirectory() as tmp:
            fixed = generate(int8, Path(tmp) / f"{name}-mcu-fixed", verify_images=10_000, requant="fixed",
                             boards=("mps2-an385",))
        ok = ok and fixed.passed
        rows.append(row(f"{name} --requant fixed", fixed))
    return ok, rows


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
