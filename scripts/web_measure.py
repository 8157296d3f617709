#!/usr/bin/env python3
"""Measure the pages `mnist-edge web` builds, in headless Chromium, beside `mnist-edge bench`:

    python scripts/web_measure.py                                   # both engines, the issue's budgets
    python scripts/web_measure.py --screenshot docs/web.png         # also a screenshot with a drawn digit

For each site: its files and weight (raw and gzip-compressed, file by file as a server sends
them), the time from navigation to the first prediction and from the load event, and the p50
inference time over 100 predictions of a drawn digit (after 300 of warm-up); then `mnist-edge bench` (batch 1, one
thread) on the same model for comparison. Each budget is printed with its measured figure and
its verdict. Chromium is Debian's (`apt-get install chromium`), driven by Playwright.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mnist_edge.web import serve  # noqa: E402
from mnist_edge.web.site import build_site, site_summary  # noqa: E402

SITES = {"ort": (REPO / "exported" / "cnn-int8", REPO / "exported" / "cnn-int8"),
         "c": (REPO / "exported" / "tiny-mcu", REPO / "exported" / "tiny-mcu-int8")}
BUDGETS = {"ort_gzip_bytes": 5 * 1024 * 1024, "c_bytes": 100 * 1024, "first_prediction_ms": 1000.0}
# A "3" drawn in two strokes, in canvas pixels (280 x 280).
THREE = [[(80, 60), (150, 40), (200, 80), (150, 135)], [(150, 135), (205, 180), (160, 235), (80, 220)]]


def draw(page, strokes) -> None:
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280
    for line in strokes:
        page.mouse.move(box["x"] + line[0][0] * scale, box["y"] + line[0][1] * scale)
        page.mouse.down()
        for x, y in line[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
        page.mouse.up()


def measure_site(browser, folder: Path, screenshot: Path | None) -> dict:
    server = serve.bind(folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 640})
        page.goto(serve.url_of(server))
        loaded = page.evaluate("window.mnistEdge.ready")
        draw(page, THREE)
        result = page.evaluate("window.mnistEdge.classify()")
        # Warm-up first: V8 compiles WebAssembly with its baseline compiler, then tiers hot code up.
        page.evaluate("window.mnistEdge.timePredictions(300)")
        times = page.evaluate("window.mnistEdge.timePredictions(100)")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
        page.close()
    finally:
        server.shutdown()
        server.server_close()
    first = loaded["firstPredictionMs"]
    after_load = first - loaded["loadEventMs"] if loaded.get("loadEventMs") else None
    return {"digit": result["label"], "first_prediction_ms": first, "first_prediction_after_load_ms": after_load,
            "p50_ms": statistics.median(times), "predictions": len(times)}


def bench_p50_us(model: Path) -> float:
    done = subprocess.run([sys.executable, "-m", "mnist_edge", "bench", str(model), "--batch-sizes", "1",
                           "--threads", "1", "--seconds", "2", "--no-torch", "--json"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["models"][0]["latency"]["p50_us"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--screenshot", type=Path, help="PNG of the ort page with a drawn digit")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = {"machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}"}
    with tempfile.TemporaryDirectory(prefix="mnist-edge-web-") as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        figures["chromium"] = browser.version
        for engine, (model, onnx_model) in SITES.items():
            site = build_site(model, Path(tmp) / engine, engine=engine)
            summary = site_summary(site)
            shot = args.screenshot if engine == "ort" else None
            figures[engine] = {"model": str(model.relative_to(REPO)), "files": len(site.files),
                               "bytes": summary["bytes"], "gzip_bytes": summary["gzip_bytes"],
                               **measure_site(browser, site.folder, shot),
                               "bench_model": str(onnx_model.relative_to(REPO)),
                               "bench_p50_us": bench_p50_us(onnx_model)}
        browser.close()
    print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def print_table(figures: dict) -> None:
    print(f"machine: {figures['machine']}; Chromium {figures['chromium']}")
    print("| engine | model | files | bytes | gzip | first prediction (from navigation / after load) | "
          "p50 in the page (100 predictions) | `mnist-edge bench` p50, batch 1, 1 thread |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for engine in SITES:
        f = figures[engine]
        after_load = f["first_prediction_after_load_ms"]
        after = "n/a" if after_load is None else f"{after_load:.0f} ms"
        print(f"| {engine} | {f['model']} | {f['files']} | {f['bytes']:,} | {f['gzip_bytes']:,} | "
              f"{f['first_prediction_ms']:.0f} ms / {after} | {1000 * f['p50_ms']:.0f} µs | "
              f"{f['bench_p50_us']:.1f} µs ({f['bench_model']}) |")
    checks = [("ort site gzip-compressed <= 5 MiB", figures["ort"]["gzip_bytes"], BUDGETS["ort_gzip_bytes"]),
              ("c site of tiny <= 100 KiB", figures["c"]["bytes"], BUDGETS["c_bytes"])]
    for engine in SITES:
        after = figures[engine]["first_prediction_after_load_ms"]
        checks.append((f"{engine}: first prediction <= 1 s after the load event", after if after is not None
                       else figures[engine]["first_prediction_ms"], BUDGETS["first_prediction_ms"]))
    for name, value, limit in checks:
        print(f"  {name}: {value:,.0f} -> {'met' if value <= limit else 'MISSED'}")


if __name__ == "__main__":
    main()
