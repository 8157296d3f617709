"""The generated C's arithmetic in numpy: int32 accumulation of (x - x_zero) * w, then
requantization, layer by layer. `--verify` uses it to name the first layer where C and
onnxruntime part, and the tests hold the C code to it.

Requantization modes:
- "float" (default, onnxruntime's): float32(acc) * scale, clamped in float to
  [-y_zero, 255 - y_zero], rounded half to even, plus y_zero (MLAS MlasRequantizeOutput);
- "fixed" (integer only, for cores without an FPU): scale = multiplier * 2^-shift with a Q31
  multiplier (exact: a float32 scale has 24 significant bits), acc * multiplier in int64, one
  rounding half up, clamp, y_zero. It differs from "float" only where float32 rounds the
  product across a half, so by at most one step per activation.
"""

from __future__ import annotations

import numpy as np

from mnist_edge.codegen.add import add_values
from mnist_edge.codegen.graph import (
    INPUT,
    Add,
    AveragePool,
    Conv,
    Gemm,
    GlobalAveragePool,
    IntegerModel,
    Layer,
    MaxPool,
    Table,
)
from mnist_edge.errors import CodegenError

MODES = ("float", "fixed")


def fixed_point(scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 scales -> (Q31 multipliers in [2^30, 2^31), total right shifts), exactly."""
    mantissa, exponent = np.frexp(np.asarray(scale, np.float32).astype(np.float64))
    multiplier = np.round(mantissa * 2.0**31).astype(np.int64)  # exact: 24 significant bits
    shift = 31 - exponent.astype(np.int64)
    if np.any(multiplier < 2**30) or np.any(shift < 1) or np.any(shift > 62):
        raise CodegenError(f"a requantization scale outside what --requant fixed represents: {scale}")
    return multiplier.astype(np.int32), shift.astype(np.int32)


def requantize_fixed(acc: np.ndarray, scale: np.ndarray, y_zero: int) -> np.ndarray:
    multiplier, shift = fixed_point(scale)
    shift = shift.astype(np.int64)
    product = acc.astype(np.int64) * multiplier.astype(np.int64) + (np.int64(1) << (shift - 1))
    q = np.right_shift(product, shift)  # floor: half rounds up
    return (np.clip(q, -y_zero, 255 - y_zero) + y_zero).astype(np.uint8)


def requantize(acc: np.ndarray, scale: np.ndarray, y_zero: int) -> np.ndarray:
    """int32 accumulators -> uint8, as MLAS does it (np.rint rounds half to even)."""
    scaled = acc.astype(np.float32) * np.asarray(scale, np.float32)
    clamped = np.minimum(np.maximum(scaled, np.float32(-y_zero)), np.float32(255 - y_zero))
    return (np.rint(clamped).astype(np.int32) + y_zero).astype(np.uint8)


def _bit_length(values: np.ndarray) -> np.ndarray:
    """Bits of non-negative int64 values below 2^53 (exact through float64)."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def _round_shift(values: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """values / 2^shift rounded half to even (shift >= 0), in integers."""
    shift = np.asarray(shift, np.int64)
    quotient = values >> shift
    rest = values & ((np.int64(1) << shift) - 1)
    half = (np.int64(1) << shift) >> 1
    up = (rest > half) | ((rest == half) & (shift > 0) & (quotient & 1 == 1))
    return quotient + up


def requantize_integer(acc: np.ndarray, scale: np.ndarray, y_zero: int) -> np.ndarray:
    """`requantize` computed with integers only, the numpy twin of the C's path for cores without
    an FPU (requantize.c, MNIST_EDGE_SOFT_FLOAT): float32(acc) * scale is two roundings to 24
    significant bits, half to even (|acc| to float, then the exact product with the scale's
    mantissa); that value is rounded half to even to an integer and clamped. Equal to `requantize`
    for every int32 and every positive normal float32 scale."""
    acc = np.asarray(acc, np.int64)
    bits = np.broadcast_to(np.asarray(scale, np.float32), acc.shape).view(np.uint32).astype(np.int64)
    mantissa, shift = (bits & 0x7FFFFF) | 0x800000, 150 - (bits >> 23)
    magnitude = np.abs(acc)
    extra = np.maximum(_bit_length(magnitude) - 24, 0)  # (float)acc: 24 significant bits
    magnitude, shift = _round_shift(magnitude, extra), shift - extra
    product = magnitude * mantissa  # exact: < 2^49
    extra = np.maximum(_bit_length(product) - 24, 0)  # the float32 product
    product, shift = _round_shift(product, extra), shift - extra
    rounded = np.where(shift <= 0, 256, np.where(shift > 26, 0, _round_shift(product, np.clip(shift, 0, 26))))
    signed = np.where(acc < 0, -np.minimum(rounded, 256), np.minimum(rounded, 256))
    return (np.clip(signed, -y_zero, 255 - y_zero) + y_zero).astype(np.uint8)


def conv_accumulators(layer: Conv, x: np.ndarray) -> np.ndarray:
    """x uint8 [N, C, H, W] -> int32 [N, M, H', W'] (bias included)."""
    top, left, bottom, right = layer.pads
    shifted = x.astype(np.int32) - layer.x_zero
    # Padding holds x_zero, which contributes 0 once the zero point is subtracted.
    shifted = np.pad(shifted, ((0, 0), (0, 0), (top, bottom), (left, right)))
    _, _, kh, kw = layer.weights.shape
    windows = np.lib.stride_tricks.sliding_window_view(shifted, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::layer.stride[0], ::layer.stride[1]]
    acc = np.einsum("nchwij,mcij->nmhw", windows, layer.weights.astype(np.int32), optimize=True)
    return acc.astype(np.int32) + layer.bias[None, :, None, None]


def run_layer(layer: Layer, x: np.ndarray, mode: str = "float", other: np.ndarray | None = None) -> np.ndarray:
    """One layer on uint8 maps [N, C, H, W] (OTHER: an Add's second map)."""
    requant = requantize_fixed if mode == "fixed" else requantize
    if isinstance(layer, Conv):
        return requant(conv_accumulators(layer, x), layer.scale[None, :, None, None], layer.y_zero)
    if isinstance(layer, MaxPool):
        windows = np.lib.stride_tricks.sliding_window_view(x, layer.kernel, axis=(2, 3))
        return windows[:, :, ::layer.stride[0], ::layer.stride[1]].max(axis=(4, 5))
    if isinstance(layer, GlobalAveragePool):
        size = x.shape[2] * x.shape[3]
        acc = x.astype(np.int32).sum(axis=(2, 3)) - layer.x_zero * size
        return requant(acc, np.float32(layer.scale), layer.y_zero)[:, :, None, None]
    if isinstance(layer, AveragePool):
        return average_pool(layer, x)
    if isinstance(layer, Table):
        return layer.table[x]
    if isinstance(layer, Add):
        b = other if other is not None else _constant_b(layer, x.shape)
        return add_values(x, b, layer.ratio_a, layer.ratio_b, layer.fixed)
    return dense(layer, x, requant)


def dense(layer: Gemm, x: np.ndarray, requant) -> np.ndarray:
    """A dense layer: the map flattened in the model's own order of its axes (CHW, or HWC after a
    transpose to NHWC), times the weights' columns."""
    axes = [1 + "chw".index(a) for a in layer.flatten_order]
    flat = x.transpose(0, *axes).reshape(len(x), -1).astype(np.int32) - layer.x_zero
    acc = flat @ layer.weights.astype(np.int32).T + layer.bias
    return requant(acc, layer.scale, layer.y_zero)[:, :, None, None]


def _constant_b(layer: Add, shape: tuple[int, ...]) -> np.ndarray:
    b = layer.constant_b
    return np.broadcast_to(b.reshape(1, -1, 1, 1) if b.size > 1 else b.reshape(1, 1, 1, 1), shape)


def average_pool(layer: AveragePool, x: np.ndarray) -> np.ndarray:
    """QLinearAveragePool in float32 in onnxruntime's order: dequantize, sum the window row by row,
    divide by the count, then y / y_scale + y_zero rounded half to even and saturated."""
    f32 = np.float32
    dequantized = f32(layer.x_scale) * (x.astype(np.int32) - layer.x_zero).astype(f32)
    kh, kw = layer.kernel
    windows = np.lib.stride_tricks.sliding_window_view(dequantized, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::layer.stride[0], ::layer.stride[1]]
    total = np.zeros(windows.shape[:4], f32)
    for i in range(kh):
        for j in range(kw):
            total = (total + windows[..., i, j]).astype(f32)
    total = (total / f32(kh * kw)).astype(f32)
    scaled = (total / f32(layer.y_scale) + f32(layer.y_zero)).astype(f32)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def layer_outputs(model: IntegerModel, pixels: np.ndarray, mode: str = "float") -> list[np.ndarray]:
    """Raw pixels uint8 [N, H, W] -> the output of every layer (uint8 [N, C, H, W]), scores last."""
    maps = {INPUT: model.input.table[pixels].reshape(len(pixels), *model.input.shape)}
    outputs = []
    for layer in model.layers:
        inputs = [maps[name] for name in layer.inputs]
        maps[layer.output] = run_layer(layer, inputs[0], mode, inputs[1] if len(inputs) > 1 else None)
        outputs.append(maps[layer.output])
    return outputs


def scores(model: IntegerModel, pixels: np.ndarray, mode: str = "float") -> np.ndarray:
    """uint8 [N, classes]: the quantized logits."""
    return layer_outputs(model, pixels, mode)[-1].reshape(len(pixels), -1)
