"""Architectures by name. Every model takes float32 [N, 1, 28, 28] normalized images and returns
logits [N, 10]."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mnist_edge.config import ARCH_KNOBS, Recipe
from mnist_edge.errors import ConfigError


def conv_bn(c_in: int, c_out: int, kernel: int = 3, padding: int = 1, stride: int = 1) -> list[nn.Module]:
    # bias=False: batch norm's shift makes a conv bias redundant (and export folds BN into it).
    return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


def mlp(width: int = 512, depth: int = 2) -> nn.Module:
    """The original notebook's network: 784-512-512-10 with ReLU (`width` units in each of
    `depth` hidden layers)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for index in range(depth):
        layers += [nn.Linear(784 if index == 0 else width, width), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def lenet5() -> nn.Module:
    """LeNet-5's classic topology (6 and 16 5x5 filters, 120-84-10), with ReLU and max pooling."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),   # 6x14x14
        nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),              # 16x5x5
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(inplace=True),
        nn.Linear(120, 84), nn.ReLU(inplace=True),
        nn.Linear(84, 10),
    )


def _scaled(width: int, base: int, channels: int) -> int:
    # Every convolution keeps its ratio to the first one's channel count.
    return max(1, round(channels * width / base))


def cnn(width: int = 8) -> nn.Module:
    """Compact CNN with batch norm (~44k parameters), aimed at >= 99.6 % and fast as int8.

    Laid out for batch-1 int8 latency on a CPU core (scripts/latency_by_layout.py measures the
    alternatives): unpadded 3x3 convolutions and two poolings bring the map to 2x2 after ~1.9 M
    multiply-adds per image (an earlier padded layout with 48k parameters needed 4.8 M and ran
    int8 at 56 us instead of 31 us). The last convolution is wide (96 channels at 2x2): capacity
    for almost no compute, which also keeps the int8 file under a third of the fp32 one.
    `width` is the first convolution's channels (8); the others scale with it.
    """
    c = [_scaled(width, 8, n) for n in (8, 16, 32, 32, 96)]
    return nn.Sequential(
        *conv_bn(1, c[0], padding=0), *conv_bn(c[0], c[1], padding=0), nn.MaxPool2d(2),     # 16x12x12
        *conv_bn(c[1], c[2], padding=0), *conv_bn(c[2], c[3], padding=0), nn.MaxPool2d(2),  # 32x4x4
        *conv_bn(c[3], c[4], padding=0),                                                     # 96x2x2
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(c[4], 10),
    )


def tiny(width: int = 8) -> nn.Module:
    """At most 10k parameters, aimed at >= 99.3 %, small enough for a microcontroller.
    `width` is the first convolution's channels (8); the others scale with it."""
    c, d = _scaled(width, 8, 8), _scaled(width, 8, 16)
    return nn.Sequential(
        *conv_bn(1, c, padding=0), *conv_bn(c, d, padding=0), nn.MaxPool2d(2),   # 16x12x12
        *conv_bn(d, d, padding=0), *conv_bn(d, d, padding=0), nn.MaxPool2d(2),   # 16x4x4
        *conv_bn(d, d, padding=0),                                                # 16x2x2
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(d, 10),
    )


def strided(width: int = 32, depth: int = 2) -> nn.Module:
    """Latency first (~35k parameters, 0.59 M multiply-adds): two stride-2 convolutions and a
    linear classifier over the whole 5x5 map, no pooling and no padding.

    At batch 1 onnxruntime's time is mostly per-operator overhead, so this layout has the fewest
    operators that still learn MNIST well: as int8 (the first convolution in float) onnxruntime
    runs eight kernels for it, against fourteen for the cnn, and a third of the multiply-adds.
    The stride-2 convolutions do the pooling's job; flattening the 64x5x5 map keeps where a
    stroke is, which global pooling would throw away. scripts/latency_by_layout.py measures it
    against the other layouts (docs/latency.md). `width` is the first convolution's channels
    (the second has twice as many); `depth` 3 adds a third stride-2 stage (2x2 map, 2*width channels).
    """
    stages = conv_bn(1, width, kernel=5, padding=0, stride=2)                   # width x12x12
    stages += conv_bn(width, 2 * width, kernel=3, padding=0, stride=2)          # 2*width x5x5
    side = 5
    if depth == 3:
        stages += conv_bn(2 * width, 2 * width, kernel=3, padding=0, stride=2)  # 2*width x2x2
        side = 2
    return nn.Sequential(*stages, nn.Flatten(), nn.Linear(2 * width * side * side, 10))


def micro(width: int = 8) -> nn.Module:
    """For microcontrollers at less than half of tiny's work: tiny's five convolutions and 8,450
    parameters, with the first max pooling moved up to right after the first convolution.

    tiny spends 60 % of its 1.1 M multiply-adds in its second convolution, at 24x24; here it
    runs at 11x11, and the whole model needs 0.49 M. Only what the C generator turns into
    integer code (unpadded convolutions, square max pooling, global pooling, one Gemm), so
    `quantize --for mcu` and `codegen` take it as they take tiny. `width` is the first
    convolution's channels (8); the others scale with it.
    """
    c, d = _scaled(width, 8, 8), _scaled(width, 8, 16)
    return nn.Sequential(
        *conv_bn(1, c, padding=0), nn.MaxPool2d(2),                               # 8x13x13
        *conv_bn(c, d, padding=0), *conv_bn(d, d, padding=0),                     # 16x9x9
        *conv_bn(d, d, padding=0), nn.MaxPool2d(2),                               # 16x3x3
        *conv_bn(d, d, padding=0),                                                # 16x1x1
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(d, 10),
    )


BUILDERS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "lenet5": lenet5, "cnn": cnn, "tiny": tiny,
                                                "strided": strided, "micro": micro}


def build(arch: str, width: int = 0, depth: int = 0) -> nn.Module:
    """The named layout; a non-zero width or depth (config.ARCH_KNOBS) resizes it."""
    if arch not in BUILDERS:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(BUILDERS)}")
    knobs = {name: value for name, value in (("width", width), ("depth", depth)) if value}
    unknown = set(knobs) - set(ARCH_KNOBS.get(arch, {}))
    if unknown:
        raise ConfigError(f"architecture {arch!r} has no {' or '.join(sorted(unknown))} knob")
    return BUILDERS[arch](**knobs)


def build_recipe(recipe: Recipe) -> nn.Module:
    return build(recipe.arch, recipe.width, recipe.depth)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates for one image, counted by hooks on Conv2d and Linear layers."""
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        weight_per_output = module.weight[0].numel()
        total += int(output[0].numel() * weight_per_output)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    model.train(was_training)
    for handle in handles:
        handle.remove()
    return total
