"""Batch-1 latency of candidate layouts as deployed, in multiples of onnxruntime's floor.

Builds each candidate (random weights: latency does not depend on their values), exports it with
mnist-edge's exporter and quantizes it with the default int8 settings (calibrated on 100
training images), once entirely and once with the first convolution kept in float, and times
fp32 and both int8 models at batch 1 on one thread with IOBinding, ORT_ENABLE_ALL, against the
floor model (`mnist_edge.benchmark.floor`) timed in alternation with it: each figure is the best
of 3 fresh sessions of the best of 3 medians of 2,000 calls. Accuracy is not measured here (see
docs/latency.md for the trained figures): this only shows the latency side.

    MNIST_EDGE_DATA=../shared/data python scripts/latency_by_layout.py [NAME ...]

With --session-options it times shipped models instead, under each graph optimization level
and with thread-pool spinning off:

    python scripts/latency_by_layout.py --session-options exported/cnn-int8/model.onnx exported/cnn-fp32/model.onnx
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

from mnist_edge.benchmark.floor import floor_path
from mnist_edge.export import fold_batch_norm, to_onnx
from mnist_edge.models import cnn, conv_bn, count_macs, count_parameters, mlp, strided, tiny
from mnist_edge.quantize import default_options, quantize_model


def _conv(c_in: int, c_out: int, kernel: int, stride: int, padding: int = 0) -> list[nn.Module]:
    return conv_bn(c_in, c_out, kernel=kernel, padding=padding, stride=stride)


def strided_wide() -> nn.Module:
    """strided with 48 and 96 channels (1.2 M MACs)."""
    return nn.Sequential(*_conv(1, 48, 5, 2), *_conv(48, 96, 3, 2), nn.Flatten(), nn.Linear(96 * 25, 10))


def patch4() -> nn.Module:
    """A 4x4 stride-4 "patchify" convolution, then one 3x3 stride-2 convolution (0.33 M MACs)."""
    return nn.Sequential(*_conv(1, 32, 4, 4), *_conv(32, 64, 3, 2, 1), nn.Flatten(), nn.Linear(64 * 16, 10))


def patch4_wide() -> nn.Module:
    """patch4 with 48 and 96 channels (0.72 M MACs)."""
    return nn.Sequential(*_conv(1, 48, 4, 4), *_conv(48, 96, 3, 2, 1), nn.Flatten(), nn.Linear(96 * 16, 10))


def patch4_three() -> nn.Module:
    """patch4 followed by two 3x3 convolutions, the second with stride 2 (0.64 M MACs)."""
    return nn.Sequential(*_conv(1, 32, 4, 4), *_conv(32, 64, 3, 1), *_conv(64, 64, 3, 2), nn.Flatten(),
                         nn.Linear(64 * 4, 10))


def strided_three() -> nn.Module:
    """Three padded stride-2 convolutions, 32-64-128 channels (2.3 M MACs)."""
    return nn.Sequential(*_conv(1, 32, 5, 2, 2), *_conv(32, 64, 3, 2, 1), *_conv(64, 128, 3, 2, 1), nn.Flatten(),
                         nn.Linear(128 * 16, 10))


CANDIDATES: dict[str, Callable[[], nn.Module]] = {
    "cnn": cnn, "tiny": tiny, "mlp": mlp, "strided": strided, "strided_wide": strided_wide, "patch4": patch4,
    "patch4_wide": patch4_wide, "patch4_three": patch4_three, "strided_three": strided_three}


def batch1_latency(path: Path, sessions: int = 3) -> tuple[float, float]:
    """(us, x floor): the best of `sessions` fresh sessions of the model and of the floor, in
    alternation: on a shared host a whole session can land on a busy core and run slow
    throughout, which says nothing about the layout."""
    floor = model = float("inf")
    for _ in range(sessions):
        floor = min(floor, _session_latency_us(floor_path()))
        model = min(model, _session_latency_us(path))
    return model, model / floor


LEVELS = {"ORT_ENABLE_BASIC": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "ORT_ENABLE_EXTENDED": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "ORT_ENABLE_ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def _session_latency_us(path: Path, level: str = "ORT_ENABLE_ALL", spinning: bool = True) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = LEVELS[level]
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    binding.bind_cpu_input("input", np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32))
    binding.bind_output("logits")
    for _ in range(1000):
        session.run_with_iobinding(binding)
    medians = []
    for _ in range(3):
        times = np.empty(2000)
        for i in range(len(times)):
            start = time.perf_counter_ns()
            session.run_with_iobinding(binding)
            times[i] = time.perf_counter_ns() - start
        medians.append(float(np.median(times)) / 1000)
    return min(medians)


def measure(name: str, folder: Path) -> str:
    """fp32, all-int8 and int8-with-the-first-convolution-in-float latencies of one layout
    (the mlp: its default, dynamic int8, only)."""
    torch.manual_seed(0)
    model = CANDIDATES[name]().eval()
    macs, params = count_macs(model), count_parameters(model)
    proto, _ = to_onnx(fold_batch_norm(model), 17)
    fp32 = folder / f"{name}.onnx"
    onnx.save(proto, fp32)
    figures = ["fp32 {:5.1f} us {:4.1f}x".format(*batch1_latency(fp32))]
    variants = (("int8", {}),) if name == "mlp" else (("int8", {"exclude": ()}), ("int8 first conv float",
                                                                                  {"exclude": ("/0/Conv",)}))
    for label, options in variants:
        out = folder / f"{name}-{label.replace(' ', '-')}"
        arch = "mlp" if name == "mlp" else "cnn"
        quantize_model(fp32, out, default_options(arch, **({} if name == "mlp" else {"calib_images": 100}), **options))
        figures.append("{} {:5.1f} us {:4.1f}x".format(label, *batch1_latency(out / "model.onnx")))
    return f"{name:<14} {params:>7,} params {macs / 1e6:5.2f} M MACs   " + "   ".join(figures)


def session_options_row(path: Path, sessions: int = 3) -> str:
    """One shipped model under each optimization level, and ORT_ENABLE_ALL without spinning."""
    variants = [(level, True) for level in LEVELS] + [("ORT_ENABLE_ALL", False)]
    best = {variant: float("inf") for variant in variants}
    floor = float("inf")
    for _ in range(sessions):
        floor = min(floor, _session_latency_us(floor_path()))
        for variant in variants:
            best[variant] = min(best[variant], _session_latency_us(path, *variant))
    cells = [f"{level}{'' if spin else ', no spinning'} {us:5.1f} us" for (level, spin), us in best.items()]
    return f"{path}  floor {floor:.1f} us   " + "   ".join(cells)


def main() -> None:
    if sys.argv[1:2] == ["--session-options"]:
        for path in sys.argv[2:]:
            print(session_options_row(Path(path)), flush=True)
        return
    names = sys.argv[1:] or list(CANDIDATES)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(measure(name, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
