"""Build the static site of `mnist-edge web`: the page (package data), the model and its engine.

    OUT/index.html, app.js, preprocess.js, style.css     the page, the same for every model
    OUT/model.json                                       what the page reads: name, labels,
                                                         input convention, accuracy, engine files
    --engine ort: OUT/model.onnx, OUT/engine_ort.js, OUT/ort/ (onnxruntime-web's wasm backend)
    --engine c:   OUT/model.wasm, OUT/model-simd.wasm,  (the generated C, compiled by clang:
                  OUT/engine_c.js                        scalar, and with WebAssembly SIMD)

The site is built aside and moved into place whole (fileio.staged_dir): a failure leaves no
partial site. It needs an HTTP server (`--serve`, or any static one): browsers refuse module
scripts and WebAssembly fetches from file://, and the page says so when opened that way.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mnist_edge.errors import OutputError, WebError
from mnist_edge.fileio import atomic_write_bytes, atomic_write_json, staged_dir

ENGINES = ("ort", "c")
PAGE_FILES = ("index.html", "app.js", "preprocess.js", "style.css")
ENGINE_FILES = {"ort": ("engine_ort.js",), "c": ("engine_c.js",)}
INFO = "model.json"
# Everything a site of ours may hold: a rebuild replaces these, and a folder with anything else
# is someone's and is refused without --force.
OWNED = frozenset({*PAGE_FILES, *ENGINE_FILES["ort"], *ENGINE_FILES["c"], INFO, "model.onnx", "model.wasm",
                   "model-simd.wasm", "ort"})


# The c engine's site is sized for microcontroller models (the shipped tiny-mcu's is 83 KB): a
# larger one still works, but its first prediction waits for the download, and the C's constants
# are in both of its WebAssembly modules (SIMD and scalar).
C_SITE_BUDGET = 100 * 1024  # bytes, the site's files together


@dataclass(frozen=True)
class Site:
    folder: Path
    engine: str
    model: str
    files: dict[str, int]  # relative path -> bytes

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    @property
    def gzip_bytes(self) -> int:
        """What the site weighs over the wire with gzip, file by file (as a server compresses)."""
        return sum(len(gzip.compress((self.folder / name).read_bytes(), 9)) for name in self.files)


def build_site(model: str | Path, out: str | Path, *, engine: str = "ort", runtime_dir: str | Path | None = None,
               force: bool = False) -> Site:
    """MODEL (an exported folder or .onnx for `ort`, a generated C library for `c`) -> a site in OUT."""
    if engine not in ENGINES:
        raise WebError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    out = Path(out)
    _check_out(out, force)
    prepare = _prepare_ort if engine == "ort" else _prepare_c
    with staged_dir(out, stale=OWNED) as stage:
        info = prepare(Path(model), stage, runtime_dir)
        for name in (*PAGE_FILES, *ENGINE_FILES[engine]):
            atomic_write_bytes(stage / name, _asset(name))
        atomic_write_bytes(stage / "index.html", page(engine))
        atomic_write_json(stage / INFO, info)
    files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*"))
             if p.is_file() and p.relative_to(out).parts[0] in OWNED}
    return Site(out, engine, info["name"], files)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError("exists and is not a directory", out)
    if out.is_dir() and not force:
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OWNED)
        if foreign:
            raise OutputError(f"holds files that are not a site of mnist-edge web ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new --out, or pass --force",
                              out)


def _asset(name: str) -> bytes:
    return resources.files("mnist_edge.web").joinpath("assets", name).read_bytes()


# What the page needs before its first prediction, by engine: fetched from the start, in parallel,
# instead of one after the other as the scripts discover them (app.js, then the engine module,
# then its runtime, then the WebAssembly and the model).
PRELOADS = {
    # (its WebAssembly is fetched by the early compile below)
    "ort": (("modulepreload", "engine_ort.js"), ("modulepreload", "ort/ort.wasm.min.mjs"),
            ("modulepreload", "ort/ort-wasm-simd-threaded.mjs"), ("fetch", "model.onnx")),
    # The SIMD module: every current browser validates it (engine_c.js falls back to model.wasm).
    "c": (("modulepreload", "engine_c.js"), ("fetch", "model-simd.wasm")),
}


# onnxruntime-web's WebAssembly (14.8 MB) compiles while the page loads: started by the page's
# first script, handed to onnxruntime-web by engine_ort.js (a server that does not send
# application/wasm makes compileStreaming fail: onnxruntime-web then compiles it as usual).
EARLY_ORT_COMPILE = """<script>
  // mnist-edge: compile onnxruntime-web's WebAssembly now, while the page loads (engine_ort.js).
  window.mnistEdgeOrtModule = WebAssembly.compileStreaming(fetch("ort/ort-wasm-simd-threaded.wasm")).catch(() => null);
</script>"""


def page(engine: str) -> bytes:
    """index.html for ENGINE: the engine's name (app.js imports its module at once) and the
    preload hints of what the first prediction needs; for `ort`, the early compile above."""
    html = _asset("index.html").decode("utf-8")
    links = [f'<link rel="modulepreload" href="{name}">' for name in ("app.js", "preprocess.js")]
    links.append('<link rel="preload" href="model.json" as="fetch" crossorigin="anonymous">')
    for kind, name in PRELOADS[engine]:
        links.append(f'<link rel="modulepreload" href="{name}">' if kind == "modulepreload" else
                     f'<link rel="preload" href="{name}" as="fetch" crossorigin="anonymous">')
    if engine == "ort":
        links.append(EARLY_ORT_COMPILE)
    html = html.replace('<html lang="en">', f'<html lang="en" data-engine="{engine}">', 1)
    return html.replace("</head>", "\n".join(links) + "\n</head>", 1).encode("utf-8")


# --- engine: onnxruntime-web -----------------------------------------------------------------------

def _prepare_ort(model: Path, stage: Path, runtime_dir: str | Path | None) -> dict[str, Any]:
    from mnist_edge.runtime import Predictor
    from mnist_edge.web.ort_runtime import VERSION, runtime_files

    predictor = Predictor.load(model)  # refuses what `run` refuses: not 28 x 28, not a digit model...
    if _has_external_data(predictor.model_path):
        raise WebError("models with external data files are not supported by the page (export it as one file)",
                       predictor.model_path)
    runtime = runtime_files(runtime_dir)
    shutil.copyfile(predictor.model_path, stage / "model.onnx")
    (stage / "ort").mkdir()
    for name, path in runtime.items():
        shutil.copyfile(path, stage / "ort" / name)
    spec = predictor.spec
    norm = predictor.normalization
    return {
        **_describe(predictor.name, predictor.labels, predictor.manifest, _short(predictor.model_path)),
        "engine": {"name": "ort", "runtime": f"onnxruntime-web {VERSION} (WebAssembly, 1 thread)",
                   "model": "model.onnx"},
        "input": {"name": spec.name, "layout": spec.layout, "dtype": str(spec.dtype),
                  "batch": spec.batch, "normalization": None if norm is None else norm.__dict__},
        "output": {"name": predictor.output_name, "probabilities": predictor.outputs_probabilities},
    }


def _has_external_data(model_path: Path) -> bool:
    from mnist_edge.modelfile import external_data_files

    return bool(external_data_files(model_path))


# --- engine: the generated C as WebAssembly ---------------------------------------------------------

def _prepare_c(library: Path, stage: Path, runtime_dir: str | Path | None) -> dict[str, Any]:
    from mnist_edge.web import wasm

    if runtime_dir is not None:
        raise WebError("--runtime-dir is onnxruntime-web's folder: it does not apply to --engine c")
    manifest = wasm.check_c_library(library)
    build = wasm.compile_wasm(library, stage / "model.wasm")
    # Browsers without WebAssembly SIMD (engine_c.js asks WebAssembly.validate) load the scalar one.
    simd = wasm.compile_wasm(library, stage / "model-simd.wasm", simd=True)
    return {
        **_describe(manifest.get("name", library.name), manifest.get("labels"), manifest, _short(library)),
        "engine": {"name": "c", "runtime": f"generated C, clang {build.clang_version} -> WebAssembly",
                   "model": "model.wasm", "simd_model": "model-simd.wasm", "simd_bytes": simd.bytes,
                   **build.page_info},
        "input": {"layout": "flat", "dtype": "uint8", "normalization": None},
    }


def _short(path: Path) -> str:
    """FOLDER/FILE, not the absolute path: a published page should not show the builder's disk."""
    path = Path(path).resolve()
    return f"{path.parent.name}/{path.name}"


def _describe(name: str, labels: list[str] | None, manifest: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """What the page shows about the model, from its manifest when it has one: an ONNX model's
    test accuracy (parity), a C library's accuracy as `codegen --verify` measured it, on how many
    test images."""
    manifest = manifest or {}
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    verification = manifest.get("verification") if isinstance(manifest.get("verification"), dict) else {}
    if "test_accuracy" in metrics:
        accuracy, images, measured = metrics["test_accuracy"], None, metrics.get("measured_with")
    else:
        accuracy, images = verification.get("c_accuracy"), verification.get("images")
        measured = manifest.get("measured_with") if accuracy is not None else None
    return {
        "name": name,
        "labels": list(labels or [str(d) for d in range(10)]),
        "source": source,
        "accuracy": accuracy,
        "accuracy_images": images,  # None: the whole test set
        "accuracy_measured_with": measured,
        "quantization": manifest.get("quantization"),
    }


def site_summary(site: Site) -> dict[str, Any]:
    """The site's files and weight; `budget_bytes` (the c engine's C_SITE_BUDGET, else None) and
    `over_budget` say whether it is heavier than its page is meant to be."""
    budget = C_SITE_BUDGET if site.engine == "c" else None
    return {"folder": str(site.folder), "engine": site.engine, "model": site.model, "files": site.files,
            "bytes": site.total_bytes, "gzip_bytes": site.gzip_bytes, "budget_bytes": budget,
            "over_budget": budget is not None and site.total_bytes > budget}
