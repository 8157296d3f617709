"""IntegerModel -> model.h and model.c: one entry point, weights as static const arrays, every map
in one static arena, laid out by the plan (`plan.py`: rows streamed through rings).

The C is assembled from template files, never from strings scattered through the logic:
`templates/kernels/` holds the kernels (shared helpers and requantization, one file of dot
products per kernel family, chosen in the C by the compiler's own macros, and the layers written
once over those dot products); `templates/steps/` holds one small loop per kind of step, filled
with the layer's constant shapes. Generation is deterministic: the same model gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from string import Template

import numpy as np

from mnist_edge.codegen.add import fma32
from mnist_edge.codegen.graph import Add, AveragePool, Conv, Gemm, GlobalAveragePool, IntegerModel, MaxPool, Table
from mnist_edge.codegen.plan import CHANNEL_BLOCK, TAP_GROUP, Buffer, Plan, Step, accumulator_bound, make_plan, round_up
from mnist_edge.codegen.reference import fixed_point
from mnist_edge.errors import CodegenError

PREFIX = "mnist_edge"
HEADER = "model.h"
SOURCE = "model.c"
FLOAT_EXACT_BITS = 24  # float32 holds every integer up to 2^24: the cheap path of the integer requantization
STEP_TEMPLATES = {type(None): "input.c", Conv: "conv.c", MaxPool: "max_pool.c", GlobalAveragePool:
                  "global_average_pool.c", Gemm: "gemm.c", AveragePool: "average_pool.c", Add: "add.c",
                  Table: "table.c"}
ELEMENTWISE = (Add, Table, AveragePool)  # their kernels are in model.c only when a model has one


def template(name: str) -> str:
    return resources.files("mnist_edge.codegen").joinpath(f"templates/{name}").read_text(encoding="utf-8")


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


def _word_aligned_bytes(name: str, values: np.ndarray) -> str:
    """int8 weights in a union with their words: the portable kernels read bytes (`v`), the
    word-at-a-time ones aligned words (`words`, little-endian targets)."""
    items = [str(int(v)) for v in values.reshape(-1)]
    lines = ",\n        ".join(", ".join(items[i:i + 16]) for i in range(0, len(items), 16))
    return (f"static const union {{\n    int8_t v[{len(items)}];\n    uint32_t words[{len(items) // 4}];\n}} "
            f"{name} = {{{{\n        {lines}\n}}}};\n")


def taps(layer: Conv | Gemm) -> np.ndarray:
    """Weights as [output channel][taps], in the order the kernels read the input (a patch,
    plan.py): channels-last, a convolution's kernel rows of kw * c taps each padded with zero
    weights to whole groups of 4 ([kh][kw][c] + padding); a dense layer's columns in its input
    map's HWC order (the model flattens CHW, or HWC after a transpose to NHWC)."""
    if isinstance(layer, Conv):
        m, c, kh, kw = layer.weights.shape
        rows = layer.weights.transpose(0, 2, 3, 1).reshape(m, kh, kw * c)
        padded = np.zeros((m, kh, round_up(kw * c, TAP_GROUP)), np.int8)
        padded[:, :, :kw * c] = rows
        return padded.reshape(m, -1)
    return layer.weights[:, hwc_columns(layer.in_shape, layer.flatten_order)]


def hwc_columns(shape: tuple[int, int, int], order: tuple[str, ...]) -> np.ndarray:
    """For each byte of a map stored channels-last (HWC), the column of a dense layer's weights
    that multiplies it: the column index walks the map's axes in ORDER (the model's flatten)."""
    sizes = dict(zip("chw", shape, strict=True))
    grid = dict(zip("chw", np.indices(shape), strict=True))
    column = np.zeros(shape, np.int64)
    for axis in order:
        column = column * sizes[axis] + grid[axis]
    return column.transpose(1, 2, 0).reshape(-1)


def blocked_weights(layer: Conv | Gemm) -> np.ndarray:
    """The weights in the order every kernel family reads them: [blocks of 16 output channels]
    [groups of 4 taps][16 channels][4 taps], zero-padded to whole blocks and groups (a zero
    weight adds nothing to the sums). A vector kernel reads one group of a block as a vector; a
    pair kernel reads its two channels' 4-byte words, a block's row apart."""
    flat = taps(layer)
    m, count = flat.shape
    blocks, groups = -(-m // CHANNEL_BLOCK), -(-count // TAP_GROUP)
    padded = np.zeros((blocks * CHANNEL_BLOCK, groups * TAP_GROUP), np.int8)
    padded[:m, :count] = flat
    blocked = padded.reshape(blocks, CHANNEL_BLOCK, groups, TAP_GROUP).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(blocked).reshape(-1)


def pairs_fit_16_bits(layers: list[Conv | Gemm]) -> bool:
    """Every two adjacent taps of a group (0-1, 2-3) give a sum that fits 16 bits for any input:
    255 * (|w_a| + |w_b|) <= 32767, what AVX2's VPMADDUBSW needs to be exact."""
    for layer in layers:
        weights = np.abs(blocked_weights(layer).astype(np.int32)).reshape(-1, 2)
        if 255 * int(weights.sum(axis=1).max(initial=0)) > 32767:
            return False
    return True


def folded_bias(layer: Conv | Gemm) -> np.ndarray:
    """bias - x_zero * sum(weights) per output channel: the kernels then multiply raw uint8 values
    (exact integer arithmetic). A layer whose int32 accumulator could overflow for some input is
    refused: |bias| + 255 * sum|w| must stay below 2^31."""
    sums = layer.weights.astype(np.int64).reshape(len(layer.weights), -1).sum(axis=1)
    folded = layer.bias.astype(np.int64) - layer.x_zero * sums
    bound = int(accumulator_bound(layer.weights, folded).max())
    if bound >= 2**31:
        raise CodegenError(f"node {layer.name}: its int32 accumulator could overflow (up to {bound:,} for some "
                           "input, the limit is 2^31 - 1): the weights or the bias are too large for int8 kernels")
    return folded.astype(np.int32)


def fits_float(layer: Conv | Gemm) -> bool:
    """Every accumulator of the layer is exact as a float32 (|acc| <= 2^24): the integer
    requantization can skip rounding it to 24 bits."""
    return int(accumulator_bound(layer.weights, folded_bias(layer)).max()) <= 2**FLOAT_EXACT_BITS


def padded_to_pairs(values: np.ndarray) -> np.ndarray:
    """A per-channel array padded to whole blocks of channels with its last value (the kernels
    compute whole pairs or vectors; a padding channel's output is never stored)."""
    values = np.atleast_1d(values)
    extra = (-len(values)) % CHANNEL_BLOCK
    return np.concatenate([values, values[-1:].repeat(extra)]) if extra else values


def constant_bytes(model: IntegerModel, requant: str = "float") -> int:
    """Bytes of constant data in the library: weights, biases, scales, the input table and the
    padding rows, as the generated arrays hold them."""
    scale_bytes = 8 if requant == "fixed" else 4  # {multiplier, shift} or one float
    total = model.input.table.nbytes
    plan = make_plan(model)
    for step in plan.steps:
        layer = step.layer
        if isinstance(layer, (Conv, Gemm)):
            total += blocked_weights(layer).nbytes + padded_to_pairs(layer.bias).size * 4
            total += padded_to_pairs(layer.scale).size * scale_bytes
        elif isinstance(layer, GlobalAveragePool):
            total += scale_bytes
        total += _pad_row_bytes(step)
    return int(total)


def _pad_row_bytes(step: Step) -> int:
    layer = step.layer
    padded = isinstance(layer, Conv) and (layer.pads[0] or layer.pads[2])
    return step.source.stride + TAP_GROUP if padded else 0


def _params(step: Step, requant: str) -> str:
    layer, index = step.layer, step.index
    parts = [_word_aligned_bytes(f"w{index}", blocked_weights(layer)),
             _array("int32_t", f"b{index}", padded_to_pairs(folded_bias(layer))),
             _array("scale_t", f"s{index}", scale_items(padded_to_pairs(layer.scale), requant), per_line=8)]
    if _pad_row_bytes(step):
        parts.append(_array("uint8_t", f"pad{index}", np.full(_pad_row_bytes(step), step.source.zero, np.uint8)))
    return "".join(parts)


def _row_pointer(buffer: Buffer, row: str) -> str:
    """The C expression of the start (after the padding columns) of ROW in BUFFER's ring."""
    slot = row if not buffer.streamed else f"({row} % {buffer.rows})"
    return f"(arena + {buffer.offset} + {slot} * {buffer.stride} + {buffer.pad_left * buffer.channels})"


def _fields(step: Step) -> dict[str, object]:
    target = step.target
    fields: dict[str, object] = {"index": step.index, "ring": _describe(target),
                                 "row": _row_pointer(target, f"done{step.index}"),
                                 "out_shape": "x".join(map(str, step.out_shape)), "out_w": target.width}
    source = step.source
    if source is not None:
        # A convolution reads its rows from their first (padding) column; every other layer after it.
        skip = 0 if isinstance(step.layer, Conv) else source.pad_left * source.channels
        fields.update(source_map=f"(arena + {source.offset + skip})", source_ring=source.rows,
                      source_stride=source.stride, source_height=source.height, source_width=source.width,
                      in_shape="x".join(map(str, (source.channels, source.height, source.width))),
                      name=_comment(step), a_row=_row_pointer(source, f"done{step.index}"))
    if len(step.sources) > 1:
        fields.update(b_row=_row_pointer(step.sources[1], f"done{step.index}"))
    return fields


def _describe(buffer: Buffer) -> str:
    kept = f"a ring of {buffer.rows} rows" if buffer.streamed else "the whole map"
    return f"{kept} of {buffer.stride} bytes at arena + {buffer.offset}"


def _comment(step: Step) -> str:
    """The step's node names for a C comment ("*/" cannot occur in one)."""
    names = step.layer.name + (f" + {step.pool.name}" if step.pool else "")
    return names.replace("*/", "* /")


def _step_code(step: Step, requant: str) -> str:
    layer = step.layer
    fields = _fields(step)
    if layer is None:
        c, h, w = step.out_shape
        fields.update(shape=f"{c}x{h}x{w}", width=w * c)
    elif isinstance(layer, Conv):
        fields.update(_conv_fields(step))
    elif isinstance(layer, MaxPool):
        fields.update(c=layer.in_shape[0], k=layer.kernel[0], s=layer.stride[0])
    elif isinstance(layer, GlobalAveragePool):
        (scale,) = scale_items(np.float32(layer.scale), requant)
        size = layer.in_shape[1] * layer.in_shape[2]
        fields.update(c=layer.in_shape[0], x_zero=layer.x_zero, y_zero=layer.y_zero,
                      scale=f"(scale_t){scale}" if requant == "fixed" else scale,
                      small=int(255 * size <= 2**FLOAT_EXACT_BITS))
    elif isinstance(layer, Gemm):
        fields.update(k=layer.weights.shape[1], n=layer.weights.shape[0], y_zero=layer.y_zero,
                      small=int(fits_float(layer)))
    elif isinstance(layer, AveragePool):
        kh, kw = layer.kernel
        fields.update(c=layer.in_shape[0], kh=kh, kw=kw, sh=layer.stride[0], sw=layer.stride[1],
                      x_scale=float_literal(layer.x_scale), x_zero=layer.x_zero, y_scale=float_literal(layer.y_scale),
                      y_zero=layer.y_zero, count=kh * kw)
    elif isinstance(layer, Table):
        fields.update(count=layer.in_shape[0] * layer.in_shape[2])  # one row: width x channels
    else:
        fields.update(_add_fields(step))
    code = Template(template(f"steps/{STEP_TEMPLATES[type(layer)]}")).substitute(fields)
    opening = "(void) {\n"
    return code.replace(opening, opening + _padding_fill(step), 1)


def _add_fields(step: Step) -> dict[str, object]:
    layer = step.layer
    c, _, w = layer.in_shape
    b_row = _row_pointer(step.sources[1], f"done{step.index}") if len(step.sources) > 1 else f"addb{step.index}"
    return {"c": c, "w": w, "ratio_a": float_literal(layer.ratio_a), "b_row": b_row,
            "constant": int(layer.constant_b is not None)}


def _elementwise_params(step: Step) -> str:
    """An Add's fixed part for every value of b, fma(b, ratio_b, fixed), as 256 exact float32
    literals (and its constant b per channel); a Table's 256 bytes."""
    layer, index = step.layer, step.index
    if isinstance(layer, Table):
        return _array("uint8_t", f"table{index}", layer.table)
    t = fma32(np.arange(256), np.float32(layer.ratio_b), np.float32(layer.fixed))
    parts = [_array("float", f"addt{index}", [float_literal(v) for v in t], per_line=8)]
    if layer.constant_b is not None:
        c = layer.in_shape[0]
        per_channel = layer.constant_b if layer.constant_b.size == c else np.repeat(layer.constant_b, c)
        parts.append(_array("uint8_t", f"addb{index}", per_channel))
    return "".join(parts)


def _conv_fields(step: Step) -> dict[str, object]:
    layer, pool = step.layer, step.pool
    m, c, kh, kw = layer.weights.shape
    pk, ps = (pool.kernel[0], pool.stride[0]) if pool else (1, 1)
    sy, sx = layer.stride
    pt = layer.pads[0]
    index, small = step.index, int(fits_float(layer))
    common = f"ME_WEIGHTS(w{index}), b{index}, s{index}, {c}, {kh}, {kw}, {sx}, {m}"
    row = _row_pointer(step.target, f"done{index}")
    call = (f"conv_pool_row(window, PATCH, BEST, {common}, {pk}, {ps}, {step.target.width}, {layer.y_zero}, "
            f"{small}, {row})" if pool else
            f"conv_row(window, PATCH, {common}, {step.target.width}, {layer.y_zero}, {small}, {row})")
    pad_row = f"pad{index}" if _pad_row_bytes(step) else "0"
    return {"window": pk * kh, "pad_row": pad_row, "pk": pk, "ps": ps, "kh": kh, "sy": sy, "pt": pt, "call": call}


def _padding_fill(step: Step) -> str:
    """The first row of a step also sets its map's padding columns to the zero point: set here,
    not once per inference, because a whole map's bytes may have held an earlier, dead map."""
    buffer = step.target
    if not (buffer.pad_left or buffer.pad_right):
        return ""
    return (f"    if (done{step.index} == 0) fill_padding(arena + {buffer.offset}, {buffer.rows}, {buffer.stride}, "
            f"{buffer.pad_left}, {buffer.pad_right}, {buffer.width}, {buffer.channels}, {buffer.zero});\n")


def kernels(elementwise: bool = False) -> str:
    """The kernel templates in the order model.c needs them: the shared helpers and
    requantization, then one family per target chosen by the compiler's own macros (common.c):
    the pair kernels (portable C or Cortex-M DSP dot products under layers_pairs.c), or the x86
    SIMD layers, or the WebAssembly SIMD layers; the layers every family shares last, and
    (`elementwise`) Add, the tables and average pooling when the model has one."""
    return (template("kernels/common.c") + "\n" + template("kernels/requantize.c") + "\n"
            + "#if MNIST_EDGE_ISA == MNIST_EDGE_ISA_ARM_DSP\n" + template("kernels/dot_arm_dsp.c")
            + "#elif MNIST_EDGE_X86_KERNELS\n" + template("kernels/layers_x86.c")
            + "#elif MNIST_EDGE_ISA == MNIST_EDGE_ISA_WASM_SIMD128\n" + template("kernels/layers_wasm.c")
            + "#else\n" + template("kernels/dot_portable.c") + "#endif\n\n"
            + "#if MNIST_EDGE_PAIR_KERNELS\n" + template("kernels/layers_pairs.c") + "#endif\n\n"
            + template("kernels/layers.c")
            + ("\n" + template("kernels/layers_elementwise.c") if elementwise else ""))


PROFILE_HOOKS = """
/* A profiling build (-DMNIST_EDGE_PROFILE=1) calls these around each step's work on one row; the
 * caller defines them (the board harness reads SysTick). */
#if defined(MNIST_EDGE_PROFILE) && MNIST_EDGE_PROFILE
void mnist_edge_profile_begin(void);
void mnist_edge_profile_end(int step);
#else
#define mnist_edge_profile_begin() ((void)0)
#define mnist_edge_profile_end(step) ((void)0)
#endif
"""


def header(model: IntegerModel, plan: Plan) -> str:
    c, h, w = model.input.shape
    upper = PREFIX.upper()
    return f"""/* Generated by mnist-edge: integer-only inference of {model.source.name}. Do not edit. */
#ifndef {upper}_MODEL_H
#define {upper}_MODEL_H

#include <stdint.h>

#define {upper}_PIXELS {c * h * w}        /* raw 0-255 pixels, {h} x {w}, light digit on dark */
#define {upper}_CLASSES {model.classes}
#define {upper}_ARENA_BYTES {plan.arena_bytes}  /* all intermediate data (one static array) */
#define {upper}_STEPS {len(plan.steps)}  /* loops, for a profiling build (-D{upper}_PROFILE=1) */
/* logit[i] = (scores[i] - {upper}_SCORE_ZERO) * {upper}_SCORE_SCALE */
#define {upper}_SCORE_ZERO {model.output_zero}
#define {upper}_SCORE_SCALE {float_literal(model.output_scale)}

/* Classify one image: writes the quantized logits (uint8, onnxruntime's bit for bit) and returns
 * the digit (the first highest score). Not reentrant: it uses one static arena.
 * Kernels: Cortex-M DSP where the compiler defines __ARM_FEATURE_DSP, portable C elsewhere
 * (-D{upper}_ISA=0 forces it); without an FPU the float requantization is emulated exactly
 * in integers (-D{upper}_SOFT_FLOAT=1 forces it). Every build gives the same scores. */
int {PREFIX}_predict(const uint8_t pixels[{upper}_PIXELS], uint8_t scores[{upper}_CLASSES]);

#endif
"""


def source(model: IntegerModel, requant: str = "float", plan: Plan | None = None) -> tuple[str, str]:
    """(model.h, model.c) text; `requant`: "float" (onnxruntime's, bit for bit) or "fixed"
    (integer only, `reference.requantize_fixed`)."""
    plan = plan or make_plan(model)
    upper = PREFIX.upper()
    dense = [step.layer for step in plan.steps if isinstance(step.layer, (Conv, Gemm))]
    parts = [f"/* Generated by mnist-edge from {model.source.name}. Do not edit. */\n",
             f'#include "{HEADER}"\n\n', f"#define REQUANT_FIXED {int(requant == 'fixed')}\n",
             "#ifndef MNIST_EDGE_PAIRS_FIT_16 /* -DMNIST_EDGE_PAIRS_FIT_16=0 takes AVX2's one-product path */\n"
             f"#define MNIST_EDGE_PAIRS_FIT_16 {int(pairs_fit_16_bits(dense))}\n#endif\n", PROFILE_HOOKS, "\n",
             kernels(any(isinstance(s.layer, ELEMENTWISE) for s in plan.steps)), "\n",
             _array("uint8_t", "input_table", model.input.table)]
    for step in plan.steps:
        if isinstance(step.layer, (Conv, Gemm)):
            parts.append(_params(step, requant))
        elif isinstance(step.layer, (Add, Table)):
            parts.append(_elementwise_params(step))
    parts.append(f"\n/* Every map, as rings of rows (plan.py); word-aligned for the kernels' loads. */\n"
                 f"static uint32_t arena_words[({upper}_ARENA_BYTES + 3) / 4];\n"
                 "#define arena ((uint8_t *)arena_words)\n"
                 f"#define PATCH ((patch_t *)(void *)(arena + {plan.patch_offset}))\n"
                 f"#define BEST ((int32_t *)(void *)(arena + {plan.best_offset}))\n"
                 "static const uint8_t *input_pixels;\n\n")
    for step in plan.steps:
        parts.append(_step_code(step, requant) + "\n")
    parts.append(_predict(plan))
    return header(model, plan), "".join(parts)


def _predict(plan: Plan) -> str:
    """The entry point: reset the steps, then run the schedule (plan.schedule: which step makes its
    next row, in order), one flat loop, so only one step's frame is ever on the stack."""
    upper, last = PREFIX.upper(), plan.steps[-1]
    resets = " = ".join(f"done{step.index}" for step in plan.steps)
    table = ", ".join(f"step{step.index}" for step in plan.steps)
    scores = _row_pointer(last.target, "0")
    return (f"static void (*const steps[{len(plan.steps)}])(void) = {{{table}}};\n"
            + _array("uint8_t", "schedule", np.array(plan.schedule), per_line=32) + "\n"
            + f"int {PREFIX}_predict(const uint8_t pixels[{upper}_PIXELS], uint8_t scores[{upper}_CLASSES]) {{\n"
            "    int i, best = 0;\n    input_pixels = pixels;\n"
            f"    {resets} = 0;\n"
            f"    for (i = 0; i < {len(plan.schedule)}; ++i) {{\n"
            "        mnist_edge_profile_begin();\n        steps[schedule[i]]();\n"
            "        mnist_edge_profile_end(schedule[i]);\n    }\n"
            f"    for (i = 0; i < {upper}_CLASSES; ++i) {{\n        scores[i] = {scores}[i];\n"
            "        if (scores[i] > scores[best]) best = i;\n    }\n    return best;\n}\n")


@dataclass(frozen=True)
class Library:
    header: str
    source: str
    plan: Plan


def library(model: IntegerModel, requant: str = "float", stream: bool = True) -> Library:
    plan = make_plan(model, stream=stream)
    text_h, text_c = source(model, requant, plan)
    return Library(text_h, text_c, plan)
