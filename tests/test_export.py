"""torch -> fp32 ONNX: every architecture, batch-norm folding, metadata, checks and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from mnist_edge import manifest as manifest_io  # noqa: E402
from mnist_edge.config import ARCHS, LABELS  # noqa: E402
from mnist_edge.errors import CheckpointError, ConfigError, ModelFileError, OutputError  # noqa: E402
from mnist_edge.export import (  # noqa: E402
    BATCH_DIM,
    INPUT_NAME,
    MAX_OPSET,
    MIN_OPSET,
    OUTPUT_NAME,
    add_metadata,
    check_model,
    check_opset,
    export_checkpoint,
    fold_batch_norm,
    output_folders,
    to_onnx,
)
from mnist_edge.models import build  # noqa: E402


def random_model(arch: str) -> torch.nn.Module:
    """An architecture with random weights and non-trivial batch-norm statistics."""
    torch.manual_seed(0)
    model = build(arch)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_exports_with_a_dynamic_batch(arch):
    model = random_model(arch)
    proto, exporter = to_onnx(fold_batch_norm(model), 17)
    add_metadata(proto, arch=arch, normalization={"scale": 255.0, "mean": 0.1307, "std": 0.3081},
                 checkpoint_sha256="0" * 64)
    proto = check_model(proto, 17)
    assert exporter == "torchscript"
    assert "BatchNormalization" not in {n.op_type for n in proto.graph.node}
    (graph_input,) = proto.graph.input
    assert graph_input.name == INPUT_NAME and proto.graph.output[0].name == OUTPUT_NAME
    assert graph_input.type.tensor_type.shape.dim[0].dim_param == BATCH_DIM
    sess = session(proto)
    x = torch.randn(7, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        for count in (1, 7):
            (out,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x[:count].numpy()})
            assert out.shape == (count, 10)
            np.testing.assert_allclose(out, model(x[:count]).numpy(), atol=1e-4, rtol=0)


def test_folding_batch_norm_keeps_the_function():
    model = random_model("cnn")
    folded = fold_batch_norm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.Conv2d) for m in folded.modules()) == 5
    x = torch.randn(4, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


def test_the_opset_is_the_one_asked_for():
    proto, _ = to_onnx(fold_batch_norm(random_model("tiny")), MIN_OPSET)
    assert check_model(proto, MIN_OPSET).opset_import[0].version == MIN_OPSET


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, MAX_OPSET + 1, 99])
def test_an_opset_the_exporter_cannot_produce_is_refused(opset):
    with pytest.raises(ConfigError, match=f"--opset {opset} cannot be produced"):
        check_opset(opset)


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "quick-fp32"
    export_checkpoint(tiny_run, out)
    return out


def test_export_writes_a_checked_model_and_a_valid_manifest(exported, tiny_run):
    manifest = manifest_io.load(exported)  # validates and checks the sha256
    assert manifest["files"]["model"] == "model.onnx"
    assert manifest["input"] == {"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float32",
                                 "layout": "NCHW", "scale": 255.0, "mean": 0.1307, "std": 0.3081}
    assert manifest["labels"] == list(LABELS)
    arch = json.loads((tiny_run / "config.json").read_text())["arch"]  # the fast preset's
    assert manifest["source"]["arch"] == arch and manifest["source"]["params"] > 0
    assert Path(manifest["source"]["checkpoint"]).resolve() == tiny_run.resolve()
    assert manifest["source"]["recipe"]["arch"] == arch
    assert manifest["export"]["opset"] == 17 and manifest["quantization"] is None
    model = onnx.load(str(exported / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["labels"]) == list(LABELS)
    assert props["arch"] == arch and float(props["input_std"]) == pytest.approx(0.3081)
    assert props["checkpoint_sha256"] == manifest["source"]["checkpoint_sha256"]
    assert sorted(p.name for p in exported.iterdir()) == ["manifest.json", "model.onnx"]  # no temp files


def test_output_folders_name_the_fp32_and_int8_siblings(tmp_path):
    assert output_folders(tmp_path / "cnn", int8=True) == {"fp32": tmp_path / "cnn-fp32",
                                                          "int8": tmp_path / "cnn-int8"}
    assert output_folders(tmp_path / "cnn-fp32", int8=False) == {"fp32": tmp_path / "cnn-fp32"}


# --- bad inputs -------------------------------------------------------------------------------


def broken_run(tiny_run: Path, folder: Path, how: str) -> Path:
    run = folder / how
    shutil.copytree(tiny_run, run)
    if how == "truncated":
        weights = run / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif how == "foreign":
        (run / "config.json").write_text(json.dumps({"format": "keras", "layers": []}))
    elif how == "missing":
        shutil.rmtree(run)
    return run


@pytest.mark.parametrize(("how", "message"), [
    ("missing", "not a directory"),
    ("truncated", "does not match the hash"),
    ("foreign", "not an mnist-edge checkpoint"),
])
def test_a_bad_checkpoint_is_refused_and_nothing_is_written(tiny_run, tmp_path, how, message):
    run = broken_run(tiny_run, tmp_path, how)
    with pytest.raises(CheckpointError, match=message):
        export_checkpoint(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_unwritable_output_is_refused(tiny_run, tmp_path):
    (tmp_path / "file").write_text("a regular file")
    with pytest.raises(OutputError, match="cannot create directory"):
        export_checkpoint(tiny_run, tmp_path / "file" / "out")


# --- nothing half-written -----------------------------------------------------------------------

QUICK_INT8 = {"calib_images": 50}


def _fail(*args, **kwargs):
    raise ModelFileError("injected failure")


@pytest.mark.parametrize("stage", ["mnist_edge.export.smoke_test", "mnist_edge.quantize._quantize",
                                   "mnist_edge.export.record_parity"])
def test_a_failing_export_leaves_no_new_folder_behind(tiny_run, tmp_path, monkeypatch, stage):
    from mnist_edge.export import export_run
    from mnist_edge.quantize import QuantizeOptions

    monkeypatch.setattr(stage, _fail)
    with pytest.raises(ModelFileError, match="injected"):
        export_run(tiny_run, tmp_path / "new" / "m", quantize_options=QuantizeOptions(**QUICK_INT8), limit=50)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_export_leaves_existing_folders_as_they_were(tiny_run, tmp_path, monkeypatch):
    from mnist_edge.export import export_run
    from mnist_edge.quantize import QuantizeOptions

    for role in ("fp32", "int8"):
        (tmp_path / f"m-{role}").mkdir()
        (tmp_path / f"m-{role}" / "model.onnx").write_bytes(b"the previous model")
    monkeypatch.setattr("mnist_edge.quantize._quantize", _fail)
    with pytest.raises(ModelFileError, match="injected"):
        export_run(tiny_run, tmp_path / "m", quantize_options=QuantizeOptions(**QUICK_INT8), parity=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-fp32", "m-int8"]
    for role in ("fp32", "int8"):
        assert [p.name for p in (tmp_path / f"m-{role}").iterdir()] == ["model.onnx"]
        assert (tmp_path / f"m-{role}" / "model.onnx").read_bytes() == b"the previous model"


def test_exporting_again_without_parity_removes_the_old_parity_report(tiny_run, tmp_path):
    from mnist_edge.export import export_run

    folder = tmp_path / "m-fp32"
    folder.mkdir()
    for name in ("parity.json", "parity_disagreements.png", "notes.txt"):
        (folder / name).write_text("about the previous model")
    result = export_run(tiny_run, tmp_path / "m", int8=False, parity=False)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx", "notes.txt"]
    assert result.fp32.model_path == folder / "model.onnx" and manifest_io.load(folder)["metrics"] is None


def test_the_results_and_reports_name_the_final_folders(tiny_run, tmp_path):
    from mnist_edge.export import export_run
    from mnist_edge.parity import Thresholds
    from mnist_edge.quantize import QuantizeOptions

    result = export_run(tiny_run, tmp_path / "m", quantize_options=QuantizeOptions(**QUICK_INT8), limit=50,
                        thresholds=Thresholds(int8_max_drop_points=100), figures=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-fp32", "m-int8"]  # no temporary folders
    assert result.fp32.model_path == tmp_path / "m-fp32" / "model.onnx"
    assert result.int8.model_path == tmp_path / "m-int8" / "model.onnx" and result.int8.model_path.is_file()
    assert {m.role: m.path for m in result.parity.models if m.role != "pytorch"} == {
        role: str(tmp_path / f"m-{role}" / "model.onnx") for role in ("fp32", "int8")}
    saved = json.loads((tmp_path / "m-int8" / "parity.json").read_text())
    assert str(tmp_path / "m-int8") in json.dumps(saved["models"]) and ".tmp" not in json.dumps(saved)
    assert manifest_io.load(tmp_path / "m-int8")["metrics"]["test_images"] == 50
