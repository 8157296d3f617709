"""`mnist-edge web --engine c`: the shipped C libraries compiled to WebAssembly (clang and lld,
no libc) and run by node through the page's own engine_c.js give the C library's host scores
bit for bit on 2,000 MNIST test images and on inputs no pen draws (and so onnxruntime's),
loaded from bytes, from base64 and from a URL; each bad input is one typed error."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.data import load_split
from mnist_edge.errors import WebError
from mnist_edge.fileio import sha256_file
from mnist_edge.web import wasm

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = {"tiny": REPO / "exported" / "tiny-mcu", "cnn": REPO / "exported" / "cnn-mcu"}
IMAGES = 2000  # MNIST test images per comparison (node and the host build each take about 1-2 ms an image)
TINY_WASM_BUDGET = 32 * 1024  # the page's whole budget for tiny is 100 KB
# The module beyond the library's constant data: code, exports, the shim. Each step is its own
# function with the kernels inlined at its constant shapes (faster, and larger than one generic copy).
CODE_BUDGET = 16 * 1024
ENGINE_JS = Path(str(resources.files("mnist_edge.web").joinpath("assets", "engine_c.js")))

# Loads engine_c.js as the page does and classifies every image of a raw file (784 bytes each):
# OUT.scores (uint8, 10 per image), OUT.logits (float32, 10 per image), OUT.digits (uint8).
NODE_SCRIPT = r"""
import { readFileSync, writeFileSync } from "node:fs";
const [engineUrl, how, where, infoPath, imagesPath, out] = process.argv.slice(2);
const { loadCEngine } = await import(engineUrl);
const source = how === "bytes" ? new Uint8Array(readFileSync(where))
  : how === "base64" ? "data:application/wasm;base64," + readFileSync(where).toString("base64")
  : where;
const engine = await loadCEngine(source, JSON.parse(readFileSync(infoPath, "utf8")));
const images = new Uint8Array(readFileSync(imagesPath));
const count = images.length / 784;
const scores = new Uint8Array(count * engine.classes);
const logits = new Float32Array(count * engine.classes);
const digits = new Uint8Array(count);
for (let i = 0; i < count; i++) {
  const result = engine.predict(images.subarray(i * 784, (i + 1) * 784));
  scores.set(result.scores, i * engine.classes);
  logits.set(result.logits, i * engine.classes);
  digits[i] = result.digit;
}
writeFileSync(out + ".scores", scores);
writeFileSync(out + ".logits", new Uint8Array(logits.buffer));
writeFileSync(out + ".digits", digits);
writeFileSync(out + ".simd", engine.simd ? "1" : "0");
"""


def need(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"{tool} is missing (apt-get install {package})")
    return found


# Every module the site ships: each library scalar and with WebAssembly SIMD.
BUILDS = [*LIBRARIES, *(f"{name}-simd" for name in LIBRARIES)]


def library_of(build_name: str) -> Path:
    return LIBRARIES[build_name.removesuffix("-simd")]


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, wasm.WasmBuild]:
    need("clang", "clang")
    need("wasm-ld", "lld")
    out = tmp_path_factory.mktemp("wasm")
    return {name: wasm.compile_wasm(library_of(name), out / f"{name}.wasm", simd=name.endswith("-simd"))
            for name in BUILDS}


@pytest.fixture(scope="module")
def images(mnist_dir) -> np.ndarray:
    """IMAGES test images, then inputs no pen draws: blank, saturated, noise, a checkerboard."""
    test = load_split("test", download=False).subset(IMAGES).images.reshape(-1, 784)
    noise = np.random.default_rng(13).integers(0, 256, (3, 784), dtype=np.uint8)
    board = (np.indices((28, 28)).sum(axis=0) % 2 * 255).astype(np.uint8).reshape(1, 784)
    extremes = np.stack([np.zeros(784, np.uint8), np.full(784, 255, np.uint8)])
    return np.concatenate([test, extremes, noise, board])


@pytest.fixture(scope="module")
def all_test_images(mnist_dir) -> np.ndarray:
    return load_split("test", download=False).images.reshape(-1, 784)


def host_scores(library: Path, pixels: np.ndarray, work: Path) -> np.ndarray:
    """The C library built for this machine as `codegen --verify` builds it (gcc, STRICT,
    -O3 -march=native: this machine's SIMD kernels)."""
    from mnist_edge.codegen.verify import build_harness, c_scores

    need("cc", "gcc")
    work.mkdir()
    return c_scores(build_harness(library, work, "cc"), pixels, 10)


def run_node(build: wasm.WasmBuild, pixels: np.ndarray, work: Path, how: str = "bytes", where: str | None = None,
             info: dict | None = None) -> dict[str, np.ndarray]:
    """engine_c.js in node on PIXELS: the module given as bytes, a base64 data: URL or a URL."""
    node = need("node", "nodejs")
    work.mkdir(exist_ok=True)
    (work / "run.mjs").write_text(NODE_SCRIPT)
    (work / "images.bin").write_bytes(np.ascontiguousarray(pixels, np.uint8).tobytes())
    (work / "info.json").write_text(json.dumps(info if info is not None else {"engine": build.page_info}))
    done = subprocess.run([node, str(work / "run.mjs"), ENGINE_JS.as_uri(), how, where or str(build.path),
                           str(work / "info.json"), str(work / "images.bin"), str(work / "out")],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode:
        raise AssertionError(f"node failed: {done.stderr.strip()}")
    return {"scores": np.fromfile(work / "out.scores", np.uint8).reshape(len(pixels), 10),
            "logits": np.fromfile(work / "out.logits", np.float32).reshape(len(pixels), 10),
            "digits": np.fromfile(work / "out.digits", np.uint8),
            "simd": (work / "out.simd").read_text() == "1"}


def python_logits(scores: np.ndarray, build: wasm.WasmBuild) -> np.ndarray:
    """What `mnist-edge run` computes from the int8 model's scores: float32 (q - zero) * scale."""
    return (scores.astype(np.float32) - np.float32(build.score_zero)) * np.float32(build.score_scale)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


# --- the module ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILDS)
def test_the_module_is_small_and_exports_the_shim(builds, name, record_property) -> None:
    build = builds[name]
    data = build.path.read_bytes()
    record_property("wasm_bytes", build.bytes)
    record_property("wasm_gzip_bytes", len(gzip.compress(data, 9)))
    manifest = json.loads((library_of(name) / "manifest.json").read_text())
    assert build.bytes == len(data) <= manifest["memory"]["constant_bytes"] + CODE_BUDGET, build.bytes
    if name.startswith("tiny"):
        assert build.bytes <= TINY_WASM_BUDGET, build.bytes
    assert build.simd == name.endswith("-simd") and ("-msimd128" in build.flags) == build.simd
    assert sorted(build.exports) == sorted(wasm.EXPORTS)
    assert build.score_zero == manifest["api"]["score_zero"] and build.score_scale == manifest["api"]["score_scale"]
    assert build.labels == [str(d) for d in range(10)] and build.clang_version
    assert {"-ffp-contract=off", "-nostdlib", "--no-entry", "--strip-all"} <= set(build.flags)


def test_the_build_is_deterministic(builds, tmp_path) -> None:
    again = wasm.compile_wasm(LIBRARIES["tiny"], tmp_path / "again.wasm")
    assert again.path.read_bytes() == builds["tiny"].path.read_bytes()


@pytest.mark.parametrize("name", BUILDS)
def test_wasm_scores_equal_the_c_librarys_bit_for_bit(builds, images, all_test_images, name, tmp_path,
                                                      record_property) -> None:
    """The scalar modules on 2,000 test images and the inputs no pen draws; the SIMD modules, which
    run other kernels than the host's, on all 10,000 test images as well."""
    build = builds[name]
    images = np.concatenate([all_test_images, images[IMAGES:]]) if build.simd else images
    ours = run_node(build, images, tmp_path / "node")
    host = host_scores(library_of(name), images, tmp_path / "host")
    identical = int((ours["scores"] == host).all(axis=1).sum())
    record_property("images_identical", f"{identical} of {len(images)}")
    assert identical == len(images) and ours["simd"] == build.simd
    assert np.array_equal(ours["digits"], host.argmax(axis=1))  # the first highest, as the C returns
    assert np.array_equal(ours["logits"].view(np.uint32), python_logits(host, build).view(np.uint32))


@pytest.mark.parametrize("name", BUILDS)
def test_wasm_scores_equal_onnxruntimes(builds, images, name, tmp_path) -> None:
    """The C library's proof carried over: onnxruntime on the int8 model it was generated from."""
    pytest.importorskip("onnx")
    from mnist_edge.codegen.verify import onnxruntime_scores
    from mnist_edge.config import Normalization

    manifest = json.loads((library_of(name) / "manifest.json").read_text())
    model = REPO / manifest["source_model"]["path"]
    assert sha256_file(model) == manifest["source_model"]["sha256"]
    pixels = images[:1000].reshape(-1, 28, 28)
    norm = Normalization(*(manifest["input"][key] for key in ("scale", "mean", "std")))
    theirs = onnxruntime_scores(model, pixels, norm)
    assert np.array_equal(run_node(builds[name], pixels.reshape(-1, 784), tmp_path)["scores"], theirs)


def test_the_page_picks_the_simd_module_where_webassembly_has_simd(tmp_path) -> None:
    """engine_c.js asks WebAssembly.validate about a one-instruction SIMD module: node has SIMD, so
    it takes the site's SIMD module; a site without one (or an engine without SIMD) the scalar one."""
    node = need("node", "nodejs")
    script = tmp_path / "choose.mjs"
    script.write_text(f'const {{ moduleFor, simdSupported }} = await import("{ENGINE_JS.as_uri()}");\n'
                      'console.log(simdSupported(), moduleFor({engine: {model: "a.wasm", simd_model: "b.wasm"}}),\n'
                      '  moduleFor({engine: {model: "a.wasm"}}));\n'
                      'WebAssembly.validate = () => false;\n'
                      'console.log(moduleFor({engine: {model: "a.wasm", simd_model: "b.wasm"}}));\n')
    done = subprocess.run([node, str(script)], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.split() == ["true", "b.wasm", "a.wasm", "a.wasm"]


def test_the_module_loads_from_base64_and_from_a_url(builds, images, tmp_path) -> None:
    build = builds["tiny"]
    few = images[:50]
    expected = run_node(build, few, tmp_path / "bytes")["scores"]
    assert np.array_equal(run_node(build, few, tmp_path / "base64", how="base64")["scores"], expected)
    handler = partial(QuietHandler, directory=str(build.path.parent))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/{build.path.name}"
            assert np.array_equal(run_node(build, few, tmp_path / "url", how="url", where=url)["scores"], expected)
        finally:
            server.shutdown()


def test_a_model_json_of_another_model_is_refused(builds, images, tmp_path) -> None:
    other = {"engine": builds["cnn"].page_info}
    with pytest.raises(AssertionError, match="does not match model.json"):
        run_node(builds["tiny"], images[:1], tmp_path, info=other)


# --- bad input: one typed error, nothing written ---------------------------------------------------

def refused(folder: Path, out: Path, message: str) -> None:
    with pytest.raises(WebError, match=message) as caught:
        wasm.compile_wasm(folder, out / "model.wasm")
    assert "\n" not in str(caught.value)
    assert not out.exists()


def copy_of_tiny(tmp_path: Path) -> Path:
    return Path(shutil.copytree(LIBRARIES["tiny"], tmp_path / "tiny-mcu"))


def test_a_folder_that_is_not_a_c_library_is_refused(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    refused(REPO / "exported" / "cnn-int8", tmp_path / "out", "kind is None, not 'c-library'.*--engine ort")
    refused(tmp_path / "empty", tmp_path / "out", "no manifest.json")
    refused(LIBRARIES["tiny"] / "model.c", tmp_path / "out", "not a folder")
    refused(tmp_path / "absent", tmp_path / "out", "not a folder")


def test_a_library_that_is_not_what_its_manifest_says_is_refused(tmp_path) -> None:
    library = copy_of_tiny(tmp_path)
    with open(library / "model.c", "a") as source:
        source.write("/* edited */\n")
    refused(library, tmp_path / "out", "model.c differs from the one manifest.json describes")
    (library / "model.h").unlink()
    refused(library, tmp_path / "out", "model.h is missing")
    (library / "manifest.json").write_text("{not json")
    refused(library, tmp_path / "out", "not valid JSON")


def test_c_that_does_not_compile_is_one_line_from_clang(tmp_path) -> None:
    need("clang", "clang")
    need("wasm-ld", "lld")
    library = copy_of_tiny(tmp_path)
    (library / "model.c").write_text("int mnist_edge_predict(void) { return undeclared; }\n")
    manifest = json.loads((library / "manifest.json").read_text())
    manifest["files"]["model.c"]["sha256"] = sha256_file(library / "model.c")
    (library / "manifest.json").write_text(json.dumps(manifest))
    refused(library, tmp_path / "out", "clang .* failed: .*error: .*undeclared")


@pytest.mark.parametrize("missing", ["clang", "wasm-ld"])
def test_a_missing_toolchain_says_what_to_install(tmp_path, monkeypatch, missing) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == missing else real(name, *a, **k))
    with pytest.raises(WebError, match=f"{missing}.*not found on PATH: apt-get install clang lld"):
        wasm.find_wasm_toolchain()
    refused(LIBRARIES["tiny"], tmp_path / "out", "apt-get install clang lld")


def test_a_clang_without_the_wasm32_target_is_refused(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "clang"
    fake.write_text("#!/bin/sh\necho '  Registered Targets:'\necho '    x86-64 - 64-bit X86: EM_X86_64'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: str(fake) if name == "clang" else "/usr/bin/wasm-ld")
    with pytest.raises(WebError, match="no wasm32 target.*apt-get install clang lld"):
        wasm.find_wasm_toolchain()


def test_a_damaged_module_is_a_typed_error() -> None:
    with pytest.raises(WebError, match="not a WebAssembly"):
        wasm.wasm_exports(b"PK\x03\x04")
    with pytest.raises(WebError, match="truncated or malformed"):
        wasm.wasm_exports(b"\0asm\x01\0\0\0\x07\x05\x01\x09")


# --- the pieces, without a compiler ----------------------------------------------------------------

def _section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + _leb(len(payload)) + payload


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _export(name: str, kind: int, index: int) -> bytes:
    return _leb(len(name.encode())) + name.encode() + bytes([kind]) + _leb(index)


def test_the_export_section_is_read_for_function_names_only() -> None:
    exports = [_export("memory", 2, 0), _export("mnist_edge_predict", 0, 3), _export("tbl", 1, 0),
               _export("g", 3, 1), _export("ünïcode_" + "x" * 120, 0, 300)]  # a long name: a two-byte length
    module = (b"\0asm\x01\0\0\0" + _section(1, b"\x01\x60\x00\x00") + _section(0, b"\x04name" + b"\0" * 200)
              + _section(7, _leb(len(exports)) + b"".join(exports)) + _section(10, b"\x00"))
    assert wasm.wasm_exports(module) == ["mnist_edge_predict", "ünïcode_" + "x" * 120]
    assert wasm.wasm_exports(b"\0asm\x01\0\0\0") == []  # no sections, no exports
    assert wasm._leb128(b"\xe5\x8e\x26", 0) == (624485, 3) and wasm._leb128(b"\x00\x7f", 1) == (127, 2)
    with pytest.raises(WebError, match="not a WebAssembly 1.0 module"):
        wasm.wasm_exports(b"\0asm\x02\0\0\0")


def test_score_facts_are_checked_at_their_bounds(tmp_path) -> None:
    for zero, scale in ((0, 1e-9), (255, 2.5), (128, 3)):
        assert wasm._score_facts(tmp_path, {"api": {"score_zero": zero, "score_scale": scale}}) == (zero, float(scale))
    for zero in (-1, 256, True, 1.0, None):
        with pytest.raises(WebError, match=f"api.score_zero must be an integer from 0 to 255, got {zero!r}"):
            wasm._score_facts(tmp_path, {"api": {"score_zero": zero, "score_scale": 1.0}})
    for scale in (0, -1.0, float("inf"), float("nan"), True, "1"):
        with pytest.raises(WebError, match="api.score_scale must be a positive number"):
            wasm._score_facts(tmp_path, {"api": {"score_zero": 0, "score_scale": scale}})
    with pytest.raises(WebError, match="score_zero"):
        wasm._score_facts(tmp_path, {"api": "damaged"})


def test_a_manifest_without_hashes_is_refused(tmp_path) -> None:
    library = copy_of_tiny(tmp_path)
    manifest = json.loads((library / "manifest.json").read_text())
    del manifest["files"]["model.h"]["sha256"]
    (library / "manifest.json").write_text(json.dumps(manifest))
    refused(library, tmp_path / "out", "manifest.json has no sha256 of model.h")
    manifest["files"] = "damaged"
    (library / "manifest.json").write_text(json.dumps(manifest))
    refused(library, tmp_path / "out", "manifest.json has no sha256 of model.h")
    (library / "manifest.json").write_text(json.dumps({**manifest, "kind": "onnx-model"}))
    refused(library, tmp_path / "out", "kind is 'onnx-model', not 'c-library'")
    (library / "manifest.json").write_text("[1, 2]")
    refused(library, tmp_path / "out", "kind is None")


def test_the_compilers_messages_come_back_in_one_line(monkeypatch) -> None:
    import subprocess as sp

    def finished(code: int, stdout: str = "", stderr: str = ""):
        return lambda *args, **kwargs: sp.CompletedProcess(args, code, stdout, stderr)

    monkeypatch.setattr(wasm.subprocess, "run", finished(1, stderr="In file included\nm.c:1: error: bad\nmore error"))
    with pytest.raises(WebError, match=r"^x: clang failed: m.c:1: error: bad$"):
        wasm._run(["clang"], "clang", Path("x"))
    monkeypatch.setattr(wasm.subprocess, "run", finished(1, stdout="only stdout\nsecond"))
    with pytest.raises(WebError, match=r"^ld failed: only stdout$"):
        wasm._run(["ld"], "ld")
    monkeypatch.setattr(wasm.subprocess, "run", finished(3))
    with pytest.raises(WebError, match=r"^ld failed: exit 3$"):
        wasm._run(["ld"], "ld")
    monkeypatch.setattr(wasm.subprocess, "run", finished(0, stdout="Debian clang version 14.0.6\nTarget: x86_64"))
    assert wasm._run(["clang"], "clang").returncode == 0
    assert wasm.clang_version("clang") == "14.0.6"
    monkeypatch.setattr(wasm.subprocess, "run", finished(0, stdout="  Apple LLVM 15 \n"))
    assert wasm.clang_version("clang") == "Apple LLVM 15"

    def missing(*args, **kwargs):
        raise FileNotFoundError("no such file: clang")

    monkeypatch.setattr(wasm.subprocess, "run", missing)
    with pytest.raises(WebError, match=r"clang --version could not run \(no such file: clang\)"):
        wasm.clang_version("clang")


def test_a_build_describes_itself_for_the_page(builds) -> None:
    build = builds["tiny"]
    manifest = json.loads((LIBRARIES["tiny"] / "manifest.json").read_text())
    assert build.page_info == {"score_zero": build.score_zero, "score_scale": build.score_scale,
                               "wasm_bytes": build.bytes, "exports": list(build.exports)}
    assert build.normalization == manifest["input"] and build.path.name == "tiny.wasm"
    assert build.flags == (*wasm.COMPILE, *wasm.LINK) and builds["tiny-simd"].flags == (*wasm.COMPILE, *wasm.SIMD,
                                                                                           *wasm.LINK)
    assert build.clang_version == wasm.clang_version(shutil.which("clang"))


# --- what each refusal says, and about which path -------------------------------------------------

def _edited_tiny(tmp_path: Path, edit) -> Path:
    library = copy_of_tiny(tmp_path)
    manifest = json.loads((library / "manifest.json").read_text())
    edit(library, manifest)
    (library / "manifest.json").write_text(json.dumps(manifest))
    return library


CODEGEN_WRITES = "not a folder: --engine c takes the folder that `mnist-edge codegen MODEL --out FOLDER` writes"
REFUSALS = {
    "a file": (lambda tmp: LIBRARIES["tiny"] / "model.c", CODEGEN_WRITES),
    "no manifest": (lambda tmp: tmp, "no manifest.json: not a C library written by `mnist-edge codegen`"),
    "an onnx model": (lambda tmp: REPO / "exported" / "cnn-int8",
                      "not a C library written by `mnist-edge codegen` (manifest.json's kind is None, not "
                      "'c-library'); ONNX models run with --engine ort"),
    "no header": (lambda tmp: _edited_tiny(tmp, lambda lib, m: (lib / "model.h").unlink()),
                  "model.h is missing: the C library is incomplete"),
    "no hash": (lambda tmp: _edited_tiny(tmp, lambda lib, m: m["files"]["model.c"].pop("sha256")),
                "manifest.json has no sha256 of model.c"),
    "an edited source": (lambda tmp: _edited_tiny(tmp, lambda lib, m: (lib / "model.c").write_text("int x;\n")),
                         "model.c differs from the one manifest.json describes (sha256): regenerate the library "
                         "with `mnist-edge codegen`"),
    "a bad zero": (lambda tmp: _edited_tiny(tmp, lambda lib, m: m["api"].update(score_zero=300)),
                   "manifest.json's api.score_zero must be an integer from 0 to 255, got 300"),
    "a bad scale": (lambda tmp: _edited_tiny(tmp, lambda lib, m: m["api"].update(score_scale=-1)),
                    "manifest.json's api.score_scale must be a positive number, got -1"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_every_refusal_names_the_library_and_says_why(tmp_path, case) -> None:
    make, reason = REFUSALS[case]
    folder = make(tmp_path)
    with pytest.raises(WebError) as caught:
        wasm.check_c_library(folder)
    assert (caught.value.path, caught.value.reason) == (folder, reason)


@pytest.mark.parametrize("missing, named", [({"clang"}, "clang"), ({"wasm-ld"}, "wasm-ld (lld)"),
                                            ({"clang", "wasm-ld"}, "clang and wasm-ld (lld)")])
def test_the_missing_tools_are_named_in_full(monkeypatch, missing, named) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name in missing else f"/usr/bin/{name}")
    with pytest.raises(WebError) as caught:
        wasm.find_wasm_toolchain()
    assert caught.value.reason == (f"--engine c compiles the C to WebAssembly with clang and wasm-ld; {named} "
                                   "not found on PATH: apt-get install clang lld")


def test_a_clang_that_cannot_list_its_targets_says_which_command_failed(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "clang"
    fake.write_text("#!/bin/sh\necho 'error: unknown argument' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: str(fake) if name == "clang" else "/usr/bin/wasm-ld")
    with pytest.raises(WebError) as caught:
        wasm.find_wasm_toolchain()
    assert caught.value.reason == "clang --print-targets failed: error: unknown argument"


def test_a_hung_tool_is_stopped_and_named_with_the_library(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(wasm, "TIMEOUT_S", 0.2)
    with pytest.raises(WebError) as caught:
        wasm._run(["sleep", "5"], "wasm-ld", tmp_path)
    assert caught.value.path == tmp_path and caught.value.reason.startswith("wasm-ld could not run (")
    assert "timed out" in caught.value.reason


def test_failed_compiles_and_links_name_the_library(tmp_path, monkeypatch) -> None:
    need("clang", "clang")
    need("wasm-ld", "lld")
    library = copy_of_tiny(tmp_path)
    monkeypatch.setattr(wasm, "LINK", ("--no-such-option",))
    with pytest.raises(WebError) as caught:
        wasm.compile_wasm(library, tmp_path / "out" / "model.wasm")
    assert caught.value.path == library and caught.value.reason.startswith("wasm-ld failed: ")
    assert not (tmp_path / "out").exists()


def test_an_empty_version_line_is_reported_empty(monkeypatch) -> None:
    monkeypatch.setattr(wasm.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    assert wasm.clang_version("clang") == ""


def test_leb128_continues_past_exactly_0x80() -> None:
    assert wasm._leb128(b"\x80\x01", 0) == (128, 2)  # 0x80: no bits, more to come
    assert wasm._leb128(b"\x7f", 0) == (127, 1)
    with pytest.raises(WebError) as caught:
        wasm.wasm_exports(b"\0asm\x02\0\0\0")
    assert caught.value.reason == "not a WebAssembly 1.0 module"


@pytest.mark.parametrize("simd", [False, True], ids=["scalar", "simd"])
def test_a_build_carries_the_librarys_labels_and_input_and_says_if_simd(tmp_path, simd) -> None:
    # Built here, not by the module's fixture: mutation testing credits a shared fixture's work to
    # the first test that asks for it only.
    need("clang", "clang")
    need("wasm-ld", "lld")
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    worded = _edited_tiny(tmp_path / "a", lambda lib, m: m.update(labels=words))
    build = wasm.compile_wasm(worded, tmp_path / "w.wasm", simd=simd)
    manifest = json.loads((worded / "manifest.json").read_text())
    assert (build.labels, build.normalization, build.simd) == (words, manifest["input"], simd)
    assert build.flags == (*wasm.COMPILE, *(wasm.SIMD if simd else ()), *wasm.LINK)
    assert (build.score_zero, build.score_scale) == (manifest["api"]["score_zero"], manifest["api"]["score_scale"])
    damaged = _edited_tiny(tmp_path / "b", lambda lib, m: m.update(input="damaged", labels=None))
    other = wasm.compile_wasm(damaged, tmp_path / "d.wasm", simd=simd)
    assert (other.labels, other.normalization) == ([str(d) for d in range(10)], None)
