"""The battery's table, its verdicts against the goals, the JSON summary and the saved failures."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.fuzzing.workers import CRASH, HANG, OK, OUTCOMES, TYPED, UNCAUGHT, MemoryFigures, Result

FAILURES = (UNCAUGHT, HANG, CRASH)
GOALS = {"in_process_cases": 10_000, "in_process_seconds": 300.0, "cli_cases": 500}
MIB = 1024 * 1024


@dataclass
class Tally:
    """Counts per kind and outcome, seconds per kind, and the failing results."""

    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    seconds: Counter = field(default_factory=Counter)
    failures: list[Result] = field(default_factory=list)
    wall_seconds: float = 0.0

    def add(self, result: Result) -> None:
        self.counts[result.case.kind][result.outcome] += 1
        self.seconds[result.case.kind] += result.seconds
        if result.outcome in FAILURES:
            self.failures.append(result)

    def total(self) -> Counter:
        return sum(self.counts.values(), Counter())

    @property
    def cases(self) -> int:
        return sum(self.total().values())

    def failed(self) -> int:
        total = self.total()
        return sum(total[outcome] for outcome in FAILURES)


def table(title: str, tally: Tally) -> list[str]:
    header = f"{'kind':<18} {'cases':>7} {'ok':>7} {'typed error':>11} {'uncaught':>8} {'hang':>5} {'crash':>5} " \
             f"{'seconds':>8}"
    lines = [title, header, "-" * len(header)]
    for kind in sorted(tally.counts):
        lines.append(_row(kind, tally.counts[kind], tally.seconds[kind]))
    lines.append("-" * len(header))
    lines.append(_row("total", tally.total(), sum(tally.seconds.values())))
    return lines


def _row(name: str, counts: Counter, seconds: float) -> str:
    return (f"{name:<18} {sum(counts.values()):>7,} {counts[OK]:>7,} {counts[TYPED]:>11,} {counts[UNCAUGHT]:>8,} "
            f"{counts[HANG]:>5,} {counts[CRASH]:>5,} {seconds:>8.1f}")


def verdicts(in_process: Tally, cli: Tally, memory: MemoryFigures, cli_peak_rss: int, cores: int) -> list[str]:
    """One line per goal: the measured figure, the goal, PASS or FAIL."""
    rows = [
        ("in-process cases", f"{in_process.cases:,}", f">= {GOALS['in_process_cases']:,}",
         in_process.cases >= GOALS["in_process_cases"]),
        (f"in-process wall time ({cores} workers)", f"{in_process.wall_seconds:.0f} s",
         f"<= {GOALS['in_process_seconds']:.0f} s", in_process.wall_seconds <= GOALS["in_process_seconds"]),
        ("CLI cases", f"{cli.cases:,}", f">= {GOALS['cli_cases']:,}", cli.cases >= GOALS["cli_cases"]),
    ]
    for outcome in FAILURES:
        found = in_process.total()[outcome] + cli.total()[outcome]
        rows.append((f"{outcome} (in-process + CLI)", f"{found:,}", "0", found == 0))
    peak = max(memory.peak_rss, cli_peak_rss)
    rows.append(("peak RSS (workers, CLI)", f"{memory.peak_rss / MIB:,.0f} MiB, {cli_peak_rss / MIB:,.0f} MiB",
                 f"<= limit {memory.limit / MIB:,.0f} MiB", 0 < peak <= memory.limit))
    width = max(len(r[0]) for r in rows)
    return [f"{name:<{width}}  {figure:>18}  goal {goal:<22} {'PASS' if ok else 'FAIL'}"
            for name, figure, goal, ok in rows]


def memory_line(memory: MemoryFigures) -> str:
    return (f"memory bound: RLIMIT_AS {memory.limit / MIB:,.0f} MiB per worker and CLI process = address space "
            f"after warm-up {memory.warm_vm_peak / MIB:,.0f} MiB (numpy, onnxruntime, onnx, torch imported, "
            f"models loaded) + headroom {memory.headroom / MIB:,.0f} MiB")


def save_failure(result: Result, out: Path, where: str) -> Path:
    """The damaged file, the fix-ups and a case.json that says what happened, under out/failures/."""
    case = result.case
    folder = out / "failures" / f"{where}-{case.kind}-{case.index}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / Path(case.file).name).write_bytes(case.content)
    for name, content in case.extra.items():
        if content is not None:
            (folder / Path(name).name).write_bytes(content)
    description = {"kind": case.kind, "index": case.index, "file": case.file, "mutation": case.mutation,
                   "outcome": result.outcome, "target": result.target, "error": result.error,
                   "details": result.details, "removed": [n for n, c in case.extra.items() if c is None]}
    (folder / "case.json").write_text(json.dumps(description, indent=2))
    return folder


def summary(in_process: Tally, cli: Tally, memory: MemoryFigures, cli_peak_rss: int, settings: dict[str, Any],
            atheris: str) -> dict[str, Any]:
    def part(tally: Tally) -> dict[str, Any]:
        return {"cases": tally.cases, "wall_seconds": round(tally.wall_seconds, 2),
                "outcomes": {o: tally.total()[o] for o in OUTCOMES},
                "kinds": {k: {**{o: c[o] for o in OUTCOMES}, "seconds": round(tally.seconds[k], 2)}
                          for k, c in sorted(tally.counts.items())},
                "failures": [{"kind": r.case.kind, "index": r.case.index, "file": r.case.file,
                              "mutation": r.case.mutation, "outcome": r.outcome, "target": r.target,
                              "error": r.error} for r in tally.failures]}

    return {"settings": settings, "in_process": part(in_process), "cli": part(cli),
            "memory": {"limit_bytes": memory.limit, "warm_vm_peak_bytes": memory.warm_vm_peak,
                       "headroom_bytes": memory.headroom, "worker_peak_rss_bytes": memory.peak_rss,
                       "cli_peak_rss_bytes": cli_peak_rss},
            "goals": GOALS, "atheris": atheris}
