"""The plan of loops and buffers that every C target shares: which maps exist, how many of their
rows are kept, where they lie in the one static arena, and which rows each step makes when.

Row streaming (a chain: each layer reads the one before it): a step computes one output row as
soon as the input rows it reads exist, and the map it reads keeps only a ring of the last rows
its reader needs (`Buffer.rows`), not the whole map. The steps pull: the last step asks its input
for the rows it needs, which asks its own input, and so on, so rows are made in order and a ring
slot is overwritten only once no reader needs it. A step that needs its whole input (global
pooling, a dense layer) keeps the whole map. The pulls are played at generation time
(`schedule`): the C runs the resulting flat table.

A graph with branches (a residual block's Add reads two maps) keeps every map whole: the steps
run one after another in graph order, and a map's bytes are reused once its last reader has run
(`_place`: each buffer at the lowest offset free for its lifetime).

Each map row is stored with the padding columns its readers' convolutions need (filled once with
the map's zero point), so no kernel tests a column bound; rows above or below the map read one
constant row of zero points. Generation is deterministic: the same model gives the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mnist_edge.codegen.graph import INPUT, Add, Conv, Gemm, IntegerModel, Layer, MaxPool
from mnist_edge.errors import CodegenError

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
    pad_left: int  # zero-point columns stored before each row (its readers' padding)
    pad_right: int
    stride: int  # bytes from one stored row to the next
    offset: int  # in the arena
    zero: int  # the map's zero point: the value of every padding tap
    map: str = ""  # the map's name in the graph (graph.INPUT, or the producing layer's output)

    @property
    def bytes(self) -> int:
        return self.rows * self.stride

    @property
    def streamed(self) -> bool:
        return self.rows < self.height


@dataclass(frozen=True)
class Step:
    """One loop of the generated code: a layer (a convolution with the max pooling after it fused,
    so the convolution's full output never exists), reading `sources` and writing `target`."""

    index: int
    layer: Layer | None  # None: the input step (pixels -> the quantized input, through the table)
    pool: MaxPool | None
    sources: tuple[Buffer, ...]  # empty: the caller's pixels
    target: Buffer

    @property
    def source(self) -> Buffer | None:
        return self.sources[0] if self.sources else None

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
        elif hasattr(layer, "kernel"):  # max and average pooling
            first, last = row * layer.stride[0], row * layer.stride[0] + layer.kernel[0] - 1
        elif _elementwise(layer):
            first = last = row
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
    streamed: bool = True  # rows streamed through rings (a chain); False: whole maps, one step after another
    outputs: dict[str, Buffer] = field(default_factory=dict)  # map name -> its buffer

    @property
    def buffers(self) -> list[Buffer]:
        return [step.target for step in self.steps]


def _elementwise(layer: Layer | None) -> bool:
    from mnist_edge.codegen.graph import Table

    return isinstance(layer, (Add, Table))


def _fuse(model: IntegerModel) -> list[tuple[Layer | None, MaxPool | None]]:
    """(layer, pooling fused into it) in order, the input step first. A convolution's max pooling
    is fused when the pooling is the only reader of the convolution's output."""
    readers: dict[str, int] = {}
    for layer in model.layers:
        for name in layer.inputs:
            readers[name] = readers.get(name, 0) + 1
    fused: list[tuple[Layer | None, MaxPool | None]] = [(None, None)]
    layers = list(model.layers)
    while layers:
        layer = layers.pop(0)
        pool = None
        if (isinstance(layer, Conv) and layers and isinstance(layers[0], MaxPool)
                and layers[0].inputs == (layer.output,) and readers.get(layer.output) == 1):
            pool = layers.pop(0)
        fused.append((layer, pool))
    return fused


def rows_read_at_once(layer: Layer, pool: MaxPool | None, height: int) -> int:
    """How many consecutive input rows one output row of LAYER reads: the ring it needs."""
    if isinstance(layer, Conv):
        pk = pool.kernel[0] if pool else 1
        span = (pk - 1) * layer.stride[0] + layer.weights.shape[2]
    elif hasattr(layer, "kernel"):
        span = layer.kernel[0]
    elif _elementwise(layer):
        span = 1
    else:
        span = height
    return min(span, height)


def _output_name(layer: Layer | None, pool: MaxPool | None) -> str:
    return INPUT if layer is None else (pool or layer).output


def _out_shape(layer: Layer | None, pool: MaxPool | None, model: IntegerModel) -> tuple[int, int, int]:
    return model.input.shape if layer is None else (pool or layer).out_shape


def make_plan(model: IntegerModel, stream: bool = True) -> Plan:
    """The steps and their buffers; `stream=False` keeps every map whole (layer at a time)."""
    fused = _fuse(model)
    chain = model.streamable
    stream = stream and chain
    names = [_output_name(layer, pool) for layer, pool in fused]
    readers = {name: [(layer, pool) for layer, pool in fused[1:] if layer is not None and name in layer.inputs]
               for name in names}
    layouts = [_layout(name, _label(layer, pool), _out_shape(layer, pool, model), readers[name], stream)
               for name, (layer, pool) in zip(names, fused, strict=True)]
    order = list(range(len(fused)))
    offsets, end = (_sequential(layouts) if stream else
                    _place(layouts, _lifetimes(names, fused, readers)))
    buffers = {name: Buffer(**layout, offset=offset) for name, layout, offset in zip(names, layouts, offsets,
                                                                                        strict=True)}
    steps = [Step(i, layer, pool, tuple(buffers[n] for n in (layer.inputs if layer else ())), buffers[names[i]])
             for i, (layer, pool) in zip(order, fused, strict=True)]
    convs = [s for s in steps if isinstance(s.layer, Conv)]
    patch_offset = end
    end += max((2 * conv_taps(s.layer) * PATCH_BYTES_PER_TAP for s in convs), default=0)
    best_offset = end
    end += max((round_up(s.layer.weights.shape[0], 2) * 4 for s in convs if s.pool), default=0)
    # A dense layer reads whole 4-tap groups: an input whose length is not a multiple of 4 is
    # over-read by up to 3 bytes (multiplied by zero weights), which must still be inside the arena.
    order_of_rows = schedule(steps) if stream else tuple(s.index for s in steps for _ in range(s.target.height))
    return Plan(steps, end + WORD, patch_offset, best_offset, order_of_rows, stream, buffers)


def _label(layer: Layer | None, pool: MaxPool | None) -> str:
    """A step's name: its nodes ("input" for the input step)."""
    return "input" if layer is None else layer.name + (f" + {pool.name}" if pool else "")


def _layout(name: str, label: str, shape: tuple[int, int, int], readers: list[tuple[Layer, MaxPool | None]],
            stream: bool) -> dict[str, object]:
    """A map's buffer but for its offset: rows kept, padding columns, stride, zero point."""
    channels, height, width = shape
    rows = height
    if stream and len(readers) == 1:
        rows = rows_read_at_once(readers[0][0], readers[0][1], height)
    convs = [layer for layer, _ in readers if isinstance(layer, Conv)]
    pads = {(conv.pads[1], conv.pads[3]) for conv in convs}
    if len(pads) > 1:
        raise CodegenError(f"map {name!r} is read by convolutions with different padding ({sorted(pads)}): "
                           "not supported by the C generator")
    left, right = pads.pop() if pads else (0, 0)
    zeros = {int(getattr(layer, "x_zero", 0)) for layer in convs}
    row_bytes = (left + width + right) * channels
    # A dense layer reads its input as one flat vector: its rows stay contiguous.
    contiguous = any(isinstance(layer, Gemm) for layer, _ in readers) or not readers
    stride = row_bytes if contiguous else round_up(row_bytes, WORD)
    return {"name": label, "channels": channels, "height": height,
            "width": width, "rows": rows, "pad_left": left, "pad_right": right, "stride": stride,
            "zero": zeros.pop() if zeros else 0, "map": name}


def _sequential(layouts: list[dict[str, object]]) -> tuple[list[int], int]:
    """A chain's rings, one after another (they are all alive at once)."""
    offsets, offset = [], 0
    for layout in layouts:
        offsets.append(offset)
        offset = round_up(offset + int(layout["rows"]) * int(layout["stride"]), WORD)
    return offsets, offset


def _lifetimes(names: list[str], fused: list[tuple[Layer | None, MaxPool | None]],
               readers: dict[str, list[tuple[Layer, MaxPool | None]]]) -> list[tuple[int, int]]:
    """Per map, the steps from the one that writes it to the last that reads it (the last map,
    the scores, lives to the end)."""
    position = {id(layer): i for i, (layer, _) in enumerate(fused) if layer is not None}
    spans = []
    for i, name in enumerate(names):
        last = max((position[id(layer)] for layer, _ in readers[name]), default=len(fused))
        spans.append((i, last))
    return spans


def _place(layouts: list[dict[str, object]], spans: list[tuple[int, int]]) -> tuple[list[int], int]:
    """Each whole map at the lowest word-aligned offset that no map alive at the same time uses
    (largest first): a map's bytes are reused once its last reader has run."""
    sizes = [round_up(int(layout["rows"]) * int(layout["stride"]), WORD) for layout in layouts]
    placed: list[tuple[int, int, int]] = []  # (offset, size, index)
    offsets = [0] * len(layouts)
    for index in sorted(range(len(layouts)), key=lambda i: (-sizes[i], i)):
        start, end = spans[index]
        busy = sorted((o, o + s) for o, s, j in placed if not (spans[j][1] < start or end < spans[j][0]))
        offset = 0
        for low, high in busy:
            if offset + sizes[index] <= low:
                break
            offset = max(offset, high)
        offsets[index] = offset
        placed.append((offset, sizes[index], index))
    return offsets, max((o + s for o, s, _ in placed), default=0)


def schedule(steps: list[Step]) -> tuple[int, ...]:
    """The order in which the steps of a chain make their rows: the last step pulls the rows it
    needs from the step before it, which pulls from its own, and so on. Played here, at generation
    time, so the C runs a flat table (one stack frame at a time, not one per step) and so every
    ring is proven large enough: no row is overwritten before its last reader has read it."""
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
