"""notebooks/walkthrough.ipynb: a fresh copy runs top to bottom in a temporary folder, with a kernel
of this venv, within one time limit for the whole run (a cell that raises fails the test), and
the copy in the repository holds the outputs of such a run.

The notebook trains two small models on all of MNIST: about two minutes of the suite on a 2-core
CPU. `python scripts/run_notebook.py notebooks/walkthrough.ipynb --store` refreshes its outputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("torch")

import nbformat  # noqa: E402

from scripts import run_notebook  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
TEST_ACCURACY = re.compile(r"^test set: +(\d+\.\d+)% of 10,000$", re.MULTILINE)


def code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def text_of(nb) -> str:
    return "\n".join(output.get("text", "") for cell in code_cells(nb) for output in cell.outputs)


def images_in(nb) -> int:
    return sum("image/png" in output.get("data", {}) for cell in code_cells(nb) for output in cell.outputs)


def test_the_walkthrough_runs_top_to_bottom_in_a_fresh_folder(tmp_path: Path, mnist_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_EDGE_DATA", str(mnist_dir))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # the kernel's history, not the user's
    executed = run_notebook.execute(NOTEBOOK, tmp_path / "run")  # raises when a cell does
    cells = code_cells(executed.notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    accuracy = TEST_ACCURACY.search(text_of(executed.notebook))
    assert accuracy and float(accuracy.group(1)) >= 99.0
    work = tmp_path / "run" / "runs" / "walkthrough"
    for made in ("fast/model.safetensors", "exported/strided-int8/model.onnx", "c/model.c", "sheet.png"):
        assert (work / made).is_file(), made
    assert images_in(executed.notebook) == images_in(nbformat.read(NOTEBOOK, as_version=4))


def test_the_stored_notebook_holds_the_outputs_of_a_whole_run() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = code_cells(nb)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))  # in order, each once
    assert not [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    assert all(cell.outputs for cell in cells), "every cell shows what it did"
    assert not [cell for cell in cells if "execution" in cell.metadata]  # no timestamps
    accuracy = TEST_ACCURACY.search(text_of(nb))
    assert accuracy and float(accuracy.group(1)) >= 99.0
    assert "parity passed" in text_of(nb) and "(proven)" in text_of(nb)
    assert images_in(nb) >= 8
