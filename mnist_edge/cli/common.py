"""Shared CLI plumbing: the Typer app, error rendering, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from mnist_edge.errors import MnistEdgeError, TrainingInterrupted

app = typer.Typer(
    name="mnist-edge",
    help="Train, quantize, export, run and benchmark handwritten-digit models.\n\n"
    "Example: mnist-edge pipeline --preset fast --out runs/fast",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def _global_options(
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Let onnxruntime print its own warnings and errors (silent by default: "
        "mnist-edge prints one `error:` line).")] = False,
) -> None:
    from mnist_edge.logs import set_verbose  # no onnxruntime import: --help stays light

    set_verbose(verbose)


# Piped output (a file, CI log) gets a wide console: rich would otherwise wrap tables at 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

F = TypeVar("F", bound=Callable[..., Any])

# Options shared by several commands, defined once (as `Annotated` types: `data_dir: DataDirOption = None`).
DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", file_okay=False, help="Folder holding MNIST (default: $MNIST_EDGE_DATA, else the per-user "
    "cache; MNIST is downloaded there with torchvision when missing).")]
DownloadOption = Annotated[bool, typer.Option(
    "--download/--no-download", help="Download MNIST when it is missing (--no-download: fail instead).")]
DeviceOption = Annotated[str, typer.Option(
    "--device", help="Training device: auto (cuda, then mps, then cpu), cpu, cuda or mps.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of text.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    # typer.echo, not rich: rich would wrap a long message over several lines.
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handles_errors(func: F) -> F:
    """Turn library errors into one line on stderr and exit code 2 (130 for an interruption)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TrainingInterrupted as exc:
            raise fail(str(exc), code=130) from None
        except KeyboardInterrupt:  # Ctrl-C outside training's own handler (loading data, exporting)
            raise fail("interrupted", code=130) from None
        except MnistEdgeError as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def command(group: typer.Typer = app, **kwargs: Any) -> Callable[[F], F]:
    """Register a command with error handling; its docstring must include an example."""

    def register(func: F) -> F:
        group.command(**kwargs)(handles_errors(func))
        return func

    return register


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


_NORMALISATION_HELP = "x = (pixel / scale - mean) / std for float-input models"


def scale_option() -> Any:
    return typer.Option(None, "--scale", help=f"Pixel scale; {_NORMALISATION_HELP}. Default: the "
                        "manifest's, else 255. uint8-input models take raw pixels.")


def mean_option() -> Any:
    return typer.Option(None, "--mean", help="Mean after scaling. Default: the manifest's, else 0.1307.")


def std_option() -> Any:
    return typer.Option(None, "--std", help="Std after scaling. Default: the manifest's, else 0.3081.")
