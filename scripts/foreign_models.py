"""Bring your own model, measured: MNIST models as Keras and PyTorch export them (built by
scripts/foreign_builders.py with trained weights) taken through the deployment half, as a user
would: `quantize --for mcu` -> `codegen --verify` -> `--board mps2-an386` -> `web --engine c`.

Run from the repository root (MNIST is needed; the board needs gcc-arm-none-eabi and
qemu-system-arm, the page clang and lld):

    MNIST_EDGE_DATA=~/data python scripts/foreign_models.py               # all six, FULL training
    MNIST_EDGE_DATA=~/data python scripts/foreign_models.py residual --brief

For each model it prints the fp32 and int8 test accuracy (onnxruntime, 10,000 images), how many
of the C's scores equal onnxruntime's, whether the board's scores equal the host's, the C's
arena, constants and Cortex-M4 instructions per image, and the c engine site's size against its
budget; then which goals held (identical scores everywhere; int8 within INT8_MAX_DROP_POINTS
of fp32). Exit status 1 when one did not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_edge.codegen import generate  # noqa: E402
from mnist_edge.data import load_split  # noqa: E402
from mnist_edge.evaluate import onnx_probabilities  # noqa: E402
from mnist_edge.measure import environment  # noqa: E402
from mnist_edge.quantize import default_options, quantize_model  # noqa: E402
from mnist_edge.web.site import build_site, site_summary  # noqa: E402
from scripts.foreign_builders import BRIEF, BUILDERS, FULL, MNIST_NORM, NORMALIZATION, Training, build  # noqa: E402

INT8_MAX_DROP_POINTS = 0.1
TEST_IMAGES = 10_000
BOARD = "mps2-an386"


@dataclass(frozen=True)
class Deployment:
    """One foreign model through the deployment half, with every figure the README reports."""

    name: str
    fp32: Path
    int8: Path
    library: Path
    fp32_accuracy: float
    int8_accuracy: float
    identical: int
    verified_images: int
    board_images: int
    board_equal: bool | None  # None: no board asked for
    m4_instructions: int | None
    arena_bytes: int
    constant_bytes: int
    site_bytes: int | None
    site_over_budget: bool | None

    @property
    def drop_points(self) -> float:
        return 100 * (self.fp32_accuracy - self.int8_accuracy)


def normalization(name: str) -> dict[str, float]:
    """What `quantize --scale --mean --std` is given for NAME (its bare .onnx says nothing)."""
    return dict(zip(("scale", "mean", "std"), NORMALIZATION.get(name, MNIST_NORM), strict=True))


def accuracy(model: Path, **convention: float) -> float:
    test = load_split("test", download=False)
    _, probabilities, _ = onnx_probabilities(model, test.images, **convention)
    return float((probabilities.argmax(axis=1) == test.labels).mean())


def deploy(name: str, folder: Path, training: Training = FULL, *, verify_images: int = TEST_IMAGES,
           boards: tuple[str, ...] = (BOARD,), board_images: int = 100, site: bool = True) -> Deployment:
    """Build NAME's model into FOLDER, then quantize, generate, verify and (optionally) run it on
    BOARDS and build its c engine site, as the CLI does."""
    fp32 = build(name, folder, training)
    norm = normalization(name)
    int8 = folder / f"{name}-int8"
    quantize_model(fp32, int8, default_options(None, target="mcu"), download=False, **norm)
    library = folder / f"{name}-c"
    result = generate(int8, library, verify_images=verify_images, boards=boards, board_images=board_images,
                      download=False)
    summary = site_summary(build_site(library, folder / f"{name}-site", engine="c")) if site else None
    checked = result.verification
    run = result.boards[0] if result.boards else None
    return Deployment(name, fp32, int8, library, accuracy(fp32, **norm), accuracy(int8), checked.identical,
                      checked.images, run.images if run else 0, run.passed if run else None,
                      run.instructions_per_inference if run else None, result.arena_bytes, result.weight_bytes,
                      summary["bytes"] if summary else None, summary["over_budget"] if summary else None)


def _row(d: Deployment) -> str:
    board = "-" if d.board_equal is None else f"{'equal' if d.board_equal else 'DIFFERENT'} ({d.board_images:,})"
    site = "-" if d.site_bytes is None else f"{d.site_bytes:,}{' (over budget)' if d.site_over_budget else ''}"
    m4 = f"{d.m4_instructions:,}" if d.m4_instructions else "-"
    return (f"| {d.name} | {100 * d.fp32_accuracy:.2f} % | {100 * d.int8_accuracy:.2f} % | {d.drop_points:+.2f} | "
            f"{d.identical:,} / {d.verified_images:,} | {board} | {d.arena_bytes:,} | {d.constant_bytes:,} | {m4} | "
            f"{site} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(BUILDERS)} (default: all)")
    parser.add_argument("--brief", action="store_true", help="train as briefly as the tests do")
    parser.add_argument("--board-images", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not os.environ.get("MNIST_EDGE_DATA"):
        parser.error("set MNIST_EDGE_DATA to the folder holding MNIST/raw")
    unknown = sorted(set(args.names) - set(BUILDERS))
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from {', '.join(BUILDERS)}")
    training = BRIEF if args.brief else FULL
    results = []
    with tempfile.TemporaryDirectory(prefix="mnist-edge-foreign-") as scratch:
        for name in args.names or list(BUILDERS):
            results.append(deploy(name, Path(scratch) / name, training, board_images=args.board_images))
            print(f"{name}: done", flush=True)
    env = environment()
    print(f"\n{training.images:,} training images x {training.epochs} epochs; {env.cpu_model}, "
          f"{env.usable_cores} usable cores, load average {os.getloadavg()[0]:.1f}\n")
    print("| model | fp32 | int8 | drop (pt) | C = onnxruntime | mps2-an386 = host | arena B | constants B | "
          "M4 instructions | c site B |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for deployment in results:
        print(_row(deployment))
    failed = [d.name for d in results if d.identical != d.verified_images or d.board_equal is False]
    dropped = [d.name for d in results if d.drop_points > INT8_MAX_DROP_POINTS]
    print(f"\nscores identical everywhere: {'yes' if not failed else 'NO: ' + ', '.join(failed)}")
    print(f"int8 within {INT8_MAX_DROP_POINTS} pt of fp32: {'yes' if not dropped else 'NO: ' + ', '.join(dropped)}")
    if args.json:
        rows = [{**asdict(d), "drop_points": d.drop_points} for d in results]
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 1 if failed or dropped else 0


if __name__ == "__main__":
    sys.exit(main())
