"""`report.html`: one self-contained page for a pipeline run folder, rebuilt from its JSON files.

Everything the page needs is inside it: figures are base64 data URIs, the CSS is inline, there
is no JavaScript and no external link, so it opens offline, mails as one file and prints. Any
part of the run may be missing or unreadable (a failed or partial run): each section then shows
what exists and names what is missing. Only standard-library code; nothing here prints.

The run folder (see mnist_edge.pipeline): pipeline.json, data/, checkpoint/, exported/NAME/,
parity/, bench/. Every file is read as plain JSON with defensive lookups, so a file written by an
older or newer version renders as far as its shape allows.
"""

from __future__ import annotations

import base64
import html
import json
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

from mnist_edge import __version__
from mnist_edge.errors import ConfigError, OutputError
from mnist_edge.fileio import atomic_write_text

REPORT_FILE = "report.html"

# The JSON files of a run: (path inside the run folder, what it holds, the step that writes it).
EXPECTED: tuple[tuple[str, str, str], ...] = (
    ("pipeline.json", "step statuses and times", "pipeline"),
    ("data/stats.json", "data statistics", "data"),
    ("checkpoint/config.json", "training configuration", "train"),
    ("checkpoint/metrics.json", "metrics per epoch", "train"),
    ("checkpoint/eval.json", "PyTorch test-set evaluation", "eval"),
    ("exported/fp32/manifest.json", "fp32 ONNX manifest", "export"),
    ("exported/int8/manifest.json", "int8 ONNX manifest", "quantize"),
    ("parity/parity.json", "parity report", "parity"),
    ("bench/bench.json", "benchmark report", "bench"),
)
ROLES = {"pytorch": "PyTorch", "fp32": "ONNX fp32", "int8": "ONNX int8"}
# Errors that malformed (hand-edited, truncated, other-version) JSON can raise while rendering.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)
_PNG = b"\x89PNG\r\n\x1a\n"
_IMAGE_TYPES = {_PNG: "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}


# --- public API -------------------------------------------------------------------------------


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN_DIR/report.html (or `out`) atomically and return its path.

    Raises ConfigError when RUN_DIR is not a folder or holds nothing of a pipeline run, and
    OutputError when the page cannot be written.
    """
    root = check_run_dir(run_dir)
    target = Path(out) if out is not None else root / REPORT_FILE
    text = render_report(root)
    try:
        return atomic_write_text(target, text)
    except OSError as exc:
        raise OutputError(f"cannot write the report ({exc.strerror or exc})", target) from exc


def render_report(run_dir: str | Path) -> str:
    """The HTML of the report for RUN_DIR (which must exist), as a string."""
    run = RunFolder(Path(run_dir))
    body = "\n".join([_header(run), _nav(), *(_section(run, *spec) for spec in SECTIONS), _footer(run)])
    return _PAGE.substitute(title=_e(f"mnist-edge report: {run.root.resolve().name}"), css=_CSS,
                            body=body)


def missing_parts(run_dir: str | Path) -> list[str]:
    """The expected JSON files that are absent or unreadable, as 'path (what: reason)' lines."""
    run = RunFolder(Path(run_dir))
    return [f"{rel} ({what}: {run.problem(rel)})" for rel, what, _ in EXPECTED if run.problem(rel)]


def check_run_dir(run_dir: str | Path) -> Path:
    """RUN_DIR as a Path if it is a folder holding at least one file of a pipeline run."""
    root = Path(run_dir)
    if not root.exists():
        raise ConfigError("no such folder (expected a pipeline run folder)", root)
    if not root.is_dir():
        raise ConfigError("not a folder (expected a pipeline run folder)", root)
    if not any((root / rel).is_file() for rel, _, _ in EXPECTED) and not _manifest_dirs(root):
        names = ", ".join(rel for rel, _, _ in EXPECTED[:3])
        raise ConfigError(f"holds no pipeline results ({names}, ... are all missing); "
                          "create them with: mnist-edge pipeline --out FOLDER", root)
    return root


# --- reading the run folder -------------------------------------------------------------------


class RunFolder:
    """Cached, never-raising access to a run folder's JSON files and figures."""

    def __init__(self, root: Path):
        self.root = root
        self._json: dict[str, Any] = {}
        self._problems: dict[str, str] = {}

    def json(self, rel: str) -> Any:
        """The parsed file, or None when it is missing or unreadable (see `problem`)."""
        if rel not in self._json:
            self._json[rel] = self._read(rel)
        return self._json[rel]

    def obj(self, rel: str) -> dict[str, Any] | None:
        """Like `json`, for files that must hold a JSON object."""
        data = self.json(rel)
        if data is None or isinstance(data, dict):
            return data
        self._problems[rel] = "not a JSON object"
        return None

    def problem(self, rel: str) -> str | None:
        """Why `rel` is unusable ('missing', 'not valid JSON ...'), or None when it is fine."""
        self.obj(rel)
        return self._problems.get(rel)

    def _read(self, rel: str) -> Any:
        path = self.root / rel
        if not path.is_file():
            self._problems[rel] = "missing"
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self._problems[rel] = f"not valid JSON ({exc})"
            return None

    def image(self, rel: str) -> tuple[str, tuple[int, int] | None] | None:
        """(data URI, (width, height) when known) of an image file, or None."""
        try:
            data = (self.root / rel).read_bytes()
        except OSError:
            return None
        mime = next((m for magic, m in _IMAGE_TYPES.items() if data.startswith(magic)), None)
        if mime is None:
            return None
        uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        return uri, _png_size(data) if mime == "image/png" else None

    def step(self, name: str) -> dict[str, Any] | None:
        steps = _get(self.obj("pipeline.json"), "steps")
        return next((s for s in _dicts(steps) if s.get("name") == name), None)

    def manifests(self) -> list[str]:
        return [f"exported/{d.name}/manifest.json" for d in _manifest_dirs(self.root)]


def _manifest_dirs(root: Path) -> list[Path]:
    """exported/fp32 and exported/int8 first, then any other exported model folder."""
    folder = root / "exported"
    if not folder.is_dir():
        return []
    found = [d for d in folder.iterdir() if (d / "manifest.json").is_file()]
    order = {"fp32": 0, "int8": 1}
    return sorted(found, key=lambda d: (order.get(d.name, 2), d.name))


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _get(obj: Any, *keys: Any) -> Any:
    """obj[k1][k2]... or None when any level is missing or of the wrong type."""
    for key in keys:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and isinstance(key, int) and -len(obj) <= key < len(obj):
            obj = obj[key]
        else:
            return None
    return obj


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dict items of a list (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# --- formatting -------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


NA = '<span class="na">&mdash;</span>'


def _percent(v: float) -> str:
    return f"{v:.2%}"


def _count(v: float) -> str:
    """Counts and rates: whole numbers unless small and fractional."""
    return f"{v:,.2f}" if abs(v) < 100 and not float(v).is_integer() else f"{v:,.0f}"


def _general(v: float) -> str:
    return f"{v:.4g}"


def _micros(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} s"
    if v >= 1000:
        return f"{v / 1000:.2f} ms"
    return f"{v:.1f} µs" if v < 100 else f"{v:.0f} µs"


def _millis(v: float) -> str:
    return _micros(v * 1000)


def _size(v: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.1f} {unit}"
    return f"{v:.0f} B"


def _points(v: float) -> str:
    return f"{v:+.2f} pts"


def _times(v: float) -> str:
    return f"{v:.2f}×"


def _seconds(v: float) -> str:
    return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min"


FORMATS: dict[str, Callable[[float], str]] = {
    "pct": _percent, "int": _count, "num": _general, "us": _micros, "ms": _millis,
    "bytes": _size, "pts": _points, "x": _times, "s": _seconds,
}


def _fmt(value: Any, kind: str = "text") -> str:
    """A value as escaped HTML: numbers through FORMATS[kind], None as a dash."""
    if value is None or value == "":
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    number = _number(value)
    if number is not None and kind in FORMATS:
        return _e(FORMATS[kind](number)) if math.isfinite(number) else _e(value)
    if isinstance(value, (list, dict)):
        return f"<code>{_e(json.dumps(value))}</code>"
    return _e(value)


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {_e(kind)}">{_e(text)}</span>'


def _verdict(passed: Any) -> str:
    if passed is None:
        return NA
    return _badge("pass", "ok") if passed else _badge("fail", "bad")


STATUS_KINDS = {"done": "ok", "failed": "bad", "skipped": "muted", "pending": "warn", "running": "info"}


def _status(status: Any) -> str:
    text = str(status or "unknown")
    return _badge(text, STATUS_KINDS.get(text, "muted"))


# --- HTML building blocks ---------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "",
           row_classes: Sequence[str] = ()) -> str:
    """Headers are plain text (escaped here); cells are HTML already. No rows: no table."""
    rows = list(rows)
    if not rows:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    classes = [*row_classes, *[""] * (len(rows) - len(row_classes))]
    body = "\n".join(_row(row, c) for row, c in zip(rows, classes, strict=False))
    return f'<table class="{_e(cls)}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


def _row(cells: Sequence[str], cls: str = "") -> str:
    attr = f' class="{_e(cls)}"' if cls else ""
    return f"<tr{attr}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _kv(pairs: Iterable[tuple[str, str]]) -> str:
    """A two-column key/value table; keys are plain text, values HTML. Rows with no value drop."""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs if v != NA)
    return f'<table class="kv"><tbody>{rows}</tbody></table>' if rows else ""


def _figure(run: RunFolder, rel: str, caption: str) -> str:
    image = run.image(rel)
    if image is None:
        return ""
    uri, size = image
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    return (f'<figure><img src="{uri}" alt="{_e(caption)}"{dims}>'
            f"<figcaption>{_e(caption)} <span class=\"path\">{_e(rel)}</span></figcaption></figure>")


def _figures(run: RunFolder, folder: str, known: Sequence[tuple[str, str]], cls: str = "grid",
             others: bool = True, name_absent: bool = True) -> str:
    """The known figures of `folder` (name, caption), then (`others`) any other PNG in it.

    With `name_absent`, a known figure that is absent is named in a note below them (leave it
    off where the section already says its whole step is missing).
    """
    directory = run.root / folder
    present = [(name, caption) for name, caption in known if (directory / name).is_file()]
    absent = [f"{folder}/{name}" for name, _ in known if not (directory / name).is_file()]
    known_names = {name for name, _ in known}
    extra = sorted(p.name for p in directory.glob("*.png") if p.name not in known_names) \
        if others and directory.is_dir() else []
    present += [(name, name.removesuffix(".png").replace("_", " ")) for name in extra]
    items = [item for name, caption in present if (item := _figure(run, f"{folder}/{name}", caption))]
    html_items = f'<div class="{_e(cls)}">{"".join(items)}</div>' if items else ""
    if absent and name_absent:
        html_items += _note("Figures not found: " + ", ".join(f"<code>{_e(a)}</code>" for a in absent))
    return html_items


def _note(html_text: str, kind: str = "muted") -> str:
    return f'<p class="note {_e(kind)}">{html_text}</p>'


def _missing(run: RunFolder, rels: str | Sequence[str], step: str) -> str:
    """Why a section's files are not there, with the step's status and message when known."""
    rels = [rels] if isinstance(rels, str) else list(rels)
    text = "; ".join(f"<code>{_e(rel)}</code> is {_e(run.problem(rel) or 'missing')}" for rel in rels)
    record = run.step(step)
    if record is not None:
        text += f"; step <b>{_e(step)}</b> is {_status(record.get('status'))}"
        if record.get("message"):
            text += f": {_e(record['message'])}"
    return _note(text, "warn")


def _details(summary: str, body: str, open_: bool = False) -> str:
    flag = " open" if open_ else ""
    return f"<details{flag}><summary>{summary}</summary>{body}</details>"


def _pre_json(obj: Any) -> str:
    return f"<pre>{_e(json.dumps(obj, indent=2, ensure_ascii=False))}</pre>"


def _list(items: Iterable[str], cls: str = "") -> str:
    items = [i for i in items if i]
    return f'<ul class="{_e(cls)}">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


def _h3(text: str) -> str:
    return f"<h3>{_e(text)}</h3>"


# --- page frame -------------------------------------------------------------------------------


def _header(run: RunFolder) -> str:
    pipeline = run.obj("pipeline.json") or {}
    config = run.obj("checkpoint/config.json") or {}
    arch = pipeline.get("arch") or config.get("arch")
    preset = pipeline.get("preset")
    bits = [("architecture", _fmt(arch)), ("preset", _fmt(preset if isinstance(preset, str) else None)),
            ("started", _fmt(pipeline.get("created"))), ("folder", f"<code>{_e(run.root)}</code>")]
    meta = " · ".join(f"<span><b>{_e(k)}</b> {v}</span>" for k, v in bits if v != NA)
    return f'<header><h1>mnist-edge run report</h1><p class="meta">{meta}</p></header>'


def _nav() -> str:
    links = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _ in SECTIONS)
    return f'<nav aria-label="sections">{links}</nav>'


def _footer(run: RunFolder) -> str:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return (f"<footer>Generated by mnist-edge {_e(__version__)} on {_e(now)} from the JSON files in "
            f"<code>{_e(run.root)}</code>. Rebuild with <code>mnist-edge report {_e(run.root)}</code>."
            "</footer>")


def _section(run: RunFolder, sid: str, title: str, render: Callable[[RunFolder], str]) -> str:
    try:
        body = render(run)
    except _SHAPE_ERRORS as exc:  # a file of an unexpected shape: say so, render the rest
        body = _note(f"This section could not be rendered from the files present "
                     f"({_e(type(exc).__name__)}: {_e(exc)}).", "bad")
    return f'<section id="{sid}"><h2>{_e(title)}</h2>\n{body}\n</section>'


# --- summary ----------------------------------------------------------------------------------


def _summary(run: RunFolder) -> str:
    cards = [_card_model(run), _card_accuracy(run), _card_sizes(run), _card_latency(run)]
    parts = [f'<div class="cards">{"".join(cards)}</div>', _steps(run), _missing_list(run)]
    return "\n".join(p for p in parts if p)


def _card(title: str, body: str) -> str:
    return f'<div class="card"><h3>{_e(title)}</h3>{body or NA}</div>'


def _card_model(run: RunFolder) -> str:
    config = run.obj("checkpoint/config.json") or {}
    source = _get(_first_manifest(run), "source") or {}
    history = _history(run)
    arch = config.get("arch") or _get(run.obj("pipeline.json"), "arch") or source.get("arch")
    params = config.get("params", source.get("params"))
    big = f'<p class="big">{_fmt(arch)}</p>'
    return _card("Model", big + _kv([
        ("parameters", _fmt(params, "int")), ("epochs", _fmt(len(history) if history else None, "int")),
        ("trained on", _fmt(config.get("device"))), ("parity", _verdict(_get(run.obj("parity/parity.json"),
                                                                                "passed")))]))


def _card_accuracy(run: RunFolder) -> str:
    accuracy = _accuracies(run)
    rows = [(ROLES.get(role, role), _fmt(value, "pct")) for role, value in accuracy.items()]
    return _card("Test accuracy", _kv(rows))


def _card_sizes(run: RunFolder) -> str:
    sizes = _sizes(run)
    rows = [(ROLES.get(role, role), _fmt(value, "bytes")) for role, value in sizes.items()]
    if sizes.get("fp32") and sizes.get("int8"):
        rows.append(("int8 / fp32", _fmt(sizes["int8"] / sizes["fp32"], "pct")))
    return _card("Model size", _kv(rows))


def _card_latency(run: RunFolder) -> str:
    rows = []
    for model in _dicts(_get(run.obj("bench/bench.json"), "models")):
        latency = model.get("latency") or {}
        batch = latency.get("batch_size", 1)
        label = str(model.get("name", "?")) + ("" if batch == 1 else f" (batch {batch})")
        rows.append((label, _fmt(latency.get("p50_us"), "us")))
    threads = _number(_get(run.obj("bench/bench.json"), "models", 0, "latency", "threads"))
    note = f'<p class="small">{threads:.0f} thread{"s" * (threads != 1)}</p>' if threads and rows else ""
    return _card("p50 latency, batch 1", _kv(rows) + note)


def _accuracies(run: RunFolder) -> dict[str, Any]:
    """Test accuracy per role: parity's measurement first, then the manifests, then eval.json."""
    found: dict[str, Any] = {}
    for model in _dicts(_get(run.obj("parity/parity.json"), "models")):
        found.setdefault(str(model.get("role") or model.get("name")), model.get("accuracy"))
    for rel in run.manifests():
        role = rel.split("/")[1]
        found.setdefault(role, _get(run.obj(rel), "metrics", "test_accuracy"))
    found.setdefault("pytorch", _get(run.obj("checkpoint/eval.json"), "accuracy"))
    return _ordered({k: v for k, v in found.items() if v is not None})


def _sizes(run: RunFolder) -> dict[str, Any]:
    found: dict[str, Any] = {}
    weights = run.root / "checkpoint" / "model.safetensors"
    if weights.is_file():
        found["pytorch"] = weights.stat().st_size
    for rel in run.manifests():
        found[rel.split("/")[1]] = _get(run.obj(rel), "files", "bytes")
    return _ordered({k: v for k, v in found.items() if v is not None})


def _ordered(by_role: dict[str, Any]) -> dict[str, Any]:
    rank = {role: i for i, role in enumerate(ROLES)}
    return dict(sorted(by_role.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _first_manifest(run: RunFolder) -> dict[str, Any] | None:
    return next((run.obj(rel) for rel in run.manifests() if run.obj(rel)), None)


def _steps(run: RunFolder) -> str:
    steps = _dicts(_get(run.obj("pipeline.json"), "steps"))
    if not steps:
        return _missing(run, "pipeline.json", "pipeline") if run.problem("pipeline.json") else ""
    rows = [(_e(s.get("name", "?")), _status(s.get("status")),
             _fmt(s.get("seconds") if s.get("status") != "pending" else None, "s"), _fmt(s.get("message")))
            for s in steps]
    kinds = [f"row-{STATUS_KINDS.get(str(s.get('status')), 'muted')}" for s in steps]
    total = sum(_number(s.get("seconds")) or 0.0 for s in steps)
    return _h3(f"Pipeline steps ({_seconds(total)} in all)") + _table(
        ["step", "status", "time", "message"], rows, "steps", kinds)


def _missing_list(run: RunFolder) -> str:
    items = [f"<code>{_e(rel)}</code> ({_e(what)}): {_e(run.problem(rel))}"
             for rel, what, _ in EXPECTED if run.problem(rel)]
    if not items:
        return ""
    return _h3("Not in this run") + _note(
        "This run is partial: the sections below show what exists.", "warn") + _list(items, "missing")


# --- data -------------------------------------------------------------------------------------


def _data(run: RunFolder) -> str:
    stats = run.obj("data/stats.json")
    parts = [_missing(run, "data/stats.json", "data")] if stats is None else [_data_stats(stats)]
    parts.append(_figures(run, "data", name_absent=stats is not None, known=[
        ("samples.png", "Random training digits"), ("class_counts.png", "Images per class"),
        ("class_means.png", "Mean image of each class"), ("pixel_histogram.png", "Pixel intensities"),
    ]))
    return "\n".join(parts)


def _data_stats(stats: dict[str, Any]) -> str:
    facts = _kv([
        ("training images", _fmt(stats.get("train_count"), "int")),
        ("test images", _fmt(stats.get("test_count"), "int")),
        ("pixel mean (train, 0-1)", _fmt(stats.get("pixel_mean"), "num")),
        ("pixel std (train, 0-1)", _fmt(stats.get("pixel_std"), "num")),
        ("folder", f"<code>{_e(stats['folder'])}</code>" if stats.get("folder") else NA),
    ])
    rows = []
    for split in ("train", "test"):
        counts = stats.get(f"{split}_class_counts")
        if isinstance(counts, list):
            numbers = [_number(c) or 0 for c in counts]
            rows.append([_e(split), *(_fmt(c, "int") for c in counts), _fmt(sum(numbers), "int")])
    width = max((len(r) - 2 for r in rows), default=0)
    table = _table(["split", *(str(d) for d in range(width)), "total"], rows, "numeric")
    return f'<div class="split">{facts}<div>{table}</div></div>'


# --- training ---------------------------------------------------------------------------------


def _history(run: RunFolder) -> list[dict[str, Any]]:
    epochs = _dicts(_get(run.obj("checkpoint/metrics.json"), "epochs"))
    return epochs or _dicts(_get(run.obj("checkpoint/config.json"), "history"))


EPOCH_COLUMNS = (("epoch", "epoch", "int"), ("train_loss", "train loss", "num"),
                 ("train_acc", "train acc", "pct"), ("val_loss", "val loss", "num"),
                 ("val_acc", "val acc", "pct"), ("lr", "learning rate", "num"),
                 ("seconds", "time", "s"), ("images_per_s", "images/s", "int"))


def _training(run: RunFolder) -> str:
    config = run.obj("checkpoint/config.json")
    history = _history(run)
    absent = [rel for rel in ("checkpoint/config.json", "checkpoint/metrics.json") if run.problem(rel)]
    if config is None and not history:
        return _missing(run, absent, "train") + _figures(
            run, "checkpoint", [("curves.png", "Loss and accuracy per epoch")], "single", others=False,
            name_absent=False)
    parts = [_training_facts(config, history) if config is not None else _missing(run, absent, "train"),
             _figures(run, "checkpoint", [("curves.png", "Loss and accuracy per epoch")], "single",
                      others=False)]
    if history:
        parts.append(_h3("Epochs") + _epoch_table(history))
    if config is not None:
        parts.append(_details("Training configuration <code>checkpoint/config.json</code>",
                              _pre_json(config)))
    return "\n".join(p for p in parts if p)


def _training_facts(config: dict[str, Any], history: list[dict[str, Any]]) -> str:
    recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
    val = [(row["val_acc"], row.get("epoch")) for row in history if _number(row.get("val_acc")) is not None]
    best = max(val, key=lambda v: v[0]) if val else None
    seconds = sum(_number(row.get("seconds")) or 0.0 for row in history)
    versions = config.get("versions") if isinstance(config.get("versions"), dict) else {}
    return '<div class="split">' + _kv([
        ("architecture", _fmt(config.get("arch"))), ("parameters", _fmt(config.get("params"), "int")),
        ("device", _fmt(config.get("device"))),
        ("epochs", _fmt(f"{len(history)} of {recipe['epochs']}" if "epochs" in recipe else len(history))),
        ("best validation accuracy", _fmt(best[0], "pct") + f" (epoch {_e(best[1])})" if best else NA),
        ("training time", _fmt(seconds if history else None, "s")),
        ("torch", _fmt(versions.get("torch"))),
    ]) + _kv([
        ("optimizer", _fmt(recipe.get("optimizer"))), ("learning rate", _fmt(recipe.get("lr"), "num")),
        ("batch size", _fmt(recipe.get("batch_size"), "int")), ("schedule", _fmt(recipe.get("schedule"))),
        ("augmentation", _fmt(recipe.get("augment"))),
        ("weight decay", _fmt(recipe.get("weight_decay"), "num")),
        ("seed", _fmt(recipe.get("seed"), "int")),
    ]) + "</div>"


def _epoch_table(history: list[dict[str, Any]]) -> str:
    columns = [c for c in EPOCH_COLUMNS if any(row.get(c[0]) is not None for row in history)]
    val = [_number(row.get("val_acc")) for row in history]
    best = max((v for v in val if v is not None), default=None)
    rows = [[_fmt(row.get(key), kind) for key, _, kind in columns] for row in history]
    marks = ["best" if best is not None and v == best else "" for v in val]
    return _table([title for _, title, _ in columns], rows, "numeric", marks)


# --- evaluation -------------------------------------------------------------------------------


def _evaluation(run: RunFolder) -> str:
    report = run.obj("checkpoint/eval.json")
    head = _missing(run, "checkpoint/eval.json", "eval") if report is None else _eval_facts(report)
    confusion = _figures(run, "checkpoint", [("eval_confusion.png", "Confusion matrix")], "single",
                         others=False, name_absent=report is not None)
    if report is not None and not (run.root / "checkpoint" / "eval_confusion.png").is_file():
        confusion += _confusion_table(report.get("confusion"))
    per_class = _per_class(report) if report is not None else ""
    mistakes = _figures(run, "checkpoint", [("eval_mistakes.png", "Most confident mistakes")], "single",
                        others=False, name_absent=report is not None)
    middle = f'<div class="split"><div class="grow">{confusion}</div><div>{per_class}</div></div>'
    return "\n".join([head, middle, mistakes])


def _eval_facts(report: dict[str, Any]) -> str:
    count, correct = _number(report.get("count")), _number(report.get("correct"))
    wrong = count - correct if count is not None and correct is not None else None
    confused = _most_confused(report.get("confusion"))
    facts = _kv([
        ("model", _fmt(report.get("model"))), ("test accuracy", _fmt(report.get("accuracy"), "pct")),
        ("correct", f"{_fmt(correct, 'int')} of {_fmt(count, 'int')}" if count else NA),
        ("mistakes", _fmt(wrong, "int")),
        ("most confused (true → predicted)", ", ".join(confused) if confused else NA),
    ])
    return facts


def _most_confused(confusion: Any, top: int = 5) -> list[str]:
    if not isinstance(confusion, list):
        return []
    cells = [(count, i, j) for i, row in enumerate(confusion) if isinstance(row, list)
             for j, count in enumerate(row) if i != j and (_number(count) or 0) > 0]
    cells.sort(key=lambda c: -c[0])
    return [f"{i} → {j} ({_fmt(count, 'int')}×)" for count, i, j in cells[:top]]


def _confusion_table(confusion: Any) -> str:
    """The confusion matrix as a shaded table, when its figure is missing."""
    if not isinstance(confusion, list) or not confusion:
        return ""
    rows = []
    for i, row in enumerate(r if isinstance(r, list) else [] for r in confusion):
        total = sum(_number(c) or 0 for c in row) or 1
        cells = [f'<span class="cell" style="--share:{(_number(c) or 0) / total:.3f}">{_fmt(c, "int")}</span>'
                 for c in row]
        rows.append([f"<b>{i}</b>", *cells])
    return _h3("Confusion matrix (rows: true, columns: predicted)") + _table(
        ["", *(str(j) for j in range(len(confusion)))], rows, "numeric confusion")


def _per_class(report: dict[str, Any]) -> str:
    classes = _dicts(report.get("per_class"))
    if not classes:
        return ""
    recall = [_number(c.get("recall")) for c in classes]
    worst = min((r for r in recall if r is not None), default=None)
    rows = [[_fmt(c.get("label")), _fmt(c.get("precision"), "pct"), _fmt(c.get("recall"), "pct"),
             _fmt(c.get("f1"), "pct"), _fmt(c.get("support"), "int")] for c in classes]
    marks = ["worst" if worst is not None and r == worst else "" for r in recall]
    return _h3("Per class") + _table(["digit", "precision", "recall", "F1", "support"], rows,
                                      "numeric", marks)


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
     lambda p: -p["accuracy_delta_points"] if _number(p.get("accuracy_delta_points")) is not None else None,
     "int8_max_drop_points", False),
)


def _parity(run: RunFolder) -> str:
    parity = run.obj("parity/parity.json")
    if parity is None:
        return _missing(run, "parity/parity.json", "parity") + _figures(run, "parity", [])
    parts = [_parity_facts(parity), _parity_models(parity), _parity_pairs(parity), _parity_checks(parity),
             _layer_report(parity.get("layer_report")), _parity_figures(run, parity),
             _details("Parity environment and thresholds",
                      _pre_json({k: parity.get(k) for k in ("environment", "thresholds", "data", "files")}))]
    return "\n".join(p for p in parts if p)


def _parity_facts(parity: dict[str, Any]) -> str:
    command = parity.get("command")
    return _kv([("verdict", _verdict(parity.get("passed"))),
                ("test images", _fmt(parity.get("images"), "int")),
                ("measured", _fmt(parity.get("created"))),
                ("command", f"<code>{_e(command)}</code>" if command else NA)])


def _parity_models(parity: dict[str, Any]) -> str:
    models = _dicts(parity.get("models"))
    rows = [[_e(ROLES.get(str(m.get("role")), m.get("role", ""))), _fmt(m.get("name")),
             _fmt(m.get("accuracy"), "pct"), _fmt(m.get("correct"), "int"), _fmt(m.get("count"), "int")]
            for m in models]
    return _table(["model", "name", "test accuracy", "correct", "images"], rows, "numeric l2")


def _pair_title(pair: dict[str, Any]) -> str:
    ref, cand = pair.get("reference", pair.get("a")), pair.get("candidate", pair.get("b"))
    return f"{ROLES.get(str(cand), cand)} vs {ROLES.get(str(ref), ref)}"


def _parity_pairs(parity: dict[str, Any]) -> str:
    """One column per pair, one row per figure: known figures first, other scalars after."""
    pairs = _dicts(parity.get("pairs"))
    if not pairs:
        return _note("parity.json lists no model pairs.", "warn")
    known = {key for key, _, _ in PAIR_ROWS} | {"reference", "candidate", "a", "b", "disagreements"}
    extra = sorted({k for p in pairs for k, v in p.items()
                    if k not in known and (v is None or isinstance(v, (str, int, float, bool)))})
    specs = [*PAIR_ROWS, *((k, k.replace("_", " "), "num") for k in extra)]
    rows = [[_e(title), *(_fmt(p.get(key), kind) for p in pairs)] for key, title, kind in specs
            if any(key in p for p in pairs)]
    return _h3("Model pairs") + _table(["", *(_pair_title(p) for p in pairs)], rows, "numeric pairs")


def _parity_checks(parity: dict[str, Any]) -> str:
    """Each threshold against the pair it applies to, and any other breach parity recorded."""
    thresholds = parity.get("thresholds") if isinstance(parity.get("thresholds"), dict) else {}
    breaches = _dicts(parity.get("breaches"))
    rows, seen = [], set()
    for name, ref, cand, measure, key, higher_ok in PARITY_CHECKS:
        pair = next((p for p in _dicts(parity.get("pairs"))
                     if (p.get("reference"), p.get("candidate")) == (ref, cand)), None)
        limit = _number(thresholds.get(key))
        if pair is None or limit is None:
            continue
        label = f"{cand} vs {ref}"
        measured = _number(measure(pair))
        ok = measured is not None and (measured >= limit if higher_ok else measured <= limit + 1e-9)
        breached = any(b.get("check") == name and b.get("pair") == label for b in breaches)
        seen.add((name, label))
        kind = "pct" if name == "top-1 agreement" else "num"
        rows.append([_e(name), _e(_pair_title(pair)), _fmt(measured, kind),
                     ("≥ " if higher_ok else "≤ ") + _fmt(limit, kind), _verdict(ok and not breached)])
    for b in breaches:
        if (b.get("check"), b.get("pair")) not in seen:
            rows.append([_fmt(b.get("check")), _fmt(b.get("pair")), _fmt(b.get("measured"), "num"),
                         _fmt(b.get("limit"), "num"), _verdict(False)])
    table = _table(["check", "pair", "measured", "limit", "result"], rows, "numeric l2")
    messages = _list([_e(b.get("message")) for b in breaches if b.get("message")], "breaches")
    return (_h3("Checks") + table + messages) if table or messages else ""


def _layer_report(layers: Any) -> str:
    if not isinstance(layers, dict):
        return ""
    kernel = layers.get("kernel_check") if isinstance(layers.get("kernel_check"), dict) else {}
    rows = [[_fmt(x.get("tensor")), _fmt(x.get("node")), _fmt(x.get("op_type")),
             *(_fmt(x.get(key), "num") for key in ("vs_fp32_db", "own_qdq_db", "weight_db"))]
            for x in _dicts(layers.get("layers"))]
    suspects = layers.get("suspects") if isinstance(layers.get("suspects"), list) else []
    body = _kv([("images analysed", _fmt(layers.get("images"), "int")),
                ("suspect layers", ", ".join(f"<code>{_e(s)}</code>" for s in suspects) or NA),
                ("int8 kernels vs float simulation: max |logit diff|",
                 _fmt(kernel.get("max_abs_logit_diff"), "num")),
                ("… disagreements", _fmt(kernel.get("disagreements"), "int")),
                ("… saturation suspected", _fmt(kernel.get("saturation_suspected")))])
    body += _list([_e(a) for a in layers.get("advice") or [] if isinstance(a, str)], "advice")
    body += _table(["tensor", "node", "op", "SQNR vs fp32 (dB)", "own QDQ (dB)", "weight (dB)"], rows,
                   "numeric l3")
    if layers.get("note"):
        body += _note(_e(layers["note"]))
    return _h3("Per-layer quantization error") + body


def _parity_figures(run: RunFolder, parity: dict[str, Any]) -> str:
    named = _get(parity, "files", "figure")
    figure = named if isinstance(named, str) and "/" not in named else "parity_disagreements.png"
    if not (run.root / "parity" / figure).is_file() and (run.root / "parity" / "disagreements.png").is_file():
        figure = "disagreements.png"
    return _figures(run, "parity", [(figure, "Test digits on which the models disagree")], "single")


# --- benchmark --------------------------------------------------------------------------------


def _bench(run: RunFolder) -> str:
    bench = run.obj("bench/bench.json")
    if bench is None:
        return _missing(run, "bench/bench.json", "bench") + _figures(run, "bench", [])
    models = _dicts(bench.get("models"))
    parts = [_bench_settings(bench), _h3("Latency, size, memory") + _bench_models(models),
             _bench_throughput(models), _bench_ratios(_dicts(bench.get("ratios"))),
             _bench_notes(bench, models), _figures(run, "bench", [("bench.png", "Latency and throughput")],
                                                   "single"),
             _h3("Environment fingerprint") + _environment(bench.get("environment")),
             _details("Benchmark settings and comparison", _pre_json(
                 {k: bench.get(k) for k in ("settings", "comparison", "created", "mnist_edge")}))]
    return "\n".join(p for p in parts if p)


def _bench_settings(bench: dict[str, Any]) -> str:
    settings = bench.get("settings") if isinstance(bench.get("settings"), dict) else {}
    listed = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in settings.items()}
    return _kv([("batch sizes", _fmt(listed.get("batch_sizes"))), ("threads", _fmt(listed.get("threads"))),
                ("provider", _fmt(settings.get("provider"))),
                ("latency time per model", _fmt(settings.get("seconds"), "s")),
                ("inputs", _fmt(settings.get("inputs"))), ("measured", _fmt(bench.get("created")))])


def _bench_models(models: list[dict[str, Any]]) -> str:
    rows = []
    for m in models:
        lat = m.get("latency") if isinstance(m.get("latency"), dict) else {}
        cold = m.get("cold_start") if isinstance(m.get("cold_start"), dict) else {}
        rows.append([_fmt(m.get("name")), _fmt(m.get("kind")), _fmt(m.get("quantized")),
                     _fmt(m.get("file_bytes"), "bytes"), _fmt(cold.get("total_ms"), "ms"),
                     *(_fmt(lat.get(key), "us") for key in ("p50_us", "p90_us", "p99_us")),
                     _fmt(lat.get("cv"), "pct"), _fmt(lat.get("runs"), "int"),
                     _fmt(m.get("peak_rss_bytes"), "bytes")])
    return _table(["model", "kind", "int8", "file", "cold start", "p50", "p90", "p99", "CV", "runs",
                   "peak RSS"], rows, "numeric l2") or _note("bench.json lists no models.", "warn")


def _bench_throughput(models: list[dict[str, Any]]) -> str:
    points = {m_i: {(p.get("batch_size"), p.get("threads")): p.get("images_per_s")
                    for p in _dicts(m.get("throughput"))} for m_i, m in enumerate(models)}
    keys = sorted({k for pts in points.values() for k in pts}, key=lambda k: (str(k[1]), _number(k[0]) or 0))
    if not keys:
        return ""
    rows = [[_fmt(m.get("name")), *(_fmt(points[i].get(k), "int") for k in keys)]
            for i, m in enumerate(models)]
    headers = ["model", *(f"batch {b} · {t} thr" for b, t in keys)]
    return _h3("Throughput (images/s)") + _table(headers, rows, "numeric")


def _bench_ratios(ratios: list[dict[str, Any]]) -> str:
    rows = [[_fmt(r.get("model")), _fmt(r.get("baseline")), _fmt(r.get("latency_p50"), "x"),
             _fmt(r.get("file_size"), "x"), _fmt(r.get("cold_start"), "x"),
             _fmt(max((v for v in (r.get("throughput") or {}).values() if _number(v) is not None),
                      default=None), "x")] for r in ratios]
    table = _table(["model", "vs", "p50 latency", "file size", "cold start", "best throughput"], rows,
                   "numeric l2")
    return (_h3("Ratios to the first model") + table +
            _note("Latency, size and cold start: below 1× is better; throughput: above 1× is better.")
            ) if table else ""


def _bench_notes(bench: dict[str, Any], models: list[dict[str, Any]]) -> str:
    explanations = [_e(x) for x in bench.get("explanations") or [] if isinstance(x, str)]
    notes = [_e(x) for x in bench.get("notes") or [] if isinstance(x, str)]
    for m in models:
        for text in [*(_get(m, "latency", "warnings") or []), *(m.get("notes") or [])]:
            notes.append(f"<b>{_e(m.get('name'))}</b>: {_e(text)}")
    return _list(explanations, "explain") + (_h3("Notes") + _list(notes, "notes") if notes else "")


ENV_ROWS = (("cpu_model", "CPU"), ("logical_cores", "logical cores"), ("physical_cores", "physical cores"),
            ("usable_cores", "usable cores"), ("os", "OS"), ("python", "Python"), ("numpy", "NumPy"),
            ("onnxruntime", "onnxruntime"), ("provider", "provider"),
            ("providers_available", "providers available"))


def _environment(env: Any) -> str:
    if not isinstance(env, dict):
        return _note("bench.json has no environment section.", "warn")
    listed = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in env.items()}
    isa = env.get("isa") if isinstance(env.get("isa"), dict) else {}
    flags = " ".join(_badge(name, "ok" if on else "muted") for name, on in isa.items())
    int8 = env.get("int8_dot_product")
    rows = [(title, _fmt(listed.get(key))) for key, title in ENV_ROWS]
    rows += [("ISA flags", flags or NA),
             ("int8 dot product", _fmt(int8) if int8 is not None else NA),
             ("notes", _fmt(listed.get("notes")))]
    return _kv(rows)


# --- manifests --------------------------------------------------------------------------------


def _manifests(run: RunFolder) -> str:
    names = run.manifests()
    rows = [_manifest_row(rel, run.obj(rel)) for rel in names if run.obj(rel) is not None]
    parts = [_table(["model", "name", "file", "size", "sha256", "opset", "quantization", "test accuracy"],
                    rows, "numeric l3")]
    for rel, _, step in EXPECTED:
        if rel.startswith("exported/") and rel not in names:
            parts.append(_missing(run, rel, step))
    for rel in [*names, "pipeline.json"]:
        data = run.json(rel)
        if data is not None:
            parts.append(_details(f"<code>{_e(rel)}</code>", _pre_json(data)))
    return "\n".join(p for p in parts if p)


def _manifest_row(rel: str, manifest: dict[str, Any]) -> list[str]:
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    quant = manifest.get("quantization")
    method = quant.get("method") if isinstance(quant, dict) else ("none" if not quant else quant)
    sha = str(files.get("sha256") or "")
    return [f"<code>{_e(rel.split('/')[1])}</code>", _fmt(manifest.get("name")), _fmt(files.get("model")),
            _fmt(files.get("bytes"), "bytes"),
            f'<code title="{_e(sha)}">{_e(sha[:12])}</code>' if sha else NA,
            _fmt(_get(manifest, "export", "opset"), "int"), _fmt(method),
            _fmt(_get(manifest, "metrics", "test_accuracy"), "pct")]


SECTIONS: tuple[tuple[str, str, Callable[[RunFolder], str]], ...] = (
    ("summary", "Summary", _summary),
    ("data", "Data", _data),
    ("training", "Training", _training),
    ("evaluation", "Evaluation (PyTorch, test set)", _evaluation),
    ("parity", "Parity: PyTorch, ONNX fp32, ONNX int8", _parity),
    ("bench", "Benchmark", _bench),
    ("manifests", "Manifests", _manifests),
)


# --- page template and style ------------------------------------------------------------------

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="generator" content="mnist-edge">
<title>$title</title>
<style>
$css
</style>
</head>
<body>
<main>
$body
</main>
</body>
</html>
""")

_CSS = """
:root { --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --soft: #f6f8fa; --accent: #0969da;
  --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9; --warn: #9a6700; --warn-bg: #fff8c5;
  --info: #0969da; --info-bg: #ddf4ff; }
* { box-sizing: border-box; }
html { background: #eef1f4; }
body { margin: 0; color: var(--ink); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 40px; }
header h1 { margin: 0 0 4px; font-size: 28px; letter-spacing: -0.01em; }
.meta { margin: 0; color: var(--muted); }
.meta span { margin-right: 4px; }
.meta b { color: var(--ink); font-weight: 600; }
nav { position: sticky; top: 0; z-index: 1; display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 16px 0;
  padding: 8px 14px; background: rgba(255,255,255,.95); border: 1px solid var(--line); border-radius: 8px; }
nav a { color: var(--accent); text-decoration: none; font-weight: 500; }
nav a:hover { text-decoration: underline; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 6px 24px 20px;
  margin: 0 0 18px; }
h2 { font-size: 21px; margin: 14px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 8px; }
code, pre { font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { background: var(--soft); padding: 1px 4px; border-radius: 4px; overflow-wrap: anywhere; }
pre { background: var(--soft); padding: 12px; border-radius: 6px; overflow-x: auto; max-height: 480px;
  white-space: pre-wrap; word-break: break-word; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--soft); font-weight: 600; border-bottom: 2px solid var(--line);
  white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfcfd; }
table.numeric td { font-variant-numeric: tabular-nums; }
table.numeric td:not(:first-child) { text-align: right; }
table.numeric thead th:not(:first-child) { text-align: right; }
table.l2 td:nth-child(2), table.l2 thead th:nth-child(2),
table.l3 td:nth-child(-n+3), table.l3 thead th:nth-child(-n+3) { text-align: left; }
table.steps td:nth-child(3) { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { font-weight: 500; color: var(--muted); background: none; padding-left: 0; white-space: nowrap; }
table.kv td { font-variant-numeric: tabular-nums; }
tr.best td, tr.worst td { font-weight: 600; }
tr.best td:first-child::after { content: " ★"; color: var(--warn); }
tr.worst td:first-child::after { content: " ↓"; color: var(--bad); }
tr.row-bad td { background: var(--bad-bg); }
.badge { display: inline-block; padding: 0 8px; border-radius: 999px; font-size: 12.5px; font-weight: 600;
  line-height: 20px; margin: 1px 0; }
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.bad { color: var(--bad); background: var(--bad-bg); }
.badge.warn { color: var(--warn); background: var(--warn-bg); }
.badge.info { color: var(--info); background: var(--info-bg); }
.badge.muted { color: var(--muted); background: #eaeef2; }
.na { color: #8c959f; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(250px, 1fr)); gap: 14px;
  margin: 8px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; background: var(--soft); }
.card h3 { margin: 2px 0 6px; font-size: 13px; text-transform: uppercase; letter-spacing: .05em;
  color: var(--muted); }
.card table { margin: 0; width: 100%; }
.card td, .card th { border: 0; padding: 2px 0; }
.card tr { background: none !important; }
.card td { text-align: right; font-weight: 600; font-size: 15px; }
.big { font-size: 24px; font-weight: 700; margin: 0 0 4px; }
.split { display: flex; flex-wrap: wrap; gap: 8px 48px; align-items: flex-start; }
.split > .grow { flex: 1 1 520px; min-width: 0; }
.small { font-size: 12.5px; color: var(--muted); margin: 4px 0 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 16px; }
.grid.wide { grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); }
.single { display: block; }
figure { margin: 8px 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px;
  background: #fff; }
.single figure img { max-height: 720px; width: auto; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
figcaption .path { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11.5px; margin-left: 6px;
  color: #8c959f; }
.note { padding: 8px 12px; border-radius: 6px; margin: 8px 0; font-size: 14px; }
.note.muted { color: var(--muted); background: var(--soft); }
.note.warn { background: var(--warn-bg); border-left: 4px solid #d4a72c; }
.note.bad { background: var(--bad-bg); border-left: 4px solid var(--bad); }
ul.missing li code { background: var(--warn-bg); }
ul.breaches li { color: var(--bad); }
ul.explain { background: var(--info-bg); padding: 10px 12px 10px 32px; border-radius: 6px; }
ul.notes, ul.advice { color: var(--muted); font-size: 14px; }
table.confusion .cell { display: block; padding: 0 4px; border-radius: 3px;
  background: rgba(9, 105, 218, calc(var(--share) * 0.85)); }
details { margin: 8px 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; }
details > summary { cursor: pointer; color: var(--accent); font-weight: 500; }
details[open] > summary { margin-bottom: 6px; }
footer { color: var(--muted); font-size: 13px; text-align: center; margin-top: 24px; }
@media print {
  html, body { background: #fff; font-size: 12px; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  section { border: 0; padding: 0; margin: 0 0 16px; break-before: auto; }
  h2 { break-after: avoid; }
  figure, table, .card { break-inside: avoid; }
  pre { max-height: none; }
  @page { margin: 14mm; }
}
"""
