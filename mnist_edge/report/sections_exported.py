"""The page's sections on the exported models: Parity, Benchmark (with the environment), Manifests.

They read parity/parity.json, bench/bench.json and exported/*/manifest.json as written by
mnist_edge.parity, mnist_edge.benchmark and mnist_edge.manifest, defensively: any key may be absent.
"""

from __future__ import annotations

from typing import Any

from mnist_edge.report.blocks import bullets, details, figures, h3, html_table, kv_table, missing_note, note, pre_json
from mnist_edge.report.formats import NA, ROLES, badge, esc, fmt, verdict
from mnist_edge.report.run_folder import EXPECTED, RunFolder, as_number, dicts_in, lookup

# --- parity -----------------------------------------------------------------------------------


PAIR_ROWS = (("reference_accuracy", "reference accuracy", "pct"),
             ("candidate_accuracy", "candidate accuracy", "pct"),
             ("accuracy_delta_points", "accuracy change", "pts"),
             ("agreement", "top-1 agreement", "pct"), ("agree_count", "agreeing images", "int"),
             ("disagree_count", "disagreeing images", "int"),
             ("max_abs_logit_diff", "max |logit diff|", "num"),
             ("mean_abs_logit_diff", "mean |logit diff|", "num"))
# The checks mnist_edge.parity applies: (check, reference, candidate, measure, threshold key, higher ok).
PARITY_CHECKS = (
    ("max abs logit diff", "pytorch", "fp32", lambda p: p.get("max_abs_logit_diff"),
     "fp32_max_abs_diff", False),
    ("top-1 agreement", "pytorch", "fp32", lambda p: p.get("agreement"), "fp32_min_agreement", True),
    ("int8 accuracy drop (points)", "fp32", "int8",
     lambda p: -p["accuracy_delta_points"] if as_number(p.get("accuracy_delta_points")) is not None else None,
     "int8_max_drop_points", False),
)


def parity_section(run: RunFolder) -> str:
    parity = run.obj("parity/parity.json")
    if parity is None:
        return missing_note(run, "parity/parity.json", "parity") + figures(run, "parity", [])
    parts = [_parity_facts(parity), _parity_models(parity), _parity_pairs(parity), _parity_checks(parity),
             _layer_report(parity.get("layer_report")), _parity_figures(run, parity),
             details("Parity environment and thresholds",
                     pre_json({k: parity.get(k) for k in ("environment", "thresholds", "data", "files")}))]
    return "\n".join(p for p in parts if p)


def _parity_facts(parity: dict[str, Any]) -> str:
    command = parity.get("command")
    return kv_table([("verdict", verdict(parity.get("passed"))),
                     ("test images", fmt(parity.get("images"), "int")),
                     ("measured", fmt(parity.get("created"))),
                     ("command", f"<code>{esc(command)}</code>" if command else NA)])


def _parity_models(parity: dict[str, Any]) -> str:
    models = dicts_in(parity.get("models"))
    rows = [[esc(ROLES.get(str(m.get("role")), m.get("role", ""))), fmt(m.get("name")),
             fmt(m.get("accuracy"), "pct"), fmt(m.get("correct"), "int"), fmt(m.get("count"), "int")]
            for m in models]
    return html_table(["model", "name", "test accuracy", "correct", "images"], rows, "numeric l2")


def _pair_title(pair: dict[str, Any]) -> str:
    ref, cand = pair.get("reference", pair.get("a")), pair.get("candidate", pair.get("b"))
    return f"{ROLES.get(str(cand), cand)} vs {ROLES.get(str(ref), ref)}"


def _parity_pairs(parity: dict[str, Any]) -> str:
    """One column per pair, one row per figure: known figures first, other scalars after."""
    pairs = dicts_in(parity.get("pairs"))
    if not pairs:
        return note("parity.json lists no model pairs.", "warn")
    known = {key for key, _, _ in PAIR_ROWS} | {"reference", "candidate", "a", "b", "disagreements"}
    extra = sorted({k for p in pairs for k, v in p.items()
                    if k not in known and (v is None or isinstance(v, (str, int, float, bool)))})
    specs = [*PAIR_ROWS, *((k, k.replace("_", " "), "num") for k in extra)]
    rows = [[esc(title), *(fmt(p.get(key), kind) for p in pairs)] for key, title, kind in specs
            if any(key in p for p in pairs)]
    return h3("Model pairs") + html_table(["", *(_pair_title(p) for p in pairs)], rows, "numeric pairs")


def _parity_checks(parity: dict[str, Any]) -> str:
    """Each threshold against the pair it applies to, and any other breach parity recorded."""
    thresholds = parity.get("thresholds") if isinstance(parity.get("thresholds"), dict) else {}
    breaches = dicts_in(parity.get("breaches"))
    rows, seen = [], set()
    for name, ref, cand, measure, key, higher_ok in PARITY_CHECKS:
        pair = next((p for p in dicts_in(parity.get("pairs"))
                     if (p.get("reference"), p.get("candidate")) == (ref, cand)), None)
        limit = as_number(thresholds.get(key))
        if pair is None or limit is None:
            continue
        label = f"{cand} vs {ref}"
        measured = as_number(measure(pair))
        ok = measured is not None and (measured >= limit if higher_ok else measured <= limit + 1e-9)
        breached = any(b.get("check") == name and b.get("pair") == label for b in breaches)
        seen.add((name, label))
        kind = "pct" if name == "top-1 agreement" else "num"
        rows.append([esc(name), esc(_pair_title(pair)), fmt(measured, kind),
                     ("≥ " if higher_ok else "≤ ") + fmt(limit, kind), verdict(ok and not breached)])
    for b in breaches:
        if (b.get("check"), b.get("pair")) not in seen:
            rows.append([fmt(b.get("check")), fmt(b.get("pair")), fmt(b.get("measured"), "num"),
                         fmt(b.get("limit"), "num"), verdict(False)])
    table = html_table(["check", "pair", "measured", "limit", "result"], rows, "numeric l2")
    messages = bullets([esc(b.get("message")) for b in breaches if b.get("message")], "breaches")
    return (h3("Checks") + table + messages) if table or messages else ""


def _layer_report(layers: Any) -> str:
    if not isinstance(layers, dict):
        return ""
    kernel = layers.get("kernel_check") if isinstance(layers.get("kernel_check"), dict) else {}
    rows = [[fmt(x.get("tensor")), fmt(x.get("node")), fmt(x.get("op_type")),
             *(fmt(x.get(key), "num") for key in ("vs_fp32_db", "own_qdq_db", "weight_db"))]
            for x in dicts_in(layers.get("layers"))]
    suspects = layers.get("suspects") if isinstance(layers.get("suspects"), list) else []
    body = kv_table([("images analysed", fmt(layers.get("images"), "int")),
                     ("suspect layers", ", ".join(f"<code>{esc(s)}</code>" for s in suspects) or NA),
                     ("int8 kernels vs float simulation: max |logit diff|",
                      fmt(kernel.get("max_abs_logit_diff"), "num")),
                     ("… disagreements", fmt(kernel.get("disagreements"), "int")),
                     ("… saturation suspected", fmt(kernel.get("saturation_suspected")))])
    body += bullets([esc(a) for a in layers.get("advice") or [] if isinstance(a, str)], "advice")
    body += html_table(["tensor", "node", "op", "SQNR vs fp32 (dB)", "own QDQ (dB)", "weight (dB)"], rows,
                       "numeric l3")
    if layers.get("note"):
        body += note(esc(layers["note"]))
    return h3("Per-layer quantization error") + body


def _parity_figures(run: RunFolder, parity: dict[str, Any]) -> str:
    named = lookup(parity, "files", "figure")
    figure = named if isinstance(named, str) and "/" not in named else "parity_disagreements.png"
    if not (run.root / "parity" / figure).is_file() and (run.root / "parity" / "disagreements.png").is_file():
        figure = "disagreements.png"
    return figures(run, "parity", [(figure, "Test digits on which the models disagree")], "single")


# --- benchmark --------------------------------------------------------------------------------


def bench_section(run: RunFolder) -> str:
    bench = run.obj("bench/bench.json")
    if bench is None:
        return missing_note(run, "bench/bench.json", "bench") + figures(run, "bench", [])
    models = dicts_in(bench.get("models"))
    parts = [_bench_settings(bench), h3("Latency, size, memory") + _bench_models(models),
             _bench_throughput(models), _bench_ratios(dicts_in(bench.get("ratios"))),
             _bench_notes(bench, models), figures(run, "bench", [("bench.png", "Latency and throughput")], "single"),
             h3("Environment fingerprint") + _environment(bench.get("environment")),
             details("Benchmark settings and comparison", pre_json(
                 {k: bench.get(k) for k in ("settings", "comparison", "created", "mnist_edge")}))]
    return "\n".join(p for p in parts if p)


def _bench_settings(bench: dict[str, Any]) -> str:
    settings = bench.get("settings") if isinstance(bench.get("settings"), dict) else {}
    listed = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in settings.items()}
    return kv_table([("batch sizes", fmt(listed.get("batch_sizes"))), ("threads", fmt(listed.get("threads"))),
                     ("provider", fmt(settings.get("provider"))),
                     ("latency time per model", fmt(settings.get("seconds"), "s")),
                     ("inputs", fmt(settings.get("inputs"))), ("measured", fmt(bench.get("created")))])


def _kind(model: dict[str, Any]) -> Any:
    """"onnx", "torch", or for a C library its kernels and source model ("C, x86 AVX2, from ...")."""
    build = model.get("build") if isinstance(model.get("build"), dict) else None
    if model.get("kind") != "c" or build is None:
        return model.get("kind")
    return f"C, {build.get('kernels')}, from {build.get('source_model')}"


def _bench_models(models: list[dict[str, Any]]) -> str:
    rows = []
    for m in models:
        lat = m.get("latency") if isinstance(m.get("latency"), dict) else {}
        cold = m.get("cold_start") if isinstance(m.get("cold_start"), dict) else {}
        rows.append([fmt(m.get("name")), fmt(_kind(m)), fmt(m.get("quantized")),
                     fmt(m.get("file_bytes"), "bytes"), fmt(cold.get("total_ms"), "ms"),
                     *(fmt(lat.get(key), "us") for key in ("p50_us", "p90_us", "p99_us")),
                     fmt(lat.get("cv"), "pct"), fmt(lat.get("runs"), "int"),
                     fmt(m.get("memory_added_bytes"), "bytes"), fmt(m.get("peak_rss_bytes"), "bytes")])
    # The model's own memory leads; the process peak includes whatever ran before in the process.
    return html_table(["model", "kind", "int8", "file", "cold start", "p50", "p90", "p99", "CV", "runs",
                       "memory added", "process peak RSS"], rows, "numeric l2") or note(
                           "bench.json lists no models.", "warn")


def _bench_throughput(models: list[dict[str, Any]]) -> str:
    points = {m_i: {(p.get("batch_size"), p.get("threads")): p.get("images_per_s")
                    for p in dicts_in(m.get("throughput"))} for m_i, m in enumerate(models)}
    keys = sorted({k for pts in points.values() for k in pts}, key=lambda k: (str(k[1]), as_number(k[0]) or 0))
    if not keys:
        return ""
    rows = [[fmt(m.get("name")), *(fmt(points[i].get(k), "int") for k in keys)]
            for i, m in enumerate(models)]
    headers = ["model", *(f"batch {b} · {t} thr" for b, t in keys)]
    return h3("Throughput (images/s)") + html_table(headers, rows, "numeric")


def _bench_ratios(ratios: list[dict[str, Any]]) -> str:
    rows = [[fmt(r.get("model")), fmt(r.get("baseline")), fmt(r.get("latency_p50"), "x"),
             fmt(r.get("file_size"), "x"), fmt(r.get("cold_start"), "x"),
             fmt(max((v for v in (r.get("throughput") or {}).values() if as_number(v) is not None),
                     default=None), "x")] for r in ratios]
    table = html_table(["model", "vs", "p50 latency", "file size", "cold start", "best throughput"], rows,
                       "numeric l2")
    return (h3("Ratios to the first model") + table +
            note("Latency, size and cold start: below 1× is better; throughput: above 1× is better.")
            ) if table else ""


def _bench_notes(bench: dict[str, Any], models: list[dict[str, Any]]) -> str:
    explanations = [esc(x) for x in bench.get("explanations") or [] if isinstance(x, str)]
    notes = [esc(x) for x in bench.get("notes") or [] if isinstance(x, str)]
    for m in models:
        for text in [*(lookup(m, "latency", "warnings") or []), *(m.get("notes") or [])]:
            notes.append(f"<b>{esc(m.get('name'))}</b>: {esc(text)}")
    return bullets(explanations, "explain") + (h3("Notes") + bullets(notes, "notes") if notes else "")


ENV_ROWS = (("cpu_model", "CPU"), ("logical_cores", "logical cores"), ("physical_cores", "physical cores"),
            ("usable_cores", "usable cores"), ("os", "OS"), ("python", "Python"), ("numpy", "NumPy"),
            ("onnxruntime", "onnxruntime"), ("provider", "provider"),
            ("providers_available", "providers available"))


def _environment(env: Any) -> str:
    if not isinstance(env, dict):
        return note("bench.json has no environment section.", "warn")
    listed = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in env.items()}
    isa = env.get("isa") if isinstance(env.get("isa"), dict) else {}
    flags = " ".join(badge(name, "ok" if on else "muted") for name, on in isa.items())
    int8 = env.get("int8_dot_product")
    rows = [(title, fmt(listed.get(key))) for key, title in ENV_ROWS]
    rows += [("ISA flags", flags or NA),
             ("int8 dot product", fmt(int8) if int8 is not None else NA),
             ("notes", fmt(listed.get("notes")))]
    return kv_table(rows)


# --- manifests --------------------------------------------------------------------------------


def manifests_section(run: RunFolder) -> str:
    names = run.manifests()
    rows = [_manifest_row(rel, run.obj(rel)) for rel in names if run.obj(rel) is not None]
    parts = [html_table(["model", "name", "file", "size", "sha256", "opset", "quantization", "test accuracy"],
                        rows, "numeric l3")]
    for rel, _, step in EXPECTED:
        if rel.startswith("exported/") and rel not in names:
            parts.append(missing_note(run, rel, step))
    for rel in [*names, "pipeline.json"]:
        data = run.json(rel)
        if data is not None:
            parts.append(details(f"<code>{esc(rel)}</code>", pre_json(data)))
    return "\n".join(p for p in parts if p)


def _manifest_row(rel: str, manifest: dict[str, Any]) -> list[str]:
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    quant = manifest.get("quantization")
    method = quant.get("method") if isinstance(quant, dict) else ("none" if not quant else quant)
    sha = str(files.get("sha256") or "")
    return [f"<code>{esc(rel.split('/')[1])}</code>", fmt(manifest.get("name")), fmt(files.get("model")),
            fmt(files.get("bytes"), "bytes"),
            f'<code title="{esc(sha)}">{esc(sha[:12])}</code>' if sha else NA,
            fmt(lookup(manifest, "export", "opset"), "int"), fmt(method),
            fmt(lookup(manifest, "metrics", "test_accuracy"), "pct")]
