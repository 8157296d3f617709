"""Parity: the PyTorch checkpoint, its fp32 ONNX and its int8 ONNX on the same test images.

For each pair of models: the accuracy of each, top-1 agreement (count and the indices that
disagree), and the max and mean absolute logit difference. Thresholds (defaults below) turn
the figures into a verdict; when int8 loses more accuracy than allowed, the per-layer analysis
(`mnist_edge.layer_analysis`) says which layers cause it. `record_parity` is the one procedure
that measures, writes parity.json beside the models and records the figures in their manifests.
Returns dataclasses and writes files; never prints.

ONNX models run through `mnist_edge.runtime.Predictor` (what users run); the PyTorch side
through `checkpoint.checkpoint_logits` (torch imported only then).
"""

from __future__ import annotations

import platform
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge import data, measure
from mnist_edge import manifest as manifest_io
from mnist_edge.errors import ConfigError, ModelFileError, ParityError
from mnist_edge.fileio import atomic_write_json, ensure_dir
from mnist_edge.layer_analysis import LayerReport, layer_errors
from mnist_edge.modelfile import is_quantized, locate_model
from mnist_edge.runtime import Predictor

MAX_FIGURE_DIGITS = 60
MAX_LISTED = 1000


@dataclass(frozen=True)
class Thresholds:
    """fp32 vs PyTorch: logits within `fp32_max_abs_diff` and `fp32_min_agreement` top-1 agreement;
    int8: accuracy at most `int8_max_drop_points` percentage points below fp32."""

    fp32_max_abs_diff: float = 1e-4
    fp32_min_agreement: float = 1.0
    int8_max_drop_points: float = 0.1

    def validate(self) -> Thresholds:
        if not self.fp32_max_abs_diff >= 0:
            raise ConfigError(f"--max-logit-diff must be >= 0, got {self.fp32_max_abs_diff}")
        if not 0 <= self.fp32_min_agreement <= 1:
            raise ConfigError(f"--min-agreement must be between 0 and 100 %, "
                              f"got {self.fp32_min_agreement:.2%}")
        if not self.int8_max_drop_points >= 0:
            raise ConfigError(f"--max-int8-drop must be >= 0 points, got {self.int8_max_drop_points}")
        return self


@dataclass(frozen=True)
class ModelScore:
    role: str  # "pytorch", "fp32" or "int8"
    name: str
    path: str
    correct: int
    count: int
    accuracy: float


@dataclass(frozen=True)
class PairComparison:
    reference: str  # role of the reference model
    candidate: str
    reference_accuracy: float
    candidate_accuracy: float
    accuracy_delta_points: float  # candidate minus reference, in percentage points
    agreement: float
    agree_count: int
    disagree_count: int
    disagreements: list[int]  # test-set indices where the top-1 predictions differ
    max_abs_logit_diff: float
    mean_abs_logit_diff: float


@dataclass(frozen=True)
class Breach:
    check: str
    pair: str
    measured: float
    limit: float
    message: str


@dataclass(frozen=True)
class Disagreement:
    index: int  # in the test set
    label: int
    predictions: dict[str, int]  # role -> top-1 digit


@dataclass
class ParityReport:
    images: int
    data: str
    models: list[ModelScore]
    pairs: list[PairComparison]
    thresholds: Thresholds
    breaches: list[Breach]
    passed: bool
    command: str
    environment: dict[str, str]
    created: str
    disagreements: list[Disagreement] = field(default_factory=list)  # the first MAX_LISTED
    layer_report: LayerReport | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pair(self, reference: str, candidate: str) -> PairComparison | None:
        return next((p for p in self.pairs if (p.reference, p.candidate) == (reference, candidate)), None)

    def score(self, role: str) -> ModelScore | None:
        return next((m for m in self.models if m.role == role), None)


# --- finding the models ------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    fp32: Path | None
    int8: Path | None


def resolve_models(paths: list[str | Path]) -> Targets:
    """One or two model paths -> the fp32 and int8 models to compare.

    Each path is an exported folder, an .onnx file, or the NAME given to `export --out` (whose
    NAME-fp32 and NAME-int8 folders are then used). Given only a folder NAME-fp32 (NAME-int8),
    its sibling NAME-int8 (NAME-fp32) is used when it exists. Roles come from the manifests (`quantization`)
    or, for bare files, from the operators in the file.
    """
    if not 1 <= len(paths) <= 2:
        raise ConfigError(f"give one or two models (fp32, int8), got {len(paths)}")
    found: list[Path] = []
    for raw in map(Path, paths):
        if raw.exists():
            found.append(raw)
            continue
        variants = [raw.with_name(f"{raw.name}-{kind}") for kind in ("fp32", "int8")]
        if not any(v.exists() for v in variants):
            raise ModelFileError("no such model file or folder (nor NAME-fp32 / NAME-int8 beside it)", raw)
        found += [v for v in variants if v.exists()]
    roles: dict[str, Path] = {}
    for path in found:
        role = "int8" if _is_int8(path) else "fp32"
        if role in roles:
            raise ConfigError(f"two {role} models given ({roles[role]} and {path}); "
                              "give one fp32 and one int8")
        roles[role] = path
    if len(found) == 1:
        _add_sibling(roles)
    return Targets(roles.get("fp32"), roles.get("int8"))


def _add_sibling(roles: dict[str, Path]) -> None:
    """One folder NAME-fp32 or NAME-int8 given: its export sibling joins when it exists.

    Without it an int8 model is compared only with PyTorch (checked against the int8 limit all
    the same), and fp32 vs int8, the pair the per-layer analysis needs, would be missing.
    """
    ((role, path),) = roles.items()
    other = "int8" if role == "fp32" else "fp32"
    if path.name.endswith(f"-{role}"):
        sibling = path.with_name(path.name.removesuffix(f"-{role}") + f"-{other}")
        if sibling.exists():
            roles[other] = sibling


def _is_int8(path: Path) -> bool:
    return is_quantized(*locate_model(path))


def folder_of(path: Path) -> Path:
    return path if path.is_dir() else path.parent


# --- measuring ----------------------------------------------------------------------------------


def compare(reference: str, candidate: str, logits: dict[str, np.ndarray],
            labels: np.ndarray) -> PairComparison:
    a, b = logits[reference], logits[candidate]
    top_a, top_b = a.argmax(axis=1), b.argmax(axis=1)
    differ = np.flatnonzero(top_a != top_b)
    acc_a, acc_b = float((top_a == labels).mean()), float((top_b == labels).mean())
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return PairComparison(
        reference=reference, candidate=candidate, reference_accuracy=acc_a, candidate_accuracy=acc_b,
        accuracy_delta_points=round((acc_b - acc_a) * 100, 6), agreement=1 - len(differ) / len(labels),
        agree_count=int(len(labels) - len(differ)), disagree_count=int(len(differ)),
        disagreements=differ.tolist(), max_abs_logit_diff=float(diff.max(initial=0.0)),
        mean_abs_logit_diff=float(diff.mean()) if diff.size else 0.0)


def check(pairs: list[PairComparison], thresholds: Thresholds) -> list[Breach]:
    """The breaches of `thresholds`. int8 is held to its accuracy limit against fp32 ONNX, or
    against PyTorch when no fp32 model was compared (an int8 model alone must not pass unchecked)."""
    found = {(p.reference, p.candidate): p for p in pairs}
    breaches = []
    if ("pytorch", "fp32") in found:
        breaches += _fp32_breaches(found["pytorch", "fp32"], thresholds)
    int8 = found.get(("fp32", "int8")) or found.get(("pytorch", "int8"))
    if int8 is not None:
        breaches += _int8_breaches(int8, thresholds)
    return breaches


def _fp32_breaches(pair: PairComparison, thresholds: Thresholds) -> list[Breach]:
    label, breaches = f"{pair.candidate} vs {pair.reference}", []
    if pair.max_abs_logit_diff > thresholds.fp32_max_abs_diff:
        breaches.append(Breach(
            "max abs logit diff", label, pair.max_abs_logit_diff, thresholds.fp32_max_abs_diff,
            f"fp32 ONNX logits differ from PyTorch by up to {pair.max_abs_logit_diff:.3g} "
            f"(limit {thresholds.fp32_max_abs_diff:.3g})"))
    if pair.agreement < thresholds.fp32_min_agreement:
        breaches.append(Breach(
            "top-1 agreement", label, pair.agreement, thresholds.fp32_min_agreement,
            f"fp32 ONNX and PyTorch disagree on {pair.disagree_count} images "
            f"({pair.agreement:.2%} agreement, limit {thresholds.fp32_min_agreement:.2%})"))
    return breaches


def _int8_breaches(pair: PairComparison, thresholds: Thresholds) -> list[Breach]:
    drop = -pair.accuracy_delta_points
    if drop <= thresholds.int8_max_drop_points + 1e-9:
        return []
    reference = {"fp32": "fp32", "pytorch": "PyTorch"}[pair.reference]
    return [Breach(
        "int8 accuracy drop (points)", f"{pair.candidate} vs {pair.reference}", drop,
        thresholds.int8_max_drop_points,
        f"int8 accuracy {pair.candidate_accuracy:.2%} is {drop:.2f} points below {reference} "
        f"{pair.reference_accuracy:.2%} (limit {thresholds.int8_max_drop_points:.2f})")]


def run_parity(run_dir: str | Path | None, fp32: str | Path | None, int8: str | Path | None, *,
               thresholds: Thresholds = Thresholds(), limit: int = 0, layers: str = "auto",
               data_dir: Any = None, download: bool = True, command: str | None = None,
               threads: int | None = None) -> ParityReport:
    """Evaluate every given model on the test set (the first `limit` images; 0 = all 10,000).

    `layers`: "auto" runs the per-layer analysis when int8 breaches its threshold, "always"
    and "never" do what they say.
    """
    return _measure(run_dir, fp32, int8, thresholds=thresholds, limit=limit, layers=layers, data_dir=data_dir,
                    download=download, command=command, threads=threads)[0]


def record_parity(run_dir: str | Path | None, fp32: str | Path | None, int8: str | Path | None, *,
                  report_dirs: Sequence[Path], manifests: Mapping[str, Path] | None = None,
                  final_folders: Mapping[str, Path] | None = None, figure: bool = True,
                  **options: Any) -> ParityReport:
    """Parity as `export`, `pipeline` and the `parity` command record it: measure (options as
    `run_parity`), write parity.json and the figure into each of `report_dirs`, and put the
    figures into the manifest of each `manifests` folder (role -> folder).

    `final_folders` (role -> folder): where models measured in a staging folder are about to
    move; the report names those.
    """
    report, images = _measure(run_dir, fp32, int8, **options)
    if final_folders:
        report.models = [replace(m, path=str(final_folders[m.role] / Path(m.path).name))
                         if m.role in final_folders else m for m in report.models]
    for folder in report_dirs:
        write_report(report, folder, images, figure=figure)
    for role, folder in (manifests or {}).items():
        update_manifest(folder, report, role)
    return report


def _measure(run_dir: str | Path | None, fp32: str | Path | None, int8: str | Path | None, *,
             thresholds: Thresholds = Thresholds(), limit: int = 0, layers: str = "auto", data_dir: Any = None,
             download: bool = True, command: str | None = None,
             threads: int | None = None) -> tuple[ParityReport, np.ndarray]:
    """The report and the test images it was measured on."""
    _check_request(run_dir, fp32, int8, thresholds, limit, layers)
    # Open everything before the long evaluation, so a bad file fails fast.
    predictors = {role: Predictor.load(path, threads=threads)
                  for role, path in (("fp32", fp32), ("int8", int8)) if path is not None}
    if run_dir is not None:
        from mnist_edge.checkpoint import load_config

        load_config(run_dir)
    _check_labels(predictors)
    test = data.load_split("test", data_dir, download).subset(limit)
    models, logits = _evaluate(run_dir, predictors, test)
    order = [("pytorch", "fp32"), ("fp32", "int8"), ("pytorch", "int8")]
    pairs = [compare(a, b, logits, test.labels) for a, b in order if a in logits and b in logits]
    breaches = check(pairs, thresholds)
    report = ParityReport(
        images=len(test), data=str(data.locate(data_dir, download=False)), models=models, pairs=pairs,
        thresholds=thresholds, breaches=breaches, passed=not breaches,
        command=command or parity_command(run_dir, fp32, int8, limit=limit, thresholds=thresholds),
        environment=environment(), created=datetime.now(UTC).isoformat(timespec="seconds"),
        disagreements=_disagreements(pairs, logits, test.labels))
    int8_breach = any(b.check.startswith("int8") for b in breaches)
    wanted = layers == "always" or (layers == "auto" and int8_breach)
    if wanted and "int8" in predictors and "fp32" in predictors:
        disagreements = report.pair("fp32", "int8").disagreements
        report.layer_report = layer_errors(predictors["fp32"], predictors["int8"], test.images, disagreements)
    return report, test.images


def _check_request(run_dir: Any, fp32: Any, int8: Any, thresholds: Thresholds, limit: int, layers: str) -> None:
    thresholds.validate()
    if layers not in ("auto", "always", "never"):
        raise ConfigError(f"layers must be auto, always or never, got {layers!r}")
    if limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    if sum(x is not None for x in (run_dir, fp32, int8)) < 2:
        raise ConfigError("parity needs at least two models (a checkpoint, an fp32 and/or an int8 model)")


def _evaluate(run_dir: str | Path | None, predictors: dict[str, Predictor],
              test: data.Split) -> tuple[list[ModelScore], dict[str, np.ndarray]]:
    """Every model's score and logits on the test images, PyTorch first."""
    logits: dict[str, np.ndarray] = {}
    models: list[ModelScore] = []
    if run_dir is not None:
        from mnist_edge.checkpoint import checkpoint_logits

        loaded, logits["pytorch"] = checkpoint_logits(run_dir, test.images)
        models.append(_score("pytorch", loaded.name, str(run_dir), logits["pytorch"], test.labels))
    for role, predictor in predictors.items():
        if predictor.outputs_probabilities:
            raise ParityError("model outputs probabilities, not logits; logit differences need logits",
                              predictor.model_path)
        logits[role] = predictor.logits(test.images)
        models.append(_score(role, predictor.name, str(predictor.model_path), logits[role], test.labels))
    return models, logits


def _disagreements(pairs: list[PairComparison], logits: dict[str, np.ndarray],
                   labels: np.ndarray) -> list[Disagreement]:
    """The first MAX_LISTED test images on which any two models disagree, with every prediction."""
    top1 = {role: values.argmax(axis=1) for role, values in logits.items()}
    differ = sorted({i for p in pairs for i in p.disagreements})[:MAX_LISTED]
    return [Disagreement(int(i), int(labels[i]), {r: int(t[i]) for r, t in top1.items()}) for i in differ]


def _check_labels(predictors: dict[str, Any]) -> None:
    labels = {role: tuple(p.labels) for role, p in predictors.items()}
    if len(set(labels.values())) > 1:
        raise ParityError(f"the models have different labels: {labels}")


def _score(role: str, name: str, path: str, logits: np.ndarray, labels: np.ndarray) -> ModelScore:
    correct = int((logits.argmax(axis=1) == labels).sum())
    return ModelScore(role, name, path, correct, int(len(labels)), correct / len(labels))


def parity_command(run_dir: Any, fp32: Any, int8: Any, *, limit: int = 0,
                   thresholds: Thresholds | None = None) -> str:
    """The `mnist-edge parity` command line that measures these figures (and verdict) again."""
    parts = ["mnist-edge", "parity"] + [str(p) for p in (run_dir, fp32, int8) if p is not None]
    default, chosen = Thresholds(), thresholds or Thresholds()
    if chosen.fp32_max_abs_diff != default.fp32_max_abs_diff:
        parts += ["--max-logit-diff", f"{chosen.fp32_max_abs_diff:g}"]
    if chosen.fp32_min_agreement != default.fp32_min_agreement:
        parts += ["--min-agreement", f"{chosen.fp32_min_agreement * 100:g}"]
    if chosen.int8_max_drop_points != default.int8_max_drop_points:
        parts += ["--max-int8-drop", f"{chosen.int8_max_drop_points:g}"]
    if limit:
        parts += ["--limit", str(limit)]
    return shlex.join(parts)


def environment() -> dict[str, str]:
    """The software and CPU the figures were measured with (the bench fingerprint's fields)."""
    env = measure.environment()
    found = {"onnxruntime": env.onnxruntime, "numpy": env.numpy, "python": env.python,
             "machine": platform.machine(), "cpu": env.cpu_model}
    torch = sys.modules.get("torch")  # only when a PyTorch model was compared
    if torch is not None:
        found["torch"] = torch.__version__
    return found


# --- files ---------------------------------------------------------------------------------------


def write_report(report: ParityReport, out_dir: str | Path, images: np.ndarray,
                 figure: bool = True) -> dict[str, Path]:
    """OUT/parity.json and OUT/parity_disagreements.png (the digits on which the models disagree)."""
    out = ensure_dir(out_dir)
    paths: dict[str, Path] = {}
    if figure:
        paths["figure"] = disagreement_figure(report, images, out / manifest_io.PARITY_FIGURE)
    report.files = {kind: path.name for kind, path in paths.items()} | {"report": manifest_io.PARITY_REPORT}
    paths["report"] = atomic_write_json(out / manifest_io.PARITY_REPORT, report.to_dict())
    return paths


def disagreement_figure(report: ParityReport, images: np.ndarray, path: Path) -> Path:
    from mnist_edge import plots

    roles = [m.role for m in report.models]
    total = len({i for p in report.pairs for i in p.disagreements})
    shown = report.disagreements[:MAX_FIGURE_DIGITS]
    short = {"pytorch": "pt", "fp32": "fp32", "int8": "int8"}
    titles = [f"#{d.index} ({d.label})\n" + "/".join(str(d.predictions[r]) for r in roles) for d in shown]
    # Every tile is a disagreement; red marks those the last model (int8, else fp32) gets wrong.
    last = roles[-1]
    colors = [plots.WRONG_COLOR if d.predictions[last] != d.label else "black" for d in shown]
    title = (f"{total} test digit{'' if total == 1 else 's'} where the models disagree: #index (label), "
             f"then {'/'.join(short[r] for r in roles)} predictions; red: {short[last]} wrong")
    if not total:
        title = f"{' / '.join(short[r] for r in roles)}: the same prediction on every test digit"
    if total > len(shown):
        title += f"; first {len(shown)} shown"
    return plots.tile_grid([images[d.index] for d in shown], titles, colors, path, title, columns=10,
                            empty_note="no disagreements")


def metrics_for(report: ParityReport, role: str) -> dict[str, Any]:
    """The manifest's `metrics` section for the model with `role` (fp32 or int8)."""
    score = report.score(role)
    if score is None:
        raise ParityError(f"the report has no {role} model")
    reference = "pytorch" if role == "fp32" else "fp32"
    pair = report.pair(reference, role) or report.pair("pytorch", role)
    metrics: dict[str, Any] = {
        "test_images": report.images, "test_accuracy": score.accuracy, "test_correct": score.correct,
    }
    torch_score = report.score("pytorch")
    if torch_score is not None:
        metrics["torch_accuracy"] = torch_score.accuracy
    if role == "int8" and report.score("fp32") is not None:
        metrics["fp32_accuracy"] = report.score("fp32").accuracy
    if pair is not None:
        metrics.update({
            "reference": {"pytorch": "PyTorch checkpoint", "fp32": "fp32 ONNX"}[pair.reference],
            "accuracy_delta_points": pair.accuracy_delta_points,
            "top1_agreement": pair.agreement, "disagreements": pair.disagree_count,
            "max_abs_logit_diff": pair.max_abs_logit_diff, "mean_abs_logit_diff": pair.mean_abs_logit_diff,
        })
    to_torch = report.pair("pytorch", role)
    if role == "int8" and to_torch is not None:
        metrics["torch_top1_agreement"] = to_torch.agreement
    metrics.update({
        "parity_passed": report.passed, "measured_with": report.command,
        "measured": report.created, "onnxruntime": report.environment.get("onnxruntime"),
        "cpu": report.environment.get("cpu"), "report": manifest_io.PARITY_REPORT,
    })
    return metrics


def update_manifest(folder: str | Path, report: ParityReport, role: str) -> Path:
    """Write the measured metrics into FOLDER/manifest.json (the model file is untouched)."""
    folder = Path(folder)
    manifest = manifest_io.load(folder)
    manifest["metrics"] = metrics_for(report, role)
    return manifest_io.save(folder, manifest)
