"""The numpy twin of the generated C's arithmetic (mnist_edge/codegen/reference.py), layer by
layer, against onnxruntime's own QLinear kernels on hand-built graphs where a shipped model has no
such layer (non-square strides, zero points that are not 0, a constant added per channel), and
against its own definitions where onnxruntime has no integer-only mode (--requant fixed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from mnist_edge.codegen import reference  # noqa: E402
from mnist_edge.codegen.graph import INPUT, Add, AveragePool, Conv, InputQuant, IntegerModel, MaxPool  # noqa: E402
from mnist_edge.errors import CodegenError  # noqa: E402
from mnist_edge.ortsession import open_session  # noqa: E402

RNG = np.random.default_rng(2026)


def run_onnx(node, x: np.ndarray, initializers=(), domains=(("", 17), ("com.microsoft", 1))) -> np.ndarray:
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domains])
    return open_session(model.SerializeToString()).run(None, {"x": x})[0]


def scalar(name: str, value, dtype) -> TensorProto:
    return helper.make_tensor(name, dtype, [], [value])


def test_max_pooling_with_unequal_strides_and_kernel_equals_onnxruntime() -> None:
    x = RNG.integers(0, 256, (2, 3, 11, 9), dtype=np.uint8)
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 1])
    layer = MaxPool("p", kernel=(3, 2), stride=(2, 1), in_shape=(3, 11, 9), out_shape=(3, 5, 8))
    ours = reference.run_layer(layer, x)
    assert ours.shape == (2, 3, 5, 8)
    np.testing.assert_array_equal(ours, run_onnx(node, x))


@pytest.mark.parametrize("x_zero, y_zero", [(0, 0), (37, 201), (250, 3)])
def test_average_pooling_with_zero_points_equals_onnxruntimes_qlinear_kernel(x_zero: int, y_zero: int) -> None:
    x = RNG.integers(0, 256, (2, 4, 10, 7), dtype=np.uint8)
    x_scale, y_scale = 0.0473, 0.0291
    node = helper.make_node("QLinearAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft",
                            kernel_shape=[3, 2], strides=[2, 1])
    inits = [scalar("xs", x_scale, TensorProto.FLOAT), scalar("xz", x_zero, TensorProto.UINT8),
             scalar("ys", y_scale, TensorProto.FLOAT), scalar("yz", y_zero, TensorProto.UINT8)]
    layer = AveragePool("a", kernel=(3, 2), stride=(2, 1), pads=(0, 0, 0, 0), count_include_pad=False,
                        x_scale=x_scale, x_zero=x_zero, y_scale=y_scale, y_zero=y_zero,
                        in_shape=(4, 10, 7), out_shape=(4, 4, 6))
    ours = reference.average_pool(layer, x)
    assert ours.dtype == np.uint8 and ours.shape == (2, 4, 4, 6)
    np.testing.assert_array_equal(ours, run_onnx(node, x, inits))


@pytest.mark.parametrize("constant", [np.array([3, 200, 17, 90, 255], np.uint8), np.array([77], np.uint8)],
                         ids=["per-channel", "one-value"])
def test_a_constant_addend_is_read_per_channel(constant: np.ndarray) -> None:
    # Five channels on a 3 x 4 map: a constant laid along any axis but the channels' would not broadcast.
    x = RNG.integers(0, 256, (2, 5, 3, 4), dtype=np.uint8)
    layer = Add("add", ratio_a=0.75, ratio_b=1.25, fixed=-12.5, in_shape=(5, 3, 4), out_shape=(5, 3, 4),
                constant_b=constant)
    spelled_out = np.broadcast_to(constant.reshape(1, -1, 1, 1), x.shape)
    without_constant = Add(**{**layer.__dict__, "constant_b": None})
    np.testing.assert_array_equal(reference.run_layer(layer, x),
                                  reference.run_layer(without_constant, x, other=spelled_out))


def _conv(scale: float, y_zero: int = 0, weight_limit: int = 127, seed: int = 1) -> Conv:
    weights = np.random.default_rng(seed).integers(-weight_limit, weight_limit + 1, (3, 2, 3, 3), dtype=np.int8)
    bias = np.array([5, -9, 1000 if weight_limit > 10 else 3], np.int32)
    return Conv("c", weights=weights, bias=bias, scale=np.full(3, scale, np.float32), x_zero=11, y_zero=y_zero,
                stride=(1, 2), pads=(1, 0, 0, 1), in_shape=(2, 6, 7), out_shape=(3, 5, 3))


def test_conv_accumulators_are_int32_and_use_both_strides() -> None:
    layer, x = _conv(0.01), np.random.default_rng(2).integers(0, 256, (2, 2, 6, 7), dtype=np.uint8)
    acc = reference.conv_accumulators(layer, x)
    assert acc.dtype == np.int32 and acc.shape == (2, 3, 5, 3)
    padded = np.pad(x.astype(np.int32) - 11, ((0, 0), (0, 0), (1, 0), (0, 1)))
    want = np.array([[[[np.sum(padded[n, :, i:i + 3, 2 * j:2 * j + 3] * layer.weights[m]) + layer.bias[m]
                        for j in range(3)] for i in range(5)] for m in range(3)] for n in range(2)])
    np.testing.assert_array_equal(acc, want)


def test_fixed_mode_requantizes_with_integers_and_rounds_halves_up() -> None:
    # scale 1/2 puts every odd accumulator on a half: "float" rounds it to even, "fixed" up. Small
    # weights and pixels near the zero point keep the accumulators inside the clamps.
    layer = _conv(0.5, y_zero=100, weight_limit=2)
    x = np.random.default_rng(3).integers(6, 17, (4, 2, 6, 7), dtype=np.uint8)
    acc = reference.conv_accumulators(layer, x)
    fixed, floating = reference.run_layer(layer, x, "fixed"), reference.run_layer(layer, x, "float")
    np.testing.assert_array_equal(fixed, reference.requantize_fixed(acc, layer.scale[None, :, None, None], 100))
    np.testing.assert_array_equal(floating, reference.requantize(acc, layer.scale[None, :, None, None], 100))
    odd = (acc % 2 == 1) & (np.abs(acc // 2) < 90)
    assert odd.any() and np.all(fixed[odd].astype(int) == floating[odd].astype(int) + (acc[odd] // 2 % 2 == 0))
    model = IntegerModel(source=Path("m.onnx"), input=InputQuant(np.arange(256, dtype=np.uint8), (2, 6, 7)),
                         layers=[Conv(**{**layer.__dict__, "inputs": (INPUT,), "output": "y"})], output_scale=1.0,
                         output_zero=0, labels=[], normalization=None)
    pixels = x  # through the identity table: the model's input is x itself
    assert np.array_equal(reference.scores(model, pixels, "fixed"), fixed.reshape(4, -1))
    assert np.array_equal(reference.layer_outputs(model, pixels, "fixed")[-1], fixed)
    assert np.array_equal(reference.scores(model, pixels), floating.reshape(4, -1))


@pytest.mark.parametrize("scale", [np.float32(2.0**31), np.float32(2.0**-40)], ids=["too-large", "too-small"])
def test_fixed_point_refuses_a_scale_it_cannot_represent(scale) -> None:
    with pytest.raises(CodegenError, match=r"^a requantization scale outside what --requant fixed represents: "):
        reference.fixed_point(np.array([0.25, scale], np.float32))


def test_fixed_point_is_exact_and_int32() -> None:
    scales = np.array([1.0, 0.5, 0.0123, 2.0**29, 2.0**-31], np.float32)
    multiplier, shift = reference.fixed_point(scales)
    assert multiplier.dtype == shift.dtype == np.int32
    assert np.all((multiplier >= 2**30) & (multiplier.astype(np.int64) < 2**31))
    assert np.all(multiplier.astype(np.float64) * 2.0 ** -shift.astype(np.float64) == scales.astype(np.float64))


def test_round_shift_by_one_rounds_halves_to_even() -> None:
    values = np.array([0, 1, 2, 3, 5, 6, 7], np.int64)
    np.testing.assert_array_equal(reference._round_shift(values, np.int64(1)), [0, 0, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(reference._round_shift(values, np.int64(0)), values)


def test_the_integer_twin_takes_int32_accumulators_and_a_python_float_scale() -> None:
    acc = np.array([2**31 - 1, -(2**31) + 1, 123_456_789, -7, 0, 1], np.int32)
    for scale in (0.3, 1e-7, 4.5e-10):
        np.testing.assert_array_equal(reference.requantize_integer(acc, scale, 17),
                                      reference.requantize(acc, np.float32(scale), 17))
