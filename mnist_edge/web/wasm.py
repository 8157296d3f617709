"""`mnist-edge web --engine c`: a generated C library (model.h, model.c, manifest.json from
`mnist-edge codegen`) compiled to WebAssembly with clang and lld, for the page's engine_c.js.

No libc and no emscripten: clang compiles model.c and the shim (assets/c_shim.c: static input
and output buffers exported by address, memcpy and memset) freestanding for wasm32, and wasm-ld
links them with no entry point, exporting the functions below and the memory. WebAssembly's
float32 is IEEE with round to nearest even, and the build forbids contraction as the host build
does (verify.STRICT), so its scores equal the C library's bit for bit, and so onnxruntime's.

The kernels' float -> int conversion (templates/kernels/requantize.c, `round_half_even`) clamps its value to the
uint8 range first, so WebAssembly's trapping truncation never sees a value out of range; the
generated code calls no libm.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mnist_edge.codegen.emit import HEADER, SOURCE
from mnist_edge.codegen.verify import STRICT
from mnist_edge.errors import WebError
from mnist_edge.fileio import atomic_write_bytes, read_json, sha256_file

SHIM = "c_shim.c"
EXPORTS = (
    "mnist_edge_predict",  # the C library's own API (pointers into the module's memory)
    "mnist_edge_web_pixels",  # uint8_t *: the 784-byte input buffer
    "mnist_edge_web_scores",  # uint8_t *: the scores buffer
    "mnist_edge_web_predict",  # int (void): classify the input buffer, return the digit
    "mnist_edge_web_classes",
    "mnist_edge_web_score_zero",
    "mnist_edge_web_score_scale",
    "mnist_edge_web_simd",  # int (void): 1 in the SIMD build
)
# Freestanding (no libc headers, -fno-builtin), optimized for speed; STRICT adds C99, every
# warning an error and -ffp-contract=off, exactly as the host build of `codegen --verify`.
COMPILE = ("--target=wasm32", *STRICT, "-O2", "-ffreestanding", "-nostdlib")
# The SIMD module: WebAssembly's 128-bit SIMD (the kernels' __wasm_simd128__ family); no relaxed
# SIMD, whose results may differ between engines.
SIMD = ("-msimd128",)
# No entry point (a library), unused code dropped, names and debug sections stripped.
LINK = ("--no-entry", "--gc-sections", "--strip-all", *(f"--export={name}" for name in EXPORTS))
INSTALL = "apt-get install clang lld"
TIMEOUT_S = 300


@dataclass(frozen=True)
class WasmBuild:
    path: Path
    bytes: int
    exports: tuple[str, ...]  # the module's exported functions, read back from the file
    score_zero: int
    score_scale: float  # logit = float32((score - score_zero) * score_scale)
    labels: list[str]
    normalization: dict[str, float] | None  # applied inside the library (its input table): informative
    clang_version: str
    flags: tuple[str, ...]
    simd: bool = False

    @property
    def page_info(self) -> dict[str, Any]:
        """What model.json's "engine" carries for engine_c.js (which checks them against the module)."""
        return {"score_zero": self.score_zero, "score_scale": self.score_scale, "wasm_bytes": self.bytes,
                "exports": list(self.exports)}


def find_wasm_toolchain() -> tuple[str, str]:
    """(clang, wasm-ld) on PATH, clang able to target wasm32; else a WebError saying what to install."""
    clang, wasm_ld = shutil.which("clang"), shutil.which("wasm-ld")
    missing = [name for name, found in (("clang", clang), ("wasm-ld (lld)", wasm_ld)) if found is None]
    if missing:
        raise WebError(f"--engine c compiles the C to WebAssembly with clang and wasm-ld; {' and '.join(missing)} "
                       f"not found on PATH: {INSTALL}")
    targets = _run([clang, "--print-targets"], "clang --print-targets").stdout
    if not re.search(r"^\s*wasm32\b", targets, re.MULTILINE):
        raise WebError(f"{clang} cannot compile for WebAssembly (no wasm32 target): install Debian's clang "
                       f"({INSTALL})")
    return clang, wasm_ld


def check_c_library(folder: str | Path) -> dict[str, Any]:
    """The manifest of FOLDER when it is a C library written by `mnist-edge codegen` whose files
    are the ones it describes; else a one-line WebError naming FOLDER."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WebError("not a folder: --engine c takes the folder that `mnist-edge codegen MODEL --out FOLDER` "
                       "writes", folder)
    if not (folder / "manifest.json").is_file():
        raise WebError("no manifest.json: not a C library written by `mnist-edge codegen`", folder)
    manifest = read_json(folder / "manifest.json", WebError)
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if kind != "c-library":
        raise WebError(f"not a C library written by `mnist-edge codegen` (manifest.json's kind is {kind!r}, not "
                       "'c-library'); ONNX models run with --engine ort", folder)
    _check_files(folder, manifest)
    _score_facts(folder, manifest)
    return manifest


def _check_files(folder: Path, manifest: dict[str, Any]) -> None:
    # The manifest's facts (score zero and scale) describe the C it hashed: an edited model.c is refused.
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    for name in (HEADER, SOURCE):
        path = folder / name
        if not path.is_file():
            raise WebError(f"{name} is missing: the C library is incomplete", folder)
        entry = files.get(name)
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if expected is None:
            raise WebError(f"manifest.json has no sha256 of {name}", folder)
        if sha256_file(path) != expected:
            raise WebError(f"{name} differs from the one manifest.json describes (sha256): regenerate the library "
                           "with `mnist-edge codegen`", folder)


def _score_facts(folder: Path, manifest: dict[str, Any]) -> tuple[int, float]:
    api = manifest.get("api") if isinstance(manifest.get("api"), dict) else {}
    zero, scale = api.get("score_zero"), api.get("score_scale")
    if not (isinstance(zero, int) and not isinstance(zero, bool) and 0 <= zero <= 255):
        raise WebError(f"manifest.json's api.score_zero must be an integer from 0 to 255, got {zero!r}", folder)
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale < float("inf")):
        raise WebError(f"manifest.json's api.score_scale must be a positive number, got {scale!r}", folder)
    return zero, float(scale)


def compile_wasm(library_dir: str | Path, out_path: str | Path, simd: bool = False) -> WasmBuild:
    """Compile the C library in LIBRARY_DIR (checked by `check_c_library`) with the shim into
    OUT_PATH, written atomically; a failing build is a WebError with the compiler's first error.
    `simd`: with WebAssembly SIMD, so the kernels take their SIMD family.

    clang compiles and wasm-ld links in separate steps, so that the wasm-ld found on PATH is the
    one used (clang 14's WebAssembly driver ignores --ld-path)."""
    library_dir, out_path = Path(library_dir), Path(out_path)
    manifest = check_c_library(library_dir)
    clang, wasm_ld = find_wasm_toolchain()
    with tempfile.TemporaryDirectory(prefix="mnist-edge-wasm-") as tmp:
        work = Path(tmp)
        shim = work / SHIM
        shim.write_bytes(resources.files("mnist_edge.web").joinpath("assets", SHIM).read_bytes())
        objects = []
        compile_flags = (*COMPILE, *(SIMD if simd else ()))
        for source in (library_dir / SOURCE, shim):
            objects.append(work / f"{source.stem}.o")
            _run([clang, *compile_flags, "-I", str(library_dir), "-c", str(source), "-o", str(objects[-1])],
                 f"clang {' '.join(compile_flags)}", library_dir)
        linked = work / "model.wasm"
        _run([wasm_ld, *LINK, *map(str, objects), "-o", str(linked)], "wasm-ld", library_dir)
        data = linked.read_bytes()
    exports = tuple(wasm_exports(data))
    atomic_write_bytes(out_path, data)
    zero, scale = _score_facts(library_dir, manifest)
    inputs = manifest.get("input")
    return WasmBuild(path=out_path, bytes=len(data), exports=exports, score_zero=zero,
                     score_scale=scale, labels=[str(label) for label in manifest.get("labels") or range(10)],
                     normalization=inputs if isinstance(inputs, dict) else None,
                     clang_version=clang_version(clang), flags=(*compile_flags, *LINK), simd=simd)


def clang_version(clang: str) -> str:
    """The version clang reports ("14.0.6" of "Debian clang version 14.0.6"), else its first line."""
    first = (_run([clang, "--version"], "clang --version").stdout.splitlines() or [""])[0]
    found = re.search(r"clang version (\S+)", first)
    return found.group(1) if found else first.strip()


def _run(command: list[str], what: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WebError(f"{what} could not run ({exc})", path) from exc
    if done.returncode:
        lines = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()
        first = next((line for line in lines if "error" in line), lines[0])
        raise WebError(f"{what} failed: {first}", path)
    return done


def wasm_exports(data: bytes) -> list[str]:
    """The names of the functions a WebAssembly module exports (its export section, id 7)."""
    if data[:8] != b"\0asm\x01\0\0\0":
        raise WebError("not a WebAssembly 1.0 module")
    try:
        return _export_names(data)
    except (IndexError, UnicodeDecodeError) as exc:
        raise WebError(f"a truncated or malformed WebAssembly module ({exc})") from exc


def _export_names(data: bytes) -> list[str]:
    names, at = [], 8
    while at < len(data):
        section, at = data[at], at + 1
        size, at = _leb128(data, at)
        if section == 7:
            count, cursor = _leb128(data, at)
            for _ in range(count):
                length, cursor = _leb128(data, cursor)
                name, kind = data[cursor:cursor + length].decode("utf-8"), data[cursor + length]
                _, cursor = _leb128(data, cursor + length + 1)
                if kind == 0:  # 0 function, 1 table, 2 memory, 3 global
                    names.append(name)
        at += size
    return names


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned LEB128 number at `at` -> (value, the offset after it)."""
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


__all__ = ["EXPORTS", "WasmBuild", "check_c_library", "compile_wasm", "find_wasm_toolchain", "wasm_exports"]
