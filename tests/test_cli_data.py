"""`mnist-edge data stats|show` through Typer's CliRunner, on the real MNIST files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnist_edge.cli import app
from mnist_edge.data import locate
from mnist_edge.errors import DataError

TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir() -> str:
    """The MNIST folder from $MNIST_EDGE_DATA (or the cache); skip when it is not there."""
    try:
        return str(locate(download=False))
    except DataError as exc:
        pytest.skip(f"MNIST not available: {exc}")


def test_stats_json_matches_the_known_mnist_numbers(data_dir):
    result = runner.invoke(app, ["data", "stats", "--data-dir", data_dir, "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["pixel_mean"] == pytest.approx(0.1307, abs=1e-4)
    assert stats["pixel_std"] == pytest.approx(0.3081, abs=1e-4)
    assert stats["train_class_counts"] == TRAIN_CLASS_COUNTS
    assert (stats["train_count"], stats["test_count"]) == (60000, 10000)
    assert sum(stats["test_class_counts"]) == 10000


def test_stats_human_summary(data_dir):
    result = runner.invoke(app, ["data", "stats", "--data-dir", data_dir])
    assert result.exit_code == 0, result.output
    assert "mean 0.1307" in result.stdout and "std 0.3081" in result.stdout
    assert "5923" in result.stdout and "60,000" in result.stdout


def test_show_writes_the_four_figures(data_dir, tmp_path):
    out = tmp_path / "figures"
    result = runner.invoke(app, ["data", "show", "--out", str(out), "--data-dir", data_dir,
                                 "--count", "20", "--seed", "1"])
    assert result.exit_code == 0, result.output
    names = ["samples.png", "class_counts.png", "class_means.png", "pixel_histogram.png"]
    for name in names:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stdout.split() == [str(out / name) for name in names]


@pytest.mark.parametrize("args", [["data", "stats"], ["data", "show", "--out", "{tmp}/figures"]])
def test_missing_data_is_one_error_line_naming_the_folder(tmp_path, args):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [arg.format(tmp=tmp_path) for arg in args]
    result = runner.invoke(app, [*args, "--data-dir", str(empty), "--no-download"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert str(empty) in lines[0] and "not found" in lines[0]
    assert not (tmp_path / "figures").exists()


@pytest.mark.parametrize("command", ["stats", "show"])
def test_help_has_an_example(command):
    result = runner.invoke(app, ["data", command, "--help"])
    assert result.exit_code == 0
    assert any(line.strip().startswith("Example: mnist-edge data " + command)
               for line in result.stdout.splitlines())
    assert "--no-download" in result.stdout and "--data-dir" in result.stdout


def test_count_out_of_range_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["data", "show", "--out", str(tmp_path), "--count", "0"])
    assert result.exit_code == 2
    assert list(Path(tmp_path).iterdir()) == []
