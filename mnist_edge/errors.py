"""Typed errors. The library raises these; only the CLI turns them into messages and exit codes."""

from __future__ import annotations

from pathlib import Path


def first_line(error: BaseException | str) -> str:
    """The first line of an error's message (its type's name when it has none): libraries we
    call (onnxruntime, onnx, Pillow) raise messages of many lines, and the CLI shows one."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


class MnistEdgeError(Exception):
    """Base class of every error a user can cause with bad input or options."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.reason = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class ConfigError(MnistEdgeError):
    """Nonsensical options, an unknown architecture or preset, a malformed config file."""


class DataError(MnistEdgeError):
    """MNIST files missing, truncated or foreign."""


class CheckpointError(MnistEdgeError):
    """A training checkpoint that is missing, truncated, foreign or from another version."""


class ModelFileError(MnistEdgeError):
    """An ONNX model file that is missing, empty, truncated, foreign or unsupported."""


class ManifestError(MnistEdgeError):
    """A manifest.json that is missing fields or disagrees with the files beside it."""


class InputImageError(MnistEdgeError):
    """An image or array given to `run` that cannot be turned into digits."""


class LabelsError(MnistEdgeError):
    """A labels file (`run --labels`) that cannot be read, or does not fit the inputs or the model."""


class OutputError(MnistEdgeError):
    """An output location that cannot be written, or already holds something else."""


class FolderBusyError(OutputError):
    """A run folder that another mnist-edge process holds locked (see mnist_edge.runlock)."""


class ParityError(MnistEdgeError):
    """Models that cannot be compared (different label sets, shapes...)."""


class TrainingInterrupted(MnistEdgeError):
    """Training stopped by the user; the state at the interruption was saved."""


class CodegenError(MnistEdgeError):
    """A model the C generator cannot turn into integer-only C, or a C build that fails."""


class WebError(MnistEdgeError):
    """A site `mnist-edge web` cannot build or serve: no usable model, toolchain or runtime, a busy port."""
