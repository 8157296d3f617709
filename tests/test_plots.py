"""Each figure function writes one valid, non-empty PNG atomically and closes its figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

plots = pytest.importorskip("mnist_edge.plots")  # matplotlib is an optional extra
plt = pytest.importorskip("matplotlib.pyplot")
Image = pytest.importorskip("PIL.Image")

from mnist_edge.errors import OutputError  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_width: int = 200, min_height: int = 100) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert min_width <= width <= 5000 and min_height <= height <= 5000, image.size
    # Written through a temporary file in the same folder, which must not be left behind.
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert plt.get_fignums() == [], "figure left open"


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """40 synthetic 28x28 uint8 "digits": a bright bar whose position depends on the label."""
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    images = rng.integers(0, 40, size=(40, 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[4:24, 2 + 2 * label : 5 + 2 * label] = 255
    return images, labels


def test_digit_grid(tmp_path, digits):
    images, labels = digits
    assert_png(plots.digit_grid(images, labels, tmp_path / "grid.png", title="samples"))


def test_digit_grid_with_predictions_and_a_limit(tmp_path, digits):
    images, labels = digits
    predictions = labels.copy()
    predictions[::3] = (predictions[::3] + 1) % 10
    confidences = np.linspace(0.1, 1.0, len(labels))
    path = plots.digit_grid(images, labels, tmp_path / "sub" / "pred.png",
                            predictions=predictions, confidences=confidences, columns=8,
                            max_images=16)
    assert path == tmp_path / "sub" / "pred.png"
    assert_png(path)


def test_class_counts(tmp_path):
    train = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    test = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert_png(plots.class_counts(train, test, tmp_path / "counts.png"))


def test_class_means_with_a_missing_class(tmp_path, digits):
    images, labels = digits
    keep = labels != 7
    assert_png(plots.class_means(images[keep], labels[keep], tmp_path / "means.png"))


def test_pixel_histogram(tmp_path, digits):
    assert_png(plots.pixel_histogram(digits[0], tmp_path / "hist.png"))


def history(with_val: bool) -> list[dict]:
    return [
        {"epoch": e, "train_loss": 1.0 / e, "train_acc": 1 - 0.1 / e,
         "val_loss": 1.2 / e if with_val else None, "val_acc": 1 - 0.12 / e if with_val else None}
        for e in range(1, 5)
    ]


@pytest.mark.parametrize("with_val", [True, False])
def test_training_curves(tmp_path, with_val):
    assert_png(plots.training_curves(history(with_val), tmp_path / "curves.png"))


def test_training_curves_single_epoch(tmp_path):
    assert_png(plots.training_curves(history(True)[:1], tmp_path / "one.png"))


def test_training_curves_rejects_empty_history(tmp_path):
    with pytest.raises(ValueError):
        plots.training_curves([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_confusion_matrix(tmp_path):
    rng = np.random.default_rng(1)
    matrix = rng.integers(0, 5, size=(10, 10)) + np.diag(np.full(10, 950))
    matrix[3] = 0  # a class with no images must not divide by zero
    path = plots.confusion_matrix(matrix, tmp_path / "cm.png", title="test set")
    assert_png(path, min_width=400, min_height=400)


def test_mistakes_gallery(tmp_path, digits):
    images, labels = digits
    predicted = labels.copy()
    predicted[:12] = (predicted[:12] + 3) % 10
    confidences = np.linspace(0.2, 0.99, len(labels))
    assert_png(plots.mistakes_gallery(images, labels, predicted, confidences,
                                      tmp_path / "mistakes.png", title="cnn"))


def test_mistakes_gallery_without_mistakes(tmp_path, digits):
    images, labels = digits
    path = plots.mistakes_gallery(images, labels, labels, np.ones(len(labels)),
                                  tmp_path / "none.png")
    assert_png(path, min_width=100, min_height=50)


def test_latency_distribution(tmp_path):
    rng = np.random.default_rng(2)
    latencies = {"fp32": rng.lognormal(np.log(300), 0.2, 500),
                 "int8": rng.lognormal(np.log(40), 0.3, 500)}
    assert_png(plots.latency_distribution(latencies, tmp_path / "latency.png"))


def test_throughput_vs_batch(tmp_path):
    results = {"fp32": {1: 3000.0, 8: 15000.0, 64: 40000.0},
               "int8": {1: 5000.0, 8: 25000.0, 64: 70000.0}}
    path = plots.throughput_vs_batch(results, tmp_path / "throughput.png", threads_label="2 threads")
    assert_png(path)


POINTS = [
    {"name": "mlp-fp32", "accuracy": 0.981, "latency_us": 40.0, "size_bytes": 430_000},
    {"name": "cnn-fp32", "accuracy": 0.9935, "latency_us": 300.0, "size_bytes": 90_000},
    {"name": "cnn-int8", "accuracy": 0.993, "latency_us": 150.0, "size_bytes": 30_000},
    {"name": "lenet5", "accuracy": 0.989, "latency_us": 200.0, "size_bytes": 250_000},
]


def test_pareto_indices_keep_only_undominated_points_fastest_first():
    # lenet5 is slower than cnn-int8 and less accurate: dominated.
    assert plots.pareto_indices(POINTS) == [0, 2, 1]


def test_pareto_front(tmp_path):
    assert_png(plots.pareto_front(POINTS, tmp_path / "pareto.png"))


def test_a_failed_write_leaves_no_file_and_closes_the_figure(tmp_path, digits, monkeypatch):
    def broken_savefig(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(plots.Figure, "savefig", broken_savefig)
    with pytest.raises(OutputError, match="hist.png: cannot write .*disk full"):
        plots.pixel_histogram(digits[0], tmp_path / "hist.png")
    assert list(tmp_path.iterdir()) == []
    assert plt.get_fignums() == []
