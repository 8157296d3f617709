"""The plan of loops and buffers that every C target shares: which maps exist, how many of their
rows are kept, where they lie in the one static arena, and which rows each step needs.

Row streaming: a step computes one output row as soon as the input rows it reads exist, and the
map it reads keeps only a ring of the last rows its reader needs (`Buffer.rows`), not the whole
map. The steps pull: the last step asks its input for the rows it needs, which asks its own input,
and so on, so rows are made in order and a ring slot is overwritten only once no reader needs it.
A step that needs its whole input (global pooling, a dense layer) keeps the whole map.
The pulls are played at generation time (`schedule`): the C runs the resulting flat table.

Each map row is stored with the padding columns its reader's convolution needs (filled once with
the map's zero point), so no kernel tests a column bound; rows above or below the map read one
constant row of zero points. Generation is deterministic: the same model gives the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_edge.codegen.graph import Conv, Gemm, IntegerModel, Layer, MaxPool

WORD = 4  # rows and buffers start on 4-byte boundaries: the word-at-a-time kernels read 4 taps at once
CHANNEL_BLOCK = 16  # output channels per block of the weight layout (one 512-bit vector of int32)
TAP_GROUP = 4  # taps per group in the weight layout (one 32-bit word per channel)
PATCH_BYTES_PER_TAP = 2  # the widest patch (the DSP kernels' 16-bit lanes); portable C uses half


def round_up(value: int, step: int) -> int:
    return -(-value // step) * step


@dataclass(frozen=True)
class Buffer:
    """A map (C x H x W, channels-last in C) as a ring of `rows` rows in the arena."""

    name: str
    channels: int
    height: int
    width: int
    rows: int  # rows kept at once: the ring's length (== height: the whole map)
    pad_left: int  # zero-point columns stored before each row (the reader's padding)
    pad_right: int
    stride: int  # bytes from one stored row to the next
    offset: int  # in the arena
    zero: int  # the map's zero point: the value of every padding tap

    @property
    def bytes(self) -> int:
        return self.rows * self.stride

    @property
    def streamed(self) -> bool:
        return self.rows < self.height


@dataclass(frozen=True)
class Step:
    """One loop of the generated code: a layer (a convolution with the max pooling after it fused,
    so the convolution's full output never exists), reading `source` and writing `target`."""

    index: int
    layer: Layer | None  # None: the input step (pixels -> the quantized input, through the table)
    pool: MaxPool | None
    source: Buffer | None  # None: the caller's pixels
    target: Buffer

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.target.channels, self.target.height, self.target.width)

    def source_rows(self, row: int) -> tuple[int, int]:
        """The first and last input rows that output row `row` reads (clipped to the map)."""
        assert self.source is not None
        layer = self.layer
        if isinstance(layer, Conv):
            pk, ps = (self.pool.kernel[0], self.pool.stride[0]) if self.pool else (1, 1)
            kh, sy, pt = layer.weights.shape[2], layer.stride[0], layer.pads[0]
            first, last = row * ps * sy - pt, (row * ps + pk - 1) * sy - pt + kh - 1
        elif isinstance(layer, MaxPool):
            first, last = row * layer.stride[0], row * layer.stride[0] + layer.kernel[0] - 1
        else:  # global pooling and dense layers read the whole map
            first, last = 0, self.source.height - 1
        return max(first, 0), min(last, self.source.height - 1)


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    arena_bytes: int
    patch_offset: int  # two positions' input taps, widened to 16 bits (the kernels' im2col buffer)
    best_offset: int  # a pooled convolution's int32 maxima, one per output channel
    schedule: tuple[int, ...]  # the step that makes the next row, in order: every row of every step once

    @property
    def buffers(self) -> list[Buffer]:
        return [step.target for step in self.steps]


def _fuse(model: IntegerModel) -> list[tuple[Layer | None, MaxPool | None]]:
    """(layer, pooling fused into it) in order, the input step first."""
    fused: list[tuple[Layer | None, MaxPool | None]] = [(None, None)]
    layers = list(model.layers)
    while layers:
        layer = layers.pop(0)
        pool = layers.pop(0) if isinstance(layer, Conv) and layers and isinstance(layers[0], MaxPool) else None
        fused.append((layer, pool))
    return fused


def rows_read_at_once(layer: Layer, pool: MaxPool | None, height: int) -> int:
    """How many consecutive input rows one output row of LAYER reads: the ring it needs."""
    if isinstance(layer, Conv):
        pk = pool.kernel[0] if pool else 1
        span = (pk - 1) * layer.stride[0] + layer.weights.shape[2]
    elif isinstance(layer, MaxPool):
        span = layer.kernel[0]
    else:
        span = height
    return min(span, height)


def _out_shape(layer: Layer | None, pool: MaxPool | None, model: IntegerModel) -> tuple[int, int, int]:
    if layer is None:
        return model.input.shape
    return (pool or layer).out_shape


def make_plan(model: IntegerModel, stream: bool = True) -> Plan:
    """The steps and their buffers; `stream=False` keeps every map whole (layer at a time)."""
    fused = _fuse(model)
    shapes = [_out_shape(layer, pool, model) for layer, pool in fused]
    buffers: list[Buffer] = []
    offset = 0
    for index, (layer, pool) in enumerate(fused):
        channels, height, width = shapes[index]
        reader, reader_pool = fused[index + 1] if index + 1 < len(fused) else (None, None)
        rows = rows_read_at_once(reader, reader_pool, height) if stream and reader is not None else height
        left, right = (reader.pads[1], reader.pads[3]) if isinstance(reader, Conv) else (0, 0)
        row_bytes = (left + width + right) * channels
        # A dense layer reads its input as one flat vector: its rows stay contiguous.
        stride = row_bytes if isinstance(reader, Gemm) or reader is None else round_up(row_bytes, WORD)
        zero = int(getattr(reader, "x_zero", 0))  # the value its reader takes for zero: a padding tap's
        name = "input" if layer is None else (layer.name + (f" + {pool.name}" if pool else ""))
        buffers.append(Buffer(name, channels, height, width, rows, left, right, stride, offset, zero))
        offset = round_up(offset + rows * stride, WORD)
    steps = [Step(i, layer, pool, buffers[i - 1] if i else None, buffers[i])
             for i, (layer, pool) in enumerate(fused)]
    convs = [s for s in steps if isinstance(s.layer, Conv)]
    patch_offset = offset
    offset += max((2 * conv_taps(s.layer) * PATCH_BYTES_PER_TAP for s in convs), default=0)
    best_offset = offset
    offset += max((round_up(s.layer.weights.shape[0], 2) * 4 for s in convs if s.pool), default=0)
    # A dense layer reads whole 4-tap groups: an input whose length is not a multiple of 4 is
    # over-read by up to 3 bytes (multiplied by zero weights), which must still be inside the arena.
    return Plan(steps, offset + WORD, patch_offset, best_offset, schedule(steps))


def schedule(steps: list[Step]) -> tuple[int, ...]:
    """The order in which the steps make their rows: the last step pulls the rows it needs from the
    step before it, which pulls from its own, and so on. Played here, at generation time, so the C
    runs a flat table (one stack frame at a time, not one per step) and so every ring is proven
    large enough: no row is overwritten before its last reader has read it."""
    done = [0] * len(steps)
    order: list[int] = []

    def make(index: int, last: int) -> None:
        step = steps[index]
        while done[index] <= last:
            if step.source is not None:
                first, needed = step.source_rows(done[index])
                make(index - 1, needed)
                if first < done[index - 1] - step.source.rows:
                    raise AssertionError(f"plan: {step.source.name}'s ring of {step.source.rows} rows is too short")
            order.append(index)
            done[index] += 1

    make(len(steps) - 1, steps[-1].target.height - 1)
    return tuple(order)


def conv_taps(layer: Conv) -> int:
    """A convolution's taps per output position, each kernel row padded to whole groups of 4: one
    position's share of a patch."""
    _, c, kh, kw = layer.weights.shape
    return kh * round_up(kw * c, TAP_GROUP)


def accumulator_bound(weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Per output channel, the largest |accumulator| any input can give: |bias| + 255 * sum|w|
    (the kernels multiply raw uint8 values; the zero point is folded into the bias)."""
    flat = np.abs(weights.astype(np.int64)).reshape(len(weights), -1)
    return np.abs(bias.astype(np.int64)) + 255 * flat.sum(axis=1)


__all__ = ["Buffer", "CHANNEL_BLOCK", "Plan", "Step", "TAP_GROUP", "accumulator_bound", "conv_taps", "make_plan",
           "rows_read_at_once"]
