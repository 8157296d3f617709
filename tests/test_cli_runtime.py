"""`mnist-edge run` and `mnist-edge bench` through Typer's CliRunner.

Every bad input asserts the exit code and the one-line message on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_edge.cli import app
from mnist_edge.data import load_split
from tests.onnx_models import write_bad_inputs, write_good_inputs

runner = CliRunner()
QUICK_BENCH = ["--seconds", "0.04", "--batch-sizes", "1,4", "--threads", "1"]


@pytest.fixture(scope="module")
def digits(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    test = load_split("test", download=False)
    return test.images[:20], test.labels[:20]


@pytest.fixture(scope="module")
def good(tmp_path_factory, digits) -> dict[str, Path]:
    return write_good_inputs(tmp_path_factory.mktemp("good"), digits[0])


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return write_bad_inputs(tmp_path_factory.mktemp("bad"))


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("command", ["run", "bench"])
def test_help_has_an_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Example: mnist-edge " + command in result.stdout


def test_help_states_the_normalisation_defaults():
    text = " ".join(invoke("run", "--help").stdout.split())
    assert "else 255" in text and "else 0.1307" in text and "else 0.3081" in text
    assert "raw pixels" in text


def test_run_prints_a_table_of_predictions(zoo, good):
    result = invoke("run", zoo["exported"], good["png"], good["npy"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "linear-fp32: 4 image(s)"
    assert lines[1].split() == ["input", "digit", "confidence", "top-3"]
    assert lines[2].startswith("digit.png ") and lines[3].startswith("digits.npy[0]")
    assert result.stderr == ""


def test_run_json_holds_digits_confidences_and_top_k(zoo, digits, tmp_path):
    images, labels = digits
    np.save(tmp_path / "d.npy", images)
    result = invoke("run", zoo["uint8"], tmp_path / "d.npy", "--json", "--top", "2", "--batch-size", "7")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    rows = payload["predictions"]
    assert [r["input"] for r in rows] == [f"d.npy[{i}]" for i in range(20)]
    assert all(len(r["top"]) == 2 and r["top"][0]["digit"] == r["digit"] for r in rows)
    assert np.mean([int(r["digit"]) == label for r, label in zip(rows, labels, strict=True)]) > 0.7
    assert payload["input"] == {"layout": "NCHW", "dtype": "uint8", "batch": None}
    assert payload["errors"] == []


@pytest.mark.parametrize("kind", ["png16", "palette", "rgba", "photo", "npy_float", "idx"])
def test_run_accepts_every_supported_variant(zoo, good, kind):
    result = invoke("run", zoo["nchw"], good[kind], "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["predictions"]


def test_run_saves_what_the_model_saw(zoo, good, tmp_path):
    result = invoke("run", zoo["flat"], good["photo"], "--save-preprocessed", tmp_path / "seen",
                    "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "seen").iterdir()] == ["00000_photo.png"]
    assert json.loads((tmp_path / "out" / "predictions.json").read_text())["predictions"]


BAD_INPUTS = {
    "not_image": "not an image (unknown file format)",
    "truncated": "truncated or corrupt image",
    "empty_size": "image is empty (0x0 pixels)",
    "bomb": "image too large: 10,000,000,000 pixels (limit 50,000,000; possible decompression bomb)",
    "npy_object": "object arrays are not supported (pickled data is never loaded)",
    "npy_huge": "array holds 100,000,000 images; the limit is 1,000,000 (split the file)",
    "npy_nan": "array holds 1 NaN or infinite values",
    "npy_shape": "array of shape (4, 27, 27) is not N x 28 x 28 or N x 784",
    "idx_labels": "IDX file holds labels, not images",
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_a_bad_input_alone_exits_2_with_one_line(zoo, bad, kind):
    result = invoke("run", zoo["nchw"], bad[kind])
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {bad[kind]}: {BAD_INPUTS[kind]}")
    assert result.stdout == ""


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_a_bad_input_among_good_ones_is_skipped_with_exit_1(zoo, good, bad, kind):
    result = invoke("run", zoo["nchw"], good["png"], bad[kind], good["idx"], "--json")
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"error: {bad[kind]}: {BAD_INPUTS[kind]}")
    payload = json.loads(result.stdout)
    assert [r["input"] for r in payload["predictions"]] == [
        "digit.png", "digits-idx3-ubyte[0]", "digits-idx3-ubyte[1]"]
    assert payload["errors"][0]["error"].startswith(BAD_INPUTS[kind])


def test_a_missing_input_is_reported(zoo, good, tmp_path):
    result = invoke("run", zoo["nchw"], good["png"], tmp_path / "nope.png")
    assert result.exit_code == 1
    assert one_error_line(result) == f"error: {tmp_path / 'nope.png'}: no such file or directory"


BAD_MODELS = {
    "colour": "input 'image' has shape [batch,3,32,32]: not a digit image "
              "(expected [N,1,28,28], [N,28,28,1] or [N,784])",
    "custom_op": "unsupported operator com.example:FancyActivation: onnxruntime has no implementation for it",
    "escaping": "external data location leaves the model's folder",
}


@pytest.mark.parametrize("kind", sorted(BAD_MODELS))
def test_a_bad_model_exits_2_with_one_line(zoo, good, kind):
    result = invoke("run", zoo[kind], good["png"])
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {zoo[kind]}: {BAD_MODELS[kind]}")


@pytest.mark.parametrize(("content", "message"), [
    (None, "model file not found"),
    (b"", "empty file (0 bytes), not an ONNX model"),
    (b"definitely not protobuf" * 20, "not an ONNX model"),
])
def test_missing_empty_and_foreign_model_files(tmp_path, good, content, message):
    model = tmp_path / "model.onnx"
    if content is not None:
        model.write_bytes(content)
    result = invoke("run", model, good["png"])
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {model}: {message}")


def test_a_truncated_model_file(zoo, good, tmp_path):
    model = tmp_path / "cut.onnx"
    model.write_bytes(zoo["nchw"].read_bytes()[:5000])
    result = invoke("run", model, good["png"])
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {model}: not an ONNX model")


def test_normalisation_options_do_not_apply_to_uint8_models(zoo, good):
    result = invoke("run", zoo["uint8"], good["png"], "--scale", "1")
    assert result.exit_code == 2
    assert one_error_line(result) == "error: --scale do not apply: this model takes raw uint8 pixels"


def test_bench_writes_json_markdown_and_png(zoo, tmp_path):
    out = tmp_path / "bench"
    result = invoke("bench", zoo["exported"], zoo["qdq"], *QUICK_BENCH, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [m["name"] for m in payload["models"]] == ["linear-fp32", "qdq"]
    assert payload["models"][1]["quantized"] is True
    assert payload["ratios"][0]["baseline"] == "linear-fp32"
    assert payload["environment"]["isa"].keys() >= {"avx2", "avx512_vnni"}
    saved = json.loads((out / "bench.json").read_text())
    assert saved == payload
    assert all(m["latency"]["p50_us"] >= 1.0 for m in saved["models"])  # no real call is faster
    markdown = (out / "bench.md").read_text()
    assert "## Latency" in markdown and "| linear-fp32 |" in markdown
    pytest.importorskip("matplotlib")
    assert (out / "bench.png").read_bytes().startswith(b"\x89PNG")


def test_bench_tables_profile_and_compare(zoo, tmp_path):
    old = tmp_path / "old.json"
    first = invoke("bench", zoo["nchw"], *QUICK_BENCH, "--json")
    payload = json.loads(first.stdout)
    payload["models"][0]["latency"]["p50_us"] = 1e-3  # an impossibly fast earlier run
    old.write_text(json.dumps(payload))
    result = invoke("bench", zoo["nchw"], *QUICK_BENCH, "--profile", "--out", tmp_path / "b",
                    "--compare", old)
    assert result.exit_code == 1, result.output  # regression
    text = result.stdout
    for heading in ("Footprint", "Latency", "Throughput", "Operator profile: nchw", "Comparison"):
        assert heading in text
    assert "verdict: regression" in text
    assert list((tmp_path / "b" / "profiles").glob("profile_nchw*.json"))


def test_bench_torch_baseline_from_a_checkpoint(zoo, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import mnist_edge.checkpoint
    from mnist_edge.models import build

    calls = []

    def fake_load(run_dir):
        calls.append(Path(run_dir))
        return build("tiny").eval(), {"arch": "tiny", "normalization": {"scale": 255.0,
                                                                       "mean": 0.1307, "std": 0.3081}}

    monkeypatch.setattr(mnist_edge.checkpoint, "load_for_inference", fake_load)
    result = invoke("bench", zoo["nchw"], *QUICK_BENCH, "--torch-checkpoint", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    models = json.loads(result.stdout)["models"]
    assert [m["kind"] for m in models] == ["onnx", "torch"] and models[1]["name"] == "torch-tiny"
    assert calls == [tmp_path]


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--batch-sizes", "1,x", "error: --batch-sizes must be a comma-separated list of positive integers"),
    ("--threads", "0", "error: --threads must be a comma-separated list of positive integers"),
    ("--provider", "tpu", "error: unknown provider 'tpu'; choose one of cpu, cuda"),
])
def test_bench_option_errors(zoo, option, value, message):
    result = invoke("bench", zoo["nchw"], option, value, "--seconds", "0.02")
    assert result.exit_code == 2
    assert one_error_line(result).startswith(message)


def test_bench_refuses_a_foreign_compare_file(zoo, tmp_path):
    old = tmp_path / "old.json"
    old.write_text('{"something": "else"}')
    result = invoke("bench", zoo["nchw"], *QUICK_BENCH, "--compare", old)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {old}: not a bench.json written by mnist-edge bench")


@pytest.mark.parametrize("kind", sorted(BAD_MODELS))
def test_a_bad_model_through_bench_and_eval_exits_2_with_one_line(zoo, mnist_dir, kind):
    for args in (("bench", zoo[kind], *QUICK_BENCH), ("eval", zoo[kind], "--data-dir", mnist_dir)):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert one_error_line(result).startswith(f"error: {zoo[kind]}: {BAD_MODELS[kind]}")


def test_infinite_values_in_an_array_are_refused(zoo, good, tmp_path):
    array = np.zeros((2, 28, 28), np.float32)
    array[1, 3, 4] = np.inf
    np.save(tmp_path / "inf.npy", array)
    result = invoke("run", zoo["nchw"], tmp_path / "inf.npy")
    assert result.exit_code == 2
    assert one_error_line(result) == f"error: {tmp_path / 'inf.npy'}: array holds 1 NaN or infinite values"


# --- eval of ONNX models ---------------------------------------------------------------------


def test_eval_of_a_folder_with_one_onnx_file_and_no_manifest(zoo, mnist_dir, tmp_path):
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "model.onnx").write_bytes(zoo["nchw"].read_bytes())
    result = invoke("eval", tmp_path / "bare", "--data-dir", mnist_dir, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] > 0.8 and report["params"] is None


def test_eval_reports_the_manifest_parameter_count_and_writes_files(zoo, mnist_dir, tmp_path):
    result = invoke("eval", zoo["exported"], "--data-dir", mnist_dir, "--json", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["params"] == 7850
    assert json.loads((tmp_path / "eval.json").read_text())["params"] == 7850
    for name in ("eval_confusion.png", "eval_mistakes.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "exportd" / "cnn-int8", "not found: not a directory nor a file"),
    (lambda d: d / "model.onx", "not found: not a directory nor a file"),
    (lambda d: d, "neither a training run folder (no config.json) nor a model folder"),
])
def test_eval_of_a_missing_or_empty_target_names_it(mnist_dir, tmp_path, make, message):
    target = make(tmp_path)
    result = invoke("eval", target, "--data-dir", mnist_dir)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {target}: {message}")


def test_eval_refuses_normalisation_options_for_a_checkpoint(mnist_dir, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    result = invoke("eval", tmp_path, "--data-dir", mnist_dir, "--mean", "0.5", "--std", "0.5")
    assert result.exit_code == 2
    assert one_error_line(result) == (f"error: {tmp_path}: --mean, --std apply to ONNX models only: "
                                      "a checkpoint uses the normalisation it was trained with")


def test_confusion_lines_are_a_compact_aligned_table():
    from mnist_edge.evaluate import confusion_lines, evaluate_probabilities

    labels = np.repeat(np.arange(10), 3)
    probabilities = np.eye(10)[labels]
    probabilities[0] = np.eye(10)[7]  # one 0 taken for a 7
    lines = confusion_lines(evaluate_probabilities("m", labels, probabilities))
    assert len(lines) == 11 and len({len(line) for line in lines}) == 1
    assert lines[0].split() == ["true\\pred", *map(str, range(10))]
    assert lines[1].split() == ["0", "2", "0", "0", "0", "0", "0", "0", "1", "0", "0"]


def test_one_model_file_shows_one_size_in_terminal_markdown_png_and_report(zoo, tmp_path, monkeypatch):
    """bench's terminal table, bench.md, bench.png's legend and report.html all write a model
    file's size through one formatter, so they cannot disagree (they once showed three sizes)."""
    pytest.importorskip("matplotlib")
    from mnist_edge import plots
    from mnist_edge.modelfile import model_bytes
    from mnist_edge.report import REPORT_FILE
    from mnist_edge.units import format_bytes

    legend: list[str] = []
    draw = plots.latency_distribution
    monkeypatch.setattr(plots, "latency_distribution",
                        lambda series, path, *a, **k: (legend.extend(series), draw(series, path, *a, **k))[1])
    run = tmp_path / "run"
    result = invoke("bench", zoo["qdq"], *QUICK_BENCH, "--out", run / "bench", "--no-torch")
    assert result.exit_code == 0, result.output
    size = format_bytes(model_bytes(zoo["qdq"]))
    assert size.endswith(" B") or size.endswith("KiB")
    assert f" {size} " in result.stdout  # the footprint table's file column
    assert f"| {size} |" in (run / "bench" / "bench.md").read_text()
    assert legend == [f"qdq ({size})"]
    assert invoke("report", run).exit_code == 0
    assert f"<td>{size}</td>" in (run / REPORT_FILE).read_text()


def test_eval_split_of_an_onnx_model_follows_its_manifest_recipe(zoo, mnist_dir, tmp_path):
    from mnist_edge.data import training_splits
    from mnist_edge.runtime import Predictor
    from tests.onnx_models import linear_model, write_exported

    recipe = {"val_size": 1000, "split_seed": 3, "train_limit": 2000}
    model = write_exported(tmp_path / "recipe", linear_model(), source={"arch": "linear", "params": 7850,
                                                                        "recipe": recipe})
    train, val = training_splits(1000, 3, 2000, mnist_dir, download=False)
    predictor = Predictor.load(model)
    for split, images in (("train", train), ("val", val)):
        result = invoke("eval", model, "--split", split, "--data-dir", mnist_dir, "--json", "--out", tmp_path / "o")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        expected = int((predictor.predict(images.images).digits == images.labels).sum())
        assert (report["count"], report["correct"]) == (len(images), expected)
        assert "recipe from the manifest" in report["images"]
    # A manifest without a recipe: the default hold-out (5,000 validation images, split seed 0), said so.
    result = invoke("eval", zoo["exported"], "--split", "train", "--data-dir", mnist_dir, "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert "train accuracy" in result.stdout and "the model names no recipe: the default hold-out" in result.stdout
    report = json.loads((tmp_path / "d" / "eval_train.json").read_text())
    assert report["count"] == 55000 and not (tmp_path / "d" / "eval.json").exists()
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "eval_train.json", "eval_train_confusion.png", "eval_train_mistakes.png",
        "eval_val.json", "eval_val_confusion.png", "eval_val_mistakes.png"]


def test_a_split_plan_takes_the_recipes_hold_out_and_the_default_for_what_it_lacks():
    from mnist_edge.data import SplitPlan
    from mnist_edge.evaluate import Scorer

    def plan(recipe):
        return Scorer("m", None, recipe, "manifest", lambda images: images).plan("train")

    default = SplitPlan("train", 5000, 0, 0, "default")
    assert plan({"val_size": 1000, "split_seed": 3}) == SplitPlan("train", 1000, 3, 0, "manifest")
    assert plan({"val_size": 0, "split_seed": 0, "train_limit": 300}) == SplitPlan("train", 0, 0, 300, "manifest")
    for unknown in (None, {}, {"arch": "cnn"}, {"val_size": -1}, {"val_size": True}, {"split_seed": "0"}):
        assert plan(unknown) == default, unknown
    assert "the model names no recipe: the default hold-out" in default.describe(55000)
