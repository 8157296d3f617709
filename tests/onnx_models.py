"""Small ONNX digit models built with onnx.helper (no torch), and input files good and bad,
for the runtime tests.

The classifier is linear, fitted by least squares on a few thousand MNIST training images: it
is about 85 % accurate, enough to tell a working input pipeline from a broken one (a wrong
layout or normalisation drops it to chance). Its graph is the same for every variant;
only the input (layout, batch, dtype) and the output (logits or softmax) change.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from mnist_edge import manifest as manifest_io
from mnist_edge.config import LABELS, MNIST_MEAN, MNIST_STD
from mnist_edge.data import load_split, normalize

OPSET = 17
IR_VERSION = 9  # what onnxruntime >= 1.17 reads; onnx's newest default may be newer
INPUT_SHAPES = {"NCHW": [1, 28, 28], "NHWC": [28, 28, 1], "flat": [784]}


@lru_cache(maxsize=1)
def linear_weights(samples: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """W [784, 10], b [10] fitted by ridge least squares to one-hot labels of normalised images."""
    train = load_split("train", download=False).subset(samples)
    x = normalize(train.images, 255.0, MNIST_MEAN, MNIST_STD).reshape(len(train), -1)
    x = np.hstack([x, np.ones((len(x), 1), np.float32)]).astype(np.float64)
    targets = np.eye(10)[train.labels]
    solution = np.linalg.solve(x.T @ x + 10.0 * np.eye(x.shape[1]), x.T @ targets)
    return solution[:-1].astype(np.float32), solution[-1].astype(np.float32)


def linear_model(layout: str = "NCHW", batch: int | None = None, dtype: str = "float32",
                 output: str = "logits", input_name: str = "input") -> onnx.ModelProto:
    """The linear classifier with the given input convention.

    float32 models take normalised pixels; uint8 models take raw pixels and normalise inside.
    """
    weights, bias = linear_weights()
    batch_dim: int | str = batch if batch else "batch"
    elem = TensorProto.UINT8 if dtype == "uint8" else TensorProto.FLOAT
    nodes, initializers = [], [
        numpy_helper.from_array(weights, "W"),
        numpy_helper.from_array(bias, "b"),
        numpy_helper.from_array(np.array([-1, 784], np.int64), "flat_shape"),
    ]
    current = input_name
    if dtype == "uint8":
        initializers += [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
                         (("scale", 1 / 255), ("mean", MNIST_MEAN), ("std", MNIST_STD))]
        nodes += [
            helper.make_node("Cast", [current], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["as_float", "scale"], ["scaled"]),
            helper.make_node("Sub", ["scaled", "mean"], ["centred"]),
            helper.make_node("Div", ["centred", "std"], ["normalised"]),
        ]
        current = "normalised"
    nodes += [
        helper.make_node("Reshape", [current, "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["scores"]),
        helper.make_node("Add", ["scores", "b"], ["logits" if output == "logits" else "pre"]),
    ]
    if output == "softmax":
        nodes.append(helper.make_node("Softmax", ["pre"], ["logits"], axis=1))
    graph = helper.make_graph(
        nodes, "linear_digits",
        [helper.make_tensor_value_info(input_name, elem, [batch_dim, *INPUT_SHAPES[layout]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch_dim, 10])],
        initializers,
    )
    return _model(graph)


def custom_op_model() -> onnx.ModelProto:
    """A digit model whose last node is an operator onnxruntime does not know."""
    model = linear_model()
    graph = model.graph
    graph.node[-1].output[0] = "raw"
    graph.node.append(helper.make_node("FancyActivation", ["raw"], ["logits"], domain="com.example"))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model


def qdq_model() -> onnx.ModelProto:
    """The linear classifier with its input passed through QuantizeLinear/DequantizeLinear,
    as onnxruntime's static QDQ quantization writes them."""
    model = linear_model("flat")
    graph = model.graph
    graph.initializer.extend([numpy_helper.from_array(np.array(0.03, np.float32), "q_scale"),
                              numpy_helper.from_array(np.array(14, np.uint8), "q_zero")])
    reshape = graph.node[0]
    reshape.input[0] = "dequantized"
    graph.node.insert(0, helper.make_node("DequantizeLinear", ["quantized", "q_scale", "q_zero"],
                                          ["dequantized"]))
    graph.node.insert(0, helper.make_node("QuantizeLinear", ["input", "q_scale", "q_zero"],
                                          ["quantized"]))
    return model


def colour_model() -> onnx.ModelProto:
    """A CIFAR-shaped classifier: input [N, 3, 32, 32], not a digit image."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "W"], ["logits"])],
        "cifar_like",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.ones((3, 10), np.float32), "W")],
    )
    return _model(graph)


def heavy_model(width: int = 1024, layers: int = 4) -> onnx.ModelProto:
    """A digit-shaped model of known, large cost: `layers` dense [width x width] products.

    Its weights are made by ConstantOfShape (onnxruntime folds them at load time), so the file
    stays a few hundred bytes while each image costs about layers x width^2 multiply-adds.
    """
    def weight(name: str, rows: int, cols: int) -> onnx.NodeProto:
        shape = numpy_helper.from_array(np.array([rows, cols], np.int64), f"{name}_shape")
        initializers.append(shape)
        value = helper.make_tensor("value", TensorProto.FLOAT, [1], [1.0 / rows])
        return helper.make_node("ConstantOfShape", [shape.name], [name], value=value)

    initializers = [numpy_helper.from_array(np.array([-1, 784], np.int64), "flat_shape")]
    nodes = [helper.make_node("Reshape", ["input", "flat_shape"], ["h0"]),
             weight("w_in", 784, width), helper.make_node("MatMul", ["h0", "w_in"], ["h1"])]
    for i in range(1, layers + 1):
        nodes += [weight(f"w{i}", width, width), helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"])]
    nodes += [weight("w_out", width, 10), helper.make_node("MatMul", [f"h{layers + 1}", "w_out"], ["logits"])]
    graph = helper.make_graph(
        nodes, "heavy_digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializers,
    )
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def save(model: onnx.ModelProto, path: Path, external_data: str | None = None) -> Path:
    """Write `model`; with `external_data`, its initializers go to that file beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if external_data:
        onnx.save_model(model, str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=external_data, size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return path


def save_escaping_external(folder: Path) -> Path:
    """A model whose weights point at ../outside/weights.bin, a file that does exist."""
    model = linear_model()
    weights = model.graph.initializer[0]
    outside = folder / "outside" / "weights.bin"
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(weights.raw_data)
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../outside/weights.bin"), ("length", str(outside.stat().st_size))):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "model" / "escaping.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def write_exported(folder: Path, model: onnx.ModelProto, name: str = "linear-fp32",
                   layout: str = "NCHW", **extra: object) -> Path:
    """An exported model folder: model.onnx plus a valid manifest.json."""
    model_path = save(model, folder / "model.onnx")
    graph_input = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    dtype = "uint8" if graph_input.type.tensor_type.elem_type == TensorProto.UINT8 else "float32"
    manifest = {
        "schema_version": manifest_io.SCHEMA_VERSION, "name": name, "created": "2024-01-01T00:00:00Z",
        "files": manifest_io.describe_file(model_path),
        "input": {"name": graph_input.name, "shape": dims, "dtype": dtype, "layout": layout,
                  "scale": 255, "mean": MNIST_MEAN, "std": MNIST_STD},
        "labels": list(LABELS),
        "source": {"arch": "linear", "params": 7850},
        "export": {"opset": OPSET},
        **extra,
    }
    manifest_io.save(folder, manifest)
    return folder


def write_zoo(folder: Path) -> dict[str, Path]:
    """Every variant the runtime must handle, written once into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    zoo = {
        "nchw": save(linear_model("NCHW"), folder / "nchw.onnx"),
        "nhwc": save(linear_model("NHWC"), folder / "nhwc.onnx"),
        "flat": save(linear_model("flat"), folder / "flat.onnx"),
        "fixed1": save(linear_model("NCHW", batch=1), folder / "fixed1.onnx"),
        "fixed8": save(linear_model("NHWC", batch=8), folder / "fixed8.onnx"),
        "uint8": save(linear_model("NCHW", dtype="uint8"), folder / "uint8.onnx"),
        "softmax": save(linear_model("flat", output="softmax"), folder / "softmax.onnx"),
        "external": save(linear_model("NCHW"), folder / "external" / "model.onnx",
                         external_data="model.onnx.data"),
        "custom_op": save(custom_op_model(), folder / "custom_op.onnx"),
        "colour": save(colour_model(), folder / "colour.onnx"),
        "escaping": save_escaping_external(folder / "escape"),
        "qdq": save(qdq_model(), folder / "qdq.onnx"),
        "exported": write_exported(folder / "exported", linear_model("NCHW")),
    }
    return zoo


# --- input files ----------------------------------------------------------------------------


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but which holds almost no data.

    Enough for Pillow to read the size: a 0x0 image, or a decompression bomb's declared size.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def idx_bytes(array: np.ndarray) -> bytes:
    """MNIST's IDX format for a uint8 array of one or three dimensions."""
    dims = b"".join(struct.pack(">I", d) for d in array.shape)
    return bytes([0, 0, 8, array.ndim]) + dims + array.astype(np.uint8).tobytes()


def photo_of(digit: np.ndarray, seed: int = 0) -> Image.Image:
    """A 28 x 28 MNIST digit as a photo of ink on paper: 4x larger, off-centre, grey paper, noise."""
    rng = np.random.default_rng(seed)
    big = np.asarray(Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC))
    canvas = np.zeros((200, 260), np.float32)
    top, left = rng.integers(0, 88), rng.integers(0, 148)
    canvas[top : top + 112, left : left + 112] = big
    paper = 225.0 - 0.8 * canvas + rng.normal(0, 4, canvas.shape)
    return Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).convert("RGB")


def write_good_inputs(folder: Path, digits: np.ndarray) -> dict[str, Path]:
    """Files `run` must accept, each holding digits[0] (and more for arrays)."""
    folder.mkdir(parents=True, exist_ok=True)
    digit = digits[0]
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = digit  # black ink whose opacity is the stroke, on a transparent canvas
    files = {
        "png": folder / "digit.png", "png16": folder / "digit16.png",
        "palette": folder / "palette.png", "rgba": folder / "rgba.png",
        "photo": folder / "photo.jpg", "npy": folder / "digits.npy",
        "npy_float": folder / "digits_float.npy", "idx": folder / "digits-idx3-ubyte",
    }
    Image.fromarray(digit).save(files["png"])
    Image.fromarray(digit.astype(np.uint16) * 257).save(files["png16"])  # 255 -> 65535
    Image.fromarray(digit).convert("P").save(files["palette"])
    Image.fromarray(rgba, "RGBA").save(files["rgba"])
    photo_of(digit).save(files["photo"], quality=95)
    np.save(files["npy"], digits[:3])
    np.save(files["npy_float"], (digits[:2].reshape(2, 784) / 255.0).astype(np.float32))
    files["idx"].write_bytes(idx_bytes(digits[:2]))
    return files


def write_bad_inputs(folder: Path) -> dict[str, Path]:
    """One file per kind of bad input `run` must refuse with a clear message."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / file for name, file in {
        "not_image": "notes.png", "truncated": "truncated.png", "empty_size": "zero.png",
        "bomb": "bomb.png", "npy_object": "objects.npy", "npy_huge": "huge.npy",
        "npy_nan": "nan.npy", "npy_shape": "shape.npy", "idx_labels": "labels-idx1-ubyte",
    }.items()}
    files["not_image"].write_text("this is a text file, not a PNG\n")
    noise = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    Image.fromarray(noise).save(files["truncated"])
    data = files["truncated"].read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["empty_size"].write_bytes(png_with_header(0, 0))
    files["bomb"].write_bytes(png_with_header(100_000, 100_000))
    np.save(files["npy_object"], np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with open(files["npy_huge"], "wb") as handle:  # the header alone claims 78 GB
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": (100_000_000, 28, 28)})
    nan = np.zeros((2, 28, 28), np.float32)
    nan[1, 3, 4] = np.nan
    np.save(files["npy_nan"], nan)
    np.save(files["npy_shape"], np.zeros((4, 27, 27), np.uint8))
    files["idx_labels"].write_bytes(idx_bytes(np.arange(10, dtype=np.uint8)))
    return files
