"""MNIST models as other tools write them, with trained weights, for the deployment half's tests
(quantize, codegen, boards, the page): a Keras-style CNN (NHWC input, transposes, nodes out of
topological order, MatMul + Add, Softmax), a PyTorch CNN exported by the dynamo exporter (Shape /
Concat / Reshape flatten, external data, dynamic batch), a flat-input MLP, the project's lenet5
and a small residual net (Add of two branches, ReLU6, AveragePool, Sigmoid, Tanh, LeakyRelu).

Each is trained for a short while on a slice of MNIST's training set (torch, CPU, seconds) so
that its accuracy means something; every builder is deterministic for a given seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRAIN_IMAGES = 20_000
EPOCHS = 2
MNIST_NORM = (255.0, 0.1307, 0.3081)
KERAS_NORM = (255.0, 0.0, 1.0)  # Keras models usually take pixel / 255


def _images(norm: tuple[float, float, float]):
    import torch

    from mnist_edge.data import load_split, normalize

    train = load_split("train", download=False).subset(TRAIN_IMAGES)
    x = torch.from_numpy(normalize(train.images, *norm))
    return x, torch.from_numpy(train.labels.astype(np.int64))


def train(net, norm: tuple[float, float, float] = MNIST_NORM, flat: bool = False, seed: int = 0):
    """`net` trained with Adam on TRAIN_IMAGES images for EPOCHS epochs; returned in eval mode."""
    import torch

    torch.manual_seed(seed)
    x, y = _images(norm)
    if flat:
        x = x.reshape(len(x), -1)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 128):
            batch = order[start:start + 128]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
    return net.eval()


# --- Keras-style ------------------------------------------------------------------------------------


def keras_cnn(path: Path, seed: int = 0) -> Path:
    """A Keras-style CNN as keras2onnx / tf2onnx write one: NHWC input, a Transpose to NCHW, two
    Conv + Relu + MaxPool, a Transpose back to NHWC before the flatten (so the dense weights are in
    HWC order), Reshape, MatMul + Add, Softmax; nodes stored out of topological order; no
    normalization metadata (the model takes pixel / 255)."""
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper
    from torch import nn

    torch.manual_seed(seed)
    net = train(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 10)), KERAS_NORM, seed=seed)
    conv1, conv2, dense = net[0], net[3], net[7]
    # The dense layer reads the NHWC map flattened: its rows in (h, w, c) order.
    dense_w = dense.weight.detach().numpy().reshape(10, 16, 5, 5).transpose(2, 3, 1, 0).reshape(400, 10)
    inits = [numpy_helper.from_array(conv1.weight.detach().numpy(), "conv1/kernel"),
             numpy_helper.from_array(conv1.bias.detach().numpy(), "conv1/bias"),
             numpy_helper.from_array(conv2.weight.detach().numpy(), "conv2/kernel"),
             numpy_helper.from_array(conv2.bias.detach().numpy(), "conv2/bias"),
             numpy_helper.from_array(np.ascontiguousarray(dense_w), "dense/kernel"),
             numpy_helper.from_array(dense.bias.detach().numpy(), "dense/bias"),
             numpy_helper.from_array(np.array([-1, 400], np.int64), "flatten/shape")]
    nodes = [
        helper.make_node("Transpose", ["input_1"], ["nchw"], "transpose_in", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "conv1/kernel", "conv1/bias"], ["c1"], "conv1", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], "conv1/Relu"),
        helper.make_node("MaxPool", ["r1"], ["p1"], "pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2/kernel", "conv2/bias"], ["c2"], "conv2", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"], "conv2/Relu"),
        helper.make_node("MaxPool", ["r2"], ["p2"], "pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["p2"], ["nhwc"], "transpose_out", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "flatten/shape"], ["flat"], "flatten"),
        helper.make_node("MatMul", ["flat", "dense/kernel"], ["mm"], "dense/MatMul"),
        helper.make_node("Add", ["mm", "dense/bias"], ["logits"], "dense/BiasAdd"),
        helper.make_node("Softmax", ["logits"], ["dense"], "dense/Softmax", axis=-1),
    ]
    order = np.random.default_rng(seed).permutation(len(nodes))  # as exporters sometimes store them
    graph = helper.make_graph([nodes[i] for i in order], "keras_cnn",
                              [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["N", 28, 28, 1])],
                              [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="keras2onnx")
    onnx.save(model, str(path))
    return path


# --- PyTorch, dynamo exporter -----------------------------------------------------------------------


def dynamo_cnn(path: Path, seed: int = 0) -> Path:
    """A PyTorch CNN exported with torch.onnx.export(dynamo=True): the flatten becomes Shape ->
    Concat -> Reshape, the batch is dynamic and the weights go to an external data file."""
    import onnx
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3),
                                          nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Linear(16 * 5 * 5, 10)

        def forward(self, x):
            x = self.features(x)
            return self.head(x.reshape(x.shape[0], -1))

    torch.manual_seed(seed)
    net = train(Net(), seed=seed)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(net, (torch.zeros(2, 1, 28, 28),), dynamo=True, input_names=["x"],
                                output_names=["y"], dynamic_shapes={"x": {0: batch}}, opset_version=18)
    model = program.model_proto
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=path.name + ".data", size_threshold=0)
    return path


# --- MLPs and the project's layouts -----------------------------------------------------------------


def flat_mlp(path: Path, seed: int = 0) -> Path:
    """An MLP whose input is N x 784 (no image layout at all), exported by the TorchScript exporter."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = train(nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
                flat=True, seed=seed)
    torch.onnx.export(net, torch.zeros(1, 784), str(path), input_names=["pixels"], output_names=["logits"],
                      dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def project_model(arch: str, path: Path, seed: int = 0) -> Path:
    """The project's own layout ARCH trained briefly and exported as `mnist-edge export` does."""
    import torch

    from mnist_edge.export import fold_batch_norm, to_onnx
    from mnist_edge.models import build

    torch.manual_seed(seed)
    net = train(build(arch), seed=seed)
    proto, _ = to_onnx(fold_batch_norm(net), 17)
    path.write_bytes(proto.SerializeToString())
    return path


# --- residual -----------------------------------------------------------------------------------------


def residual_net(path: Path, seed: int = 0) -> Path:
    """A small residual net: Conv + ReLU6, a block whose two branches are added (Conv + LeakyRelu +
    Conv, and the identity), average pooling, a Conv + Tanh, a Conv + Sigmoid, global pooling, a
    linear layer."""
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU6())
            self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 3, padding=1))
            self.tail = nn.Sequential(nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(8, 16, 3), nn.Tanh(), nn.Conv2d(16, 16, 3),
                                      nn.Sigmoid(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

        def forward(self, x):
            x = self.stem(x)
            return self.tail(x + self.branch(x))

    torch.manual_seed(seed)
    net = train(Residual(), seed=seed)
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


BUILDERS = {"keras-cnn": keras_cnn, "dynamo-cnn": dynamo_cnn, "flat-mlp": flat_mlp, "residual": residual_net,
            "lenet5": lambda path, seed=0: project_model("lenet5", path, seed),
            "mlp": lambda path, seed=0: project_model("mlp", path, seed)}
# What each model's bare .onnx needs said at quantize time (none carries normalization metadata).
NORMALIZATION = {"keras-cnn": KERAS_NORM}


def build(name: str, folder: Path, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return BUILDERS[name](folder / f"{name}.onnx", seed)
