"""onnxruntime-web for the page: fetched once with `npm pack` at a pinned version, its integrity
checked, kept in the user cache; only the three files of its WebAssembly backend go into a site.

`onnxruntime-web/wasm` (ort.wasm.min.mjs) is the build without WebGPU/WebGL/JSEP, whose binaries
are twice the size; on a page without cross-origin isolation (a plain static site) it runs on
one thread. The package is not vendored in the repository: it is 25 MB.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from mnist_edge.errors import WebError
from mnist_edge.fileio import atomic_write_bytes

PACKAGE = "onnxruntime-web"
VERSION = "1.31.1"
# `npm view onnxruntime-web@1.31.1 dist.integrity`: the registry's sha512 of the tarball.
INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
# The WebAssembly backend: the module the page imports, the emscripten loader it imports in
# turn, and the binary (SIMD; the "threaded" build also runs single-threaded).
FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
SPEC = f"{PACKAGE}@{VERSION}"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-edge" / f"{PACKAGE}-{VERSION}"


def runtime_files(runtime_dir: str | Path | None = None, cache_dir: Path | None = None) -> dict[str, Path]:
    """The backend's files: from RUNTIME_DIR (an unpacked package or its dist/), else the cache,
    filled with `npm pack` the first time."""
    if runtime_dir is not None:
        return _files_in(Path(runtime_dir), source="--runtime-dir")
    cache = cache_dir or default_cache_dir()
    if not all((cache / name).is_file() for name in FILES):
        _fill_cache(cache)
    return _files_in(cache, source="the cache")


def _files_in(folder: Path, source: str) -> dict[str, Path]:
    for candidate in (folder, folder / "dist", folder / "package" / "dist"):
        if all((candidate / name).is_file() for name in FILES):
            return {name: candidate / name for name in FILES}
    raise WebError(f"{source} holds no onnxruntime-web WebAssembly backend (needs {', '.join(FILES)}; "
                   f"unpack `npm pack {SPEC}` there)", folder)


def _fill_cache(cache: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise WebError(f"npm is needed once to fetch {SPEC} (install Node.js and npm), or run "
                       f"`npm pack {SPEC}`, unpack it and pass --runtime-dir DIR")
    with tempfile.TemporaryDirectory(prefix="mnist-edge-npm-") as tmp:
        tarball = _npm_pack(npm, Path(tmp))
        _check_integrity(tarball)
        with tarfile.open(tarball, "r:gz") as archive:
            for name in FILES:
                member = archive.extractfile(f"package/dist/{name}")
                if member is None:
                    raise WebError(f"the {SPEC} tarball has no dist/{name}", tarball)
                atomic_write_bytes(cache / name, member.read())


def _npm_pack(npm: str, folder: Path) -> Path:
    try:
        done = subprocess.run([npm, "pack", SPEC, "--silent", "--pack-destination", str(folder)],
                              capture_output=True, text=True, timeout=600, cwd=folder)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WebError(f"`npm pack {SPEC}` failed ({exc}); or pass --runtime-dir DIR") from exc
    tarballs = sorted(folder.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        reason = (done.stderr.strip().splitlines() or ["no tarball written"])[-1]
        raise WebError(f"`npm pack {SPEC}` failed ({reason}); or pass --runtime-dir DIR")
    return tarballs[0]


def _check_integrity(tarball: Path) -> None:
    digest = hashlib.sha512()
    with open(tarball, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    found = "sha512-" + base64.b64encode(digest.digest()).decode()
    if found != INTEGRITY:
        raise WebError(f"{SPEC} does not match its pinned integrity ({found[:30]}... instead of "
                       f"{INTEGRITY[:30]}...): refused", tarball)
