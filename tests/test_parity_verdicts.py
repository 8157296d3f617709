"""Parity's verdicts without training: thresholds at their limits, pair arithmetic, which pair
judges int8, model resolution, the manifest metrics, and a whole parity run on two small
hand-built ONNX models (tests/onnx_models.py). Fractions of a second each, so that mutation
testing (scripts/mutation.py) can afford them for every mutant of parity.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from mnist_edge import manifest as manifest_io  # noqa: E402
from mnist_edge import parity  # noqa: E402
from mnist_edge.errors import ConfigError, ModelFileError, ParityError  # noqa: E402
from mnist_edge.parity import PairComparison, Thresholds, check, compare  # noqa: E402
from tests.onnx_models import linear_model, qdq_model, write_exported  # noqa: E402

LIMIT = 30


@pytest.fixture(scope="module")
def pair_folders(tmp_path_factory, mnist_dir) -> dict[str, Path]:
    """lin-fp32 and lin-int8 side by side, as `export --out lin` writes them."""
    root = tmp_path_factory.mktemp("verdicts")
    return {"base": root / "lin",
            "fp32": write_exported(root / "lin-fp32", linear_model("flat"), layout="flat"),
            "int8": write_exported(root / "lin-int8", qdq_model(), name="lin-int8", layout="flat")}


@pytest.fixture(scope="module")
def measured(pair_folders, mnist_dir) -> parity.ParityReport:
    return parity.run_parity(None, pair_folders["fp32"], pair_folders["int8"], limit=LIMIT,
                             layers="never", data_dir=mnist_dir, download=False)


def pair(reference="fp32", candidate="int8", *, ref_acc=0.99, cand_acc=0.99, delta=0.0, agreement=1.0,
         disagree=0, max_diff=0.0) -> PairComparison:
    return PairComparison(reference, candidate, ref_acc, cand_acc, delta, agreement, 100 - disagree, disagree,
                          list(range(disagree)), max_diff, max_diff / 2)


# --- thresholds -------------------------------------------------------------------------------------


def test_thresholds_at_their_limits_are_accepted():
    assert Thresholds(0.0, 0.0, 0.0).validate() == Thresholds(0.0, 0.0, 0.0)
    Thresholds(fp32_min_agreement=1.0).validate()


@pytest.mark.parametrize("field", ["fp32_max_abs_diff", "int8_max_drop_points", "fp32_min_agreement"])
def test_not_a_number_is_refused(field):
    with pytest.raises(ConfigError):
        Thresholds(**{field: float("nan")}).validate()


@pytest.mark.parametrize("agreement", [-0.01, 1.01])
def test_agreement_outside_0_to_100_percent_is_refused(agreement):
    with pytest.raises(ConfigError, match=r"--min-agreement must be between 0 and 100 %, got "):
        Thresholds(fp32_min_agreement=agreement).validate()


# --- the arithmetic -------------------------------------------------------------------------------------


def test_compare_gives_exact_figures():
    labels = np.array([0, 1, 2, 3])
    logits = {"fp32": np.eye(4, dtype=np.float32),
              "int8": np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 2], [0, 0, 0, 1]], np.float32)}
    p = compare("fp32", "int8", logits, labels)
    assert (p.reference, p.candidate) == ("fp32", "int8")
    assert (p.reference_accuracy, p.candidate_accuracy) == (1.0, 0.75)
    assert p.accuracy_delta_points == -25.0
    assert (p.agreement, p.agree_count, p.disagree_count, p.disagreements) == (0.75, 3, 1, [2])
    assert p.max_abs_logit_diff == 2.0 and p.mean_abs_logit_diff == pytest.approx(3 / 16)


def test_check_judges_int8_against_fp32_and_falls_back_to_pytorch():
    bad_vs_fp32 = pair(delta=-0.5, cand_acc=0.985)
    fine_vs_torch = pair("pytorch", "int8")
    assert [b.pair for b in check([fine_vs_torch, bad_vs_fp32], Thresholds())] == ["int8 vs fp32"]
    assert check([pair("pytorch", "int8", delta=-0.5)], Thresholds())[0].pair == "int8 vs pytorch"
    assert check([pair("fp32", "int8", delta=0.3)], Thresholds()) == []  # int8 better: no breach
    assert check([], Thresholds()) == []


def test_fp32_limits_are_inclusive_and_each_breach_says_what_and_by_how_much():
    at_limit = pair("pytorch", "fp32", max_diff=1e-4, agreement=0.99, disagree=1)
    assert check([at_limit], Thresholds(fp32_min_agreement=0.99)) == []
    over = pair("pytorch", "fp32", max_diff=2e-4, agreement=0.98, disagree=2)
    diff, agree = check([over], Thresholds(fp32_min_agreement=0.99))
    assert (diff.check, diff.pair, diff.measured, diff.limit) == ("max abs logit diff", "fp32 vs pytorch", 2e-4, 1e-4)
    assert diff.message == "fp32 ONNX logits differ from PyTorch by up to 0.0002 (limit 0.0001)"
    assert (agree.check, agree.measured, agree.limit) == ("top-1 agreement", 0.98, 0.99)
    assert agree.message == "fp32 ONNX and PyTorch disagree on 2 images (98.00% agreement, limit 99.00%)"


def test_int8_drop_at_the_limit_passes_and_just_over_fails():
    assert check([pair(delta=-0.1)], Thresholds()) == []
    (breach,) = check([pair(delta=-0.1000001, ref_acc=0.99, cand_acc=0.9889999)], Thresholds())
    assert (breach.check, breach.pair, breach.limit) == ("int8 accuracy drop (points)", "int8 vs fp32", 0.1)
    assert breach.measured == pytest.approx(0.1000001)
    assert breach.message == "int8 accuracy 98.90% is 0.10 points below fp32 99.00% (limit 0.10)"
    (torch_breach,) = check([pair("pytorch", "int8", delta=-2.0, cand_acc=0.97)], Thresholds())
    assert "points below PyTorch 99.00%" in torch_breach.message


def test_disagreements_are_the_union_of_every_pair_with_all_predictions(monkeypatch):
    labels = np.array([0, 1, 2, 3, 4])
    logits = {r: np.eye(5, dtype=np.float32) for r in ("pytorch", "fp32", "int8")}
    logits["fp32"][3] = np.eye(5)[0]
    logits["int8"][1] = np.eye(5)[4]
    logits["int8"][3] = np.eye(5)[0]
    pairs = [compare(a, b, logits, labels) for a, b in (("pytorch", "fp32"), ("fp32", "int8"), ("pytorch", "int8"))]
    found = parity._disagreements(pairs, logits, labels)
    assert [(d.index, d.label, d.predictions) for d in found] == [
        (1, 1, {"pytorch": 1, "fp32": 1, "int8": 4}), (3, 3, {"pytorch": 3, "fp32": 0, "int8": 0})]
    monkeypatch.setattr(parity, "MAX_LISTED", 1)
    assert [d.index for d in parity._disagreements(pairs, logits, labels)] == [1]


def test_the_command_names_only_thresholds_that_differ_from_the_defaults():
    assert parity.parity_command(None, "a-fp32", "a-int8") == "mnist-edge parity a-fp32 a-int8"
    assert parity.parity_command("runs/x", None, "b c", thresholds=Thresholds(fp32_min_agreement=0.995)) == (
        "mnist-edge parity runs/x 'b c' --min-agreement 99.5")


# --- finding the models ------------------------------------------------------------------------------


def test_models_are_found_from_the_name_a_member_or_both(pair_folders):
    both = (pair_folders["fp32"], pair_folders["int8"])
    for given in ([pair_folders["base"]], [pair_folders["fp32"]], [pair_folders["int8"]],
                  [pair_folders["int8"], pair_folders["fp32"]]):
        assert (parity.resolve_models(given).fp32, parity.resolve_models(given).int8) == both


def test_a_lone_model_without_sibling_is_compared_alone(pair_folders, tmp_path):
    lone = shutil.copytree(pair_folders["int8"], tmp_path / "other-int8")
    assert (parity.resolve_models([lone]).fp32, parity.resolve_models([lone]).int8) == (None, lone)
    unsuffixed = shutil.copytree(pair_folders["int8"], tmp_path / "lin-quantized")
    shutil.copytree(pair_folders["fp32"], tmp_path / "lin-fp32")
    assert parity.resolve_models([unsuffixed]).fp32 is None


@pytest.mark.parametrize("count", [0, 3])
def test_one_or_two_models_only(pair_folders, count):
    with pytest.raises(ConfigError, match=f"give one or two models \\(fp32, int8\\), got {count}"):
        parity.resolve_models([pair_folders["fp32"]] * count)


def test_two_models_of_one_kind_or_a_missing_name_are_refused(pair_folders, tmp_path):
    with pytest.raises(ConfigError, match="two int8 models given"):
        parity.resolve_models([pair_folders["int8"], pair_folders["int8"]])
    with pytest.raises(ModelFileError, match="nor NAME-fp32 / NAME-int8"):
        parity.resolve_models([tmp_path / "nothing"])


def test_folder_of_a_file_is_its_parent(pair_folders):
    assert parity.folder_of(pair_folders["fp32"]) == pair_folders["fp32"]
    assert parity.folder_of(pair_folders["fp32"] / "model.onnx") == pair_folders["fp32"]


# --- a whole run on hand-built models ---------------------------------------------------------------------


def test_a_run_measures_every_model_on_the_first_images(measured, mnist_dir):
    assert measured.images == LIMIT and Path(measured.data) == mnist_dir / "MNIST" / "raw"
    assert [(m.role, m.count) for m in measured.models] == [("fp32", LIMIT), ("int8", LIMIT)]
    assert all(m.accuracy == m.correct / LIMIT for m in measured.models)
    (only,) = measured.pairs
    assert (only.reference, only.candidate) == ("fp32", "int8")
    assert measured.passed == (not measured.breaches) and measured.layer_report is None
    assert measured.command.endswith(f"--limit {LIMIT}")
    assert {"onnxruntime", "numpy", "python", "machine", "cpu"} <= measured.environment.keys()


def test_layers_always_analyses_even_a_passing_int8(pair_folders, mnist_dir):
    report = parity.run_parity(None, pair_folders["fp32"], pair_folders["int8"], limit=LIMIT,
                               layers="always", data_dir=mnist_dir, download=False,
                               thresholds=Thresholds(int8_max_drop_points=100))
    assert report.passed and report.layer_report is not None


@pytest.mark.parametrize(("options", "message"), [
    ({"layers": "sometimes"}, "layers must be auto, always or never, got 'sometimes'"),
    ({"limit": -1}, "--limit must be >= 0, got -1"),
    ({"thresholds": Thresholds(int8_max_drop_points=-1)}, "--max-int8-drop"),
])
def test_bad_requests_fail_before_measuring(pair_folders, options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parity.run_parity(None, pair_folders["fp32"], pair_folders["int8"], **options)


def test_one_model_alone_is_not_a_comparison(pair_folders):
    with pytest.raises(ConfigError, match="at least two models"):
        parity.run_parity(None, None, pair_folders["int8"])


def test_a_model_that_outputs_probabilities_is_refused(zoo, pair_folders, mnist_dir):
    with pytest.raises(ParityError, match="outputs probabilities"):
        parity.run_parity(None, zoo["softmax"], pair_folders["int8"], limit=5, data_dir=mnist_dir, download=False)


def test_models_with_different_labels_are_refused(pair_folders, tmp_path):
    other = shutil.copytree(pair_folders["int8"], tmp_path / "letters-int8")
    manifest = manifest_io.load(other)
    manifest["labels"] = list("abcdefghij")
    manifest_io.save(other, manifest)
    with pytest.raises(ParityError, match="different labels"):
        parity.run_parity(None, pair_folders["fp32"], other, limit=5)


def test_record_parity_writes_reports_and_manifests_under_final_names(measured, pair_folders, mnist_dir, tmp_path):
    fp32 = shutil.copytree(pair_folders["fp32"], tmp_path / "stage-fp32")
    int8 = shutil.copytree(pair_folders["int8"], tmp_path / "stage-int8")
    final = {"fp32": tmp_path / "final-fp32", "int8": tmp_path / "final-int8"}
    report = parity.record_parity(None, fp32, int8, report_dirs=[tmp_path / "a", tmp_path / "b"],
                                  manifests={"int8": int8}, final_folders=final, figure=False,
                                  limit=LIMIT, layers="never", data_dir=mnist_dir, download=False)
    assert [m.path for m in report.models] == [str(final["fp32"] / "model.onnx"), str(final["int8"] / "model.onnx")]
    for folder in ("a", "b"):
        saved = json.loads((tmp_path / folder / manifest_io.PARITY_REPORT).read_text())
        assert saved["files"] == {"report": manifest_io.PARITY_REPORT}
        assert [m["path"] for m in saved["models"]] == [m.path for m in report.models]
    assert manifest_io.load(int8)["metrics"]["test_correct"] == report.score("int8").correct
    assert "metrics" not in manifest_io.load(fp32)


# --- manifest metrics ---------------------------------------------------------------------------------------


def test_int8_metrics_name_their_reference_and_carry_every_figure(measured):
    metrics = parity.metrics_for(measured, "int8")
    p = measured.pair("fp32", "int8")
    assert metrics["reference"] == "fp32 ONNX" and metrics["fp32_accuracy"] == measured.score("fp32").accuracy
    assert (metrics["test_images"], metrics["test_accuracy"]) == (LIMIT, measured.score("int8").accuracy)
    assert (metrics["accuracy_delta_points"], metrics["top1_agreement"], metrics["disagreements"]) == (
        p.accuracy_delta_points, p.agreement, p.disagree_count)
    assert (metrics["max_abs_logit_diff"], metrics["mean_abs_logit_diff"]) == (p.max_abs_logit_diff,
                                                                               p.mean_abs_logit_diff)
    assert metrics["parity_passed"] is measured.passed and metrics["measured_with"] == measured.command
    assert metrics["report"] == manifest_io.PARITY_REPORT and metrics["cpu"] == measured.environment["cpu"]
    assert "torch_accuracy" not in metrics and "torch_top1_agreement" not in metrics


def test_fp32_metrics_have_no_pair_without_pytorch(measured):
    metrics = parity.metrics_for(measured, "fp32")
    assert "reference" not in metrics and "fp32_accuracy" not in metrics
    assert metrics["test_accuracy"] == measured.score("fp32").accuracy


def test_metrics_against_pytorch_when_there_is_a_checkpoint(measured):
    torch_score = parity.ModelScore("pytorch", "run", "runs/x", 29, LIMIT, 29 / LIMIT)
    with_torch = parity.ParityReport(**{**measured.__dict__, "models": [torch_score] + measured.models[1:],
                                        "pairs": [pair("pytorch", "int8", agreement=0.9)]})
    metrics = parity.metrics_for(with_torch, "int8")
    assert metrics["reference"] == "PyTorch checkpoint" and metrics["torch_accuracy"] == 29 / LIMIT
    assert metrics["top1_agreement"] == 0.9 and metrics["torch_top1_agreement"] == 0.9
    with pytest.raises(ParityError, match="the report has no fp32 model"):
        parity.metrics_for(with_torch, "fp32")


def test_small_differences_are_measured_exactly():
    labels = np.array([0, 1])
    logits = {"fp32": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
              "int8": np.array([[0.75, 0.0], [0.0, 1.125]], np.float32)}
    p = compare("fp32", "int8", logits, labels)
    assert p.max_abs_logit_diff == 0.25 and p.mean_abs_logit_diff == pytest.approx(0.375 / 4)
    assert p.accuracy_delta_points == 0.0 and p.disagreements == [] and p.agreement == 1.0


def test_the_command_leaves_out_a_zero_limit_and_default_thresholds():
    assert parity.parity_command("r", "a", None, limit=0, thresholds=Thresholds()) == "mnist-edge parity r a"
    assert parity.parity_command(None, "a", "b", thresholds=Thresholds(fp32_max_abs_diff=2e-4)) == (
        "mnist-edge parity a b --max-logit-diff 0.0002")


def test_an_explicit_command_is_recorded_as_given(pair_folders, mnist_dir):
    report = parity.run_parity(None, pair_folders["fp32"], pair_folders["int8"], limit=5, layers="never",
                               data_dir=mnist_dir, download=False, command="mnist-edge export runs/x --out y")
    assert report.command == "mnist-edge export runs/x --out y" and report.images == 5


def test_the_report_and_its_figure_are_written(measured, mnist_dir, tmp_path):
    pytest.importorskip("matplotlib")
    from mnist_edge.data import load_split

    images = load_split("test", download=False).subset(LIMIT).images
    paths = parity.write_report(measured, tmp_path / "out", images)
    assert sorted(paths) == ["figure", "report"]
    assert paths["figure"].name == manifest_io.PARITY_FIGURE and paths["figure"].read_bytes()[:4] == b"\x89PNG"
    saved = json.loads(paths["report"].read_text())
    assert saved["files"] == {"figure": manifest_io.PARITY_FIGURE, "report": manifest_io.PARITY_REPORT}
    assert saved["images"] == LIMIT and saved["passed"] == measured.passed


# --- with a PyTorch side (its logits given: checkpoint_logits has its own tests) -----------------------


@pytest.fixture
def fake_checkpoint(monkeypatch, pair_folders, mnist_dir, tmp_path):
    """A run folder whose 'PyTorch' logits are the fp32 model's, shifted by `shift` and with the
    top-1 of the images in `flip` moved to another digit."""
    pytest.importorskip("torch", reason="parity's PyTorch side needs torch (pip install 'mnist-edge[train]')")
    from types import SimpleNamespace

    from mnist_edge import checkpoint
    from mnist_edge.runtime import Predictor

    fp32 = Predictor.load(pair_folders["fp32"])
    run = tmp_path / "run"
    run.mkdir()
    loaded: list = []
    settings = {"shift": 0.0, "flip": ()}

    def load_config(run_dir, for_resume=False):
        loaded.append(Path(run_dir))
        return {}

    def checkpoint_logits(run_dir, images):
        logits = fp32.logits(images) + np.float32(settings["shift"])
        for index in settings["flip"]:
            logits[index] = np.roll(logits[index], 1)
        return SimpleNamespace(name="tiny-run"), logits

    monkeypatch.setattr(checkpoint, "load_config", load_config)
    monkeypatch.setattr(checkpoint, "checkpoint_logits", checkpoint_logits)
    return run, settings, loaded


def test_a_run_with_pytorch_compares_every_pair(fake_checkpoint, pair_folders, mnist_dir):
    run, settings, loaded = fake_checkpoint
    settings["shift"] = 5e-5  # within the default 1e-4
    report = parity.run_parity(run, pair_folders["fp32"], pair_folders["int8"], limit=LIMIT, layers="never",
                               data_dir=mnist_dir, download=False)
    assert loaded == [run]  # the checkpoint is checked before the evaluation
    assert [(m.role, m.name, m.path) for m in report.models] == [
        ("pytorch", "tiny-run", str(run)), ("fp32", "linear-fp32", str(pair_folders["fp32"] / "model.onnx")),
        ("int8", "lin-int8", str(pair_folders["int8"] / "model.onnx"))]
    assert [(p.reference, p.candidate) for p in report.pairs] == [("pytorch", "fp32"), ("fp32", "int8"),
                                                                   ("pytorch", "int8")]
    torch_fp32 = report.pair("pytorch", "fp32")
    assert torch_fp32.agreement == 1.0 and torch_fp32.max_abs_logit_diff == pytest.approx(5e-5, rel=1e-2)
    assert report.score("pytorch").correct == report.score("fp32").correct
    assert not any(b.check in ("max abs logit diff", "top-1 agreement") for b in report.breaches)
    assert report.command == f"mnist-edge parity {run} {pair_folders['fp32']} {pair_folders['int8']} --limit {LIMIT}"
    assert "torch" in report.environment
    metrics = parity.metrics_for(report, "fp32")
    assert metrics["reference"] == "PyTorch checkpoint"
    assert metrics["torch_accuracy"] == report.score("pytorch").accuracy
    assert metrics["max_abs_logit_diff"] == torch_fp32.max_abs_logit_diff
    int8_metrics = parity.metrics_for(report, "int8")
    assert int8_metrics["reference"] == "fp32 ONNX"  # int8 is judged against fp32 when both ran
    assert int8_metrics["torch_top1_agreement"] == report.pair("pytorch", "int8").agreement


def test_fp32_logits_off_by_more_than_the_limit_or_other_digits_breach(fake_checkpoint, pair_folders, mnist_dir):
    run, settings, _ = fake_checkpoint
    settings["shift"], settings["flip"] = 3e-4, (2, 7)
    report = parity.run_parity(run, pair_folders["fp32"], None, limit=LIMIT, data_dir=mnist_dir, download=False)
    (only,) = report.pairs
    assert (only.reference, only.candidate, only.disagreements) == ("pytorch", "fp32", [2, 7])
    assert [(b.check, b.pair) for b in report.breaches] == [("max abs logit diff", "fp32 vs pytorch"),
                                                           ("top-1 agreement", "fp32 vs pytorch")]
    assert report.breaches[1].message == (f"fp32 ONNX and PyTorch disagree on 2 images ({(LIMIT - 2) / LIMIT:.2%} "
                                          "agreement, limit 100.00%)")
    assert not report.passed and [d.index for d in report.disagreements] == [2, 7]
    assert all(set(d.predictions) == {"pytorch", "fp32"} for d in report.disagreements)
    relaxed = parity.run_parity(run, pair_folders["fp32"], None, limit=LIMIT, data_dir=mnist_dir, download=False,
                                thresholds=Thresholds(fp32_max_abs_diff=1.0, fp32_min_agreement=0.9))
    # the recorded command gives the same verdict: it names the thresholds that differ from the defaults
    assert relaxed.passed and relaxed.command == (f"mnist-edge parity {run} {pair_folders['fp32']} "
                                                  f"--max-logit-diff 1 --min-agreement 90 --limit {LIMIT}")


def test_int8_alone_with_pytorch_is_held_to_its_limit_against_pytorch(fake_checkpoint, pair_folders, mnist_dir):
    run, settings, _ = fake_checkpoint
    settings["flip"] = tuple(range(10))  # PyTorch right where the model is, wrong on ten of them
    report = parity.run_parity(run, None, pair_folders["int8"], limit=LIMIT, layers="auto", data_dir=mnist_dir,
                               download=False, thresholds=Thresholds(int8_max_drop_points=100))
    assert [(p.reference, p.candidate) for p in report.pairs] == [("pytorch", "int8")]
    assert report.passed and report.layer_report is None  # no fp32 model: nothing to analyse layer by layer
    assert parity.metrics_for(report, "int8")["reference"] == "PyTorch checkpoint"
