"""manifest.json validation (each broken manifest is a ManifestError naming the file) and the
atomic writes behind it (a failing disk is an OutputError naming the path, never a traceback)."""

from __future__ import annotations

import copy
import errno
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mnist_edge import fileio
from mnist_edge import manifest as manifest_io
from mnist_edge.errors import ManifestError, OutputError

EXPORTED = Path(__file__).resolve().parents[1] / "exported"
# Model folders; the C libraries `codegen` writes (kind "c-library") are checked in test_exported_models.
SHIPPED = sorted(p.parent.name for p in EXPORTED.glob("*/manifest.json")
                 if json.loads(p.read_text()).get("kind") != "c-library")


def shipped(name: str = "tiny-int8") -> dict[str, Any]:
    return json.loads((EXPORTED / name / "manifest.json").read_text())


def folder_with(tmp_path: Path, manifest: Any, model_from: str = "tiny-int8") -> Path:
    """A model folder holding a shipped model file and `manifest` (any JSON value, or raw text)."""
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copyfile(EXPORTED / model_from / "model.onnx", folder / "model.onnx")
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (folder / "manifest.json").write_text(text)
    return folder


def test_every_shipped_manifest_validates():
    # cnn, tiny, mlp, strided, micro as fp32 and int8; tiny, micro and cnn as all-int8 for an MCU
    assert len(SHIPPED) == 13
    for name in SHIPPED:
        manifest_io.validate(shipped(name), EXPORTED / name / "manifest.json")


def test_a_hand_written_minimal_manifest_still_validates():
    # What a foreign model needs: no exporter named, so no checkpoint or library versions required.
    minimal = {key: shipped("tiny-fp32")[key] for key in ("schema_version", "name", "files", "input", "labels")}
    minimal |= {"source": {"arch": "linear", "params": 7850}, "export": {"opset": 17}}
    assert manifest_io.validate(minimal) is minimal


def _set(path: str, value: Any) -> Any:
    def change(manifest: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        body = manifest
        for key in parents:
            body = body[key]
        if value is _DELETE:
            del body[last]
        else:
            body[last] = value

    return change


_DELETE = object()

BROKEN = [
    ("schema_version", _set("schema_version", 2), "schema_version 2 is not supported"),
    ("no name", _set("name", _DELETE), "missing key 'name'"),
    ("no files", _set("files", _DELETE), "missing section 'files'"),
    ("bytes as text", _set("files.bytes", "19519"), "'files.bytes' has the wrong type (str, expected int)"),
    ("bytes as bool", _set("files.bytes", True), "'files.bytes' has the wrong type"),
    ("opset as float", _set("export.opset", 17.0), "'export.opset' has the wrong type"),
    ("sha256 format", _set("files.sha256", "ABC"), "'files.sha256' must be 64 lowercase hexadecimal"),
    ("no checkpoint hash", _set("source.checkpoint_sha256", _DELETE), "missing key 'source.checkpoint_sha256'"),
    ("no recipe", _set("source.recipe", _DELETE), "missing key 'source.recipe'"),
    ("recipe as text", _set("source.recipe", "default"), "'source.recipe' has the wrong type"),
    ("checkpoint hash format", _set("source.checkpoint_sha256", "x" * 64), "'source.checkpoint_sha256' must be"),
    ("no torch version", _set("export.torch", _DELETE), "missing key 'export.torch'"),
    ("no onnxruntime version", _set("export.onnxruntime", _DELETE), "missing key 'export.onnxruntime'"),
    ("nine labels", _set("labels", [str(d) for d in range(9)]), "'labels' must be a list of 10 distinct"),
    ("repeated label", _set("labels", ["0"] * 10), "'labels' must be a list of 10 distinct"),
    ("numeric labels", _set("labels", list(range(10))), "'labels' must be a list of 10 distinct strings"),
    ("output vs labels", _set("output.shape", ["batch", 11]), "'output.shape' ends in 11 but there are 10"),
    ("quantization as text", _set("quantization", "static"), "'quantization' must be null or an object"),
    ("no mode", _set("quantization.mode", _DELETE), "missing key 'quantization.mode'"),
    ("unknown mode", _set("quantization.mode", "half"), "'quantization.mode' must be static or dynamic"),
    ("per-channel as text", _set("quantization.per_channel", "yes"), "'quantization.per_channel' has the wrong"),
    ("fp32 hash", _set("quantization.fp32_model_sha256", "0"), "'quantization.fp32_model_sha256' must be"),
    ("metrics as list", _set("metrics", []), "'metrics' must be null or an object"),
    ("accuracy > 1", _set("metrics.test_accuracy", 99.6), "'metrics.test_accuracy' must be a fraction"),
    ("accuracy vs count", _set("metrics.test_correct", 9000), "disagrees with 9000 of 10000 correct"),
    ("correct > images", _set("metrics.test_correct", 10001), "'metrics.test_correct' 10001 is not between"),
    ("images as text", _set("metrics.test_images", "10000"), "'metrics.test_images' has the wrong type"),
    ("passed as text", _set("metrics.parity_passed", "yes"), "'metrics.parity_passed' has the wrong type"),
    ("no command", _set("metrics.measured_with", _DELETE), "'metrics.measured_with' must name the command"),
]


@pytest.mark.parametrize(("change", "message"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_a_broken_manifest_is_refused_naming_the_file_and_the_key(tmp_path, change, message):
    manifest = copy.deepcopy(shipped())
    change(manifest)
    folder = folder_with(tmp_path, manifest)
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        manifest_io.load(folder)
    assert caught.value.path == folder / "manifest.json"
    assert str(caught.value).startswith(f"{folder / 'manifest.json'}: ")


@pytest.mark.parametrize(("text", "message"), [
    ("{\"schema_version\": 1,", "not valid JSON"),
    ("", "not valid JSON"),
    ("[1, 2]", "manifest must be a JSON object"),
])
def test_a_manifest_that_is_not_a_json_object_is_refused(tmp_path, text, message):
    folder = folder_with(tmp_path, text)
    with pytest.raises(ManifestError, match=message) as caught:
        manifest_io.load(folder)
    assert caught.value.path == folder / "manifest.json"


def test_a_model_file_that_does_not_match_its_manifest_is_named(tmp_path):
    manifest = shipped()
    manifest["files"]["sha256"] = "0" * 64
    folder = folder_with(tmp_path, manifest)
    with pytest.raises(ManifestError, match="model file sha256 does not match the manifest") as caught:
        manifest_io.load(folder)
    assert caught.value.path == folder / "model.onnx"
    manifest_io.load(folder, verify_hash=False)  # the structure itself is fine


def test_a_missing_manifest_is_named(tmp_path):
    with pytest.raises(ManifestError, match="file not found") as caught:
        manifest_io.load(tmp_path)
    assert caught.value.path == tmp_path / "manifest.json"


# --- atomic writes --------------------------------------------------------------------------------


def _disk_full(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failing_temporary_file_is_an_output_error(tmp_path, monkeypatch):
    # Tests run as root, where a read-only folder does not deny writes: the failure is injected.
    monkeypatch.setattr(tempfile, "mkstemp", _disk_full)
    with pytest.raises(OutputError, match=r"cannot write \(No space left on device\)") as caught:
        manifest_io.save(tmp_path, shipped())
    assert caught.value.path == tmp_path / "manifest.json"


def test_a_failing_write_is_an_output_error_and_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "data.bin").write_bytes(b"before")
    with pytest.raises(OutputError, match=r"cannot write \(No space left on device\)") as caught:
        fileio.atomic_write(tmp_path / "data.bin", _disk_full)
    assert caught.value.path == tmp_path / "data.bin"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]  # no temporary file left
    assert (tmp_path / "data.bin").read_bytes() == b"before"


def test_a_failing_fsync_is_an_output_error(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.os, "fsync", _disk_full)
    with pytest.raises(OutputError, match="No space left") as caught:
        fileio.atomic_write_text(tmp_path / "note.txt", "hello")
    assert caught.value.path == tmp_path / "note.txt" and list(tmp_path.iterdir()) == []


def test_a_staged_folder_appears_only_when_complete(tmp_path):
    with pytest.raises(RuntimeError):
        with fileio.staged_dir(tmp_path / "new" / "out") as stage:
            (stage / "model.onnx").write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # neither the folder, its temporary twin, nor "new"
    with fileio.staged_dir(tmp_path / "new" / "out") as stage:
        (stage / "model.onnx").write_bytes(b"whole")
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["out"]
    assert (tmp_path / "new" / "out" / "model.onnx").read_bytes() == b"whole"


def test_a_staged_folder_replaces_files_and_drops_stale_ones(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("model.onnx", "manifest.json", "parity.json", "notes.txt"):
        (out / name).write_text("old")
    with fileio.staged_dir(out, stale=("parity.json",), last=("manifest.json",)) as stage:
        (stage / "manifest.json").write_text("new")
        (stage / "model.onnx").write_text("new")
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "model.onnx": "new", "manifest.json": "new", "notes.txt": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_staged_folder_replaces_and_drops_whole_subfolders(tmp_path):
    """A site rebuilt in place: its ort/ folder is replaced whole, a stale folder goes."""
    out = tmp_path / "out"
    (out / "ort").mkdir(parents=True)
    (out / "ort" / "old.wasm").write_text("old")
    (out / "cache").mkdir()
    (out / "cache" / "x").write_text("old")
    with fileio.staged_dir(out, stale=("cache", "ort")) as stage:
        (stage / "ort").mkdir()
        (stage / "ort" / "new.wasm").write_text("new")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["ort", "ort/new.wasm"]
    with fileio.staged_dir(out) as stage:  # not named stale: replaced all the same
        (stage / "ort").mkdir()
        (stage / "ort" / "newer.wasm").write_text("newer")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["ort", "ort/newer.wasm"]


def test_an_output_under_a_regular_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("a regular file")
    with pytest.raises(OutputError, match=r"cannot create directory \(Not a directory\)") as caught:
        fileio.check_creatable(tmp_path / "file" / "sub")
    assert caught.value.path == tmp_path / "file" / "sub"
    assert fileio.check_creatable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]  # nothing created
