"""How batch-1 int8 latency scales with the cnn's layout: is <= 40 microseconds in reach?

Builds candidate cnn layouts (random weights: latency does not depend on their values), exports
each with mnist-edge's exporter, quantizes it with the cnn's default int8 settings (calibrated
on 200 training images), and times fp32 and int8 at batch 1 on one thread with IOBinding, best
of 5 medians of 3,000 calls. Accuracy is not measured: this only shows the latency side.

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
from mnist_edge.models import cnn, conv_bn, count_macs, count_parameters
from mnist_edge.quantize import default_options, quantize_model


def _head(channels: int) -> list[nn.Module]:
    return [*conv_bn(channels, 16, kernel=1, padding=0), nn.Flatten(), nn.Linear(16 * 7 * 7, 10)]


def pool_before_third_conv() -> nn.Module:
    """The cnn with its second pooling moved before the 32->48 convolution (2.75 M MACs)."""
    return nn.Sequential(*conv_bn(1, 16), nn.MaxPool2d(2), *conv_bn(16, 32), nn.MaxPool2d(2),
                         *conv_bn(32, 48), *conv_bn(48, 48), *_head(48))


def narrow_at_14() -> nn.Module:
    """Fewer channels at 14x14 (16->24->32), one 7x7 stage."""
    return nn.Sequential(*conv_bn(1, 16), nn.MaxPool2d(2), *conv_bn(16, 24), *conv_bn(24, 32), nn.MaxPool2d(2),
                         *conv_bn(32, 48), *_head(48))


CANDIDATES: dict[str, Callable[[], nn.Module]] = {
    "cnn": cnn, "pool_before_third_conv": pool_before_third_conv, "narrow_at_14": narrow_at_14}


def batch1_latency_us(path: Path) -> float:
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
    torch.manual_seed(0)
    model = CANDIDATES[name]().eval()
    macs, params = count_macs(model), count_parameters(model)
    proto, _ = to_onnx(fold_batch_norm(model), 17)
    onnx.save(proto, folder / f"{name}.onnx")
    quantize_model(folder / f"{name}.onnx", folder / name, default_options("cnn", calib_images=200))
    fp32, int8 = batch1_latency_us(folder / f"{name}.onnx"), batch1_latency_us(folder / name / "model.onnx")
    return f"{name:<24} {params:>7,} params {macs / 1e6:5.2f} M MACs   fp32 {fp32:6.1f} us   int8 {int8:6.1f} us"


def main() -> None:
    names = sys.argv[1:] or list(CANDIDATES)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(measure(name, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
