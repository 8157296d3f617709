"""Side by side in one run: mnist-edge's generated C, the same int8 model compiled by
emx-onnx-cgen, and onnxruntime, on this machine and on a Cortex-M4.

    MNIST_EDGE_DATA=~/data python scripts/mcu_compare.py                 # exported/tiny-mcu-int8
    MNIST_EDGE_DATA=~/data python scripts/mcu_compare.py exported/cnn-mcu-int8 --images 2000

Columns: Cortex-M4 flash (.text + .rodata of the object file; mnist-edge's as `--board` builds it,
`-O2 -ffreestanding`, emx-onnx-cgen's at `-Os`) and RAM (static data plus stack: painted under
QEMU for mnist-edge; emx-onnx-cgen's `-fstack-usage` of `model()` with every temporary on the
stack, its --large-temp-threshold 0), host time per image at -O2 and at
-O3 -march=native (mean over the images, 5 passes), and agreement with onnxruntime's int8 scores
(identical images, top-1). onnxruntime's figure is `bench`'s batch-1, one-thread p50 of the
same model. Needs pip install emx-onnx-cgen (tested with 1.4.0), gcc, gcc-arm-none-eabi, qemu.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mnist_edge.codegen import board, generate, load_integer_model  # noqa: E402
from mnist_edge.codegen.verify import (  # noqa: E402
    HOST_BUILDS,
    build_harness,
    c_scores,
    c_time_us,
    onnxruntime_scores,
)
from mnist_edge.data import load_split  # noqa: E402
from mnist_edge.measure import bench_onnx  # noqa: E402

M4 = board.BOARDS["mps2-an386"].flags
EMX_HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
void model(const float input[1][1][28][28], float logits[1][10]);
int main(int argc, char **argv) {
    static uint8_t pixels[784]; static float x[1][1][28][28]; float y[1][10];
    long repeats = argc > 1 ? strtol(argv[1], 0, 10) : 0, count = 0, r, i;
    static uint8_t all[10000][784];
    while (fread(pixels, 1, 784, stdin) == 784 && count < 10000) {
        for (i = 0; i < 784; ++i) all[count][i] = pixels[i];
        ++count;
    }
    if (repeats) {
        struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
        for (r = 0; r < repeats; ++r) for (long n = 0; n < count; ++n) {
            for (i = 0; i < 784; ++i) x[0][0][i / 28][i % 28] = (all[n][i] / 255.0f - MEAN) / STD;
            model((const float (*)[1][28][28])x, y);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (double)(repeats * count));
        return 0;
    }
    for (long n = 0; n < count; ++n) {
        for (i = 0; i < 784; ++i) x[0][0][i / 28][i % 28] = (all[n][i] / 255.0f - MEAN) / STD;
        model((const float (*)[1][28][28])x, y);
        fwrite(y, sizeof(float), 10, stdout);
    }
    return 0;
}
"""


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, **kwargs)


def emx_build(model_path: Path, work: Path, norm, flags: tuple[str, ...]) -> Path:
    source = work / "emx.c"
    if not source.exists():
        run([sys.executable, "-m", "emx_onnx_cgen", "compile", str(model_path), str(source), "--input-dim", "batch=1",
             "--large-temp-threshold", "0"])
    (work / "emx_main.c").write_text(EMX_HARNESS)
    exe = work / ("emx" + "".join(f.replace("=", "") for f in flags))
    run(["cc", "-std=c99", "-ffp-contract=off", *flags, f"-DMEAN={norm.mean}f", f"-DSTD={norm.std}f", str(source),
         str(work / "emx_main.c"), "-o", str(exe), "-lm"])
    return exe


def emx_m4(work: Path) -> tuple[int, int]:
    """(flash, stack of model()) of emx-onnx-cgen's code for a Cortex-M4 at -Os."""
    obj = work / "emx_m4.o"
    run(["arm-none-eabi-gcc", "-std=c99", "-Os", *M4, "-fstack-usage", "-c", str(work / "emx.c"), "-o", str(obj)],
        cwd=work)
    flash, static = board.footprint(obj)
    usage = (work / "emx_m4.su").read_text() if (work / "emx_m4.su").exists() else (work / "emx.su").read_text()
    stack = max(int(m[1]) for m in re.finditer(r"\tmodel\t(\d+)", usage)) if "\tmodel\t" in usage else max(
        int(m[1]) for m in re.finditer(r":model\t(\d+)", usage))
    return flash, static + stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="exported/tiny-mcu-int8")
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args(argv)
    model = load_integer_model(args.model)
    test = load_split("test").subset(args.images)
    theirs = onnxruntime_scores(model.source, test.images, model.normalization)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours = generate(args.model, work / "c", boards=("mps2-an386",), board_images=20)
        m4 = ours.boards[0]
        times = {}
        for name, flags in HOST_BUILDS.items():
            exe = build_harness(work / "c", work, "cc", flags)
            times[name] = c_time_us(exe, test.images, repeats=5)
        same = (c_scores(exe, test.images, model.classes) == theirs).all(axis=1)
        rows.append(("mnist-edge codegen", m4.flash_bytes, m4.ram_bytes, times["O2"], times["O3-native"],
                     int(same.sum()), 1.0))
        times = {}
        for name, flags in HOST_BUILDS.items():
            exe = emx_build(model.source, work, model.normalization, flags)
            times[name] = float(run([str(exe), "5"], input=test.images.tobytes()).stdout) / 1000
        logits = np.frombuffer(run([str(exe)], input=test.images.tobytes()).stdout, np.float32).reshape(-1, 10)
        scores = np.rint(logits / np.float32(model.output_scale)).astype(np.int32) + model.output_zero
        flash, ram = emx_m4(work)
        rows.append(("emx-onnx-cgen", flash, ram, times["O2"], times["O3-native"], int((scores == theirs).all(1).sum()),
                     float((scores.argmax(1) == theirs.argmax(1)).mean())))
    ort = bench_onnx(model.source, images=test.images[:256], batch_sizes=[1], threads=[1], seconds=3.0)
    print(f"model: {args.model}; {args.images:,} test images; onnxruntime batch-1 one-thread p50: "
          f"{ort.latency.p50_us:.1f} us\n")
    print("| code | M4 flash | M4 RAM | host us/image -O2 | host us/image -O3 -march=native | identical to onnxruntime "
          "| top-1 agreement |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, flash, ram, o2, o3, identical, top1 in rows:
        print(f"| {name} | {flash:,} B | {ram:,} B | {o2:,.1f} | {o3:,.1f} | {identical:,} / {args.images:,} | "
              f"{top1:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
