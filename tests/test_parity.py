"""Parity: pair comparisons, thresholds, model resolution, reports and the per-layer analysis."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from mnist_edge import manifest as manifest_io  # noqa: E402
from mnist_edge.data import load_split  # noqa: E402
from mnist_edge.errors import ConfigError, ModelFileError  # noqa: E402
from mnist_edge.layer_analysis import LayerError, rank_suspects  # noqa: E402
from mnist_edge.manifest import PARITY_FIGURE as FIGURE_FILE  # noqa: E402
from mnist_edge.manifest import PARITY_REPORT as REPORT_FILE  # noqa: E402
from mnist_edge.parity import (  # noqa: E402
    Thresholds,
    check,
    compare,
    parity_command,
    resolve_models,
    run_parity,
    update_manifest,
    write_report,
)

LIMIT = 400  # test images per parity run: enough to exercise everything, quick on 2 cores


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """The tiny run exported as NAME-fp32 and NAME-int8, without parity."""
    from mnist_edge.export import export_run
    from mnist_edge.quantize import default_options

    base = tmp_path_factory.mktemp("parity") / "quick"
    options = default_options(None, calib_images=200)
    result = export_run(tiny_run, base, parity=False, quantize_options=options)
    return {"base": base, **result.folders}


@pytest.fixture(scope="module")
def bad_int8(exported, tmp_path_factory) -> Path:
    """A genuinely bad int8 model, alone in its folder (no NAME-fp32 beside it): calibrated on the
    90th percentile of each activation, which clips most of the signal (tens of points lost)."""
    from mnist_edge.quantize import QuantizeOptions, quantize_model

    out = tmp_path_factory.mktemp("lone") / "bad-int8"
    options = QuantizeOptions(calib_images=200, calibration="percentile", percentile=90.0)
    quantize_model(exported["fp32"] / "model.onnx", out, options)
    return out


@pytest.fixture(scope="module")
def report(tiny_run, exported):
    # One image of 400 is 0.25 points: the int8 limit is loosened for this short test set.
    return run_parity(tiny_run, exported["fp32"], exported["int8"], limit=LIMIT, layers="always",
                      thresholds=Thresholds(int8_max_drop_points=1.0))


# --- the arithmetic -----------------------------------------------------------------------------


def test_compare_counts_agreement_and_logit_differences():
    labels = np.array([0, 1, 2, 3])
    a = np.eye(4, 10, dtype=np.float32)[[0, 1, 2, 3]] * 5
    b = a.copy()
    b[2] = np.eye(10, dtype=np.float32)[7] * 5  # disagrees on image 2
    b[0, 0] += 0.5
    pair = compare("fp32", "int8", {"fp32": a, "int8": b}, labels)
    assert (pair.agree_count, pair.disagree_count, pair.disagreements) == (3, 1, [2])
    assert pair.reference_accuracy == 1.0 and pair.candidate_accuracy == 0.75
    assert pair.accuracy_delta_points == -25.0
    assert pair.max_abs_logit_diff == pytest.approx(5.0)
    assert pair.mean_abs_logit_diff == pytest.approx(10.5 / 40)


def test_thresholds_turn_figures_into_breaches():
    labels = np.zeros(1000, dtype=np.int64)
    torch_logits = np.tile(np.eye(10, dtype=np.float32)[0], (1000, 1))
    fp32 = torch_logits + 2e-4
    int8 = fp32.copy()
    int8[:3] = np.eye(10, dtype=np.float32)[1]  # 3 of 1,000 wrong: 0.3 points
    logits = {"pytorch": torch_logits, "fp32": fp32, "int8": int8}
    pairs = [compare(a, b, logits, labels) for a, b in (("pytorch", "fp32"), ("fp32", "int8"))]
    breaches = check(pairs, Thresholds())
    assert [b.check for b in breaches] == ["max abs logit diff", "int8 accuracy drop (points)"]
    assert breaches[1].measured == pytest.approx(0.3)
    assert check(pairs, Thresholds(fp32_max_abs_diff=1e-3, int8_max_drop_points=0.5)) == []


def test_int8_without_fp32_is_held_to_its_limit_against_pytorch():
    labels = np.zeros(100, dtype=np.int64)
    torch_logits = np.tile(np.eye(10, dtype=np.float32)[0], (100, 1))
    int8 = torch_logits.copy()
    int8[:9] = np.eye(10, dtype=np.float32)[1]  # a 9-point loss
    pair = compare("pytorch", "int8", {"pytorch": torch_logits, "int8": int8}, labels)
    (breach,) = check([pair], Thresholds())
    assert (breach.check, breach.pair, breach.measured) == ("int8 accuracy drop (points)", "int8 vs pytorch",
                                                             pytest.approx(9.0))
    assert "below PyTorch" in breach.message
    assert check([pair], Thresholds(int8_max_drop_points=10)) == []


def test_with_fp32_present_int8_is_judged_against_fp32_only():
    labels = np.zeros(100, dtype=np.int64)
    right, wrong = np.eye(10, dtype=np.float32)[0], np.eye(10, dtype=np.float32)[1]
    logits = {"pytorch": np.tile(right, (100, 1)), "fp32": np.tile(right, (100, 1))}
    logits["fp32"][:5] = wrong  # fp32 itself 5 points down, an fp32 breach
    logits["int8"] = logits["fp32"].copy()  # int8 loses nothing against fp32
    pairs = [compare(a, b, logits, labels) for a, b in (("pytorch", "fp32"), ("fp32", "int8"), ("pytorch", "int8"))]
    assert [b.check for b in check(pairs, Thresholds(fp32_max_abs_diff=10))] == ["top-1 agreement"]


def test_suspects_rank_a_0_db_layer_first():
    def layer(node: str, own: float | None, weight: float | None) -> LayerError:
        return LayerError(node, node, "Conv", None, own, weight)

    layers = [layer("good", 40.0, 35.0), layer("zero", 0.0, 30.0), layer("head", None, 12.0),
              layer("negative", 25.0, -3.0)]
    assert rank_suspects(layers) == ["negative", "zero", "head"]


@pytest.mark.parametrize(("thresholds", "message"), [
    (Thresholds(fp32_max_abs_diff=-1), "--max-logit-diff"),
    (Thresholds(fp32_min_agreement=1.5), "--min-agreement"),
    (Thresholds(int8_max_drop_points=-0.1), "--max-int8-drop"),
])
def test_nonsensical_thresholds_are_refused(thresholds, message):
    with pytest.raises(ConfigError, match=message):
        thresholds.validate()


def test_the_command_reproduces_the_thresholds():
    command = parity_command("runs/x", "exported/x-fp32", "exported/x-int8", limit=10,
                             thresholds=Thresholds(1e-5, 1.0, 0.05))
    assert command == ("mnist-edge parity runs/x exported/x-fp32 exported/x-int8 "
                       "--max-logit-diff 1e-05 --max-int8-drop 0.05 --limit 10")


# --- finding the models -------------------------------------------------------------------------


def test_models_are_found_from_the_export_name_or_a_member(exported, bad_int8):
    both = (exported["fp32"], exported["int8"])
    assert tuple(resolve_models([exported["base"]]).__dict__.values()) == both
    assert tuple(resolve_models([exported["fp32"]]).__dict__.values()) == both
    assert tuple(resolve_models([exported["int8"]]).__dict__.values()) == both  # the fp32 sibling joins
    assert tuple(resolve_models([exported["int8"], exported["fp32"]]).__dict__.values()) == both
    assert tuple(resolve_models([bad_int8]).__dict__.values()) == (None, bad_int8)  # no sibling there


def test_model_resolution_errors(exported, tmp_path):
    with pytest.raises(ModelFileError, match="no such model file or folder"):
        resolve_models([tmp_path / "nothing"])
    with pytest.raises(ConfigError, match="two fp32 models"):
        resolve_models([exported["fp32"], exported["fp32"]])


# --- a real run -----------------------------------------------------------------------------------


def test_parity_of_a_trained_run(report):
    assert report.images == LIMIT and report.passed
    assert [(p.reference, p.candidate) for p in report.pairs] == [
        ("pytorch", "fp32"), ("fp32", "int8"), ("pytorch", "int8")]
    fp32 = report.pair("pytorch", "fp32")
    assert fp32.max_abs_logit_diff < 1e-4 and fp32.agreement == 1.0
    assert report.pair("fp32", "int8").agreement > 0.97
    assert {d.index for d in report.disagreements} == set(report.pair("fp32", "int8").disagreements) | set(
        report.pair("pytorch", "int8").disagreements)


def test_the_per_layer_analysis_names_layers_to_exclude(report):
    layers = report.layer_report
    assert layers.layers and {e.op_type for e in layers.layers} <= {"Conv", "Gemm", "MatMul"}
    last = layers.layers[-1]
    assert last.tensor == "logits" and last.own_qdq_db is None  # the logits stay float
    assert all(e.weight_db > 20 and e.vs_fp32_db > 10 for e in layers.layers)
    assert layers.suspects and set(layers.suspects) <= {e.node for e in layers.layers}
    assert layers.kernel_check is not None and not layers.kernel_check.saturation_suspected


def test_reports_and_manifests_are_written(report, exported, tmp_path):
    images = load_split("test", download=False).subset(LIMIT).images
    paths = write_report(report, tmp_path, images)
    saved = json.loads(paths["report"].read_text())
    assert saved["passed"] and saved["files"] == {"figure": FIGURE_FILE, "report": REPORT_FILE}
    assert paths["figure"].read_bytes().startswith(b"\x89PNG")
    update_manifest(exported["int8"], report, "int8")
    metrics = manifest_io.load(exported["int8"])["metrics"]
    assert metrics["test_accuracy"] == report.score("int8").accuracy
    assert metrics["reference"] == "fp32 ONNX" and metrics["test_images"] == LIMIT
    assert metrics["measured_with"].startswith("mnist-edge parity ")
    assert "--limit 400" in metrics["measured_with"]


def test_a_bad_int8_model_checked_only_against_pytorch_fails(tiny_run, bad_int8):
    report = run_parity(tiny_run, None, bad_int8, limit=LIMIT, layers="never")
    assert [(p.reference, p.candidate) for p in report.pairs] == [("pytorch", "int8")]
    assert not report.passed
    (breach,) = report.breaches
    assert breach.check == "int8 accuracy drop (points)" and breach.pair == "int8 vs pytorch"
    assert breach.measured > 5


def test_a_bad_int8_model_gets_the_per_layer_analysis_automatically(tiny_run, exported, bad_int8, tmp_path):
    fp32 = shutil.copytree(exported["fp32"], tmp_path / "bad-fp32")  # the sibling bad-int8 lacks
    report = run_parity(tiny_run, fp32, bad_int8, limit=LIMIT)  # layers="auto"
    assert [b.check for b in report.breaches] == ["int8 accuracy drop (points)"]
    layers = report.layer_report
    assert layers is not None and layers.layers and layers.suspects
    assert any("--exclude " + layers.suspects[0] in line for line in layers.advice)


def test_parity_needs_two_models(tiny_run):
    with pytest.raises(ConfigError, match="at least two models"):
        run_parity(tiny_run, None, None)
