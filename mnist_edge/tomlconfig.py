"""TOML configs whose errors name the file, the line and the key at fault (`sweep`, `search`)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_edge.errors import ConfigError


def read_toml(path: Path, what: str) -> tuple[Source, dict[str, Any]]:
    """The parsed document and its text (for line numbers); every failure is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} ({exc})", path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path) from exc
    except RecursionError as exc:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError("not valid TOML: arrays or tables nested too deeply", path) from exc
    return Source(path, text), raw


@dataclass(frozen=True)
class Table:
    """Where keys live in the file: the `index`-th `[name]`/`[[name]]` table; name None is the top level."""

    name: str | None = None
    index: int = 0


TOP = Table()


def _headers(lines: list[str]) -> list[tuple[int, str]]:
    """(line index, table name) of every `[name]` and `[[name]]` header."""
    pattern = re.compile(r"\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")
    return [(n, m.group(1)) for n, line in enumerate(lines) if (m := pattern.match(line))]


def _line_of(text: str, key: str, table: Table) -> int | None:
    """The line of `key` inside `table`; at the top level, the header of a table named `key` counts too."""
    lines = text.splitlines()
    headers = _headers(lines)
    if table.name is None:
        named = next((n for n, name in headers if name.split(".")[0] == key), None)
        if named is not None:
            return named + 1
        return _key_line(lines, key, 0, headers[0][0] if headers else len(lines))
    starts = [n for n, name in headers if name == table.name]
    if table.index >= len(starts):
        return None
    start = starts[table.index]
    end = next((n for n, _ in headers if n > start), len(lines))
    return _key_line(lines, key, start + 1, end)


def _key_line(lines: list[str], key: str, start: int, end: int) -> int | None:
    pattern = re.compile(rf"\s*[\"']?{re.escape(key)}[\"']?\s*[=.]")
    return next((n + 1 for n in range(start, end) if pattern.match(lines[n])), None)


@dataclass(frozen=True)
class Source:
    path: Path
    text: str

    def fail(self, key: str, problem: str, table: Table = TOP) -> ConfigError:
        line = _line_of(self.text, key, table)
        where = f"line {line}: " if line else ""
        return ConfigError(f"{where}key '{key}': {problem}", self.path)
