"""Knowledge distillation: the teacher pulls the student towards it, resume stays exact, a
teacher that cannot teach is refused before anything is written."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from mnist_edge import checkpoint, data  # noqa: E402
from mnist_edge.cli import app  # noqa: E402
from mnist_edge.config import Recipe, preset  # noqa: E402
from mnist_edge.distill import Teacher, check_teacher, distillation_loss, kl_to_teacher  # noqa: E402
from mnist_edge.errors import ConfigError, TrainingInterrupted  # noqa: E402
from mnist_edge.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_TEACHER = ROOT / "exported" / "checkpoints" / "cnn"
SMALL = {"epochs": 2, "train_limit": 1536, "val_size": 512, "batch_size": 128}
runner = CliRunner()


@pytest.fixture(scope="module")
def teacher_dir() -> Path:
    if not (SHIPPED_TEACHER / checkpoint.CONFIG).is_file():
        pytest.skip("the shipped cnn checkpoint (exported/checkpoints/cnn) is missing")
    return SHIPPED_TEACHER


def small_recipe(**overrides) -> Recipe:
    return preset("fast", **{**SMALL, **overrides})


def weights_bytes(run_dir: Path) -> bytes:
    return (run_dir / checkpoint.WEIGHTS).read_bytes()


def mean_kl_to(teacher_dir: Path, student_dir: Path, images: np.ndarray) -> float:
    """KL(teacher || student) at temperature 1, averaged over the images."""
    _, teacher = checkpoint.checkpoint_logits(teacher_dir, images)
    _, student = checkpoint.checkpoint_logits(student_dir, images)
    return float(kl_to_teacher(torch.from_numpy(student), torch.from_numpy(teacher)))


# --- the loss -------------------------------------------------------------------------------------


def test_loss_is_the_labels_loss_at_weight_zero_and_the_soft_loss_at_weight_one() -> None:
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(64, 10, generator=gen), torch.randn(64, 10, generator=gen)
    labels = torch.randint(0, 10, (64,), generator=gen)
    hard = torch.nn.functional.cross_entropy(student, labels)
    assert torch.equal(distillation_loss(student, teacher, labels, 0.0, 4.0), hard)
    soft = distillation_loss(student, teacher, labels, 1.0, 4.0)
    assert torch.allclose(soft, 16 * kl_to_teacher(student, teacher, 4.0))  # the T^2 factor
    mixed = distillation_loss(student, teacher, labels, 0.25, 4.0)
    assert torch.allclose(mixed, 0.75 * hard + 0.25 * soft)
    assert float(kl_to_teacher(teacher, teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_to_teacher(student, teacher)) > 0.1


def test_teacher_runs_as_the_checkpoint_does(teacher_dir: Path, mnist_dir: Path) -> None:
    """Folding batch norm, channels-last memory and bfloat16 (where the CPU has it) move the
    logits by rounding only: the same predictions, the same soft targets to two decimals."""
    images = data.load_split("test", mnist_dir, download=False).images[:1000]
    _, reference = checkpoint.checkpoint_logits(teacher_dir, images)
    teacher = Teacher.load(teacher_dir, torch.device("cpu"))
    x = torch.from_numpy(data.normalize(images, 255.0, 0.1307, 0.3081))
    fast = teacher.logits(x)
    assert fast.dtype == torch.float32 and not fast.requires_grad
    tolerance = 0.1 if teacher.bfloat16 else 1e-4  # bfloat16 keeps 8 significant bits (measured: 0.03)
    assert np.abs(fast.numpy() - reference).max() < tolerance
    assert (fast.numpy().argmax(1) == reference.argmax(1)).mean() >= 0.999
    soft = torch.softmax(fast / 4, dim=1) - torch.softmax(torch.from_numpy(reference) / 4, dim=1)
    assert float(soft.abs().max()) < 0.005  # measured: 0.0017
    assert teacher.info.precision == ("bfloat16" if teacher.bfloat16 else "float32")


# --- training with a teacher --------------------------------------------------------------------


def test_a_student_with_a_teacher_ends_closer_to_it(tmp_path: Path, teacher_dir: Path, mnist_dir: Path) -> None:
    recipe = small_recipe(epochs=2, train_limit=2000)
    train(recipe, tmp_path / "alone", device="cpu", data_dir=mnist_dir, download=False)
    result = train(Recipe(**{**recipe.__dict__, "teacher": str(teacher_dir)}), tmp_path / "taught",
                   device="cpu", data_dir=mnist_dir, download=False)
    images = data.load_split("test", mnist_dir, download=False).images[:2000]
    alone = mean_kl_to(teacher_dir, tmp_path / "alone", images)
    taught = mean_kl_to(teacher_dir, tmp_path / "taught", images)
    assert taught < 0.8 * alone, (taught, alone)
    assert all(h["teacher_seconds"] > 0 for h in result.history[:1])
    config = checkpoint.load_config(tmp_path / "taught")
    assert config["teacher"]["path"] == str(teacher_dir)
    assert config["teacher"]["sha256"] == checkpoint.load_config(teacher_dir)["files"][checkpoint.WEIGHTS]
    assert config["recipe"]["teacher"] == str(teacher_dir)
    assert "teacher" not in checkpoint.load_config(tmp_path / "alone")["recipe"]  # reads as before


@pytest.mark.parametrize("augment", [True, False], ids=["teacher-every-batch", "cached-logits"])
def test_resume_with_a_teacher_reaches_the_same_weights(tmp_path: Path, teacher_dir: Path, mnist_dir: Path,
                                                        augment: bool) -> None:
    recipe = small_recipe(augment=augment, optimizer="sgd", lr=0.05, teacher=str(teacher_dir))
    train(recipe, tmp_path / "straight", device="cpu", data_dir=mnist_dir, download=False)

    def interrupt(info) -> None:
        if info.epoch == 1 and info.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(recipe, tmp_path / "resumed", device="cpu", data_dir=mnist_dir, download=False, on_step=interrupt)
    result = train(recipe, tmp_path / "resumed", device="cpu", data_dir=mnist_dir, download=False, resume=True)
    assert result.resumed_from["step"] == 5
    assert weights_bytes(tmp_path / "straight") == weights_bytes(tmp_path / "resumed")
    alone = small_recipe(augment=augment, optimizer="sgd", lr=0.05)
    train(alone, tmp_path / "alone", device="cpu", data_dir=mnist_dir, download=False)
    assert weights_bytes(tmp_path / "alone") != weights_bytes(tmp_path / "straight")  # the teacher counted


def test_resume_refuses_a_changed_teacher(tmp_path: Path, teacher_dir: Path, tiny_run: Path, mnist_dir: Path) -> None:
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dir, teacher)
    recipe = small_recipe(teacher=str(teacher))

    def interrupt(info) -> None:
        if info.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(recipe, tmp_path / "run", device="cpu", data_dir=mnist_dir, download=False, on_step=interrupt)
    saved = (tmp_path / "run" / checkpoint.WEIGHTS).read_bytes()
    shutil.rmtree(teacher)
    shutil.copytree(tiny_run, teacher)  # another valid model under the same name
    with pytest.raises(ConfigError, match="teacher .* changed since this run started"):
        train(recipe, tmp_path / "run", device="cpu", data_dir=mnist_dir, download=False, resume=True)
    assert (tmp_path / "run" / checkpoint.WEIGHTS).read_bytes() == saved


def test_a_run_cannot_teach_itself(tmp_path: Path, tiny_run: Path, mnist_dir: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    with pytest.raises(ConfigError, match="its own teacher"):
        train(small_recipe(teacher=str(run)), run, device="cpu", data_dir=mnist_dir, download=False, force=True)


# --- a teacher that cannot teach: one line, exit 2, nothing written ------------------------------


def _other_normalization(tmp_path: Path, teacher_dir: Path) -> Path:
    teacher = tmp_path / "mean05"
    shutil.copytree(teacher_dir, teacher)
    config = json.loads((teacher / checkpoint.CONFIG).read_text())
    config["normalization"]["mean"] = 0.5  # a model trained on inputs centred elsewhere
    (teacher / checkpoint.CONFIG).write_text(json.dumps(config))
    return teacher


def _unfinished(tmp_path: Path, teacher_dir: Path) -> Path:
    teacher = tmp_path / "unfinished"
    shutil.copytree(teacher_dir, teacher)
    config = json.loads((teacher / checkpoint.CONFIG).read_text())
    config["progress"]["completed"] = False
    (teacher / checkpoint.CONFIG).write_text(json.dumps(config))
    return teacher


def _not_a_model(tmp_path: Path, teacher_dir: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a model")
    return folder


def _onnx_file(tmp_path: Path, teacher_dir: Path) -> Path:
    model = ROOT / "exported" / "cnn-fp32" / "model.onnx"
    if not model.is_file():
        pytest.skip("exported/cnn-fp32 is missing")
    return model


def _foreign_config(tmp_path: Path, teacher_dir: Path) -> Path:
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / checkpoint.CONFIG).write_text(json.dumps({"format": "something-else"}))
    return folder


@pytest.mark.parametrize("make, needles", [
    (lambda tmp, t: tmp / "missing", ["teacher not found"]),
    (_not_a_model, ["teacher is not a model", "no config.json"]),
    (_onnx_file, ["teacher is not a model"]),
    (_foreign_config, ["teacher is not a usable model", "not an mnist-edge checkpoint"]),
    (_other_normalization, ["another input normalization", "mean 0.5 (student: 0.1307)"]),
    (_unfinished, ["has not finished training"]),
], ids=["missing", "folder-without-model", "onnx-file", "foreign-config", "other-normalization", "unfinished"])
def test_a_teacher_that_cannot_teach_is_refused(tmp_path: Path, teacher_dir: Path, mnist_dir: Path, make,
                                                needles: list[str]) -> None:
    teacher = make(tmp_path, teacher_dir)
    out = tmp_path / "new" / "run"
    result = runner.invoke(app, ["train", "--preset", "fast", "--epochs", "1", "--limit", "500", "--device", "cpu",
                                 "--data-dir", str(mnist_dir), "--no-download", "--out", str(out),
                                 "--teacher", str(teacher)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {teacher}: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("extra, message", [
    (["--temperature", "2"], "--temperature needs a teacher"),
    (["--distill-weight", "0.3", "--temperature", "2"], "--distill-weight and --temperature need a teacher"),
    (["--teacher", "x", "--distill-weight", "1.5"], "--distill-weight must be in [0, 1]"),
    (["--teacher", "x", "--temperature", "0"], "--temperature must be in (0, 100]"),
])
def test_distillation_options_are_checked(tmp_path: Path, mnist_dir: Path, extra: list[str], message: str) -> None:
    result = runner.invoke(app, ["train", "--preset", "fast", "--device", "cpu", "--data-dir", str(mnist_dir),
                                 "--no-download", "--out", str(tmp_path / "run"), *extra])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_check_teacher_names_the_teacher(teacher_dir: Path) -> None:
    info, config = check_teacher(teacher_dir)
    assert info.arch == "cnn" and info.params == config["params"] == 44034
    assert info.sha256 == config["files"][checkpoint.WEIGHTS]


# --- recipes ------------------------------------------------------------------------------------


def test_a_recipe_without_a_teacher_reads_as_before() -> None:
    plain = preset("fast").to_dict()
    assert not {"teacher", "distill_weight", "temperature"} & set(plain)
    assert Recipe.from_dict(plain) == preset("fast")
    taught = preset("fast", teacher="t", temperature=2.0)
    assert Recipe.from_dict(taught.to_dict()) == taught
    weighted = preset("fast", distill_weight=0.25)  # kept, so the recipe round-trips exactly
    assert weighted.to_dict()["distill_weight"] == 0.25 and Recipe.from_dict(weighted.to_dict()) == weighted


def test_the_fast_distill_preset_is_fast_taught_by_the_shipped_cnn() -> None:
    fast, taught = preset("fast"), preset("fast-distill")
    assert taught.distilled and not fast.distilled
    assert (ROOT / taught.teacher).resolve() == (ROOT / "exported" / "checkpoints" / "cnn").resolve()
    info, _ = check_teacher(ROOT / taught.teacher)
    assert info.arch == "cnn"
    # the student, its optimizer and its data are fast's: only the length, the rate and the teacher differ
    same = {k: v for k, v in fast.to_dict().items() if k not in ("epochs", "lr")}
    assert {k: taught.to_dict()[k] for k in same} == same


# --- one home for running a checkpoint ---------------------------------------------------------


def _imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / "mnist_edge" / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_checkpoint_does_not_import_evaluate() -> None:
    """evaluate.py runs checkpoints through checkpoint.py; checkpoint.py needs nothing of evaluate."""
    assert not any(name == "mnist_edge.evaluate" or name.startswith("mnist_edge.evaluate.")
                   for name in _imports("checkpoint"))
    assert "mnist_edge.checkpoint.torch_logits" in _imports("evaluate")


# --- sweep and search take the recipe keys ------------------------------------------------------


def test_a_sweep_run_with_a_teacher_records_it_in_the_manifests(tmp_path: Path, teacher_dir: Path,
                                                                mnist_dir: Path) -> None:
    from mnist_edge import manifest
    from mnist_edge.sweep import load_config, run_sweep

    path = tmp_path / "sweep.toml"
    path.write_text(f'[sweep]\nbench_seconds = 0.05\ndevice = "cpu"\n[[run]]\nname = "kd"\nepochs = 1\n'
                    f'train_limit = 1000\nteacher = "{teacher_dir}"\ndistill_weight = 0.7\ntemperature = 3\n')
    config = load_config(path)
    assert config.runs[0].recipe.teacher == str(teacher_dir)
    assert (config.runs[0].recipe.distill_weight, config.runs[0].recipe.temperature) == (0.7, 3.0)
    [result] = run_sweep(config, tmp_path / "out", data_dir=mnist_dir, download=False)
    assert result.status == "done", result.message
    sha = checkpoint.load_config(teacher_dir)["files"][checkpoint.WEIGHTS]
    for kind in ("fp32", "int8"):
        source = manifest.load(tmp_path / "out" / "kd" / "exported" / kind)["source"]
        assert source["teacher"]["path"] == str(teacher_dir) and source["teacher"]["sha256"] == sha
        assert source["recipe"]["distill_weight"] == 0.7


def test_a_sweep_naming_a_missing_teacher_is_refused_at_its_line(tmp_path: Path) -> None:
    from mnist_edge.sweep import load_config

    path = tmp_path / "sweep.toml"
    path.write_text('[[run]]\nname = "kd"\n\nteacher = "no/such/run"\n')
    with pytest.raises(ConfigError, match=r"line 4: key 'teacher': no/such/run: teacher not found"):
        load_config(path)


def test_a_search_explores_distilled_students(tmp_path: Path, teacher_dir: Path) -> None:
    pytest.importorskip("optuna")
    from mnist_edge.search.space import load_search_config, recipe_for

    path = tmp_path / "search.toml"
    path.write_text(f'[search]\nname = "kd"\n[search.space]\nteacher = "{teacher_dir}"\n'
                    'distill_weight = {low = 0.3, high = 0.9}\ntemperature = [2.0, 4.0]\n')
    config = load_search_config(path)
    recipe = recipe_for(config, {"distill_weight": 0.6, "temperature": 2.0})
    assert (recipe.teacher, recipe.distill_weight, recipe.temperature) == (str(teacher_dir), 0.6, 2.0)
    path.write_text('[search]\nname = "kd"\n[search.space]\nteacher = ["", "missing/run"]\nlr = [0.01, 0.02]\n')
    with pytest.raises(ConfigError, match=r"key 'teacher': missing/run: teacher not found"):
        load_search_config(path)


def test_a_pipeline_with_a_missing_teacher_writes_nothing(tmp_path: Path, mnist_dir: Path) -> None:
    out = tmp_path / "pipe"
    result = runner.invoke(app, ["pipeline", "--out", str(out), "--device", "cpu", "--data-dir", str(mnist_dir),
                                 "--teacher", str(tmp_path / "missing")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "teacher not found" in lines[0], result.stderr
    assert not out.exists()


def test_the_distillation_search_config_parses(teacher_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("optuna")
    from mnist_edge.search.space import load_search_config

    monkeypatch.chdir(ROOT)  # its teacher is a path relative to the repository root
    config = load_search_config(ROOT / "sweeps" / "distill.toml")
    assert config.fixed["teacher"] == "exported/checkpoints/cnn"
    assert {"distill_weight", "temperature", "arch"} <= set(config.space)
