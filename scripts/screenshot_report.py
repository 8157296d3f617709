"""Render a report.html to PNG with headless Chromium (for the docs, and to check it renders).

    python scripts/screenshot_report.py runs/fast/report.html --out docs/report.png
    python scripts/screenshot_report.py runs/fast/report.html --out report.png --height 9000 --tiles 3000

Chromium comes from the distribution (Debian: `apt-get install chromium`); set $CHROMIUM or pass
--chromium to use another binary. The page is opened as a file:// URL with networking features
off; the report needs none. `--tiles H` also writes OUT-1.png, OUT-2.png, ... slices of H pixels,
easier to look at than one very tall image.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium binary: `explicit`, else $CHROMIUM, else the first candidate on PATH."""
    for name in (explicit, os.environ.get("CHROMIUM"), *CANDIDATES):
        if name and (path := shutil.which(name)):
            return path
    return None


def screenshot(html_file: str | Path, png_file: str | Path, *, width: int = 1280, height: int = 4000,
               chromium: str | None = None, timeout: float = 120.0) -> Path:
    """Render `html_file` in a `width` x `height` window and save it as `png_file`.

    Raises FileNotFoundError when no Chromium is found and RuntimeError when it fails.
    """
    binary = find_chromium(chromium)
    if binary is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
    html_file, png_file = Path(html_file).resolve(), Path(png_file).resolve()
    png_file.parent.mkdir(parents=True, exist_ok=True)
    png_file.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [binary, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png_file}",
                   f"--window-size={width},{height}", html_file.as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if not png_file.is_file():
        raise RuntimeError(f"chromium exited with {result.returncode} and wrote no screenshot:\n"
                           f"{result.stderr[-2000:]}")
    return png_file


def tiles(png_file: Path, tile_height: int) -> list[Path]:
    """Cut the screenshot into slices of `tile_height` pixels: OUT-1.png, OUT-2.png, ..."""
    from PIL import Image

    paths = []
    with Image.open(png_file) as image:
        for number, top in enumerate(range(0, image.height, tile_height), start=1):
            path = png_file.with_name(f"{png_file.stem}-{number}{png_file.suffix}")
            image.crop((0, top, image.width, min(top + tile_height, image.height))).save(path)
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the report.html to render")
    parser.add_argument("--out", type=Path, help="PNG to write (default: beside the report)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=4000, help="window height: what is captured")
    parser.add_argument("--tiles", type=int, default=0, help="also write slices of this height")
    parser.add_argument("--chromium", help="browser binary (default: $CHROMIUM or chromium on PATH)")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"error: {args.report}: no such file", file=sys.stderr)
        return 2
    out = args.out or args.report.with_suffix(".png")
    try:
        path = screenshot(args.report, out, width=args.width, height=args.height, chromium=args.chromium)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    for tile in tiles(path, args.tiles) if args.tiles > 0 else []:
        print(tile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
