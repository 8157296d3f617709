"""Package data from an installed wheel: report.html's page.html and style.css, and codegen's C
kernels, host harness and board files. A wheel that left them out would import fine and fail
only when a report is rendered or C is generated. Build the wheel from a copy of the project,
install it into a fresh venv, and use that venv."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A rule found only in report/style.css, and a model file whose size mnist_edge.units formats.
CSS_RULE = 'tr.best td:first-child::after { content: " ★"; color: var(--warn); }'
MODEL_BYTES = 178_586  # "174.4 KiB"
RENDER = """
import sys
import mnist_edge.report
from mnist_edge.report import build_report
print(mnist_edge.report.__file__)
build_report(sys.argv[1], out=sys.argv[2])
"""


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    # No PYTHONPATH and no pip cache: nothing of the checkout or of earlier runs may leak in.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(tmp_path: Path) -> Path:
    """The project's wheel, built from a copy: building in the checkout would write build/ and
    *.egg-info there."""
    pytest.importorskip("setuptools", minversion="70.1", reason="builds the wheel (bdist_wheel built in)")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "mnist_edge", source / "mnist_edge", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("mnist_edge-*.whl")
    return wheel


def _install_alone(wheel: Path, tmp_path: Path) -> Path:
    """A fresh venv (no system site-packages) holding only the wheel, without its dependencies:
    the report needs nothing beyond the standard library. Returns the venv's python."""
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(target)
    python = target / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel,
         cwd=tmp_path)
    return python


def _small_run(root: Path) -> Path:
    """A run folder with a pipeline.json, a manifest and a bench.json: enough for every section."""
    files = {
        "pipeline.json": {"arch": "tiny", "created": "2025-01-01T00:00:00+00:00",
                          "steps": [{"name": "bench", "status": "done", "seconds": 2.0, "message": "ok"}]},
        "exported/fp32/manifest.json": {"name": "tiny-fp32", "files": {"model": "model.onnx",
                                                                       "bytes": MODEL_BYTES}},
        "bench/bench.json": {"models": [{"name": "tiny-fp32", "kind": "onnx", "file_bytes": MODEL_BYTES,
                                         "latency": {"batch_size": 1, "threads": 1, "p50_us": 31.9}}]},
    }
    for rel, obj in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(obj), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_ships_the_template_and_renders_a_report(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    assert {"mnist_edge/report/page.html", "mnist_edge/report/style.css"} <= set(names), names
    assert "mnist_edge/benchmark/floor.onnx" in names, names  # bench --floor in the light runtime

    python = _install_alone(wheel, tmp_path)
    run, page = _small_run(tmp_path / "run"), tmp_path / "report.html"
    # -I: isolated, so neither the checkout nor the current folder is on the venv's sys.path.
    loaded = _run(python, "-I", "-c", RENDER, run, page, cwd=tmp_path).stdout.strip()
    # The installed copy rendered it, not the checkout.
    assert Path(loaded).resolve().is_relative_to((tmp_path / "venv").resolve()), loaded

    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<title>mnist-edge report: run</title>" in html
    assert "Content-Security-Policy" in html and "<main>" in html
    style = (ROOT / "mnist_edge/report/style.css").read_text(encoding="utf-8")
    inlined = re.search(r"<style>(.*?)</style>", html, re.S)
    assert CSS_RULE in style and inlined and inlined.group(1).strip() == style.strip()  # the whole file
    assert not re.search(r"<(link|script)\b", html)  # still one self-contained page
    for sid in ("summary", "data", "training", "evaluation", "parity", "bench", "manifests"):
        assert f'<section id="{sid}">' in html
    assert "174.4 KiB" in html and "31.9 µs" in html


def test_wheel_generates_and_verifies_c(wheel, tmp_path, mnist_dir):
    """`codegen --verify` from the installed wheel (not the checkout): the venv holds the wheel
    alone, and reaches numpy, onnx and onnxruntime through a path entry to the test's own
    site-packages (not processed as a site dir, so this checkout's editable install stays out)."""
    import numpy
    import onnx

    names = zipfile.ZipFile(wheel).namelist()
    templates = Path(__file__).resolve().parents[1] / "mnist_edge" / "codegen" / "templates"
    shipped = {f"mnist_edge/codegen/templates/{path.relative_to(templates)}" for path in templates.rglob("*")
               if path.is_file() and path.suffix in (".c", ".ld")}
    assert "mnist_edge/codegen/templates/kernels/layers.c" in shipped and len(shipped) > 10
    assert shipped <= set(names)  # every kernel, step, harness and board file is package data
    python = _install_alone(wheel, tmp_path)
    site = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    dependencies = {str(Path(module.__file__).parents[1]) for module in (numpy, onnx)}
    (site / "dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    model = ROOT / "exported" / "tiny-mcu-int8"
    code = ("import sys, mnist_edge; from mnist_edge.cli import main; print(mnist_edge.__file__, file=sys.stderr); "
            "sys.argv = ['mnist-edge'] + sys.argv[1:]; main()")
    done = _run(python, "-I", "-c", code, "codegen", model, "--out", tmp_path / "c", "--verify", "--images", "200",
                "--data-dir", mnist_dir, "--no-download", cwd=tmp_path)
    loaded = done.stderr.strip().splitlines()[0]
    assert Path(loaded).resolve().is_relative_to((tmp_path / "venv").resolve()), loaded
    assert "verified on 200 test images (" in done.stdout and "): 200 identical to onnxruntime" in done.stdout
    assert (tmp_path / "c" / "model.c").read_bytes() == (ROOT / "exported" / "tiny-mcu" / "model.c").read_bytes()


WEB = """
import sys
import mnist_edge.web
from mnist_edge.web.site import build_site
print(mnist_edge.web.__file__)
site = build_site(sys.argv[1], sys.argv[2], engine="c")
print(sorted(site.files))
"""


def test_wheel_ships_the_page_and_builds_a_site(wheel, tmp_path):
    """`web` from the installed wheel: the page's HTML, JavaScript, CSS and the C shim are package
    data; --engine c needs numpy, clang and lld besides."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assets = {f"mnist_edge/web/assets/{n}" for n in ("index.html", "app.js", "preprocess.js", "style.css",
                                                      "engine_ort.js", "engine_c.js", "c_shim.c")}
    assert assets <= names, sorted(assets - names)
    for tool in ("clang", "wasm-ld"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (apt-get install clang lld)")
    python = _install_alone(wheel, tmp_path)
    import numpy  # the C library's reader uses it: reached as in test_wheel_generates_and_verifies_c

    site_packages = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    (site_packages / "dependencies.pth").write_text(str(Path(numpy.__file__).parents[1]) + "\n")
    done = _run(python, "-I", "-c", WEB, ROOT / "exported" / "tiny-mcu", tmp_path / "site", cwd=tmp_path)
    loaded, files = done.stdout.strip().splitlines()
    assert Path(loaded).resolve().is_relative_to((tmp_path / "venv").resolve()), loaded
    assert {"index.html", "app.js", "preprocess.js", "engine_c.js", "model.wasm", "model.json"} <= set(eval(files))
    assert (tmp_path / "site" / "app.js").read_bytes() == (ROOT / "mnist_edge/web/assets/app.js").read_bytes()
