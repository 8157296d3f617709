"""Plain figures drawn with Pillow alone, for the light install (no matplotlib): the confusion
matrix and the most confident mistakes of `eval`, laid out like their matplotlib versions in
`mnist_edge.plots`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mnist_edge.fileio import atomic_write


def confusion(matrix: np.ndarray, path: Path, title: str = "", cell: int = 44) -> Path:
    """Counts in cells shaded by the fraction of the true class (row), as plots.confusion_matrix."""
    n = len(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    left, top = 40, 56
    image = Image.new("RGB", (left + n * cell + 10, top + n * cell + 30), "white")
    draw = ImageDraw.Draw(image)
    accuracy = np.trace(matrix) / max(int(matrix.sum()), 1)
    draw.text((8, 6), f"{title}\naccuracy {accuracy:.2%} on {int(matrix.sum()):,} images", fill="black")
    for i in range(n):
        draw.text((left + i * cell + cell // 2, top - 8), str(i), fill="black", anchor="ms")
        draw.text((left - 8, top + i * cell + cell // 2), str(i), fill="black", anchor="rm")
        for j in range(n):
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
            shade = int(255 * (1 - 0.8 * share[i, j]))
            draw.rectangle(box, fill=(shade, shade, 255))
            if matrix[i, j]:
                colour = "white" if share[i, j] > 0.5 else "black"
                draw.text((box[0] + cell // 2, box[1] + cell // 2), f"{int(matrix[i, j]):,}",
                          fill=colour, anchor="mm")
    draw.text((left, top + n * cell + 8), "rows: true digit, columns: predicted", fill="black")
    return _save_png(image, path)


def mistakes(images: np.ndarray, true: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
                    path: Path, title: str = "", columns: int = 10, zoom: int = 3) -> Path:
    """The mistakes in the given order, each captioned "true->predicted p%"."""
    tile, caption = 28 * zoom, 14
    grid_rows = max(1, -(-len(images) // columns))
    image = Image.new("RGB", (columns * (tile + 4) + 4, 24 + grid_rows * (tile + caption + 4)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((4, 6), title if len(images) else f"{title}: no mistakes", fill="black")
    for k, digit in enumerate(images):
        x, y = 4 + (k % columns) * (tile + 4), 24 + (k // columns) * (tile + caption + 4)
        image.paste(Image.fromarray(digit).resize((tile, tile), Image.Resampling.NEAREST), (x, y))
        draw.text((x, y + tile + 1), f"{true[k]}->{predicted[k]} {confidence[k]:.0%}", fill=(200, 30, 30))
    return _save_png(image, path)


def _save_png(image: Any, path: Path) -> Path:
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
