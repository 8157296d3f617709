"""Requantization, the one place where the generated C rounds: the C (compiled, both the FPU path
and the exact integer path of cores without one), its numpy twins and onnxruntime's own
QLinearConv must give the same byte for accumulators built to land on the rounding's edges: exact
halves, products that float32 rounds onto a half (double rounding), both signs, the clamps, and
accumulators with more than 24 significant bits."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.codegen import reference
from mnist_edge.codegen.emit import template
from mnist_edge.codegen.verify import STRICT

ZEROS = (0, 77, 128, 255)

DRIVER = r"""
#include <stdio.h>
int main(void) {
    long acc;
    unsigned long bits;
    int zero, small;
    while (scanf("%ld %lu %d %d", &acc, &bits, &zero, &small) == 4) {
        union {
            uint32_t u;
            float f;
        } scale;
        scale.u = (uint32_t)bits;
        printf("%d\n", requantize((int32_t)acc, scale.f, zero, small));
    }
    return 0;
}
"""


def _double_rounding_cases(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(acc, scale) whose exact product is not a half but whose float32 product is exactly k + 0.5."""
    rng = np.random.default_rng(seed)
    accs, scales = [], []
    while len(accs) < count:
        k, scale = int(rng.integers(0, 255)), np.float32(rng.uniform(1e-4, 1e-2))
        for acc in (round((k + 0.5) / float(scale)) + d for d in (-1, 0, 1)):
            product = np.float32(acc) * scale
            exact = Fraction(acc) * Fraction(float(scale))
            if Fraction(float(product)) % 1 == Fraction(1, 2) and exact != Fraction(float(product)):
                accs.append(acc)
                scales.append(scale)
    return np.array(accs, np.int64), np.array(scales, np.float32)


@pytest.fixture(scope="module")
def cases() -> tuple[np.ndarray, np.ndarray]:
    """(acc, scale): the rounding's edges, each with both signs."""
    rng = np.random.default_rng(7)
    parts = [_double_rounding_cases(200)]
    for exponent in (1, 2, 3, 8, 20):  # scale 2^-e: acc * scale lands on every half
        acc = np.arange(-300 << exponent, 300 << exponent, 1 << max(exponent - 1, 0), dtype=np.int64)
        parts.append((acc[::max(1, len(acc) // 1200)], np.full(len(acc[::max(1, len(acc) // 1200)]), 2.0**-exponent,
                                                                  np.float32)))
    big = rng.integers(2**24, 2**31, 500)  # (float)acc itself rounds
    parts.append((np.concatenate([big, [2**31 - 1, 2**24 + 1, 2**24 + 3]]),
                  (rng.uniform(0.5, 1, 503) * 2.0 ** rng.integers(-40, -20, 503)).astype(np.float32)))
    rand = rng.integers(-2**20, 2**20, 1000)
    parts.append((rand, (rng.uniform(0.5, 1, 1000) * 2.0 ** rng.integers(-22, 0, 1000)).astype(np.float32)))
    acc = np.concatenate([p[0] for p in parts])
    scale = np.concatenate([p[1] for p in parts])
    return np.concatenate([acc, -acc, [-2**31]]), np.concatenate([scale, scale, [np.float32(1e-9)]])


def test_the_integer_twin_equals_float32_everywhere(cases):
    acc, scale = cases
    for zero in ZEROS:
        assert np.array_equal(reference.requantize_integer(acc, scale, zero), reference.requantize(acc, scale, zero))


def test_the_edges_are_reached(cases):
    acc, scale = cases
    product = acc.astype(np.float32) * scale
    assert np.sum(product % 1 == 0.5) > 500 and np.sum(product % 1 == -0.5 + 1) > 500  # halves, both signs
    assert np.sum(np.abs(acc) > 2**24) > 500
    assert np.sum(product < -255) > 100 and np.sum(product > 255) > 100  # past both clamps


def _compile(tmp_path: Path, defines: list[str]) -> Path:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (apt-get install gcc)")
    source = tmp_path / "driver.c"
    source.write_text("#define REQUANT_FIXED 0\n" + template("kernels/common.c") + template("kernels/requantize.c")
                      + DRIVER)
    exe = tmp_path / "driver"
    subprocess.run([cc, *STRICT, "-O2", *defines, str(source), "-o", str(exe)], check=True)
    return exe


@pytest.mark.parametrize("defines", [[], ["-DMNIST_EDGE_SOFT_FLOAT=1"]], ids=["fpu", "integer"])
def test_the_compiled_c_equals_numpy(cases, tmp_path, defines):
    exe = _compile(tmp_path, defines)
    acc, scale = cases
    bits = scale.view(np.uint32)
    small = (np.abs(acc) <= 2**24).astype(int)  # the generator's proof per layer: here per value
    for zero in ZEROS:
        lines = "".join(f"{a} {b} {zero} {s}\n" for a, b, s in zip(acc.tolist(), bits.tolist(), small.tolist(),
                                                                      strict=True))
        done = subprocess.run([str(exe)], input=lines, capture_output=True, text=True, check=True)
        ours = np.array(done.stdout.split(), int)
        assert np.array_equal(ours, reference.requantize(acc, scale, zero)), zero


def test_onnxruntime_rounds_the_same_way(cases):
    """A 1x1 QLinearConv whose input sits at its zero point and whose bias holds the accumulators:
    each output channel is onnxruntime's requantization of one accumulator with its own scale
    (x_scale = y_scale = 1, so the channel's scale is its weight scale, exactly)."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    acc, scale = cases
    acc, scale = acc[np.abs(acc) < 2**31], scale[np.abs(acc) < 2**31]
    m = len(acc)
    for zero in ZEROS:
        inits = [numpy_helper.from_array(np.array(1.0, np.float32), "xs"), numpy_helper.from_array(np.uint8(3), "xz"),
                 numpy_helper.from_array(np.ones((m, 1, 1, 1), np.int8), "w"),
                 numpy_helper.from_array(scale, "ws"), numpy_helper.from_array(np.zeros(m, np.int8), "wz"),
                 numpy_helper.from_array(np.array(1.0, np.float32), "ys"),
                 numpy_helper.from_array(np.uint8(zero), "yz"), numpy_helper.from_array(acc.astype(np.int32), "b")]
        node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"])
        graph = helper.make_graph([node], "requantize", [helper.make_tensor_value_info("x", TensorProto.UINT8,
                                                                                       [1, 1, 1, 1])],
                                  [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, m, 1, 1])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        onnx.checker.check_model(model)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        (theirs,) = session.run(None, {"x": np.full((1, 1, 1, 1), 3, np.uint8)})
        assert np.array_equal(theirs.reshape(-1), reference.requantize(acc, scale, zero)), zero


def test_pooling_before_requantization_is_exact(cases):
    """max(requantize(a), requantize(b)) == requantize(max(a, b)) for a positive scale: the
    kernels take the pooling's maximum on the int32 sums and requantize once."""
    acc, scale = cases
    fixed_range = scale >= 2.0**-30  # --requant fixed represents shifts up to 62
    acc, scale = acc[fixed_range], scale[fixed_range]
    other = np.random.default_rng(3).permutation(acc)
    for zero in ZEROS:
        for requantize in (reference.requantize, reference.requantize_fixed, reference.requantize_integer):
            pooled = requantize(np.maximum(acc, other), scale, zero)
            assert np.array_equal(pooled, np.maximum(requantize(acc, scale, zero), requantize(other, scale, zero)))
