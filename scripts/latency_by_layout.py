"""How batch-1 int8 latency scales with the cnn's layout: is <= 40 microseconds in reach?

Builds candidate cnn layouts (random weights: latency does not depend on their values), exports
each with mnist-edge's exporter, quantizes it with the cnn's default int8 settings (calibrated
on 200 training images), once entirely and once with the first convolution kept in float, and
times fp32 and both int8 models at batch 1 on one thread with IOBinding: for each, the best of
3 fresh sessions of the best of 5 medians of 3,000 calls. Accuracy is not measured: this only shows the latency side.

    MNIST_EDGE_DATA=../shared/data python scripts/latency_by_layout.py [NAME ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from mnist_edge.export import fold_batch_norm, to_onnx
from mnist_edge.models import cnn, conv_bn, count_macs, count_parameters, tiny
from mnist_edge.quantize import default_options, quantize_model


def _head(channels: int) -> list[nn.Module]:
    return [*conv_bn(channels, 16, kernel=1, padding=0), nn.Flatten(), nn.Linear(16 * 7 * 7, 10)]


def previous_cnn() -> nn.Module:
    """The cnn before it was laid out for latency: padded convolutions, 3 stages at 14x14 and 7x7."""
    return nn.Sequential(*conv_bn(1, 16), nn.MaxPool2d(2), *conv_bn(16, 32), *conv_bn(32, 48), nn.MaxPool2d(2),
                         *conv_bn(48, 48), *_head(48))


def pool_before_third_conv() -> nn.Module:
    """previous_cnn with its second pooling moved before the 32->48 convolution (2.75 M MACs)."""
    return nn.Sequential(*conv_bn(1, 16), nn.MaxPool2d(2), *conv_bn(16, 32), nn.MaxPool2d(2),
                         *conv_bn(32, 48), *conv_bn(48, 48), *_head(48))


def narrow_at_14() -> nn.Module:
    """Fewer channels at 14x14 (16->24->32), one 7x7 stage."""
    return nn.Sequential(*conv_bn(1, 16), nn.MaxPool2d(2), *conv_bn(16, 24), *conv_bn(24, 32), nn.MaxPool2d(2),
                         *conv_bn(32, 48), *_head(48))


def three_stages() -> nn.Module:
    """One convolution per resolution (28, 14, 7), 64 channels at 7x7."""
    return nn.Sequential(*conv_bn(1, 16), nn.MaxPool2d(2), *conv_bn(16, 32), nn.MaxPool2d(2),
                         *conv_bn(32, 64), *_head(64))


def wide_tiny() -> nn.Module:
    """tiny's valid convolutions and global pooling, 32 channels after the first pooling."""
    return nn.Sequential(*conv_bn(1, 8, padding=0), *conv_bn(8, 16, padding=0), nn.MaxPool2d(2),
                         *conv_bn(16, 32, padding=0), *conv_bn(32, 32, padding=0), nn.MaxPool2d(2),
                         *conv_bn(32, 32, padding=0), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def wide_tiny_flat_head() -> nn.Module:
    """wide_tiny with the 2x2 map flattened into the classifier instead of averaged."""
    return nn.Sequential(*conv_bn(1, 8, padding=0), *conv_bn(8, 16, padding=0), nn.MaxPool2d(2),
                         *conv_bn(16, 32, padding=0), *conv_bn(32, 32, padding=0), nn.MaxPool2d(2),
                         *conv_bn(32, 32, padding=0), nn.Flatten(), nn.Linear(32 * 2 * 2, 10))


CANDIDATES: dict[str, Callable[[], nn.Module]] = {
    "cnn": cnn, "tiny": tiny, "previous_cnn": previous_cnn, "pool_before_third_conv": pool_before_third_conv,
    "narrow_at_14": narrow_at_14, "three_stages": three_stages, "wide_tiny": wide_tiny,
    "wide_tiny_flat_head": wide_tiny_flat_head}


def batch1_latency_us(path: Path, sessions: int = 3) -> float:
    """The best of `sessions` fresh sessions: on a shared host a whole session can land on a
    busy core and run slow throughout, which says nothing about the layout."""
    return min(_session_latency_us(path) for _ in range(sessions))


def _session_latency_us(path: Path) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    binding.bind_cpu_input("input", np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32))
    binding.bind_output("logits")
    for _ in range(2000):
        session.run_with_iobinding(binding)
    medians = []
    for _ in range(5):
        times = np.empty(3000)
        for i in range(len(times)):
            start = time.perf_counter_ns()
            session.run_with_iobinding(binding)
            times[i] = time.perf_counter_ns() - start
        medians.append(float(np.median(times)) / 1000)
    return min(medians)


def measure(name: str, folder: Path) -> str:
    """fp32, all-int8 and int8-with-the-first-convolution-in-float latencies of one layout."""
    torch.manual_seed(0)
    model = CANDIDATES[name]().eval()
    macs, params = count_macs(model), count_parameters(model)
    proto, _ = to_onnx(fold_batch_norm(model), 17)
    fp32 = folder / f"{name}.onnx"
    onnx.save(proto, fp32)
    figures = [f"fp32 {batch1_latency_us(fp32):6.1f} us"]
    for label, exclude in (("int8", ()), ("int8, first conv float", ("/0/Conv",))):
        out = folder / f"{name}-{len(exclude)}"
        quantize_model(fp32, out, default_options("cnn", calib_images=200, exclude=exclude))
        figures.append(f"{label} {batch1_latency_us(out / 'model.onnx'):6.1f} us")
    return f"{name:<24} {params:>7,} params {macs / 1e6:5.2f} M MACs   " + "   ".join(figures)


def main() -> None:
    names = sys.argv[1:] or list(CANDIDATES)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(measure(name, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
