"""QLinearAdd as onnxruntime computes it on x86 (MLAS's AVX2 kernel, MlasQLinearAddKernelAvx2Helper):
with ratio_a = a_scale / c_scale and ratio_b = b_scale / c_scale in float32 and
fixed = c_zero - (ratio_a * a_zero + ratio_b * b_zero), each output is
    round_half_even(fma(a, ratio_a, fma(b, ratio_b, fixed))), saturated to 0-255,
on the raw uint8 inputs: two fused multiply-adds, each rounded once to float32. (On Arm MLAS
uses a fixed-point multiplier and shift instead; the proof below is against the onnxruntime of
the machine that generates the C.)

The C (and `reference.add`) computes each fused multiply-add in double, where the product of a
byte and a float32 is exact and so is its sum with a float32 of these magnitudes, then rounds to
float32 once: the same bits as the hardware FMA. `add_parameters` proves it for the layer's
scales on every pair of input bytes against onnxruntime itself, and refuses the layer otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_edge.errors import CodegenError


def fma32(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """float32(x * y + z) rounded once, for bytes x and float32 y, z: exact in float64 first."""
    return (np.asarray(x, np.float64) * np.asarray(y, np.float32).astype(np.float64)
            + np.asarray(z, np.float32).astype(np.float64)).astype(np.float32)


def add_values(a: np.ndarray, b: np.ndarray, ratio_a: float, ratio_b: float, fixed: float) -> np.ndarray:
    """uint8 a, b (broadcastable) -> the QLinearAdd output bytes."""
    t = fma32(b, np.float32(ratio_b), np.float32(fixed))
    c = fma32(a, np.float32(ratio_a), t)
    return np.clip(np.rint(c), 0, 255).astype(np.uint8)


def _fixed_candidates(ratio_a: np.float32, ratio_b: np.float32, za: int, zb: int, zc: int) -> list[np.float32]:
    """c_zero - (ratio_a * a_zero + ratio_b * b_zero) as a compiler may evaluate it: each operation
    rounded to float32, or the products fused into the sum."""
    f = np.float32
    plain = f(f(zc) - f(f(ratio_a * f(za)) + f(ratio_b * f(zb))))
    fused_b = f(f(zc) - fma32(zb, ratio_b, f(ratio_a * f(za))))
    fused_a = f(f(zc) - fma32(za, ratio_a, f(ratio_b * f(zb))))
    return list(dict.fromkeys([plain, fused_b, fused_a]))


def add_parameters(reader: Any, node: Any) -> tuple[float, float, float]:
    """(ratio_a, ratio_b, fixed) of a QLinearAdd node, proven against onnxruntime on every pair of
    input bytes (or every byte against each constant of B)."""
    values = reader.values
    scale = [np.float32(np.asarray(values[node.input[i]]).reshape(-1)[0]) for i in (1, 4, 6)]
    zero = [int(np.asarray(values[node.input[i]]).reshape(-1)[0]) if node.input[i] else 0 for i in (2, 5, 7)]
    if any(not np.isfinite(s) or s <= 0 for s in scale):
        raise CodegenError(f"node {node.name}: QLinearAdd with a scale that is not positive", reader.path)
    ratio_a, ratio_b = np.float32(scale[0] / scale[2]), np.float32(scale[1] / scale[2])
    a, b = _byte_pairs(values.get(node.input[3]))
    theirs = _onnxruntime_add(node, values, a, b)
    for fixed in _fixed_candidates(ratio_a, ratio_b, zero[0], zero[1], zero[2]):
        if np.array_equal(add_values(a, b, ratio_a, ratio_b, fixed), theirs):
            return float(ratio_a), float(ratio_b), float(fixed)
    raise CodegenError(f"node {node.name}: this QLinearAdd's arithmetic (scales {[float(s) for s in scale]}) is not "
                       "reproduced bit for bit by the C generator", reader.path)


def _byte_pairs(constant: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, b) pair of bytes; with a constant B, every byte a against each of its values."""
    if constant is None:
        grid = np.arange(256, dtype=np.uint8)
        return np.repeat(grid, 256), np.tile(grid, 256)
    b = np.asarray(constant, np.uint8).reshape(-1)
    return np.repeat(np.arange(256, dtype=np.uint8), len(b)), np.tile(b, 256)


def _onnxruntime_add(node: Any, values: dict[str, np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from onnx import helper

    from mnist_edge.codegen.ortnodes import run_nodes

    inputs = ["a", *node.input[1:3], "b", *node.input[4:8]]
    add = helper.make_node("QLinearAdd", inputs, ["c"], domain="com.microsoft")
    return run_nodes([add], {"a": a, "b": b}, "c", values)


__all__ = ["add_parameters", "add_values", "fma32"]
