"""Pictures of predictions, drawn with Pillow alone (the light install has no matplotlib):
what `mnist-edge run --show` writes and what a notebook displays for one sample.

- `sample_picture`: one input as given (the photo or scan, or the array's pixels), the 28 x 28
  image the model saw, the top probabilities as bars, the prediction and, given the true label,
  whether it was right.
- `contact_sheet`: many inputs at a glance, in input order: each the image the model saw with
  its prediction and confidence; wrong ones framed in red, unsure ones in amber.
- `write_pictures`: one picture per input for a few inputs (or when asked), else one sheet,
  built aside and moved into place whole (`fileio.staged_dir`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnist_edge.config import IMAGE_SIZE as SIZE
from mnist_edge.config import LABELS, SHOW_EACH_UP_TO, SHOW_LIMIT
from mnist_edge.errors import InputImageError, OutputError
from mnist_edge.fileio import atomic_write, check_creatable, staged_dir
from mnist_edge.inputs import file_kind, load_file, safe_stem, to_uint8_images
from mnist_edge.preprocess import open_image

# Up to this many inputs get a picture each; more get a contact sheet (unless each=True); at most
# DEFAULT_LIMIT are drawn unless asked.
EACH_UP_TO = SHOW_EACH_UP_TO
DEFAULT_LIMIT = SHOW_LIMIT
SHEET_NAME = "sheet.png"
# Below this confidence a prediction is marked unsure (amber) on the sheet.
UNSURE = 0.5

_PANEL = 168  # 28 x 6: each pixel the model saw is a 6 x 6 square
_MARGIN = 14
_BAR = 200  # pixels for probability 1
_INK, _MUTED, _BLUE = (20, 20, 20), (110, 110, 110), (52, 101, 164)
_RIGHT, _WRONG, _AMBER = (30, 130, 60), (200, 40, 40), (215, 140, 0)
_PANEL_BACK = (236, 236, 236)


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    """Pillow's bundled font at a size (FreeType), or its fixed bitmap font without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError):
        return ImageFont.load_default()


@dataclass(frozen=True)
class Sample:
    """One prediction to draw: the 28 x 28 uint8 digit the model saw and its class probabilities."""

    seen: np.ndarray
    probabilities: np.ndarray
    name: str = ""
    given: Image.Image | None = None  # the input as given, when it was an image file
    true: int | None = None  # the true class, when known


def sample_picture(sample: Sample, labels: Sequence[str] = LABELS, top: int = 5) -> Image.Image:
    """Input as given | what the model saw | the `top` probabilities as bars, under a title line
    and the verdict (right or wrong when the true class is known)."""
    top = max(1, min(top, len(sample.probabilities)))
    order = np.argsort(-sample.probabilities, kind="stable")[:top]
    bars_height = _bars_height(top, sample.true is not None and sample.true not in order)
    panels_top = _MARGIN + 44
    height = panels_top + 18 + max(_PANEL, bars_height) + _MARGIN
    width = _MARGIN * 4 + _PANEL * 2 + 60 + _BAR + 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    best = int(order[0])
    draw.text((_MARGIN, _MARGIN), sample.name or "input", fill=_INK, font=_font(14))
    colour, verdict = _verdict(best, sample.true, labels)
    draw.text((_MARGIN, _MARGIN + 20), f"predicted {labels[best]} ({sample.probabilities[best]:.1%}){verdict}",
              fill=colour, font=_font(15))
    x = _MARGIN
    given, caption = _given_panel(sample)
    _panel(image, draw, given, (x, panels_top), caption)
    x += _PANEL + _MARGIN
    seen = Image.fromarray(sample.seen).resize((_PANEL, _PANEL), Image.Resampling.NEAREST)
    _panel(image, draw, seen, (x, panels_top), "what the model saw (28 x 28)")
    x += _PANEL + _MARGIN * 2
    _bars(draw, (x, panels_top), sample, order, labels)
    return image


def _verdict(best: int, true: int | None, labels: Sequence[str]) -> tuple[tuple[int, int, int], str]:
    if true is None:
        return _INK, ""
    if best == true:
        return _RIGHT, f": right (labelled {labels[true]})"
    return _WRONG, f": wrong, labelled {labels[true]}"


def _given_panel(sample: Sample) -> tuple[Image.Image, str]:
    if sample.given is None:
        return Image.fromarray(sample.seen).resize((_PANEL, _PANEL), Image.Resampling.NEAREST), \
            "as given (28 x 28 pixels)"
    given = sample.given
    caption = f"as given ({given.width} x {given.height})"
    fitted = given.convert("RGB")
    fitted.thumbnail((_PANEL, _PANEL), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (_PANEL, _PANEL), _PANEL_BACK)
    canvas.paste(fitted, ((_PANEL - fitted.width) // 2, (_PANEL - fitted.height) // 2))
    return canvas, caption


def _panel(image: Image.Image, draw: ImageDraw.ImageDraw, picture: Image.Image, at: tuple[int, int],
           caption: str) -> None:
    x, y = at
    draw.text((x, y), caption, fill=_MUTED, font=_font(11))
    image.paste(picture.convert("RGB"), (x, y + 16))


def _bars_height(top: int, extra_line: bool) -> int:
    return 16 + top * 24 + (20 if extra_line else 0)


def _bars(draw: ImageDraw.ImageDraw, at: tuple[int, int], sample: Sample, order: np.ndarray,
          labels: Sequence[str]) -> None:
    x, y = at
    draw.text((x, y), f"top {len(order)} of {len(sample.probabilities)} probabilities", fill=_MUTED, font=_font(11))
    y += 18
    best = int(order[0])
    for k in map(int, order):
        p = float(sample.probabilities[k])
        colour = _RIGHT if k == sample.true else (_WRONG if k == best and sample.true is not None else _BLUE)
        draw.text((x, y + 2), labels[k], fill=_INK, font=_font(14))
        draw.rectangle((x + 20, y, x + 20 + _BAR, y + 17), fill=(244, 244, 244))
        if p > 0:
            draw.rectangle((x + 20, y, x + 20 + max(1, round(p * _BAR)), y + 17), fill=colour)
        draw.text((x + 28 + _BAR, y + 2), f"{p:.1%}", fill=_INK, font=_font(12))
        y += 24
    if sample.true is not None and sample.true not in order:
        draw.text((x, y + 2), f"labelled {labels[sample.true]}: {float(sample.probabilities[sample.true]):.2%}",
                  fill=_RIGHT, font=_font(12))


def predict_picture(predictor: Any, source: str | Path | np.ndarray, *, true: int | None = None,
                    top: int = 5, name: str | None = None) -> Image.Image:
    """Predict one input with a `runtime.Predictor` and draw its picture: an image file (made
    MNIST-like as `run` does), a one-image .npy or IDX file, or a 28 x 28 array of pixels.
    `name` titles the picture (default: the file's name)."""
    if isinstance(source, np.ndarray):
        seen, given, default = to_uint8_images(np.asarray(source).reshape(1, SIZE, SIZE))[0], None, "28 x 28 array"
    else:
        path = Path(source)
        names, images = load_file(path)
        if len(images) != 1:
            raise InputImageError(f"holds {len(images):,} images; a picture shows one", path)
        seen, default = images[0], names[0]
        given = given_image(path) if file_kind(path) == "image" else None
    probabilities = predictor.probabilities(seen[None])[0]
    return sample_picture(Sample(seen, probabilities, name or default, given, true), predictor.labels, top)


# --- contact sheet ----------------------------------------------------------------------------

_ZOOM = 2
_TILE = SIZE * _ZOOM
_CELL_W, _CELL_H = _TILE + 8, _TILE + 20
_LEFT = 44  # room for the index of each row's first input
_HEADER = 44


def contact_sheet(seen: np.ndarray, probabilities: np.ndarray, *, labels: Sequence[str] = LABELS,
                  true: np.ndarray | None = None, title: str = "", total: int | None = None,
                  columns: int = 25) -> Image.Image:
    """The digits the model saw, in input order (row by row, each row led by its first input's
    index), each captioned with its prediction and confidence; wrong ones (true given) framed in
    red with the label in brackets, unsure ones (under 50 %) in amber."""
    count = len(seen)
    columns = max(1, min(columns, count))
    rows = max(1, -(-count // columns))
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    canvas = np.full((_HEADER + rows * _CELL_H + 6, _LEFT + columns * _CELL_W + 6), 255, np.uint8)
    tiles = np.repeat(np.repeat(seen, _ZOOM, axis=1), _ZOOM, axis=2)  # nearest-neighbour zoom, all at once
    for i in range(count):
        y, x = _cell_origin(i, columns)
        canvas[y + 4:y + 4 + _TILE, x + 4:x + 4 + _TILE] = tiles[i]
    image = Image.fromarray(canvas).convert("RGB")
    draw = ImageDraw.Draw(image)
    _sheet_header(draw, title, count, total, predicted, true)
    small, digit_font = _font(10), _font(14)
    for r in range(rows):
        draw.text((_LEFT - 6, _HEADER + r * _CELL_H + 4 + _TILE // 2), f"{r * columns:,}", fill=_MUTED,
                  font=small, anchor="rm")
    for i in range(count):
        y, x = _cell_origin(i, columns)
        wrong = true is not None and predicted[i] != true[i]
        colour = _WRONG if wrong else (_AMBER if confidence[i] < UNSURE else None)
        if colour is not None:
            draw.rectangle((x + 1, y + 1, x + _TILE + 6, y + _TILE + 6), outline=colour, width=3)
        # The predicted digit large, its confidence small and grey beside it: "7 96%" in one font
        # reads as "796%" at this size.
        draw.text((x + 4, y + _TILE + 5), labels[predicted[i]], fill=colour or _INK, font=digit_font)
        note = _percent(float(confidence[i])) + (f" ({labels[true[i]]})" if wrong else "")
        draw.text((x + 16, y + _TILE + 8), note, fill=colour or _MUTED, font=small)
    return image


def _percent(p: float) -> str:
    """Whole percents, where only a probability of exactly 1 reads 100 % (99.6 % shows as 99 %)."""
    return "100%" if p >= 1.0 else f"{min(round(p * 100), 99)}%"


def _cell_origin(index: int, columns: int) -> tuple[int, int]:
    return _HEADER + (index // columns) * _CELL_H, _LEFT + (index % columns) * _CELL_W


def _sheet_header(draw: ImageDraw.ImageDraw, title: str, count: int, total: int | None,
                  predicted: np.ndarray, true: np.ndarray | None) -> None:
    shown = f"{count:,} inputs" if total in (None, count) else f"the first {count:,} of {total:,} inputs"
    line = f"{title}: {shown}" if title else shown
    if true is not None:
        right = int(np.count_nonzero(predicted == true))
        line += f"; {right:,} of {count:,} right ({right / max(count, 1):.2%})"
    draw.text((8, 6), line, fill=_INK, font=_font(14))
    legend = "caption: prediction and confidence; amber: under 50 % sure"
    if true is not None:
        legend += "; red: wrong, the label in brackets"
    draw.text((8, 25), legend, fill=_MUTED, font=_font(11))


# --- files --------------------------------------------------------------------------------------


def check_folder(folder: str | Path) -> Path:
    """Refuse, before any work, a --show that names a file or a folder that cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError("exists and is not a directory (--show takes a folder)", folder)
    return check_creatable(folder)


def given_image(origin: Path | None) -> Image.Image | None:
    """The image file an input came from, decoded again for its picture (None for array rows, or
    when the file cannot be read a second time: the picture then shows the pixels the model saw)."""
    if origin is None:
        return None
    try:
        return open_image(origin)
    except InputImageError:
        return None


def write_pictures(folder: str | Path, names: Sequence[str], seen: np.ndarray, probabilities: np.ndarray, *,
                   origins: Sequence[Path | None] | None = None, true: np.ndarray | None = None,
                   labels: Sequence[str] = LABELS, title: str = "", each: bool = False,
                   limit: int = DEFAULT_LIMIT, top: int = 5) -> list[Path]:
    """Pictures of the first `limit` predictions in `folder`: NNNNN_name.png each for up to
    EACH_UP_TO inputs (or all, with each=True), else one contact sheet. Built aside and moved
    into place whole: an existing folder keeps its other files."""
    count = min(len(names), limit)
    origins = origins if origins is not None else [None] * len(names)
    with staged_dir(check_folder(folder)) as stage:
        if each or count <= EACH_UP_TO:
            written = [_save(sample_picture(Sample(seen[i], probabilities[i], names[i], given_image(origins[i]),
                                                   None if true is None else int(true[i])), labels, top),
                             stage / f"{i:05d}_{safe_stem(names[i])}.png") for i in range(count)]
        else:
            sheet = contact_sheet(seen[:count], probabilities[:count], labels=labels,
                                  true=None if true is None else true[:count], title=title, total=len(names))
            written = [_save(sheet, stage / SHEET_NAME)]
        names_written = [path.name for path in written]
    return [Path(folder) / name for name in names_written]


def _save(image: Image.Image, path: Path) -> Path:
    # compress_level 1: a 1,000-digit sheet saves in a tenth of the default level's time, for
    # a file about a third larger.
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG", compress_level=1))

