"""Structured damage to JSON and TOML documents, drawn by Hypothesis.

Byte damage to a JSON file mostly gives invalid JSON, which the reader refuses at once; the
interesting failures hide behind valid documents of the wrong shape: a key missing, a list where
an object was, a string where a number was, NaN, 2^63, nesting 100,000 deep. Hypothesis draws
those edits on the seed document (a path into it, an operation, a value), deterministically for
a given seed, and the result is serialised back to text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

Path_ = tuple[Any, ...]
# A value that stands for a deeply nested list; serialised by hand (json.dumps would recurse).
_DEEP = re.compile(r'"\\u0000deep:(\d+)\\u0000"')
DEPTHS = (64, 1_000, 100_000)
SPECIAL_INTS = (0, -1, 2**31, -(2**31), 2**32, 2**63, 2**64, 10**400)


def deep(depth: int) -> str:
    return f"\x00deep:{depth}\x00"


def nested_text(depth: int) -> str:
    return "[" * depth + "0" + "]" * depth


def scalars(toml: bool) -> st.SearchStrategy[Any]:
    options = [st.booleans(), st.sampled_from(SPECIAL_INTS), st.integers(),
               st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
               st.sampled_from(["", "..", "/etc/passwd", "NCHW", "uint8", "float32", "cnn", "tiny", "sgd",
                                "x" * 5000, "\x00", "model.onnx", "[/x]", "[bold", "<script>", "%s%n"]),
               st.sampled_from(DEPTHS).map(deep)]
    if not toml:
        options.append(st.none())
    return st.one_of(*options)


def values(toml: bool) -> st.SearchStrategy[Any]:
    return st.recursive(scalars(toml), lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=8)


# Built once: a strategy built inside every draw costs more than the draw.
VALUES = {False: values(False), True: values(True)}


def paths(doc: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every path into the document, the root included."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from paths(value, (*prefix, index))


def get(doc: Any, path: Path_) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def edited(doc: Any, path: Path_, operation: str, value: Any) -> Any:
    """A copy of `doc` with `operation` applied at `path` (the root is replaced, never deleted)."""
    copy = json.loads(json.dumps(doc))
    if not path:
        return value
    parent, key = get(copy, path[:-1]), path[-1]
    if operation == "delete":
        del parent[key]
    elif operation == "add key" and isinstance(get(copy, path), dict):
        get(copy, path)["unexpected"] = value
    elif operation == "wrap in list":
        parent[key] = [parent[key]]
    elif operation == "to string":
        parent[key] = json.dumps(parent[key])
    else:
        parent[key] = value
    return copy


OPERATIONS = ("replace", "replace", "replace", "delete", "add key", "wrap in list", "to string")


def edits(doc: Any, toml: bool) -> st.SearchStrategy[tuple[str, Any]]:
    """(what was done, the edited document)."""

    def apply(path: Path_, operation: str, value: Any) -> tuple[str, Any]:
        operation = operation if path else "replace"  # the root can only be replaced
        where = "/".join(map(str, path)) or "(root)"
        shown = f" = {_short(value)}" if operation in ("replace", "add key") else ""
        return f"{operation} {where}{shown}", edited(doc, path, operation, value)

    return st.builds(apply, st.sampled_from(list(paths(doc))), st.sampled_from(OPERATIONS), VALUES[toml])


def _short(value: Any) -> str:
    text = repr(value).replace("\\x00", "")
    return text if len(text) <= 60 else text[:57] + "..."


def generate(doc: Any, count: int, seed: int, *, toml: bool = False) -> list[tuple[str, bytes]]:
    """`count` edited versions of `doc` as (what was done, serialised bytes); the same for a seed."""
    found: list[tuple[str, bytes]] = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed)
    @given(edits(doc, toml))
    def collect(edit: tuple[str, Any]) -> None:
        what, result = edit
        found.append((what, to_toml(result) if toml else to_json(result)))

    collect()
    return found


# --- serialising --------------------------------------------------------------------------------


def to_json(doc: Any) -> bytes:
    text = json.dumps(doc, indent=1, allow_nan=True)
    return _DEEP.sub(lambda m: nested_text(int(m.group(1))), text).encode()


def to_toml(doc: Any) -> bytes:
    """TOML text for a document: scalars first, then [tables] and [[arrays of tables]]."""
    if not isinstance(doc, dict):
        doc = {"value": doc}
    lines = [f"{_key(k)} = {_inline(v)}" for k, v in doc.items() if not _is_table(v) and not _is_table_array(v)]
    for key, value in doc.items():
        if _is_table(value):
            lines += ["", f"[{_key(key)}]", *(f"{_key(k)} = {_inline(v)}" for k, v in value.items())]
        elif _is_table_array(value):
            for table in value:
                lines += ["", f"[[{_key(key)}]]", *(f"{_key(k)} = {_inline(v)}" for k, v in table.items())]
    return ("\n".join(lines) + "\n").encode()


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: Any) -> str:
    key = str(key)
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _inline(value: Any) -> str:
    if isinstance(value, str) and (match := re.fullmatch(r"\x00deep:(\d+)\x00", value)):
        return nested_text(int(match.group(1)))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf") if not math.isfinite(value) \
            else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + "}"
    return '""'  # None has no TOML form
