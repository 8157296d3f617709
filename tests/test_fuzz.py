"""The fuzz battery (scripts/fuzz.py): a short fixed-seed run, and one regression test per crash it found.

The regression tests write the smallest input that crashed a reader into tmp_path and check that
the reader now raises its module's typed error (the CLI: exit 2, one `error:` line).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.errors import ConfigError, InputImageError, ManifestError, MnistEdgeError, OutputError

ROOT = Path(__file__).resolve().parents[1]
EXPORTED = ROOT / "exported"
SCRIPT = ROOT / "scripts" / "fuzz.py"
CLI = Path(sys.executable).with_name("mnist-edge")
CLI_CASES = 12  # a sample: the kinds whose CLI check needs no torch


# --- the battery -------------------------------------------------------------------------------


def _battery(tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    # A separate process: the battery forks workers, which must not inherit this pytest process's
    # torch threads (tests before this one may have trained).
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=tmp_path)


@pytest.fixture(scope="module")
def battery_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    pytest.importorskip("hypothesis", reason="the fuzz battery needs Hypothesis: pip install -e '.[fuzz]'")
    pytest.importorskip("torch", reason="the fuzz battery's seeds need torch: pip install -e '.[train]'")
    tmp = tmp_path_factory.mktemp("fuzz")
    done = _battery(tmp, "--cases", "300", "--cli-cases", str(CLI_CASES), "--seed", "0", "--workers", "2",
                    "--json", str(tmp / "results.json"))
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((tmp / "results.json").read_text()), done.stdout, tmp / "out"


def test_battery_sample_has_no_uncaught_errors_hangs_or_crashes(battery_run):
    results, stdout, _ = battery_run
    failures = results["in_process"]["failures"] + results["cli"]["failures"]
    assert not failures, "\n".join(f"{f['kind']} #{f['index']} {f['target']}: {f['error']}" for f in failures)
    assert results["in_process"]["cases"] == 300 and results["cli"]["cases"] == CLI_CASES
    for part in ("in_process", "cli"):
        assert {results[part]["outcomes"][o] for o in ("uncaught", "hang", "crash")} == {0}


def test_battery_prints_a_table_per_kind_and_the_goals(battery_run):
    results, stdout, _ = battery_run
    for kind in ("png", "jpeg", "bmp", "npy", "idx", "idx-gz", "onnx", "onnx-external", "manifest",
                 "checkpoint-config", "safetensors", "sweep-toml", "search-toml", "pipeline-json", "run-folder"):
        assert re.search(rf"^{re.escape(kind)}\s+\d+", stdout, re.MULTILINE), kind
    assert "typed error" in stdout and "memory bound: RLIMIT_AS" in stdout
    for goal in ("in-process cases", "CLI cases", "uncaught", "hang", "crash", "peak RSS"):
        assert re.search(rf"^{goal}.*goal .*(PASS|FAIL)$", stdout, re.MULTILINE), goal
    memory = results["memory"]
    assert 0 < memory["worker_peak_rss_bytes"] <= memory["limit_bytes"]
    assert 0 < memory["cli_peak_rss_bytes"] <= memory["limit_bytes"]


def test_same_seed_same_cases(tmp_path: Path):
    pytest.importorskip("hypothesis", reason="the fuzz battery needs Hypothesis: pip install -e '.[fuzz]'")
    from scripts.fuzzing import seeds
    from scripts.fuzzing.cases import KINDS_BY_NAME, CaseMaker

    seeds.write_images(tmp_path / "images", seeds.drawn_digits(4))
    first, again, other = CaseMaker(tmp_path, 7), CaseMaker(tmp_path, 7), CaseMaker(tmp_path, 8)
    for index in range(20):
        case = first.case(KINDS_BY_NAME["npy"], index)
        assert case == again.case(KINDS_BY_NAME["npy"], index)
    assert [first.case(KINDS_BY_NAME["png"], i) for i in range(20)] != \
           [other.case(KINDS_BY_NAME["png"], i) for i in range(20)]


def test_atheris_mode_runs_libfuzzer_on_one_kind(tmp_path: Path, battery_run):
    pytest.importorskip("atheris", reason="atheris has no wheel here: pip install -e '.[fuzz]' on Linux")
    _, _, out = battery_run
    done = _battery(tmp_path, "--atheris", "npy", "--runs", "200", "--seeds", str(out / "seeds"), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 200 runs" in done.stderr
    assert not list((tmp_path / "out").glob("crash-*"))


# --- regression tests: .npy headers (inputs.py) ---------------------------------------------------


def npy_bytes(header: bytes, images: int = 1) -> bytes:
    """A version-1.0 .npy file with `header` as its dict text, padded like numpy pads it."""
    padded = header + b" " * ((-(len(header) + 11)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(padded)) + padded + bytes(784 * images)


# The known crash (one byte of the dict damaged: tokenize.TokenError from numpy's repair
# of Python 2 headers), and the other errors of numpy's header parser, found by the battery.
NPY_HEADERS = {
    "shape key damaged by NUL bytes": b"{'descr': '|u1', 'fortran_order': False, 'shape\0\0\0\0\x004, 28, 28), }",
    "colon after shape replaced by NULs": b"{'descr': '|u1', 'fortran_order': False, 'shape'\0\0 (1, 28, 28), }",
    "unterminated string": b"{'descr': '|u1', 'fortran_order': False, 'shape': (1, 28, 28), \"\"\"}",
    "unhashable key": b"{'descr': '|u1', 'fortran_order': False, 'shape': (1, 28, 28), []: 1}",
    "nested too deeply": b"{'descr': '|u1', 'fortran_order': False, 'shape': (" + b"-" * 3000 + b"1, 28, 28), }",
}


@pytest.mark.parametrize("header", NPY_HEADERS.values(), ids=NPY_HEADERS.keys())
def test_damaged_npy_header_is_an_input_error(tmp_path: Path, header: bytes):
    from mnist_edge.inputs import load_file

    path = tmp_path / "bad.npy"
    path.write_bytes(npy_bytes(header))
    with pytest.raises(InputImageError, match=r"bad\.npy: not a valid \.npy file \(damaged header"):
        load_file(path)


def test_npy_declaring_minus_one_images_is_an_input_error(tmp_path: Path):
    from mnist_edge.inputs import load_file

    path = tmp_path / "minus.npy"
    path.write_bytes(npy_bytes(b"{'descr': '|u1', 'fortran_order': False, 'shape': (-1, 28, 28), }"))
    with pytest.raises(InputImageError, match=r"shape \(-1, 28, 28\) holds no images"):
        load_file(path)


def test_cli_run_on_the_damaged_npy_prints_one_error_line(tmp_path: Path):
    path = tmp_path / "bad.npy"
    path.write_bytes(npy_bytes(NPY_HEADERS["shape key damaged by NUL bytes"]))
    done = subprocess.run([str(CLI), "run", str(EXPORTED / "tiny-int8"), str(path)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(done.stderr.strip().splitlines()) == 1 and "bad.npy: not a valid .npy file" in done.stderr


# --- regression tests: IDX, sweep TOML, pipeline.json, sweep results ---------------------------------


def test_cli_sweep_whose_name_looks_like_markup_prints_one_error_line(tmp_path: Path):
    config = tmp_path / "markup.toml"
    config.write_text('[sweep]\nname = "a[/x]b"\n\n[[run]]\nname = "r1"\narch = "tiny"\n')
    occupied = tmp_path / "occupied"
    occupied.write_text("a file: the sweep refuses this --out after reading the config\n")
    done = subprocess.run([str(CLI), "sweep", str(config), "--out", str(occupied), "--no-download"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {occupied}: exists and is not a directory"]
    assert "sweep a[/x]b: 1 runs" in done.stdout



def test_gzipped_idx_with_a_damaged_deflate_stream_is_an_input_error(tmp_path: Path):
    from mnist_edge.data import read_idx
    from mnist_edge.errors import DataError
    from mnist_edge.inputs import load_file

    raw = bytearray(gzip.compress(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(range(256)) * 4,
                                  mtime=0))
    raw[20] ^= 0xFF  # inside the deflate stream: zlib.error, not gzip.BadGzipFile
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(path)
    with pytest.raises(InputImageError, match="cannot read IDX file"):
        load_file(path)


def test_sweep_config_nested_too_deeply_is_a_config_error(tmp_path: Path):
    from mnist_edge.sweep import load_config

    path = tmp_path / "deep.toml"
    path.write_text("[grid]\nlr = " + "[" * 5000 + "0.1" + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)


def _pipeline_json(tmp_path: Path, **changes) -> tuple[object, object]:
    from mnist_edge.config import preset
    from mnist_edge.pipeline import Paths, PipelineOptions

    recipe = preset("fast", arch="tiny", epochs=1)
    saved = {"preset_recipe": recipe.to_dict(), "arch": "tiny", "created": "2025-01-01",
             "steps": [{"name": "data", "status": "done", "seconds": 1.0, "message": "", "fingerprint": "ab"}],
             "summary": {}, **changes}
    (tmp_path / "pipeline.json").write_text(json.dumps(saved))
    return PipelineOptions(recipe=recipe, out=tmp_path, resume=True), Paths(tmp_path)


PIPELINE_DAMAGE = {
    "steps is a string": {"steps": "data"},
    "a step is false": {"steps": [False]},
    "a step is a list": {"steps": [["data"]]},
    "a step's name is an object": {"steps": [{"name": {"a": 1}}]},
    "a step has an unknown field": {"steps": [{"name": "data", "colour": "red"}]},
    "seconds is a string": {"steps": [{"name": "data", "seconds": "1"}]},
    "summary is a list": {"summary": [1]},
}


@pytest.mark.parametrize("changes", PIPELINE_DAMAGE.values(), ids=PIPELINE_DAMAGE.keys())
def test_damaged_pipeline_json_is_an_output_error_on_resume(tmp_path: Path, changes: dict):
    from mnist_edge.pipeline import _load_or_new_state

    options, paths = _pipeline_json(tmp_path, **changes)
    with pytest.raises(OutputError, match=r"pipeline\.json: .*start over with --force"):
        _load_or_new_state(options, paths)


def test_pipeline_json_that_is_not_an_object_is_an_output_error(tmp_path: Path):
    from mnist_edge.pipeline import _load_or_new_state

    options, paths = _pipeline_json(tmp_path)
    (tmp_path / "pipeline.json").write_text("false")
    with pytest.raises(OutputError, match="not a pipeline record"):
        _load_or_new_state(options, paths)


def _finished_run(root: Path) -> Path:
    """The files a sweep's `collect` reads, valid: parity, the int8 model folder, bench, metrics."""
    import shutil

    shutil.copytree(EXPORTED / "tiny-int8", root / "exported" / "int8")
    files = {
        "parity/parity.json": {"passed": True, "models": [{"role": r, "accuracy": 0.9}
                                                          for r in ("pytorch", "fp32", "int8")]},
        "bench/bench.json": {"models": [{"path": "exported/int8/model.onnx", "latency": {"p50_us": 50.0}}]},
        "checkpoint/metrics.json": {"epochs": [{"seconds": 2.0}]},
    }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(content))
    return root


COLLECT_DAMAGE = {
    "metrics.json is false": ("checkpoint/metrics.json", False),
    "parity models are numbers": ("parity/parity.json", {"passed": True, "models": [1, 2]}),
    "no int8 model in bench.json": ("bench/bench.json", {"models": []}),
    "an epoch without seconds": ("checkpoint/metrics.json", {"epochs": [{}]}),
    "bench path is a number": ("bench/bench.json", {"models": [{"path": 5}]}),
}


@pytest.mark.parametrize(("rel", "content"), COLLECT_DAMAGE.values(), ids=COLLECT_DAMAGE.keys())
def test_sweep_collect_of_damaged_results_is_a_config_error(tmp_path: Path, rel: str, content: object):
    from mnist_edge.config import preset
    from mnist_edge.sweep import RunSpec, collect

    run = _finished_run(tmp_path)
    spec = RunSpec("tiny", preset("fast", arch="tiny"))
    assert collect(run, spec).status == "done"
    (run / rel).write_text(json.dumps(content))
    with pytest.raises(ConfigError, match="lacks an expected field"):
        collect(run, spec)


def test_report_of_json_nested_too_deeply_names_the_file(tmp_path: Path):
    from mnist_edge.report import build_report, missing_parts

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.json").write_text("[" * 100_000 + "]" * 100_000)
    build_report(tmp_path)
    assert any(line.startswith("bench/bench.json") and "not valid JSON" in line for line in missing_parts(tmp_path))


# --- regression tests: manifests, ONNX models, checkpoints ------------------------------------------


def _manifest_folder(tmp_path: Path, **input_changes) -> Path:
    import shutil

    folder = Path(shutil.copytree(EXPORTED / "tiny-int8", tmp_path / "model"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["input"] |= input_changes
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


MANIFEST_DAMAGE = {
    "dtype that numpy refuses": ({"dtype": '"float32"'}, "'input.dtype' must be one of float32, uint8"),
    "dtype numpy knows but no model takes": ({"dtype": "complex128"}, "'input.dtype' must be one of"),
    "NaN scale": ({"scale": float("nan")}, "must be finite numbers"),
    "infinite mean": ({"mean": float("inf")}, "must be finite numbers"),
    "mean beyond the float range": ({"mean": 10**400}, "must be finite numbers"),
}


@pytest.mark.parametrize(("changes", "message"), MANIFEST_DAMAGE.values(), ids=MANIFEST_DAMAGE.keys())
def test_manifest_with_a_bad_input_section_is_a_manifest_error(tmp_path: Path, changes: dict, message: str):
    from mnist_edge import manifest
    from mnist_edge.runtime import Predictor

    folder = _manifest_folder(tmp_path, **changes)
    with pytest.raises(ManifestError, match=re.escape(message)):
        manifest.load(folder)
    with pytest.raises(ManifestError, match=re.escape(message)):
        Predictor.load(folder)


def _edited_model(tmp_path: Path, edit, *, external: bool = False) -> Path:
    onnx = pytest.importorskip("onnx", reason="quantize reads models with onnx: pip install -e '.[mcu]'")
    model = onnx.load(str(EXPORTED / "tiny-fp32" / "model.onnx"))
    path = tmp_path / "model.onnx"
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
        model = onnx.load(str(path), load_external_data=False)
    edit(model)
    path.write_bytes(model.SerializeToString())
    return path


def test_quantize_reader_on_an_unknown_element_type_is_a_model_file_error(tmp_path: Path):
    from mnist_edge.errors import ModelFileError
    from mnist_edge.quantize import load_model

    def unknown_type(model) -> None:
        model.graph.initializer[0].data_type = 99

    with pytest.raises(ModelFileError, match="invalid ONNX model"):
        load_model(_edited_model(tmp_path, unknown_type))


def test_quantize_reader_on_an_empty_external_data_location_is_a_model_file_error(tmp_path: Path):
    from mnist_edge.errors import ModelFileError
    from mnist_edge.quantize import load_model

    def empty_location(model) -> None:
        entry = next(e for e in model.graph.initializer[0].external_data if e.key == "location")
        entry.value = ""

    with pytest.raises(ModelFileError, match="cannot load external data"):
        load_model(_edited_model(tmp_path, empty_location, external=True))


@pytest.fixture
def resumable_checkpoint(tmp_path: Path) -> Path:
    pytest.importorskip("torch", reason="checkpoints need torch: pip install -e '.[train]'")
    from scripts.fuzzing.seeds import write_checkpoint

    write_checkpoint(tmp_path / "run")
    return tmp_path / "run"


OPTIMIZER_DAMAGE = {
    "state entry is false": lambda opt: opt["state"].update({"0": False}),
    "state is a list": lambda opt: opt.update({"state": [1]}),
    "a parameter id is an object": lambda opt: opt["param_groups"][0]["params"].append({"a": 1}),
    "param_groups is a number": lambda opt: opt.update({"param_groups": 3}),
}


@pytest.mark.parametrize("damage", OPTIMIZER_DAMAGE.values(), ids=OPTIMIZER_DAMAGE.keys())
def test_damaged_optimizer_state_is_a_checkpoint_error_on_resume(resumable_checkpoint: Path, damage):
    from mnist_edge import checkpoint
    from mnist_edge.errors import CheckpointError
    from mnist_edge.models import build
    from mnist_edge.train import make_optimizer

    config = checkpoint.load_config(resumable_checkpoint, for_resume=True)
    damage(config["optimizer"])
    model = build("tiny")
    with pytest.raises(CheckpointError, match="optimizer state does not fit"):
        checkpoint.load_optimizer(make_optimizer(model, config["recipe_obj"]), resumable_checkpoint, config)


# --- regression tests fixed in fileio.py and runtime.py (found by the battery) ----------------------


def _refused(load) -> None:
    """`load()` must raise a MnistEdgeError (anything else propagates and fails the test)."""
    with pytest.raises(MnistEdgeError):
        load()


def test_manifest_nested_too_deeply_is_a_manifest_error(tmp_path: Path):
    from mnist_edge import manifest

    (tmp_path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError):
        manifest.load(tmp_path)


def test_model_without_outputs_is_a_model_file_error(tmp_path: Path):
    from mnist_edge.runtime import Predictor

    path = _edited_model(tmp_path, lambda model: model.graph.ClearField("output"))
    _refused(lambda: Predictor.load(path))


def test_model_with_a_fixed_batch_of_2_to_the_40_is_a_model_file_error(tmp_path: Path):
    from mnist_edge.runtime import Predictor

    def huge_batch(model) -> None:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2**40

    path = _edited_model(tmp_path, huge_batch)
    _refused(lambda: Predictor.load(path).predict(np.zeros((1, 28, 28), np.uint8)))


def test_model_with_a_non_utf8_tensor_name_is_a_model_file_error(tmp_path: Path):
    from mnist_edge.runtime import Predictor

    raw = bytearray((EXPORTED / "tiny-int8" / "model.onnx").read_bytes())
    raw[raw.index(b"bias_quantized_scale")] = 0xE4  # the first byte of a name onnxruntime quotes in its error
    path = tmp_path / "model.onnx"
    path.write_bytes(bytes(raw))
    _refused(lambda: Predictor.load(path))


def test_search_objectives_that_are_not_names_are_a_config_error(tmp_path: Path):
    """The battery's search-toml kind: an objective wrapped in a list (or a table) reached a dict
    lookup and raised TypeError: unhashable type."""
    from mnist_edge.search.space import load_search_config

    for objective in ('["latency"]', "{}", "{a = 1}"):
        path = tmp_path / "search.toml"
        path.write_text(f'[search]\nobjectives = ["accuracy", {objective}]\n[search.space]\nlr = [0.01, 0.02]\n')
        with pytest.raises(ConfigError, match="line 2: key 'objectives': must be a non-empty list of names"):
            load_search_config(path)
    done = subprocess.run([str(CLI), "search", str(path), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
