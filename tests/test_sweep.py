"""Sweep configs (errors name the key and line) and a tiny sweep with resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_edge.errors import ConfigError
from mnist_edge.sweep import load_config, run_sweep


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_example_config_parses() -> None:
    config = load_config(Path(__file__).parent.parent / "sweeps" / "example.toml")
    names = [r.name for r in config.runs]
    assert "notebook-mlp" in names
    notebook = config.runs[names.index("notebook-mlp")].recipe
    assert (notebook.arch, notebook.lr, notebook.batch_size, notebook.epochs) == ("mlp", 0.01, 64, 50)


def test_grid_expands_to_every_combination(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[grid]\narch = ["tiny", "cnn"]\nlr = [0.01, 0.05]\n'))
    assert len(config.runs) == 4
    assert {(r.recipe.arch, r.recipe.lr) for r in config.runs} == {
        ("tiny", 0.01), ("tiny", 0.05), ("cnn", 0.01), ("cnn", 0.05)}


@pytest.mark.parametrize("text, message", [
    ('[sweep]\npreset = "fast"\n[[run]]\narch = "mlp"\ndropout = 0.5\n', "line 5: key 'dropout'"),
    ('[sweep]\nbench_seconds = -1\n[[run]]\narch = "mlp"\n', "line 2: key 'bench_seconds'"),
    ('[[run]]\narch = "mlp"\nepochs = "ten"\n', "line 3: key 'epochs': expected int"),
    ('[[run]]\narch = "resnet"\n', "line 2: key 'arch': unknown architecture"),
    ('[grid]\narch = "mlp"\n', "line 2: key 'arch': a [grid] key takes a non-empty list"),
    ('[[run]]\nname = "a"\n[[run]]\nname = "a"\n', "run names must be unique"),
    ('[sweep]\npreset = "fast"\n[runs]\narch = 1\n', "line 3: key 'runs': unknown table"),
    ('[[run]]\narch = "mlp\n', "not valid TOML"),
    ('[sweep]\nname = "x"\n', "no runs"),
])
def test_malformed_configs_name_key_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        load_config(write(tmp_path, text))
    assert "sweep.toml" in str(info.value)


def test_small_sweep_measures_and_resumes(tmp_path: Path, mnist_dir: Path) -> None:
    pytest.importorskip("torch")
    config = load_config(write(tmp_path, '[sweep]\nbench_seconds = 0.05\ndevice = "cpu"\n'
                                          '[grid]\narch = ["mlp", "lenet5"]\nepochs = [1]\ntrain_limit = [1500]\n'))
    out = tmp_path / "out"
    results = run_sweep(config, out, data_dir=mnist_dir, download=False)
    assert [r.status for r in results] == ["done", "done"], [r.message for r in results]
    assert all(r.int8_accuracy > 0.3 and r.latency_us > 0 and r.int8_bytes > 0 for r in results)
    for name in ("results.csv", "results.md", "results.json", "pareto.png"):
        assert (out / name).is_file()
    assert "★" in (out / "results.md").read_text()
    with pytest.raises(ConfigError, match="already holds a sweep"):
        run_sweep(config, out, data_dir=mnist_dir, download=False)
    again = run_sweep(config, out, resume=True, data_dir=mnist_dir, download=False)
    assert [r.int8_accuracy for r in again] == [r.int8_accuracy for r in results]
