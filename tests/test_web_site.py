"""The site `mnist-edge web` writes (mnist_edge/web/site.py), read file by file without a browser:
which files, what index.html asks the browser to fetch early for each engine, what model.json
tells the page, what a rebuild keeps and removes. onnxruntime-web is stood in for by three small
files (--runtime-dir); the C engine compiles the shipped tiny library with clang."""

from __future__ import annotations

import gzip
import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from mnist_edge.errors import ModelFileError, OutputError, WebError
from mnist_edge.web import site
from mnist_edge.web.ort_runtime import FILES as ORT_FILES
from mnist_edge.web.ort_runtime import VERSION as ORT_VERSION

REPO = Path(__file__).resolve().parents[1]
CNN_INT8 = REPO / "exported" / "cnn-int8"
TINY_C = REPO / "exported" / "tiny-mcu"


def asset(name: str) -> bytes:
    return resources.files("mnist_edge.web").joinpath("assets", name).read_bytes()


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    folder = tmp_path / "ort-package" / "dist"
    folder.mkdir(parents=True)
    for index, name in enumerate(ORT_FILES):
        (folder / name).write_bytes(f"stand-in {index} for {name}".encode())
    return folder.parent


def head_links(html: str) -> list[str]:
    head = html.split("<head>", 1)[1].split("</head>", 1)[0]
    return [line.strip() for line in head.splitlines() if line.strip().startswith(("<link", "<script"))]


def test_the_ort_page_preloads_what_its_first_prediction_needs() -> None:
    html = site.page("ort").decode()
    assert html.count('<html lang="en" data-engine="ort">') == 1
    added = [link for link in head_links(html) if link not in head_links(asset("index.html").decode())]
    assert added == [
        '<link rel="modulepreload" href="app.js">', '<link rel="modulepreload" href="preprocess.js">',
        '<link rel="preload" href="model.json" as="fetch" crossorigin="anonymous">',
        '<link rel="modulepreload" href="engine_ort.js">', '<link rel="modulepreload" href="ort/ort.wasm.min.mjs">',
        '<link rel="modulepreload" href="ort/ort-wasm-simd-threaded.mjs">',
        '<link rel="preload" href="model.onnx" as="fetch" crossorigin="anonymous">',
        "<script>"]
    assert html.count(site.EARLY_ORT_COMPILE) == 1 and html.index(site.EARLY_ORT_COMPILE) < html.index("</head>")
    assert html.count("</head>") == 1


def test_the_c_page_preloads_its_simd_module_and_compiles_no_onnxruntime() -> None:
    html = site.page("c").decode()
    assert '<html lang="en" data-engine="c">' in html and "data-engine=\"ort\"" not in html
    added = [link for link in head_links(html) if link not in head_links(asset("index.html").decode())]
    assert added == [
        '<link rel="modulepreload" href="app.js">', '<link rel="modulepreload" href="preprocess.js">',
        '<link rel="preload" href="model.json" as="fetch" crossorigin="anonymous">',
        '<link rel="modulepreload" href="engine_c.js">',
        '<link rel="preload" href="model-simd.wasm" as="fetch" crossorigin="anonymous">']
    assert "compileStreaming" not in html and "ort/" not in html
    # everything else is the page as shipped
    assert html.replace(' data-engine="c"', "").replace("\n".join(added) + "\n", "") == asset("index.html").decode()


def test_an_ort_site_holds_the_page_the_model_and_the_runtime(tmp_path: Path, runtime: Path) -> None:
    built = site.build_site(CNN_INT8, tmp_path / "site", runtime_dir=runtime)
    out = tmp_path / "site"
    assert (built.folder, built.engine, built.model) == (out, "ort", "cnn-int8")
    expected = ["app.js", "engine_ort.js", "index.html", "model.json", "model.onnx",
                *(f"ort/{name}" for name in sorted(ORT_FILES)), "preprocess.js", "style.css"]
    assert sorted(built.files) == expected
    assert built.files == {name: (out / name).stat().st_size for name in expected}
    for name in ("app.js", "preprocess.js", "style.css", "engine_ort.js"):
        assert (out / name).read_bytes() == asset(name)
    assert (out / "index.html").read_bytes() == site.page("ort")
    assert (out / "model.onnx").read_bytes() == (CNN_INT8 / "model.onnx").read_bytes()
    for name in ORT_FILES:
        assert (out / "ort" / name).read_bytes() == (runtime / "dist" / name).read_bytes()
    info = json.loads((out / "model.json").read_text())
    manifest = json.loads((CNN_INT8 / "manifest.json").read_text())
    assert info["name"] == "cnn-int8" and info["labels"] == manifest["labels"]
    assert info["source"] == "cnn-int8/model.onnx"  # never the builder's absolute path
    assert info["accuracy"] == manifest["metrics"]["test_accuracy"] and info["accuracy_images"] is None
    assert info["accuracy_measured_with"] == manifest["metrics"].get("measured_with")
    assert info["quantization"] == manifest["quantization"]
    assert info["engine"] == {"name": "ort", "runtime": f"onnxruntime-web {ORT_VERSION} (WebAssembly, 1 thread)",
                              "model": "model.onnx"}
    assert info["input"] == {"name": manifest["input"]["name"], "layout": manifest["input"]["layout"],
                             "dtype": "float32", "batch": None,
                             "normalization": {k: manifest["input"][k] for k in ("scale", "mean", "std")}}
    assert info["output"] == {"name": manifest["output"]["name"] if manifest.get("output") else info["output"]["name"],
                              "probabilities": False}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_sizes_count_every_file_and_gzip_each_one(tmp_path: Path, runtime: Path) -> None:
    built = site.build_site(CNN_INT8, tmp_path / "site", runtime_dir=runtime)
    assert built.total_bytes == sum((tmp_path / "site" / name).stat().st_size for name in built.files)
    assert built.gzip_bytes == sum(len(gzip.compress((tmp_path / "site" / n).read_bytes(), 9)) for n in built.files)
    assert built.gzip_bytes < built.total_bytes
    assert site.site_summary(built) == {"folder": str(tmp_path / "site"), "engine": "ort", "model": "cnn-int8",
                                        "files": built.files, "bytes": built.total_bytes,
                                        "gzip_bytes": built.gzip_bytes, "budget_bytes": None,
                                        "over_budget": False}  # the budget is the c engine's


def test_a_rebuild_replaces_the_sites_files_and_keeps_nothing_of_the_other_engine(tmp_path: Path,
                                                                                  runtime: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "model.wasm").write_bytes(b"an older c site")
    (out / "engine_c.js").write_bytes(b"an older c site")
    (out / "app.js").write_bytes(b"an older page")
    built = site.build_site(CNN_INT8, out, runtime_dir=runtime)  # only our files there: no --force needed
    assert not (out / "model.wasm").exists() and not (out / "engine_c.js").exists()
    assert (out / "app.js").read_bytes() == asset("app.js") and "model.wasm" not in built.files
    (out / "notes.txt").write_text("a user's file")
    with pytest.raises(OutputError, match=r"holds files that are not a site of mnist-edge web \(notes.txt\)"):
        site.build_site(CNN_INT8, out, runtime_dir=runtime)
    forced = site.build_site(CNN_INT8, out, runtime_dir=runtime, force=True)
    assert (out / "notes.txt").read_text() == "a user's file" and "notes.txt" not in forced.files


def test_a_folder_with_many_foreign_files_names_three(tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    for name in ("d", "a", "c", "b"):
        (out / name).write_text("x")
    with pytest.raises(OutputError, match=r"\(a, b, c, \.\.\.\); choose an empty or new --out, or pass --force"):
        site.build_site(CNN_INT8, out)
    (out / "d").unlink()
    with pytest.raises(OutputError, match=r"\(a, b, c\); choose"):
        site.build_site(CNN_INT8, out)


def test_bad_requests_are_refused_and_write_nothing(tmp_path: Path, runtime: Path) -> None:
    with pytest.raises(WebError, match="unknown engine 'wasm'; choose one of ort, c"):
        site.build_site(CNN_INT8, tmp_path / "site", engine="wasm")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        site.build_site(CNN_INT8, tmp_path / "file", runtime_dir=runtime)
    with pytest.raises(WebError, match="--runtime-dir is onnxruntime-web's folder: it does not apply to --engine c"):
        site.build_site(TINY_C, tmp_path / "site", engine="c", runtime_dir=runtime)
    with pytest.raises(WebError, match="holds no onnxruntime-web WebAssembly backend"):
        site.build_site(CNN_INT8, tmp_path / "site", runtime_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "ort-package"]


def test_a_model_with_external_data_is_refused(tmp_path: Path, runtime: Path) -> None:
    from tests.onnx_models import linear_model, save

    model = save(linear_model(), tmp_path / "m.onnx", external_data="m.onnx.data")
    with pytest.raises(WebError, match="external data files are not supported by the page"):
        site.build_site(model, tmp_path / "site", runtime_dir=runtime)
    with pytest.raises(ModelFileError):
        site.build_site(tmp_path / "m.onnx.data", tmp_path / "site", runtime_dir=runtime)
    assert not (tmp_path / "site").exists()


def test_a_c_site_holds_both_modules_and_what_the_page_checks(tmp_path: Path) -> None:
    for tool in ("clang", "wasm-ld"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing: --engine c compiles with clang and lld (apt-get install clang lld)")
    built = site.build_site(TINY_C, tmp_path / "site", engine="c")
    out = tmp_path / "site"
    assert sorted(built.files) == ["app.js", "engine_c.js", "index.html", "model-simd.wasm", "model.json",
                                   "model.wasm", "preprocess.js", "style.css"]
    assert (out / "index.html").read_bytes() == site.page("c")
    manifest = json.loads((TINY_C / "manifest.json").read_text())
    info = json.loads((out / "model.json").read_text())
    assert info["name"] == manifest["name"] and info["source"] == "exported/tiny-mcu"
    assert info["accuracy"] == manifest["verification"]["c_accuracy"]
    assert info["accuracy_images"] == manifest["verification"]["images"]
    engine = info["engine"]
    assert engine["name"] == "c" and engine["model"] == "model.wasm" and engine["simd_model"] == "model-simd.wasm"
    assert engine["runtime"].startswith("generated C, clang ") and engine["runtime"].endswith(" -> WebAssembly")
    assert engine["wasm_bytes"] == (out / "model.wasm").stat().st_size
    assert engine["simd_bytes"] == (out / "model-simd.wasm").stat().st_size
    assert (out / "model.wasm").read_bytes() != (out / "model-simd.wasm").read_bytes()
    assert (engine["score_zero"], engine["score_scale"]) == (manifest["api"]["score_zero"],
                                                             manifest["api"]["score_scale"])
    assert info["input"] == {"layout": "flat", "dtype": "uint8", "normalization": None}


@pytest.mark.parametrize("manifest, expected", [
    ({"metrics": {"test_accuracy": 0.99, "measured_with": "onnxruntime 1.32"}, "quantization": {"mode": "static"}},
     (0.99, None, "onnxruntime 1.32", {"mode": "static"})),
    ({"verification": {"c_accuracy": 0.98, "images": 1000}, "measured_with": "gcc 12"}, (0.98, 1000, "gcc 12", None)),
    ({"verification": {"images": 1000}, "measured_with": "gcc 12"}, (None, 1000, None, None)),
    ({"metrics": "damaged", "verification": ["damaged"]}, (None, None, None, None)),
    (None, (None, None, None, None)),
])
def test_what_the_page_says_about_the_model(manifest, expected) -> None:
    described = site._describe("m", None, manifest, "f/model.onnx")
    assert (described["accuracy"], described["accuracy_images"], described["accuracy_measured_with"],
            described["quantization"]) == expected
    assert described["labels"] == [str(d) for d in range(10)] and described["name"] == "m"
    assert site._describe("m", ["a", "b"], manifest, "x")["labels"] == ["a", "b"]


def test_short_names_the_folder_and_the_file(tmp_path: Path) -> None:
    assert site._short(tmp_path / "deep" / "er" / "model.onnx") == "er/model.onnx"
    assert site._short(Path("exported") / "tiny-mcu") == "exported/tiny-mcu"


WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _copy_with_manifest(source: Path, folder: Path, **changes) -> Path:
    shutil.copytree(source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_the_ort_page_shows_the_models_own_labels(tmp_path: Path, runtime: Path) -> None:
    model = _copy_with_manifest(CNN_INT8, tmp_path / "worded", labels=WORDS)
    site.build_site(model, tmp_path / "site", runtime_dir=runtime)
    assert json.loads((tmp_path / "site" / "model.json").read_text())["labels"] == WORDS


def test_a_uint8_model_tells_the_page_it_takes_raw_pixels(tmp_path: Path, runtime: Path) -> None:
    from tests.onnx_models import linear_model, save

    model = save(linear_model(dtype="uint8"), tmp_path / "bare" / "model.onnx")
    site.build_site(model, tmp_path / "site", runtime_dir=runtime)
    info = json.loads((tmp_path / "site" / "model.json").read_text())
    assert info["input"]["dtype"] == "uint8" and info["input"]["normalization"] is None
    assert info["labels"] == [str(d) for d in range(10)]  # no manifest: the digits


@pytest.mark.parametrize("name, expected", [("renamed", "renamed"), (None, "lib-copy")],
                         ids=["the-manifests-name", "the-folders-name-without-one"])
def test_the_c_page_shows_the_librarys_own_name_and_labels(tmp_path: Path, name: str | None, expected: str) -> None:
    for tool in ("clang", "wasm-ld"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing: --engine c compiles with clang and lld (apt-get install clang lld)")
    library = _copy_with_manifest(TINY_C, tmp_path / "lib-copy", name=name, labels=WORDS)
    site.build_site(library, tmp_path / "site", engine="c")
    info = json.loads((tmp_path / "site" / "model.json").read_text())
    assert (info["name"], info["labels"]) == (expected, WORDS)


def test_refusals_name_the_path_they_are_about(tmp_path: Path, runtime: Path) -> None:
    from tests.onnx_models import linear_model, save

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError) as not_a_folder:
        site.build_site(CNN_INT8, tmp_path / "file", runtime_dir=runtime)
    assert (not_a_folder.value.path, not_a_folder.value.reason) == (tmp_path / "file", "exists and is not a directory")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "notes.txt").write_text("a user's file")
    with pytest.raises(OutputError) as foreign:
        site.build_site(CNN_INT8, tmp_path / "site", runtime_dir=runtime)
    assert foreign.value.path == tmp_path / "site"
    model = save(linear_model(), tmp_path / "m.onnx", external_data="m.onnx.data")
    with pytest.raises(WebError) as external:
        site.build_site(model, tmp_path / "other", runtime_dir=runtime)
    assert external.value.path == model and external.value.reason == (
        "models with external data files are not supported by the page (export it as one file)")


@pytest.mark.parametrize("engine, extra, budget, over", [
    ("c", 0, site.C_SITE_BUDGET, False), ("c", 1, site.C_SITE_BUDGET, True), ("ort", 1, None, False)])
def test_the_budget_is_the_c_sites_and_its_edge_is_within(tmp_path: Path, engine: str, extra: int,
                                                         budget: int | None, over: bool) -> None:
    files = {"model.wasm": site.C_SITE_BUDGET - 10, "app.js": 10 + extra}
    for name, size in files.items():
        (tmp_path / name).write_bytes(b"\0" * size)
    built = site.Site(tmp_path, engine, "m", files)
    summary = site.site_summary(built)
    assert (summary["budget_bytes"], summary["over_budget"]) == (budget, over)
