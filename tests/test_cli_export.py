"""`mnist-edge export`, `quantize` and `parity` through Typer's CliRunner.

Every bad input asserts exit code 2, one line on stderr naming the problem, and that nothing
was written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("onnx")

from mnist_edge import manifest as manifest_io  # noqa: E402
from mnist_edge.cli import app  # noqa: E402

runner = CliRunner()
# A few hundred test images keep parity quick; one image is then 0.33 points, so the int8 limit
# is loosened (the full-set defaults are exercised by scripts/build_exported.py).
QUICK_PARITY = ["--limit", "300", "--max-int8-drop", "5"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> Path:
    """`mnist-edge export` of the quick run: OUT/quick-fp32 and OUT/quick-int8."""
    base = tmp_path_factory.mktemp("cli-export") / "quick"
    result = invoke("export", tiny_run, "--out", base, *QUICK_PARITY)
    assert result.exit_code == 0, result.output
    return base


@pytest.mark.parametrize("command", ["export", "quantize", "parity"])
def test_help_has_an_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Example: mnist-edge " + command in result.stdout


def test_export_writes_both_models_with_parity(exported):
    for role in ("fp32", "int8"):
        folder = exported.with_name(f"quick-{role}")
        manifest = manifest_io.load(folder)
        assert manifest["metrics"]["test_images"] == 300 and manifest["metrics"]["parity_passed"]
        assert (folder / "parity.json").is_file() and (folder / "parity_disagreements.png").is_file()
    assert manifest_io.load(exported.with_name("quick-int8"))["quantization"]["method"].startswith(
        ("static", "dynamic"))


def test_export_without_int8_or_parity(tiny_run, tmp_path):
    result = invoke("export", tiny_run, "--out", tmp_path / "solo", "--no-int8", "--no-parity",
                    "--opset", "13")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["solo-fp32"]
    manifest = manifest_io.load(tmp_path / "solo-fp32")
    assert manifest["export"]["opset"] == 13 and manifest["metrics"] is None


def test_quantize_command(exported, tmp_path):
    result = invoke("quantize", exported.with_name("quick-fp32"), "--out", tmp_path / "q", "--per-tensor",
                    "--calib-images", "100", "--calibration", "percentile", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    q = payload["quantization"]
    assert (q["per_channel"], q["images"], q["calibration"], q["seed"]) == (False, 100, "percentile", 3)
    assert payload["size_ratio"] < 1
    recorded = manifest_io.load(tmp_path / "q")["quantization"]
    assert {k: recorded[k] for k in q} == q


def test_parity_command_reports_and_updates_manifests(tiny_run, exported, tmp_path):
    result = invoke("parity", tiny_run, exported, *QUICK_PARITY, "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and [p["candidate"] for p in report["pairs"]] == ["fp32", "int8", "int8"]
    assert (tmp_path / "parity.json").is_file() and (tmp_path / "parity_disagreements.png").is_file()


def test_parity_exits_1_with_a_table_of_what_broke(tiny_run, exported, tmp_path):
    result = invoke("parity", tiny_run, exported.with_name("quick-fp32"), *QUICK_PARITY,
                    "--max-logit-diff", "0", "--out", tmp_path, "--layers", "never")
    assert result.exit_code == 1, result.output
    assert "thresholds breached" in result.stdout and "max abs logit diff" in result.stdout
    assert json.loads((tmp_path / "parity.json").read_text())["passed"] is False


# --- bad inputs ---------------------------------------------------------------------------------


def bad_run(tiny_run: Path, folder: Path, how: str) -> Path:
    run = folder / f"run-{how}"
    if how == "missing":
        return run
    shutil.copytree(tiny_run, run)
    if how == "truncated":
        weights = run / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])
    elif how == "foreign":
        (run / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return run


@pytest.mark.parametrize(("how", "message"), [
    ("missing", "not a directory (expected a training run folder)"),
    ("truncated", "does not match the hash in config.json"),
    ("foreign", "not an mnist-edge checkpoint config"),
])
def test_export_refuses_a_bad_checkpoint(tiny_run, tmp_path, how, message):
    run = bad_run(tiny_run, tmp_path, how)
    line = one_error_line(invoke("export", run, "--out", tmp_path / "out" / "m"))
    assert message in line
    assert not (tmp_path / "out").exists()


def test_export_refuses_an_opset_it_cannot_produce(tiny_run, tmp_path):
    line = one_error_line(invoke("export", tiny_run, "--out", tmp_path / "out" / "m", "--opset", "99"))
    assert "--opset 99 cannot be produced" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["export", "quantize"])
def test_an_unwritable_out_is_refused(command, tiny_run, exported, tmp_path):
    (tmp_path / "file").write_text("a regular file")
    source = tiny_run if command == "export" else exported.with_name("quick-fp32")
    line = one_error_line(invoke(command, source, "--out", tmp_path / "file" / "m"))
    assert "cannot create directory" in line and "file/m" in line


def bad_model(folder: Path, kind: str, good: Path) -> Path:
    path = folder / f"{kind}.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:4000])
    elif kind == "foreign":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return path


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", "model file not found"),
    ("empty", "empty file (0 bytes)"),
    ("truncated", "not an ONNX model"),
    ("foreign", "not an ONNX model"),
])
def test_quantize_refuses_a_bad_model_file(exported, tmp_path, kind, message):
    path = bad_model(tmp_path, kind, exported.with_name("quick-fp32") / "model.onnx")
    line = one_error_line(invoke("quantize", path, "--out", tmp_path / "out"))
    assert message in line and path.name in line
    assert not (tmp_path / "out").exists()


def test_quantize_refuses_zero_calibration_images(exported, tmp_path):
    line = one_error_line(invoke("quantize", exported.with_name("quick-fp32"), "--out", tmp_path / "out",
                                 "--calib-images", "0"))
    assert "--calib-images must be between 1 and 60,000" in line
    assert not (tmp_path / "out").exists()


def test_parity_refuses_a_missing_model(tiny_run, tmp_path):
    line = one_error_line(invoke("parity", tiny_run, tmp_path / "nothing"))
    assert "no such model file or folder" in line


def test_quantize_refuses_static_only_options_for_the_mlp_default(tmp_path):
    mlp = Path(__file__).resolve().parents[1] / "exported" / "mlp-fp32"
    line = one_error_line(invoke("quantize", mlp, "--out", tmp_path / "out", "--calibration", "entropy",
                                 "--calib-images", "5000"))
    assert "--calibration, --calib-images apply to --mode static; mlp defaults to dynamic: add --mode static" in line
    line = one_error_line(invoke("quantize", mlp, "--out", tmp_path / "out", "--format", "qdq"))
    assert "--format qdq applies to --mode static; mlp defaults to dynamic" in line and "--mode dynamic" not in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("how", "message"), [
    ("missing", "not a directory (expected a training run folder)"),
    ("truncated", "does not match the hash in config.json"),
    ("foreign", "not an mnist-edge checkpoint config"),
])
def test_parity_refuses_a_bad_checkpoint(tiny_run, exported, tmp_path, how, message):
    run = bad_run(tiny_run, tmp_path, how)
    line = one_error_line(invoke("parity", run, exported, "--limit", "10", "--out", tmp_path / "out"))
    assert message in line and str(run) in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("kind", "message"), [
    ("empty", "empty file (0 bytes), not an ONNX model"),
    ("truncated", "not an ONNX model (protobuf parsing failed"),
    ("foreign", "not an ONNX model (protobuf parsing failed"),
])
def test_parity_refuses_a_bad_model_file(tiny_run, exported, tmp_path, kind, message):
    path = bad_model(tmp_path, kind, exported.with_name("quick-fp32") / "model.onnx")
    line = one_error_line(invoke("parity", tiny_run, path, "--limit", "10", "--out", tmp_path / "out"))
    assert message in line and str(path) in line
    assert not (tmp_path / "out").exists()


def test_parity_refuses_an_unwritable_out_before_measuring(tiny_run, exported, tmp_path, monkeypatch):
    import mnist_edge.parity

    def never(*args, **kwargs):
        raise AssertionError("parity ran although --out cannot be created")

    monkeypatch.setattr(mnist_edge.parity, "run_parity", never)
    (tmp_path / "file").write_text("a regular file")
    line = one_error_line(invoke("parity", tiny_run, exported, "--out", tmp_path / "file" / "sub"))
    assert "cannot create directory (Not a directory)" in line and str(tmp_path / "file" / "sub") in line


# --- a real int8 breach ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_pair(exported, tmp_path_factory) -> Path:
    """OUT/bad-fp32 (a copy of the good fp32) and OUT/bad-int8, calibrated on each activation's
    90th percentile: most of the signal is clipped and tens of points are lost."""
    from mnist_edge.quantize import QuantizeOptions, quantize_model

    base = tmp_path_factory.mktemp("cli-bad") / "bad"
    fp32 = shutil.copytree(exported.with_name("quick-fp32"), base.with_name("bad-fp32"))
    quantize_model(fp32 / "model.onnx", base.with_name("bad-int8"),
                   QuantizeOptions(calib_images=200, calibration="percentile", percentile=90.0))
    return base


def test_an_int8_breach_shows_the_layer_table_and_the_exclude_advice(tiny_run, bad_pair, tmp_path):
    result = invoke("parity", tiny_run, bad_pair, *QUICK_PARITY, "--out", tmp_path)  # --layers auto
    assert result.exit_code == 1, result.output
    assert "thresholds breached" in result.stdout and "int8 accuracy drop" in result.stdout
    assert "int8 error per layer" in result.stdout and "◀" in result.stdout
    assert "advice: largest quantization error first: try `mnist-edge quantize ... --exclude" in result.stdout
    saved = json.loads((tmp_path / "parity.json").read_text())
    layers = saved["layer_report"]
    assert layers["layers"] and layers["suspects"]
    assert any(f"--exclude {layers['suspects'][0]}" in line for line in layers["advice"])


def test_an_int8_breach_in_json(tiny_run, bad_pair, tmp_path):
    result = invoke("parity", tiny_run, bad_pair, *QUICK_PARITY, "--out", tmp_path, "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert not report["passed"] and report["layer_report"]["layers"]
    assert any("--exclude" in line for line in report["layer_report"]["advice"])


def test_an_int8_model_alone_is_held_to_its_limit_against_pytorch(tiny_run, bad_pair, tmp_path):
    alone = shutil.copytree(bad_pair.with_name("bad-int8"), tmp_path / "alone-int8")  # no -fp32 beside it
    result = invoke("parity", tiny_run, alone, *QUICK_PARITY, "--out", tmp_path / "report", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [(p["reference"], p["candidate"]) for p in report["pairs"]] == [("pytorch", "int8")]
    assert [(b["check"], b["pair"]) for b in report["breaches"]] == [("int8 accuracy drop (points)",
                                                                     "int8 vs pytorch")]
