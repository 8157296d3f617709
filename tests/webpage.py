"""The page `mnist-edge web` builds, driven in headless Chromium (Debian's, through Playwright):
served from a folder, opened, given canvases to classify. Shared by the web tests."""

from __future__ import annotations

import base64
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_edge import data
from mnist_edge.web import serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CANVAS = 280


def _playwright():
    sync_api = pytest.importorskip("playwright.sync_api", reason="drives Chromium (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        pytest.skip("Chromium is missing (apt-get install chromium)")
    return sync_api


def launched_chromium():
    """Headless Chromium for the length of a `browser` fixture (conftest.py); skips without it."""
    sync_api = _playwright()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@contextmanager
def served(folder: Path):
    server = serve.bind(folder, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield serve.url_of(server)
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def opened(browser, folder: Path):
    with served(folder) as url:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        loaded = page.evaluate("window.mnistEdge.ready")
        assert not errors, errors
        yield page, loaded
        page.close()


def canvases(count: int) -> np.ndarray:
    """MNIST test digits as a person's canvas shows them: black ink on white, 280 x 280."""
    images = data.load_split("test", download=False).images[:count]
    return np.stack([255 - np.asarray(Image.fromarray(image).resize((CANVAS, CANVAS), Image.Resampling.BILINEAR))
                     for image in images])


def classify_in_page(page, gray: np.ndarray) -> list[dict]:
    """Put each canvas into the page, classify it, and read back the result and the canvas PNG."""
    payload = [base64.b64encode(g.tobytes()).decode() for g in gray]
    return page.evaluate("""async ([images, size]) => {
        const out = [];
        for (const b64 of images) {
            const gray = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            window.mnistEdge.putGray(gray, size, size);
            const result = await window.mnistEdge.classify();
            out.push({ ...result, png: window.mnistEdge.canvasPNG() });
        }
        return out;
    }""", [payload, CANVAS])
