"""The HTML building blocks of the page: tables, key/value lists, embedded figures, notes, details.

Conventions: headers, keys and captions are plain text and escaped here; cells and values are HTML
already (made by `fmt` and friends), so nothing is escaped twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from mnist_edge.report.formats import NA, esc, status_badge
from mnist_edge.report.run_folder import RunFolder


def html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "",
               row_classes: Sequence[str] = ()) -> str:
    """Headers are plain text (escaped here); cells are HTML already. No rows: no table."""
    rows = list(rows)
    if not rows:
        return ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    classes = [*row_classes, *[""] * (len(rows) - len(row_classes))]
    body = "\n".join(_row(row, c) for row, c in zip(rows, classes, strict=False))
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


def _row(cells: Sequence[str], cls: str = "") -> str:
    attr = f' class="{esc(cls)}"' if cls else ""
    return f"<tr{attr}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def kv_table(pairs: Iterable[tuple[str, str]]) -> str:
    """A two-column key/value table; keys are plain text, values HTML. Rows with no value drop."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in pairs if v != NA)
    return f'<table class="kv"><tbody>{rows}</tbody></table>' if rows else ""


def _figure(run: RunFolder, rel: str, caption: str) -> str:
    image = run.image(rel)
    if image is None:
        return ""
    uri, size = image
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    return (f'<figure><img src="{uri}" alt="{esc(caption)}"{dims}>'
            f"<figcaption>{esc(caption)} <span class=\"path\">{esc(rel)}</span></figcaption></figure>")


def figures(run: RunFolder, folder: str, known: Sequence[tuple[str, str]], cls: str = "grid",
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
    html_items = f'<div class="{esc(cls)}">{"".join(items)}</div>' if items else ""
    if absent and name_absent:
        html_items += note("Figures not found: " + ", ".join(f"<code>{esc(a)}</code>" for a in absent))
    return html_items


def note(html_text: str, kind: str = "muted") -> str:
    return f'<p class="note {esc(kind)}">{html_text}</p>'


def missing_note(run: RunFolder, rels: str | Sequence[str], step: str) -> str:
    """Why a section's files are not there, with the step's status and message when known."""
    rels = [rels] if isinstance(rels, str) else list(rels)
    text = "; ".join(f"<code>{esc(rel)}</code> is {esc(run.problem(rel) or 'missing')}" for rel in rels)
    record = run.step(step)
    if record is not None:
        text += f"; step <b>{esc(step)}</b> is {status_badge(record.get('status'))}"
        if record.get("message"):
            text += f": {esc(record['message'])}"
    return note(text, "warn")


def details(summary: str, body: str, open_: bool = False) -> str:
    flag = " open" if open_ else ""
    return f"<details{flag}><summary>{summary}</summary>{body}</details>"


def pre_json(obj: Any) -> str:
    return f"<pre>{esc(json.dumps(obj, indent=2, ensure_ascii=False))}</pre>"


def bullets(items: Iterable[str], cls: str = "") -> str:
    items = [i for i in items if i]
    return f'<ul class="{esc(cls)}">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


def h3(text: str) -> str:
    return f"<h3>{esc(text)}</h3>"

