"""Reliability: hostile ONNX models, onnxruntime kept quiet, run-folder locks, killed runs, a full
disk, and a whole chain (train -> fp32 -> int8) that is bitwise deterministic on the CPU."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, numpy_helper  # noqa: E402
from onnx import helper as oh  # noqa: E402

from mnist_edge import runlock  # noqa: E402
from mnist_edge.errors import FolderBusyError, ModelFileError, OutputError  # noqa: E402
from mnist_edge.runtime import Predictor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DIGIT_MODEL = REPO / "exported" / "tiny-int8"


def cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_edge", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


# --- hostile models ---------------------------------------------------------------------------

def _digit_graph(extra_nodes: list, extra_inits: list, final: str) -> onnx.ModelProto:
    """x [N,1,28,28] -> the first 10 pixels + `final` (a scalar the hostile part computes)."""
    nodes = [oh.make_node("Flatten", ["x"], ["flat"]),
             oh.make_node("Slice", ["flat", "zero", "ten", "one_axis"], ["first"]),
             *extra_nodes, oh.make_node("Add", ["first", final], ["y"])]
    inits = [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in
             (("zero", 0), ("ten", 10), ("one_axis", 1))] + extra_inits
    graph = oh.make_graph(nodes, "hostile", [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
                          [oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _huge(op: str) -> onnx.ModelProto:
    """A graph that asks for a 60,000 x 60,000 float tensor (14.4 GB) and sums it."""
    shape = numpy_helper.from_array(np.array([60_000, 60_000], np.int64), "shape")
    one = numpy_helper.from_array(np.ones((1, 1), np.float32), "one")
    make = {
        "ConstantOfShape": oh.make_node("ConstantOfShape", ["shape"], ["big"],
                                        value=numpy_helper.from_array(np.ones(1, np.float32))),
        "Expand": oh.make_node("Expand", ["one", "shape"], ["big"]),
        "Tile": oh.make_node("Tile", ["one", "shape"], ["big"]),
    }[op]
    return _digit_graph([make, oh.make_node("ReduceSum", ["big"], ["total"], keepdims=0)], [shape, one], "total")


def _endless_loop() -> onnx.ModelProto:
    body = oh.make_graph(
        [oh.make_node("Identity", ["cond_in"], ["cond_out"]), oh.make_node("Identity", ["v_in"], ["v_out"])], "body",
        [oh.make_tensor_value_info("i", TensorProto.INT64, []),
         oh.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         oh.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [oh.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         oh.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    trips = numpy_helper.from_array(np.array(10**12, np.int64), "trips")
    cond = numpy_helper.from_array(np.array(True), "cond")
    return _digit_graph([oh.make_node("Loop", ["trips", "cond", "zero_f"], ["looped"], body=body)],
                        [trips, cond, numpy_helper.from_array(np.array(0.0, np.float32), "zero_f")], "looped")


@pytest.mark.parametrize("op", ["ConstantOfShape", "Expand", "Tile"])
def test_a_graph_asking_for_a_huge_tensor_is_a_clear_error_within_the_memory_cap(tmp_path: Path, op: str) -> None:
    path = tmp_path / f"{op}.onnx"
    onnx.save(_huge(op), path)
    # In a child with a 3 GiB address-space limit: were the cap not applied, the 14.4 GB tensor
    # would fail there with a MemoryError or a kill instead of the ModelFileError asserted.
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "from mnist_edge.runtime import Predictor\n"
            "from mnist_edge.errors import ModelFileError\n"
            "try:\n    Predictor.load(sys.argv[1])\nexcept ModelFileError as exc:\n    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("refused:"), done.stdout + done.stderr[-800:]
    assert op in done.stdout and "onnxruntime_src" not in done.stdout
    assert done.stderr == ""  # onnxruntime's own log lines stay silent


def _needs_256_mib() -> onnx.ModelProto:
    """A graph whose intermediate tensor is N x 4,096 x 8,192 float32 (256 MiB for the two images
    of the load's probe): the first pixel of each image expanded (from the input, so that no
    optimizer computes it at load), then summed away."""
    inits = [numpy_helper.from_array(np.array([1, 4096, 8192], np.int64), "shape"),
             numpy_helper.from_array(np.array([2], np.int64), "axis2")]
    return _digit_graph([oh.make_node("Slice", ["flat", "zero", "one_axis", "one_axis"], ["pixel"]),
                         oh.make_node("Unsqueeze", ["pixel", "axis2"], ["pixel3"]),
                         oh.make_node("Expand", ["pixel3", "shape"], ["big"]),
                         oh.make_node("ReduceSum", ["big"], ["total"], keepdims=0)], inits, "total")


@pytest.mark.parametrize("limit_mb, refused", [("64", True), (None, False)])
def test_mnist_edge_memory_limit_mb_caps_every_session(tmp_path: Path, limit_mb: str | None, refused: bool) -> None:
    """256 MiB is refused under a 64 MiB cap and runs under the default 2 GiB one: every session
    allocates from the one arena the limit sizes (each child process registers it once)."""
    path = tmp_path / "m.onnx"
    onnx.save(_needs_256_mib(), path)
    code = ("import sys\nimport numpy as np\nfrom mnist_edge.runtime import Predictor\n"
            "from mnist_edge.errors import ModelFileError\n"
            "try:\n    p = Predictor.load(sys.argv[1])\n"
            "    print('ran', p.logits(np.zeros((1, 28, 28), np.uint8)).shape)\n"
            "except ModelFileError as exc:\n    print('refused:', exc.reason)\n")
    env = {k: v for k, v in os.environ.items() if k != "MNIST_EDGE_MEMORY_LIMIT_MB"}
    if limit_mb:
        env["MNIST_EDGE_MEMORY_LIMIT_MB"] = limit_mb
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-800:]
    if refused:
        assert done.stdout.strip() == ("refused: inference failed: the model asks for more memory than the limit of "
                                       "64.0 MiB (operator Expand) (set MNIST_EDGE_MEMORY_LIMIT_MB to raise it)")
    else:
        assert done.stdout.strip() == "ran (1, 10)"


def test_a_model_with_a_loop_is_refused_before_it_runs(tmp_path: Path) -> None:
    path = tmp_path / "loop.onnx"
    onnx.save(_endless_loop(), path)
    started = time.perf_counter()
    with pytest.raises(ModelFileError) as caught:
        Predictor.load(path)
    assert time.perf_counter() - started < 30  # 10^12 trips would run for hours
    assert caught.value.path == path and caught.value.reason == (
        "uses Loop: control flow whose number of iterations the model decides is refused (a digit classifier "
        "needs none, and a hostile one could run for days)")


def test_an_initializer_larger_than_its_external_file_is_a_clear_error(tmp_path: Path) -> None:
    model = onnx.load(DIGIT_MODEL / "model.onnx")
    onnx.save_model(model, tmp_path / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    weights = tmp_path / "w.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="m.onnx"):
        Predictor.load(tmp_path / "m.onnx")


def test_external_data_through_a_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    model = onnx.load(DIGIT_MODEL / "model.onnx")
    outside, folder = tmp_path / "outside", tmp_path / "model"
    outside.mkdir()
    folder.mkdir()
    onnx.save_model(model, outside / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    (folder / "m.onnx").write_bytes((outside / "m.onnx").read_bytes())
    (folder / "w.bin").symlink_to(outside / "w.bin")
    with pytest.raises(ModelFileError, match="leaves the model's folder"):
        Predictor.load(folder / "m.onnx")


def test_onnxruntime_logs_only_with_verbose(tmp_path: Path) -> None:
    path = tmp_path / "huge.onnx"
    onnx.save(_huge("ConstantOfShape"), path)
    digit = REPO / "exported" / "tiny-int8" / "model.onnx"  # any input will do: the model fails first
    quiet = cli("run", str(path), str(digit))
    assert quiet.returncode == 2
    assert quiet.stderr.count("\n") == 1 and quiet.stderr.startswith(f"error: {path}:"), quiet.stderr
    assert "memory" in quiet.stderr
    loud = cli("--verbose", "run", str(path), str(digit))
    assert loud.returncode == 2 and "onnxruntime" in loud.stderr.replace(f"error: {path}", "")


# --- run-folder locks -------------------------------------------------------------------------

_HOLD_LOCK = """
import sys
from mnist_edge.runlock import run_folder_lock
with run_folder_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture()
def held_folder(tmp_path: Path):
    """A folder whose lock another process holds; yields (folder, process)."""
    folder = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    yield folder, holder
    holder.kill()
    holder.wait()


@pytest.mark.parametrize("command", [
    ["train", "--preset", "fast", "--epochs", "1", "--limit", "256"],
    ["pipeline", "--preset", "fast", "--epochs", "1"],
    ["sweep", str(REPO / "sweeps" / "example.toml")],
])
def test_a_second_process_on_a_locked_folder_is_refused(held_folder, mnist_dir: Path, command: list[str]) -> None:
    folder, _ = held_folder
    before = sorted(p.name for p in folder.iterdir())
    done = cli(*command, "--out", str(folder), "--data-dir", str(mnist_dir), "--no-download")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "another mnist-edge process" in done.stderr and str(folder) in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written beside the holder


def test_a_killed_holder_leaves_no_stale_lock(held_folder) -> None:
    folder, holder = held_folder
    with pytest.raises(FolderBusyError):
        with runlock.run_folder_lock(folder):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with runlock.run_folder_lock(folder) as locked:  # the OS released the flock with the process
        assert locked == folder


def test_a_refused_first_check_leaves_no_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputError):
        with runlock.run_folder_lock(tmp_path / "new"):
            raise OutputError("refused", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_stale_temporaries_are_cleaned_and_never_foreign(tmp_path: Path, mnist_dir: Path) -> None:
    from mnist_edge.config import preset
    from mnist_edge.pipeline import PipelineOptions, run_pipeline

    out = tmp_path / "run"
    options = PipelineOptions(recipe=preset("fast"), out=out, data_dir=mnist_dir, download=False, steps=("data",))
    run_pipeline(options)
    leftovers = [out / ".pipeline.json.k3j2.tmp", out / "data" / ".stats.json.x9.tmp"]
    for leftover in leftovers:
        leftover.write_text("half a file")
    (out / ".exported.ab12.tmp").mkdir()  # a staged folder a kill left behind
    run_pipeline(PipelineOptions(recipe=preset("fast"), out=out, data_dir=mnist_dir, download=False,
                                 steps=("data",), resume=True))
    assert not any(p.exists() for p in leftovers) and not (out / ".exported.ab12.tmp").exists()


STAGE_HOLDER = """
import sys
from pathlib import Path
from mnist_edge.fileio import staged_dir
with staged_dir(Path(sys.argv[1])) as stage:
    (stage / "model.onnx").write_bytes(b"half a model")
    print(stage, flush=True)
    sys.stdin.readline()  # building until told to finish (or killed)
"""


def _stage_in_another_process(final: Path) -> tuple[subprocess.Popen, Path]:
    holder = subprocess.Popen([sys.executable, "-c", STAGE_HOLDER, str(final)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    return holder, Path(holder.stdout.readline().strip())


def test_a_killed_builds_staging_folder_is_removed_by_the_next_build_and_a_live_one_is_not(tmp_path: Path) -> None:
    from mnist_edge.fileio import staged_dir

    final = tmp_path / "m-fp32"
    live, building = _stage_in_another_process(final)
    killed, abandoned = _stage_in_another_process(final)
    killed.kill()
    killed.wait()
    older = tmp_path / ".m-fp32.k3j2x9q1.tmp"  # left by a version that held no lock
    older.mkdir()
    kept = [tmp_path / ".m-int8.a1b2c3d4.tmp", tmp_path / ".m-fp32.notes", tmp_path / "m-fp32.tmp"]
    kept[0].mkdir()
    kept[1].write_text("a user's file")
    kept[2].mkdir()
    assert abandoned.is_dir() and building.is_dir() and abandoned != building
    with staged_dir(final) as stage:
        assert not abandoned.exists() and not older.exists()  # cleaned before this build starts
        assert building.is_dir() and (building / "model.onnx").is_file()  # another process is building it
        (stage / "model.onnx").write_bytes(b"a whole model")
    assert all(path.exists() for path in kept)
    live.communicate("finish\n", timeout=60)
    assert live.returncode == 0 and not building.exists()
    # the live build published last: its files replaced this one's, and no staging folder is left
    assert (final / "model.onnx").read_bytes() == b"half a model"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m-fp32", *(p.name for p in kept)])


def test_export_and_quantize_clean_the_staging_folders_a_kill_left_beside_out(tmp_path: Path, tiny_run: Path) -> None:
    out = tmp_path / "exp"
    out.mkdir()
    left = [out / ".m-fp32.abcd1234.tmp", out / ".m-int8.efgh5678.tmp", out / ".q.ijkl9012.tmp"]
    for stage in left:
        stage.mkdir()
        (stage / "manifest.json").write_text("{}")  # half a folder: never to be read as output
    done = cli("export", str(tiny_run), "--out", str(out / "m"), "--no-parity")
    assert done.returncode == 0, done.stderr
    assert not left[0].exists() and not left[1].exists() and left[2].exists()  # the q stage is quantize's
    done = cli("quantize", str(out / "m-fp32"), "--out", str(out / "q"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["m-fp32", "m-int8", "q"]
    assert all((out / name / "manifest.json").stat().st_size > 100 for name in ("m-fp32", "m-int8", "q"))


# --- a full disk --------------------------------------------------------------------------------

def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_during_export_is_one_error_naming_the_path_and_leaves_nothing(
        tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mnist_edge.cli import app

    monkeypatch.setattr("mnist_edge.fileio.os.fsync", _disk_full)  # every atomic write fails at its fsync
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / "exp" / "m"), "--no-parity"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and str(tmp_path / "exp") in lines[0]
    assert not (tmp_path / "exp").exists()  # no folder, no half-written file, no temporary


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(
        tmp_path: Path, tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from mnist_edge import checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    model, optimizer = _model_and_optimizer(run)
    monkeypatch.setattr("mnist_edge.fileio.os.fsync", _disk_full)
    with pytest.raises(OutputError, match="No space left on device"):
        checkpoint.save(run, model, optimizer, checkpoint.load_config(run)["recipe_obj"], checkpoint.Progress(),
                        [], {})
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def _model_and_optimizer(run: Path):
    from mnist_edge import checkpoint
    from mnist_edge.train import make_optimizer

    model, config = checkpoint.load_for_inference(run)
    return model, make_optimizer(model, config["recipe_obj"])


# --- killed saves and killed runs ----------------------------------------------------------------

def test_a_save_killed_after_its_commit_is_finished_by_recover(tmp_path: Path, tiny_run: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from mnist_edge import checkpoint
    from mnist_edge.errors import CheckpointError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    model, optimizer = _model_and_optimizer(run)
    with torch_no_grad():
        next(model.parameters()).add_(1.0)  # a save that differs from the one on disk
    monkeypatch.setattr(checkpoint, "_install_pending", lambda run_dir: None)  # killed right after the commit
    checkpoint.save(run, model, optimizer, checkpoint.load_config(run)["recipe_obj"], checkpoint.Progress(), [], {})
    with pytest.raises(CheckpointError, match="interrupted"):
        checkpoint.load_config(run)
    checkpoint.recover(run)
    assert checkpoint.load_config(run, for_resume=True)
    assert not list(run.glob(".*.pending"))


def test_a_save_killed_before_its_commit_is_dropped_by_recover(tmp_path: Path, tiny_run: Path) -> None:
    import shutil

    from mnist_edge import checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    weights = (run / checkpoint.WEIGHTS).read_bytes()
    (run / f".{checkpoint.WEIGHTS}.pending").write_bytes(b"a save that never reached its commit")
    checkpoint.recover(run)
    assert (run / checkpoint.WEIGHTS).read_bytes() == weights and not list(run.glob(".*.pending"))
    assert checkpoint.load_config(run, for_resume=True)


def torch_no_grad():
    import torch

    return torch.no_grad()


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path: Path, mnist_dir: Path) -> None:
    """The short version of scripts/kill_test.py: SIGKILL a real `train` a few times at random
    moments, check that nothing visible is damaged, and that --resume ends bitwise where an
    uninterrupted run ends."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import kill_test
    finally:
        sys.path.pop(0)
    outcome = kill_test.kill_and_resume("train", tmp_path, mnist_dir, kills=3, seed=7, small=True)
    assert outcome.kills == 3 and outcome.damaged == [] and outcome.resumed_equal, outcome


# --- determinism of the whole chain ------------------------------------------------------------

_VOLATILE = {"created", "seconds", "exported_at", "timestamp"}


def _stable(obj):
    """A manifest without the fields that record when (not what) something was made."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in _VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def test_the_whole_chain_is_bitwise_deterministic_on_the_cpu(tmp_path: Path, mnist_dir: Path) -> None:
    from mnist_edge import checkpoint
    from mnist_edge.config import preset
    from mnist_edge.export import export_run
    from mnist_edge.train import train

    recipe = preset("fast", arch="tiny", epochs=1, train_limit=2048, val_size=512, augment=True)
    for name in ("a", "b"):
        train(recipe, tmp_path / name / "run", device="cpu", data_dir=mnist_dir, download=False)
        export_run(tmp_path / name / "run", tmp_path / name / "m", parity=False, data_dir=mnist_dir, download=False)
    a, b = tmp_path / "a", tmp_path / "b"
    for tensors in (checkpoint.WEIGHTS, checkpoint.STATE):
        assert (a / "run" / tensors).read_bytes() == (b / "run" / tensors).read_bytes(), tensors
    for role in ("fp32", "int8"):
        assert (a / f"m-{role}" / "model.onnx").read_bytes() == (b / f"m-{role}" / "model.onnx").read_bytes(), role
        # The manifests name their own checkpoint's folder (a/run, b/run): compare a's as if it were b's.
        texts = [(x / f"m-{role}" / "manifest.json").read_text() for x in (a, b)]
        manifests = [json.loads(texts[0].replace(str(a), str(b))), json.loads(texts[1])]
        assert _stable(manifests[0]) == _stable(manifests[1]), role


# --- regressions found by scripts/fuzz.py ------------------------------------------------------

def test_json_nested_deeper_than_the_parser_follows_is_a_typed_error(tmp_path: Path) -> None:
    from mnist_edge.errors import ManifestError
    from mnist_edge.fileio import read_json

    (tmp_path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestError, match="nested too deeply"):
        read_json(tmp_path / "manifest.json", ManifestError)


def _tiny_with(edit) -> onnx.ModelProto:
    model = onnx.load(DIGIT_MODEL / "model.onnx")
    edit(model)
    return model


def test_a_model_without_outputs_is_a_typed_error(tmp_path: Path) -> None:
    onnx.save(_tiny_with(lambda m: m.graph.ClearField("output")), tmp_path / "m.onnx")
    with pytest.raises(ModelFileError):
        Predictor.load(tmp_path / "m.onnx")


def test_a_huge_fixed_batch_is_refused_before_any_padding(tmp_path: Path) -> None:
    def fix_batch(model: onnx.ModelProto) -> None:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2**31

    onnx.save(_tiny_with(fix_batch), tmp_path / "m.onnx")
    with pytest.raises(ModelFileError, match="fixed batch of 2,147,483,648"):
        Predictor.load(tmp_path / "m.onnx")


def test_a_name_that_is_not_utf8_is_a_typed_error(tmp_path: Path) -> None:
    data = (DIGIT_MODEL / "model.onnx").read_bytes()
    name = onnx.load(DIGIT_MODEL / "model.onnx").graph.input[0].name.encode()
    (tmp_path / "m.onnx").write_bytes(data.replace(name, b"\xe1" * len(name)))
    with pytest.raises(ModelFileError, match="UTF-8|ONNX"):
        Predictor.load(tmp_path / "m.onnx")


def test_an_external_data_name_too_long_for_the_file_system_is_ignored_by_the_size_count(tmp_path: Path) -> None:
    from mnist_edge.modelfile import model_bytes

    model = onnx.load(DIGIT_MODEL / "model.onnx")
    onnx.save_model(model, tmp_path / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0)
    raw = (tmp_path / "m.onnx").read_bytes().replace(b"\x08location\x12\x05w.bin", b"\x08location\x12\xac\x02"
                                                      + b"a" * 300)
    (tmp_path / "m.onnx").write_bytes(raw)
    assert model_bytes(tmp_path / "m.onnx") == len(raw)  # the name no file can have counts nothing
