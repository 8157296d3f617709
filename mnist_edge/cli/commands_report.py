"""`mnist-edge report`: rebuild a pipeline run's self-contained report.html from its JSON files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnist_edge.cli.common import command, print_json
from mnist_edge.units import format_bytes


@command(name="report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(
        help="A pipeline run folder (what `mnist-edge pipeline --out` wrote).")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the page (default: RUN_DIR/report.html).", dir_okay=False)] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the written file and the missing parts as JSON.")] = False,
) -> None:
    """Rebuild report.html: data, training, evaluation, parity, benchmark and manifests in one page.

    The page is self-contained (figures embedded, no network needed). Parts of a failed or
    partial run that are missing are named in the page instead.

    Example: mnist-edge report runs/fast
    """
    from mnist_edge.report import build_report, missing_parts

    path = build_report(run_dir, out=out)
    missing = missing_parts(run_dir)
    if json_output:
        print_json({"report": str(path), "bytes": path.stat().st_size, "missing": missing})
        return
    typer.echo(f"wrote {path} ({format_bytes(path.stat().st_size)})")
    if missing:
        typer.echo(f"not in this run ({len(missing)}):")
        for line in missing:
            typer.echo(f"  {line}")
