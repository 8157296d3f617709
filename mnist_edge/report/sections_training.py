"""The page's sections up to the PyTorch model: Summary, Data, Training, Evaluation.

Each section function takes the RunFolder and returns HTML; when its files are missing it says
which, and why (the step's status and message), instead of leaving a gap.
"""

from __future__ import annotations

from typing import Any

from mnist_edge.report.blocks import bullets, details, figures, h3, html_table, kv_table, missing_note, note, pre_json
from mnist_edge.report.formats import NA, ROLES, STATUS_KINDS, esc, fmt, format_seconds, status_badge, verdict
from mnist_edge.report.run_folder import EXPECTED, RunFolder, as_number, dicts_in, lookup

# --- summary ----------------------------------------------------------------------------------


def summary_section(run: RunFolder) -> str:
    cards = [_card_model(run), _card_accuracy(run), _card_sizes(run), _card_latency(run)]
    parts = [f'<div class="cards">{"".join(cards)}</div>', _web_link(run), _steps(run), _missing_list(run)]
    return "\n".join(p for p in parts if p)


def _web_link(run: RunFolder) -> str:
    """`pipeline --web` built a page of the int8 model: say where, and that it wants a server."""
    if run.obj("site/model.json") is None:
        return ""
    return ('<p class="note">Draw a digit and watch the int8 model classify it in the browser: '
            '<a href="site/index.html">site/index.html</a>. Browsers run its WebAssembly only over HTTP: '
            'serve it with <code>python3 -m http.server -d site</code> (or <code>mnist-edge web exported/int8 '
            '--serve</code>) and open the address printed.</p>')


def _card(title: str, body: str) -> str:
    return f'<div class="card"><h3>{esc(title)}</h3>{body or NA}</div>'


def _card_model(run: RunFolder) -> str:
    config = run.obj("checkpoint/config.json") or {}
    source = lookup(_first_manifest(run), "source") or {}
    history = epoch_history(run)
    arch = config.get("arch") or lookup(run.obj("pipeline.json"), "arch") or source.get("arch")
    params = config.get("params", source.get("params"))
    passed = lookup(run.obj("parity/parity.json"), "passed")
    big = f'<p class="big">{fmt(arch)}</p>'
    return _card("Model", big + kv_table([
        ("parameters", fmt(params, "int")), ("epochs", fmt(len(history) if history else None, "int")),
        ("trained on", fmt(config.get("device"))), ("parity", verdict(passed))]))


def _card_accuracy(run: RunFolder) -> str:
    accuracy = _accuracies(run)
    rows = [(ROLES.get(role, role), fmt(value, "pct")) for role, value in accuracy.items()]
    train = lookup(run.obj("checkpoint/eval.json"), "beside", "train", "accuracy")
    if train is not None:
        rows.append((f"{ROLES.get('pytorch', 'pytorch')}, training set", fmt(train, "pct")))
    return _card("Test accuracy", kv_table(rows))


def _card_sizes(run: RunFolder) -> str:
    sizes = _sizes(run)
    rows = [(ROLES.get(role, role), fmt(value, "bytes")) for role, value in sizes.items()]
    if sizes.get("fp32") and sizes.get("int8"):
        rows.append(("int8 / fp32", fmt(sizes["int8"] / sizes["fp32"], "pct")))
    return _card("Model size", kv_table(rows))


def _card_latency(run: RunFolder) -> str:
    rows = []
    for model in dicts_in(lookup(run.obj("bench/bench.json"), "models")):
        latency = model.get("latency") or {}
        batch = latency.get("batch_size", 1)
        label = str(model.get("name", "?")) + ("" if batch == 1 else f" (batch {batch})")
        rows.append((label, fmt(latency.get("p50_us"), "us")))
    threads = as_number(lookup(run.obj("bench/bench.json"), "models", 0, "latency", "threads"))
    threads_line = f'<p class="small">{threads:.0f} thread{"s" * (threads != 1)}</p>' if threads and rows else ""
    return _card("p50 latency, batch 1", kv_table(rows) + threads_line)


def _accuracies(run: RunFolder) -> dict[str, Any]:
    """Test accuracy per role: parity's measurement first, then the manifests, then eval.json."""
    found: dict[str, Any] = {}
    for model in dicts_in(lookup(run.obj("parity/parity.json"), "models")):
        found.setdefault(str(model.get("role") or model.get("name")), model.get("accuracy"))
    for rel in run.manifests():
        role = rel.split("/")[1]
        found.setdefault(role, lookup(run.obj(rel), "metrics", "test_accuracy"))
    found.setdefault("pytorch", lookup(run.obj("checkpoint/eval.json"), "accuracy"))
    return _ordered({k: v for k, v in found.items() if v is not None})


def _sizes(run: RunFolder) -> dict[str, Any]:
    found: dict[str, Any] = {}
    weights = run.root / "checkpoint" / "model.safetensors"
    if weights.is_file():
        found["pytorch"] = weights.stat().st_size
    for rel in run.manifests():
        found[rel.split("/")[1]] = lookup(run.obj(rel), "files", "bytes")
    return _ordered({k: v for k, v in found.items() if v is not None})


def _ordered(by_role: dict[str, Any]) -> dict[str, Any]:
    rank = {role: i for i, role in enumerate(ROLES)}
    return dict(sorted(by_role.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _first_manifest(run: RunFolder) -> dict[str, Any] | None:
    return next((run.obj(rel) for rel in run.manifests() if run.obj(rel)), None)


def _steps(run: RunFolder) -> str:
    steps = dicts_in(lookup(run.obj("pipeline.json"), "steps"))
    if not steps:
        return missing_note(run, "pipeline.json", "pipeline") if run.problem("pipeline.json") else ""
    rows = [(esc(s.get("name", "?")), status_badge(s.get("status")),
             fmt(s.get("seconds") if s.get("status") != "pending" else None, "s"), fmt(s.get("message")))
            for s in steps]
    kinds = [f"row-{STATUS_KINDS.get(str(s.get('status')), 'muted')}" for s in steps]
    total = sum(as_number(s.get("seconds")) or 0.0 for s in steps)
    return h3(f"Pipeline steps ({format_seconds(total)} in all)") + html_table(
        ["step", "status", "time", "message"], rows, "steps", kinds)


def _missing_list(run: RunFolder) -> str:
    items = [f"<code>{esc(rel)}</code> ({esc(what)}): {esc(run.problem(rel))}"
             for rel, what, _ in EXPECTED if run.problem(rel)]
    if not items:
        return ""
    return h3("Not in this run") + note(
        "This run is partial: the sections below show what exists.", "warn") + bullets(items, "missing")


# --- data -------------------------------------------------------------------------------------


def data_section(run: RunFolder) -> str:
    stats = run.obj("data/stats.json")
    parts = [missing_note(run, "data/stats.json", "data")] if stats is None else [_data_stats(stats)]
    parts.append(figures(run, "data", name_absent=stats is not None, known=[
        ("samples.png", "Random training digits"), ("class_counts.png", "Images per class"),
        ("class_means.png", "Mean image of each class"), ("pixel_histogram.png", "Pixel intensities"),
    ]))
    return "\n".join(parts)


def _data_stats(stats: dict[str, Any]) -> str:
    facts = kv_table([
        ("training images", fmt(stats.get("train_count"), "int")),
        ("test images", fmt(stats.get("test_count"), "int")),
        ("pixel mean (train, 0-1)", fmt(stats.get("pixel_mean"), "num")),
        ("pixel std (train, 0-1)", fmt(stats.get("pixel_std"), "num")),
        ("folder", f"<code>{esc(stats['folder'])}</code>" if stats.get("folder") else NA),
    ])
    rows = []
    for split in ("train", "test"):
        counts = stats.get(f"{split}_class_counts")
        if isinstance(counts, list):
            numbers = [as_number(c) or 0 for c in counts]
            rows.append([esc(split), *(fmt(c, "int") for c in counts), fmt(sum(numbers), "int")])
    width = max((len(r) - 2 for r in rows), default=0)
    table = html_table(["split", *(str(d) for d in range(width)), "total"], rows, "numeric")
    return f'<div class="split">{facts}<div>{table}</div></div>'


# --- training ---------------------------------------------------------------------------------


def epoch_history(run: RunFolder) -> list[dict[str, Any]]:
    epochs = dicts_in(lookup(run.obj("checkpoint/metrics.json"), "epochs"))
    return epochs or dicts_in(lookup(run.obj("checkpoint/config.json"), "history"))


EPOCH_COLUMNS = (("epoch", "epoch", "int"), ("train_loss", "train loss", "num"),
                 ("train_acc", "train acc", "pct"), ("val_loss", "val loss", "num"),
                 ("val_acc", "val acc", "pct"), ("lr", "learning rate", "num"),
                 ("seconds", "time", "s"), ("images_per_s", "images/s", "int"))


def training_section(run: RunFolder) -> str:
    config = run.obj("checkpoint/config.json")
    history = epoch_history(run)
    absent = [rel for rel in ("checkpoint/config.json", "checkpoint/metrics.json") if run.problem(rel)]
    if config is None and not history:  # the train step's note already says its figure is missing
        return missing_note(run, absent, "train") + _curves(run, name_absent=False)
    parts = [_training_facts(config, history) if config is not None else missing_note(run, absent, "train"),
             _curves(run)]
    if history:
        parts.append(h3("Epochs") + _epoch_table(history))
    if config is not None:
        parts.append(details("Training configuration <code>checkpoint/config.json</code>",
                             pre_json(config)))
    return "\n".join(p for p in parts if p)


def _curves(run: RunFolder, name_absent: bool = True) -> str:
    return figures(run, "checkpoint", [("curves.png", "Loss and accuracy per epoch")], "single",
                   others=False, name_absent=name_absent)


def _training_facts(config: dict[str, Any], history: list[dict[str, Any]]) -> str:
    recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
    val = [(row["val_acc"], row.get("epoch")) for row in history if as_number(row.get("val_acc")) is not None]
    best = max(val, key=lambda v: v[0]) if val else None
    seconds = sum(as_number(row.get("seconds")) or 0.0 for row in history)
    versions = config.get("versions") if isinstance(config.get("versions"), dict) else {}
    return '<div class="split">' + kv_table([
        ("architecture", fmt(config.get("arch"))), ("parameters", fmt(config.get("params"), "int")),
        ("device", fmt(config.get("device"))),
        ("epochs", fmt(f"{len(history)} of {recipe['epochs']}" if "epochs" in recipe else len(history))),
        ("best validation accuracy", fmt(best[0], "pct") + f" (epoch {esc(best[1])})" if best else NA),
        ("training time", fmt(seconds if history else None, "s")),
        ("torch", fmt(versions.get("torch"))),
    ]) + kv_table([
        ("optimizer", fmt(recipe.get("optimizer"))), ("learning rate", fmt(recipe.get("lr"), "num")),
        ("batch size", fmt(recipe.get("batch_size"), "int")), ("schedule", fmt(recipe.get("schedule"))),
        ("augmentation", fmt(recipe.get("augment"))),
        ("weight decay", fmt(recipe.get("weight_decay"), "num")),
        ("seed", fmt(recipe.get("seed"), "int")),
    ]) + "</div>"


def _epoch_table(history: list[dict[str, Any]]) -> str:
    columns = [c for c in EPOCH_COLUMNS if any(row.get(c[0]) is not None for row in history)]
    val = [as_number(row.get("val_acc")) for row in history]
    best = max((v for v in val if v is not None), default=None)
    rows = [[fmt(row.get(key), kind) for key, _, kind in columns] for row in history]
    marks = ["best" if best is not None and v == best else "" for v in val]
    return html_table([title for _, title, _ in columns], rows, "numeric", marks)


# --- evaluation -------------------------------------------------------------------------------


def evaluation_section(run: RunFolder) -> str:
    report = run.obj("checkpoint/eval.json")
    head = missing_note(run, "checkpoint/eval.json", "eval") if report is None else _eval_facts(report)
    confusion = figures(run, "checkpoint", [("eval_confusion.png", "Confusion matrix")], "single",
                        others=False, name_absent=report is not None)
    if report is not None and not (run.root / "checkpoint" / "eval_confusion.png").is_file():
        confusion += _confusion_table(report.get("confusion"))
    per_class = _per_class(report) if report is not None else ""
    mistakes = figures(run, "checkpoint", [("eval_mistakes.png", "Most confident mistakes")], "single",
                       others=False, name_absent=report is not None)
    middle = f'<div class="split"><div class="grow">{confusion}</div><div>{per_class}</div></div>'
    return "\n".join([head, middle, mistakes])


def _eval_facts(report: dict[str, Any]) -> str:
    count, correct = as_number(report.get("count")), as_number(report.get("correct"))
    wrong = count - correct if count is not None and correct is not None else None
    confused = _most_confused(report.get("confusion"))
    facts = kv_table([
        ("model", fmt(report.get("model"))), ("test accuracy", fmt(report.get("accuracy"), "pct")),
        ("correct", f"{fmt(correct, 'int')} of {fmt(count, 'int')}" if count else NA),
        ("mistakes", fmt(wrong, "int")),
        ("most confused (true → predicted)", ", ".join(confused) if confused else NA),
        *_training_rows(report),
    ])
    return facts


def _training_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The training images' accuracy (unaugmented, eval mode) and its gap to the test set's."""
    train = lookup(report, "beside", "train")
    accuracy, test = as_number(lookup(train, "accuracy")), as_number(report.get("accuracy"))
    if accuracy is None:
        return []
    gap = (accuracy - test) * 100 if test is not None else None
    return [("training-set accuracy", f"{fmt(accuracy, 'pct')} on {fmt(lookup(train, 'count'), 'int')} images "
             "(no augmentation, eval mode)"),
            ("generalisation gap (training − test)", fmt(gap, "pts"))]


def _most_confused(confusion: Any, top: int = 5) -> list[str]:
    if not isinstance(confusion, list):
        return []
    cells = [(count, i, j) for i, row in enumerate(confusion) if isinstance(row, list)
             for j, count in enumerate(row) if i != j and (as_number(count) or 0) > 0]
    cells.sort(key=lambda c: -c[0])
    return [f"{i} → {j} ({fmt(count, 'int')}×)" for count, i, j in cells[:top]]


def _confusion_table(confusion: Any) -> str:
    """The confusion matrix as a shaded table, when its figure is missing."""
    if not isinstance(confusion, list) or not confusion:
        return ""
    rows = []
    for i, row in enumerate(r if isinstance(r, list) else [] for r in confusion):
        total = sum(as_number(c) or 0 for c in row) or 1
        cells = [f'<span class="cell" style="--share:{(as_number(c) or 0) / total:.3f}">{fmt(c, "int")}</span>'
                 for c in row]
        rows.append([f"<b>{i}</b>", *cells])
    return h3("Confusion matrix (rows: true, columns: predicted)") + html_table(
        ["", *(str(j) for j in range(len(confusion)))], rows, "numeric confusion")


def _per_class(report: dict[str, Any]) -> str:
    classes = dicts_in(report.get("per_class"))
    if not classes:
        return ""
    recall = [as_number(c.get("recall")) for c in classes]
    worst = min((r for r in recall if r is not None), default=None)
    rows = [[fmt(c.get("label")), fmt(c.get("precision"), "pct"), fmt(c.get("recall"), "pct"),
             fmt(c.get("f1"), "pct"), fmt(c.get("support"), "int")] for c in classes]
    marks = ["worst" if worst is not None and r == worst else "" for r in recall]
    return h3("Per class") + html_table(["digit", "precision", "recall", "F1", "support"], rows,
                                        "numeric", marks)

