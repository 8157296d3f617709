"""IntegerModel -> model.h and model.c: one entry point, weights as static const arrays, every
intermediate map in one static arena planned from what is alive at once.

Maps are channels-last (HWC) in C. Plan: the quantized input, then one step per layer, a
convolution and the max pooling after it fused into one step (so the convolution's full output
never exists). Each step reads its input at one end of the arena and writes its output at the
other, so the arena needs only the largest input + output of any step. Generation is
deterministic: the same model gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from mnist_edge.codegen.graph import Conv, Gemm, GlobalAveragePool, IntegerModel, Layer, MaxPool
from mnist_edge.codegen.reference import fixed_point
from mnist_edge.errors import CodegenError

PREFIX = "mnist_edge"
HEADER = "model.h"
SOURCE = "model.c"


@dataclass(frozen=True)
class Step:
    layer: Layer
    pool: MaxPool | None  # the max pooling fused into a convolution
    in_bytes: int
    out_bytes: int

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.pool or self.layer).out_shape


def plan(model: IntegerModel) -> list[Step]:
    steps: list[Step] = []
    layers = list(model.layers)
    while layers:
        layer = layers.pop(0)
        pool = layers.pop(0) if isinstance(layer, Conv) and layers and isinstance(layers[0], MaxPool) else None
        out_shape = (pool or layer).out_shape
        steps.append(Step(layer, pool, int(np.prod(layer.in_shape)), int(np.prod(out_shape))))
    return steps


def arena_bytes(steps: list[Step]) -> int:
    return max(step.in_bytes + step.out_bytes for step in steps)


def float_literal(value: float) -> str:
    """A float32 value as an exact C99 hexadecimal literal."""
    value = float(np.float32(value))
    return f"{value.hex()}f" if value else "0.0f"


def scale_items(scale: np.ndarray, requant: str) -> list[str]:
    """Requantization scales as C `scale_t` initializers: exact float32 literals, or
    {multiplier, shift} pairs for --requant fixed."""
    if requant == "fixed":
        multipliers, shifts = fixed_point(np.atleast_1d(scale))
        return [f"{{{m}, {sh}}}" for m, sh in zip(multipliers.tolist(), shifts.tolist(), strict=True)]
    return [float_literal(v) for v in np.atleast_1d(scale)]


def _array(ctype: str, name: str, values: np.ndarray | list[str], per_line: int = 16) -> str:
    items = values if isinstance(values, list) else [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(items)}] = {{\n    {body}\n}};\n"


def folded_bias(layer: Conv) -> np.ndarray:
    """bias - x_zero * sum(weights) per output channel: the convolution kernel then multiplies
    raw uint8 values (exact integer arithmetic; a value outside int32 is refused)."""
    folded = layer.bias.astype(np.int64) - layer.x_zero * layer.weights.astype(np.int64).sum(axis=(1, 2, 3))
    if np.abs(folded).max() >= 2**31 - 2**24:  # headroom for the accumulated products
        raise CodegenError(f"node {layer.name}: bias and zero point overflow an int32 accumulator")
    return folded.astype(np.int32)


def c_weights(layer: Conv | Gemm) -> np.ndarray:
    """Weights in the order the kernels read them: convolutions [kh][kw][c][m]; a Gemm's columns
    in channels-last order (its input map is HWC in C, CHW in the model)."""
    if isinstance(layer, Conv):  # [m][kh][kw][c]: one contiguous row of taps per output channel
        return layer.weights.transpose(0, 2, 3, 1)
    c, h, w = layer.in_shape
    n = layer.weights.shape[0]
    return layer.weights.reshape(n, c, h, w).transpose(0, 2, 3, 1).reshape(n, -1)


def _params(index: int, layer: Conv | Gemm, requant: str) -> str:
    bias = folded_bias(layer) if isinstance(layer, Conv) else layer.bias
    return (_array("int8_t", f"w{index}", c_weights(layer)) + _array("int32_t", f"b{index}", bias)
            + _array("scale_t", f"s{index}", scale_items(layer.scale, requant), per_line=8))


def _call(index: int, step: Step, src: str, dst: str, requant: str) -> str:
    layer = step.layer
    c, h, w = layer.in_shape
    if isinstance(layer, Conv):
        m, _, kh, kw = layer.weights.shape
        k, s = (step.pool.kernel[0], step.pool.stride[0]) if step.pool else (1, 1)
        _, oh, ow = step.out_shape
        return (f"    conv_pool({src}, {h}, {w}, {c}, w{index}, b{index}, s{index}, {m}, {kh}, {kw}, "
                f"{layer.stride[0]}, {layer.stride[1]}, {layer.pads[0]}, {layer.pads[1]}, {layer.x_zero}, "
                f"{layer.y_zero}, {k}, {s}, {dst}, {oh}, {ow}); /* {layer.name}"
                f"{' + ' + step.pool.name if step.pool else ''} */\n")
    if isinstance(layer, MaxPool):
        _, oh, ow = layer.out_shape
        return (f"    max_pool({src}, {w}, {c}, {layer.kernel[0]}, {layer.stride[0]}, {dst}, {oh}, {ow});"
                f" /* {layer.name} */\n")
    if isinstance(layer, GlobalAveragePool):
        (scale,) = scale_items(np.float32(layer.scale), requant)
        scale = f"(scale_t){scale}" if requant == "fixed" else scale
        return (f"    global_average_pool({src}, {c}, {h * w}, {layer.x_zero}, {scale}, "
                f"{layer.y_zero}, {dst}); /* {layer.name} */\n")
    n, k = layer.weights.shape
    return (f"    gemm({src}, {k}, w{index}, b{index}, s{index}, {n}, {layer.x_zero}, {layer.y_zero}, {dst});"
            f" /* {layer.name} */\n")


def _kernel_switches(steps: list[Step], requant: str) -> str:
    """#defines that keep the kernels this model does not use out of the build (no unused code)."""
    used = {type(step.layer) for step in steps}
    switches = {"CONV_POOL": Conv, "MAX_POOL": MaxPool, "GLOBAL_AVERAGE_POOL": GlobalAveragePool, "GEMM": Gemm}
    convs = [step.layer for step in steps if isinstance(step.layer, Conv)]
    channels = max([conv.out_shape[0] for conv in convs] or [1])
    taps = max([int(np.prod(conv.weights.shape[1:])) for conv in convs] or [1])
    return (f"#define REQUANT_FIXED {int(requant == 'fixed')}\n"
            + "".join(f"#define NEED_{name} {int(kind in used)}\n" for name, kind in switches.items())
            + f"#define CONV_MAX_CHANNELS {channels}\n#define CONV_MAX_TAPS {taps}\n\n")


def header(model: IntegerModel, arena: int) -> str:
    c, h, w = model.input.shape
    upper = PREFIX.upper()
    return f"""/* Generated by mnist-edge: integer-only inference of {model.source.name}. Do not edit. */
#ifndef {upper}_MODEL_H
#define {upper}_MODEL_H

#include <stdint.h>

#define {upper}_PIXELS {c * h * w}        /* raw 0-255 pixels, {h} x {w}, light digit on dark */
#define {upper}_CLASSES {model.classes}
#define {upper}_ARENA_BYTES {arena}  /* all intermediate data (one static array) */
/* logit[i] = (scores[i] - {upper}_SCORE_ZERO) * {upper}_SCORE_SCALE */
#define {upper}_SCORE_ZERO {model.output_zero}
#define {upper}_SCORE_SCALE {float_literal(model.output_scale)}

/* Classify one image: writes the quantized logits (uint8, onnxruntime's bit for bit) and returns
 * the digit (the first highest score). Not reentrant: it uses one static arena. */
int {PREFIX}_predict(const uint8_t pixels[{upper}_PIXELS], uint8_t scores[{upper}_CLASSES]);

#endif
"""


def source(model: IntegerModel, requant: str = "float") -> tuple[str, str]:
    """(model.h, model.c) text; `requant`: "float" (onnxruntime's, bit for bit) or "fixed"
    (integer only, `reference.requantize_fixed`)."""
    steps = plan(model)
    arena = arena_bytes(steps)  # the first step's input is the quantized image
    upper = PREFIX.upper()
    kernels = resources.files("mnist_edge.codegen").joinpath("templates/kernels.c").read_text(encoding="utf-8")
    parts = [f"/* Generated by mnist-edge from {model.source.name}. Do not edit. */\n",
             f'#include "{HEADER}"\n\n', _kernel_switches(steps, requant), kernels, "\n",
             _array("uint8_t", "input_table", model.input.table)]
    for index, step in enumerate(steps):
        if isinstance(step.layer, (Conv, Gemm)):
            parts.append(_params(index, step.layer, requant))
    parts.append(f"\nstatic uint8_t arena[{upper}_ARENA_BYTES];\n\n")
    parts.append(f"int {PREFIX}_predict(const uint8_t pixels[{upper}_PIXELS], uint8_t scores[{upper}_CLASSES]) {{\n")
    parts.append("    int i, best = 0;\n")
    parts.append(f"    for (i = 0; i < {upper}_PIXELS; ++i) arena[i] = input_table[pixels[i]];\n")
    at_start = True  # where the current input lies: the start of the arena, else its end
    for index, step in enumerate(steps):
        src = "arena" if at_start else f"arena + {arena - step.in_bytes}"
        dst = f"arena + {arena - step.out_bytes}" if at_start else "arena"
        parts.append(_call(index, step, src, dst, requant))
        at_start = not at_start
    last = "arena" if at_start else f"(arena + {arena - steps[-1].out_bytes})"
    parts.append(f"    for (i = 0; i < {upper}_CLASSES; ++i) {{\n        scores[i] = {last}[i];\n"
                 f"        if (scores[i] > scores[best]) best = i;\n    }}\n    return best;\n}}\n")
    return header(model, arena), "".join(parts)
