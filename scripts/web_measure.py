#!/usr/bin/env python3
"""Measure the generated C and the pages `mnist-edge web` builds, side by side in one run:

    python scripts/web_measure.py                                   # every figure and goal below
    python scripts/web_measure.py --screenshot docs/web.png         # also a screenshot with a drawn digit
    python scripts/web_measure.py --json web.json                   # and the figures as JSON

1. Native: `mnist-edge bench` on the shipped C libraries beside the int8 models they were
   generated from (batch 1, one thread; the C built as bench builds it, -O3 -march=native).
2. In headless Chromium (Debian's, driven by Playwright), for each site (`ort` on tiny-mcu-int8
   and on cnn-int8, `c` on tiny-mcu): its bytes (raw and gzip), the first prediction in fresh
   browser contexts (median of --contexts), from navigation and after the load event, broken
   down by the page's own performance marks (model.json, engine module imported, runtime
   compiled or instantiated, first run), then the time per prediction over blocks of
   --block predictions of a drawn digit (the median block), after a warm-up block: Chromium's
   timer steps by 100 µs, so a single prediction's time says nothing.
3. The goals of the generated C, with their verdicts.
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

from mnist_edge import measure  # noqa: E402
from mnist_edge.web import serve  # noqa: E402
from mnist_edge.web.site import build_site, site_summary  # noqa: E402

EXPORTED = REPO / "exported"
SITES = {"ort (tiny)": ("ort", EXPORTED / "tiny-mcu-int8"), "ort (cnn)": ("ort", EXPORTED / "cnn-int8"),
         "c (tiny)": ("c", EXPORTED / "tiny-mcu")}
NATIVE = [EXPORTED / "tiny-mcu", EXPORTED / "tiny-mcu-int8", EXPORTED / "cnn-mcu", EXPORTED / "cnn-mcu-int8"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# A "3" drawn in two strokes, in canvas pixels (280 x 280).
THREE = [[(80, 60), (150, 40), (200, 80), (150, 135)], [(150, 135), (205, 180), (160, 235), (80, 220)]]
MARKS = ("start", "model-json", "engine-imported", "ort-module-reused", "session-created", "module-instantiated",
         "engine-ready",
         "first-prediction")


def draw(page, strokes) -> None:
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280
    for line in strokes:
        page.mouse.move(box["x"] + line[0][0] * scale, box["y"] + line[0][1] * scale)
        page.mouse.down()
        for x, y in line[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
        page.mouse.up()


def first_prediction(browser, url: str) -> dict:
    """One fresh context (empty cache): the page's ready figures and marks."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        loaded = page.evaluate("window.mnistEdge.ready")
    finally:
        context.close()
    # negative: the page was ready before its load event ended
    after = loaded["firstPredictionMs"] - loaded["loadEventMs"] if loaded.get("loadEventMs") else None
    return {"from_navigation_ms": loaded["firstPredictionMs"], "after_load_ms": after, "marks": loaded["marks"]}


def measure_site(browser, folder: Path, contexts: int, blocks: int, block: int, screenshot: Path | None) -> dict:
    server = serve.bind(folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = serve.url_of(server)
        starts = sorted((first_prediction(browser, url) for _ in range(contexts)),
                        key=lambda run: run["from_navigation_ms"])
        median = starts[len(starts) // 2]
        page = browser.new_page(viewport={"width": 1000, "height": 640})
        page.goto(url)
        page.evaluate("window.mnistEdge.ready")
        draw(page, THREE)
        result = page.evaluate("window.mnistEdge.classify()")
        runtime = page.evaluate("window.mnistEdge.info && document.getElementById('facts').textContent")
        # Warm-up first: V8 compiles WebAssembly with its baseline compiler, then tiers hot code up.
        page.evaluate(f"window.mnistEdge.timeBlocks(1, {block})")
        means = page.evaluate(f"window.mnistEdge.timeBlocks({blocks}, {block})")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
        page.close()
    finally:
        server.shutdown()
        server.server_close()
    return {"digit": result["label"], "runtime": runtime, "first_prediction": median,
            "first_predictions_ms": [run["from_navigation_ms"] for run in starts],
            "block_means_us": [1000 * m for m in means], "p50_us": 1000 * statistics.median(means),
            "predictions_per_block": block}


def native_bench() -> dict[str, dict]:
    """`mnist-edge bench` on the C libraries and their int8 models, one run: {name: figures}."""
    done = subprocess.run([sys.executable, "-m", "mnist_edge", "bench", *map(str, NATIVE), "--batch-sizes", "1",
                           "--threads", "1", "--seconds", "3", "--no-torch", "--json"],
                          capture_output=True, text=True, check=True)
    models = json.loads(done.stdout)["models"]
    return {m["name"]: {"kind": m["kind"], "p50_us": m["latency"]["p50_us"], "cv": m["latency"]["cv"],
                        "kernels": (m.get("build") or {}).get("kernels")} for m in models}


def breakdown(marks: dict[str, float]) -> str:
    """"model-json 12 · engine-imported 40 · ..." in ms since navigation."""
    return " · ".join(f"{name} {marks[name]:.0f}" for name in MARKS if name in marks)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--contexts", type=int, default=3, help="fresh browser contexts per first-prediction figure")
    parser.add_argument("--blocks", type=int, default=5, help="blocks of predictions timed in the page")
    parser.add_argument("--block", type=int, default=1000, help="predictions per block")
    parser.add_argument("--screenshot", type=Path, help="PNG of the ort page with a drawn digit")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    environment = measure.environment()
    figures: dict = {"cpu": environment.cpu_model, "cores": environment.usable_cores,
                     "python": platform.python_version(), "native": native_bench()}
    with tempfile.TemporaryDirectory(prefix="mnist-edge-web-") as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        figures["chromium"] = browser.version
        for label, (engine, model) in SITES.items():
            site = build_site(model, Path(tmp) / label.replace(" ", "").replace("(", "-").replace(")", ""),
                              engine=engine)
            summary = site_summary(site)
            shot = args.screenshot if label == "ort (cnn)" else None
            figures[label] = {"model": str(model.relative_to(REPO)), "files": len(site.files),
                              "bytes": summary["bytes"], "gzip_bytes": summary["gzip_bytes"],
                              **measure_site(browser, site.folder, args.contexts, args.blocks, args.block, shot)}
        browser.close()
    print_tables(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def print_tables(figures: dict) -> None:
    native = figures["native"]
    print(f"CPU: {figures['cpu']} ({figures['cores']} cores); Chromium {figures['chromium']}\n")
    print("| native, batch 1, 1 thread (`mnist-edge bench`) | p50 | CV | kernels |")
    print("| --- | ---: | ---: | --- |")
    for name, f in native.items():
        print(f"| {name} ({f['kind']}) | {f['p50_us']:.1f} µs | {f['cv']:.1%} | {f['kernels'] or 'onnxruntime'} |")
    print("\n| page | bytes (gzip) | first prediction: from navigation / after load (median of fresh contexts) | "
          "where the time went (ms since navigation) | per prediction in the page (median of blocks) |")
    print("| --- | ---: | ---: | --- | ---: |")
    for label in SITES:
        f = figures[label]
        first = f["first_prediction"]
        after = "n/a" if first["after_load_ms"] is None else f"{first['after_load_ms']:.0f} ms"
        print(f"| {label}: {f['model']} | {f['bytes']:,} ({f['gzip_bytes']:,}) | "
              f"{first['from_navigation_ms']:.0f} ms / {after} | {breakdown(first['marks'])} | "
              f"{f['p50_us']:.1f} µs ({f['predictions_per_block']:,} per block) |")
    print()
    for name, value, goal, unit in goals(figures):
        print(f"  {name}: {value:,.2f}{unit} (goal <= {goal:,.2f}{unit}) -> {'met' if value <= goal else 'MISSED'}")


def goals(figures: dict) -> list[tuple[str, float, float, str]]:
    native = figures["native"]
    c_page, ort_page = figures["c (tiny)"], figures["ort (tiny)"]
    ort_first = figures["ort (cnn)"]["first_prediction"]
    c_first = c_page["first_prediction"]
    return [
        ("tiny C on the host / onnxruntime on tiny-mcu-int8, p50",
         native["tiny-mcu"]["p50_us"] / native["tiny-mcu-int8"]["p50_us"], 0.5, "x"),
        ("cnn C on the host / onnxruntime on cnn-mcu-int8, p50",
         native["cnn-mcu"]["p50_us"] / native["cnn-mcu-int8"]["p50_us"], 0.7, "x"),
        ("c engine in the page (tiny) / native onnxruntime on tiny-mcu-int8",
         c_page["p50_us"] / native["tiny-mcu-int8"]["p50_us"], 2.0, "x"),
        ("c engine / ort engine in the page (tiny)", c_page["p50_us"] / ort_page["p50_us"], 1.0, "x"),
        ("ort engine (cnn site) first prediction after the load event",
         ort_first["after_load_ms"] if ort_first["after_load_ms"] is not None else ort_first["from_navigation_ms"],
         300.0, " ms"),
        ("c engine first prediction after the load event",
         c_first["after_load_ms"] if c_first["after_load_ms"] is not None else c_first["from_navigation_ms"], 50.0,
         " ms"),
        ("c site of tiny, bytes", float(c_page["bytes"]), 100 * 1024.0, " B"),
    ]


if __name__ == "__main__":
    main()
