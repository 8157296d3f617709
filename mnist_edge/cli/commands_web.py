"""`mnist-edge web`: a static page that classifies a drawn digit in the browser."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mnist_edge.cli.common import JsonOption, command, console, print_json
from mnist_edge.units import format_bytes


@command(name="web")
def web_command(
    model: Annotated[Path, typer.Argument(help="An exported model (folder or .onnx) for --engine ort; a C "
                                               "library from `mnist-edge codegen` for --engine c.")],
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the site (index.html and its "
                                                           "assets). Without it, --serve builds into a "
                                                           "temporary folder.")] = None,
    engine: Annotated[str, typer.Option("--engine", help="ort: onnxruntime-web (WebAssembly), any exported "
                                        "model; c: the generated C compiled to WebAssembly with clang.")] = "ort",
    serve: Annotated[bool, typer.Option("--serve", help="Serve the site on localhost until Ctrl-C.")] = False,
    port: Annotated[int, typer.Option("--port", help="Port for --serve (0: any free port).")] = 8000,
    runtime_dir: Annotated[Path | None, typer.Option(
        "--runtime-dir", file_okay=False, help="An unpacked onnxruntime-web package to use instead of "
        "fetching it once with npm into the user cache.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Build into an --out that holds other files.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Build a page where you draw a digit and watch the model classify it, in the browser.

    Nothing to install for whoever opens it; it needs an HTTP server (--serve, or any static
    server such as `python3 -m http.server`), since browsers refuse its modules from file://.

    Example: mnist-edge web exported/cnn-int8 --out site/
    Example: mnist-edge web exported/tiny-mcu --engine c --out site-c/
    Example: mnist-edge web exported/cnn-int8 --serve
    """
    from mnist_edge.errors import WebError
    from mnist_edge.web import serve as serving
    from mnist_edge.web.site import build_site, site_summary

    if out is None and not serve:
        raise WebError("give --out DIR for the site, or --serve to build and serve it from a temporary folder")
    with tempfile.TemporaryDirectory(prefix="mnist-edge-web-") as scratch:
        folder = out if out is not None else Path(scratch) / "site"
        server = serving.bind(folder, port=port) if serve else None  # a busy port fails before any file is written
        site = build_site(model, folder, engine=engine, runtime_dir=runtime_dir, force=force)
        summary = site_summary(site)
        if json_output:
            print_json(summary)
        else:
            console.print(f"site: {escape(str(folder))} ({engine} engine, {len(site.files)} files, "
                          f"{format_bytes(summary['bytes'])}, {format_bytes(summary['gzip_bytes'])} gzip-compressed)")
            if summary["over_budget"]:
                console.print(f"note: over the c engine's budget of {format_bytes(summary['budget_bytes'])} "
                              "(the page is sized for microcontroller models; the C's constants "
                              "are in both of its WebAssembly modules): it works, but its first prediction waits "
                              "for the download")
        if server is not None:
            _serve_until_interrupted(server, folder)


def _serve_until_interrupted(server, folder: Path) -> None:
    from mnist_edge.web import serve as serving

    console.print(f"serving {escape(str(folder))} at {serving.url_of(server)} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # the way to stop a server: not an error
        pass
    finally:
        server.server_close()
