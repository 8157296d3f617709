"""`mnist-edge codegen`: an all-int8 model -> a C99 library (model.h, model.c, manifest.json)
that computes onnxruntime's scores bit for bit, optionally proven on the test images.

Rooms: `graph` reads the integer layers from onnxruntime's optimized graph, `reference` is
their arithmetic in numpy, `emit` writes the C, `verify` compiles it for this machine and
compares it with onnxruntime. No torch anywhere.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnist_edge import __version__, data
from mnist_edge import manifest as manifest_io
from mnist_edge.codegen import board as boards_module
from mnist_edge.codegen import reference
from mnist_edge.codegen.board import BoardRun
from mnist_edge.codegen.emit import HEADER, SOURCE, Library, constant_bytes, library
from mnist_edge.codegen.graph import OPT_LEVEL, IntegerModel, read_integer_model
from mnist_edge.codegen.verify import HOST_CFLAGS, Verification, verify_against_onnxruntime
from mnist_edge.config import LABELS
from mnist_edge.errors import CodegenError, ConfigError
from mnist_edge.fileio import atomic_write_json, atomic_write_text, check_creatable, sha256_file, staged_dir
from mnist_edge.modelfile import is_quantized, locate_model
from mnist_edge.modelprep import input_convention, require_text_names

TEST_IMAGES = 10_000
# The model ends in a Softmax, which quantize --for mcu leaves in float: the C stops before it.
SCORES_BEFORE_SOFTMAX = ("quantized logits before the model's final Softmax (left out: it keeps their order, "
                         "so the digit is the same; apply it in float for probabilities)")


@dataclass(frozen=True)
class CodegenResult:
    out: Path
    arena_bytes: int
    weight_bytes: int
    verification: Verification | None
    boards: list[BoardRun]
    manifest: dict[str, Any]

    @property
    def passed(self) -> bool:
        """Every proof that was asked for held (host and boards)."""
        return (self.verification is None or self.verification.passed) and all(b.passed for b in self.boards)


def load_integer_model(model: str | Path, normalization: dict[str, float | None] | None = None) -> IntegerModel:
    """MODEL (an int8 folder or .onnx file) -> its integer layers; a float model is refused.
    The pixels' normalization: NORMALIZATION's values where given, else the manifest's, else the
    model's metadata, else MNIST's, recorded as assumed (modelprep.input_convention)."""
    import onnx

    model_path, manifest = locate_model(model)
    if not is_quantized(model_path, manifest):
        raise CodegenError("this is an fp32 model; the C generator needs every layer int8: "
                           f"mnist-edge quantize {model} --for mcu --out FOLDER", model_path)
    proto = onnx.load(str(model_path), load_external_data=False)
    require_text_names(proto.graph, model_path)
    convention = input_convention(proto, manifest, normalization or {}, model_path)
    labels = list((manifest or {}).get("labels") or LABELS)
    integer = read_integer_model(model_path, convention.normalization, labels)
    return replace(integer, normalization_source=convention.source)


def _library_of(integer: IntegerModel, requant: str) -> Library:
    """The C of INTEGER; a layer the generator refuses (an accumulator that could overflow)
    names the model file it came from."""
    try:
        return library(integer, requant)
    except CodegenError as exc:
        if exc.path is not None:
            raise
        raise CodegenError(exc.reason, integer.source) from None


BOARD_IMAGES = 1000
REQUANT_DESCRIPTION = {
    "float": "float32 as onnxruntime (MLAS): equal to onnxruntime bit for bit",
    "fixed": "integer only (Q31 multiplier and shift, one rounding half up): within one step of onnxruntime per layer",
}


def generate(model: str | Path, out: str | Path, *, verify_images: int = 0, max_ram: int | None = None,
             cc: str = "cc", boards: Sequence[str] = (), board_images: int = BOARD_IMAGES, requant: str = "float",
             data_dir: Any = None, download: bool = True, cflags: Sequence[str] = HOST_CFLAGS,
             normalization: dict[str, float | None] | None = None) -> CodegenResult:
    """Write OUT/model.h, OUT/model.c and OUT/manifest.json; with `verify_images` > 0, prove the
    C against onnxruntime on the first that many test images (the result says whether it held),
    built with `cflags` (default: as `bench` builds it, optimized for this machine).
    Each of `boards` (`board.BOARDS`) cross-compiles the C, runs it under QEMU on the first
    `board_images` test images and compares every score with the host's. NORMALIZATION (scale,
    mean, std; None: not given) overrides the manifest's (`load_integer_model`).

    OUT is built aside and appears whole; a refused model or option leaves nothing behind.
    """
    if requant not in reference.MODES:
        raise ConfigError(f"--requant must be float or fixed, got {requant!r}")
    if not 0 <= verify_images <= TEST_IMAGES:
        raise ConfigError(f"--images must be between 1 and {TEST_IMAGES:,}, got {verify_images}")
    if boards and not 1 <= board_images <= TEST_IMAGES:
        raise ConfigError(f"--board-images must be between 1 and {TEST_IMAGES:,}, got {board_images}")
    for name in boards:
        boards_module.check_tools(boards_module.board_named(name))
    out = check_creatable(out)
    integer = load_integer_model(model, normalization)
    code = _library_of(integer, requant)
    arena = code.plan.arena_bytes
    if max_ram is not None and arena > max_ram:
        raise CodegenError(f"the arena needs {arena:,} bytes, more than --max-ram {max_ram:,}; "
                           "choose a smaller architecture (e.g. tiny)")
    wanted = max(verify_images, board_images if boards else 0)
    test = data.load_split("test", data_dir, download).subset(wanted) if wanted else None
    with staged_dir(out, last=(manifest_io.FILENAME,)) as stage:
        atomic_write_text(stage / HEADER, code.header)
        atomic_write_text(stage / SOURCE, code.source)
        checked = None
        if verify_images:
            checked = verify_against_onnxruntime(integer, stage, test.images[:verify_images],
                                                 test.labels[:verify_images], cc=cc, requant=requant,
                                                 flags=tuple(cflags))
        runs = (_run_boards(integer, stage, boards, test.images[:board_images], requant,
                            [b.name for b in code.plan.buffers]) if boards else [])
        manifest = library_manifest(integer, stage, out, arena, checked, runs, verify_images, requant, tuple(cflags),
                                    normalization or {})
        atomic_write_json(stage / manifest_io.FILENAME, manifest)
    return CodegenResult(out, arena, constant_bytes(integer, requant), checked, runs, manifest)


def _run_boards(model: IntegerModel, c_dir: Path, boards: Sequence[str], pixels: np.ndarray,
                requant: str, step_names: list[str]) -> list[BoardRun]:
    host = reference.scores(model, pixels, requant)  # what the host's C computes, which --verify proves
    runs = []
    for name in boards:
        with tempfile.TemporaryDirectory(prefix="mnist-edge-board-") as work:
            runs.append(boards_module.run(c_dir, Path(work), name, pixels, host, step_names))
    return runs


def codegen_command(model: Path, out: Path, verify_images: int, boards: Sequence[str] = (),
                    board_images: int = BOARD_IMAGES, requant: str = "float",
                    cflags: Sequence[str] = HOST_CFLAGS, normalization: dict[str, float | None] | None = None) -> str:
    """The command line that generates and measures this library again."""
    parts = ["mnist-edge", "codegen", str(model), "--out", str(out)]
    for key, value in (normalization or {}).items():
        if value is not None:
            parts += [f"--{key}", repr(float(value))]
    if requant != "float":
        parts += ["--requant", requant]
    if verify_images and tuple(cflags) != HOST_CFLAGS:
        parts += ["--cflags", shlex.join(cflags)]
    if verify_images:
        parts += ["--verify"] + (["--images", str(verify_images)] if verify_images != TEST_IMAGES else [])
    for name in boards:
        parts += ["--board", name]
    if boards and board_images != BOARD_IMAGES:
        parts += ["--board-images", str(board_images)]
    return shlex.join(parts)


def _model_argument(source: Path) -> Path:
    """How the command names the model: its folder when a manifest is beside it, else the file."""
    return source.parent if (source.parent / manifest_io.FILENAME).is_file() else source


def library_manifest(model: IntegerModel, stage: Path, out: Path, arena: int, checked: Verification | None,
                     runs: list[BoardRun], verify_images: int, requant: str,
                     cflags: tuple[str, ...] = HOST_CFLAGS,
                     normalization: dict[str, float | None] | None = None) -> dict[str, Any]:
    import onnxruntime

    files = {name: {"sha256": sha256_file(stage / name), "bytes": (stage / name).stat().st_size}
             for name in (HEADER, SOURCE)}
    return {
        "schema_version": manifest_io.SCHEMA_VERSION, "name": out.name, "kind": "c-library",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": files,
        "source_model": {"path": str(model.source), "sha256": sha256_file(model.source)},
        "generator": {"mnist_edge": __version__, "onnxruntime": onnxruntime.__version__,
                      "onnxruntime_graph_level": OPT_LEVEL,
                      "requantization": REQUANT_DESCRIPTION[requant]},
        "api": {"function": "int mnist_edge_predict(const uint8_t pixels[784], uint8_t scores[10])",
                "pixels": "raw 0-255, 28 x 28, light digit on dark (as MNIST)",
                "scores": SCORES_BEFORE_SOFTMAX if model.output_softmax else "quantized logits",
                "score_scale": model.output_scale, "score_zero": model.output_zero},
        "input": {"scale": model.normalization.scale, "mean": model.normalization.mean,
                  "std": model.normalization.std, "layout": model.input_layout,
                  "normalization_source": model.normalization_source},
        "labels": model.labels,
        "memory": {"arena_bytes": arena, "constant_bytes": constant_bytes(model, requant),
                   "layers": [type(layer).__name__ + " " + layer.name for layer in model.layers]},
        "verification": None if checked is None else {**asdict(checked), "passed": checked.passed},
        "boards": {run.board: {**asdict(run), "ram_bytes": run.ram_bytes, "passed": run.passed, "digits": None}
                   for run in runs},
        "measured_with": codegen_command(_model_argument(model.source), out, verify_images, [r.board for r in runs],
                                         runs[0].images if runs else BOARD_IMAGES, requant, cflags, normalization),
    }


__all__ = ["CodegenResult", "generate", "load_integer_model"]
