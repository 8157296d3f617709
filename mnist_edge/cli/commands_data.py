"""`mnist-edge data show|stats`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from mnist_edge.cli.common import DataDirOption, DownloadOption, JsonOption, app, command, fail, print_json

data_app = typer.Typer(
    help="Look at the MNIST data: counts, pixel statistics and figures.\n\n"
    "Example: mnist-edge data stats",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")



def load_plots() -> ModuleType:
    """Import `mnist_edge.plots`, or fail with an install hint when matplotlib is missing."""
    try:
        from mnist_edge import plots
    except ImportError as exc:
        raise fail(f"figures need matplotlib ({exc}); install it with: "
                   "pip install 'mnist-edge[train]'") from None
    return plots


@command(data_app, name="stats")
def stats_command(
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
    json_output: JsonOption = False,
) -> None:
    """Count the images per class and measure the training pixels' mean and std.

    Example: mnist-edge data stats --data-dir ~/data --json
    """
    from mnist_edge.data import stats

    result = stats(data_dir, download=download)
    if json_output:
        print_json(asdict(result))
        return
    typer.echo(f"MNIST in {result.folder}")
    typer.echo(f"  images  train {result.train_count:,}  test {result.test_count:,}")
    typer.echo("  class  " + "".join(f"{digit:>6}" for digit in range(10)))
    for name, counts in (("train", result.train_class_counts), ("test", result.test_class_counts)):
        typer.echo(f"  {name:<7}" + "".join(f"{count:>6}" for count in counts))
    typer.echo(f"  pixels  mean {result.pixel_mean:.4f}  std {result.pixel_std:.4f}  "
               "(training set, scaled to 0-1)")


@command(data_app, name="show")
def show_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the PNG figures into.",
                                      file_okay=False)],
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
    count: Annotated[int, typer.Option(help="Random training digits in samples.png.",
                                       min=1, max=400)] = 100,
    seed: Annotated[int, typer.Option(help="Seed choosing the sample digits.")] = 0,
    json_output: JsonOption = False,
) -> None:
    """Draw sample digits, class counts, class means and the pixel histogram as PNG files.

    Writes samples.png, class_counts.png, class_means.png and pixel_histogram.png into --out.

    Example: mnist-edge data show --out figures/data --count 50 --seed 1
    """
    load_plots()  # a clear install hint when matplotlib is missing
    from mnist_edge.plots import write_overview

    written = write_overview(out, data_dir, download, count=count, seed=seed)
    if json_output:
        print_json({"out": str(out), "files": [str(path) for path in written]})
        return
    for path in written:
        typer.echo(str(path))
