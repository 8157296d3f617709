"""Fuzz battery: damaged inputs of every kind mnist-edge reads, through the library and the CLI.

    MNIST_EDGE_DATA=../shared/data .venv/bin/python scripts/fuzz.py            # the goal-sized run
    .venv/bin/python scripts/fuzz.py --cases 300 --cli-cases 12 --json out.json
    .venv/bin/python scripts/fuzz.py --atheris npy --runs 20000                # coverage-guided

Valid seeds (a digit as PNG, JPEG and BMP, .npy arrays, IDX files plain and gzipped, the shipped
tiny and cnn models, one with external data, manifests, a checkpoint with optimizer state, sweep
TOML files, a pipeline run folder) are built in a temporary folder, then damaged: truncation,
bit flips, byte runs, inserted and deleted chunks, header fields set to 0, -1 or 2^31, wrong
magic, empty files, huge declared dimensions, NaN and infinity (scripts/fuzzing/mutate.py);
Hypothesis edits the JSON and TOML documents (documents.py) and the ONNX protobufs are edited
through onnx (onnx_edits.py). Each case runs the library entry points behind run, eval, bench,
parity, export, quantize, train --resume, report and sweep (targets.py) in forked workers
under an address-space limit and a per-case timeout (workers.py); a sample runs through the
CLI as separate processes (cli_cases.py).

A case must succeed or raise a MnistEdgeError (CLI: exit 0, or exit 2 with one `error:` line).
Anything else, a hang or a crash is printed and saved with its input under --out/failures/.
Same --seed, same cases. Exit status 1 when any case failed.

--atheris KIND runs libFuzzer (through atheris) on one kind's readers instead: coverage-guided
byte fuzzing from that kind's seed; a failing input is written under --out as crash-*.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `scripts.fuzzing` from any working directory
# Hypothesis's caches go to the temporary directory, not ./.hypothesis in whatever folder this runs from.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "mnist-edge-hypothesis"))

from scripts.fuzzing import report, seeds  # noqa: E402
from scripts.fuzzing.cases import KINDS, KINDS_BY_NAME, CaseMaker, companions, counts  # noqa: E402
from scripts.fuzzing.cli_cases import CliBattery  # noqa: E402
from scripts.fuzzing.cli_cases import plan as cli_plan  # noqa: E402
from scripts.fuzzing.workers import MemoryFigures, Pool  # noqa: E402

MIB = 1024 * 1024
# CLI cases take other indices than in-process ones, so the two samples differ.
CLI_INDEX_OFFSET = 1_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="Seed of every random choice (default 0).")
    parser.add_argument("--cases", type=int, default=10_000, help="In-process cases (default 10,000).")
    parser.add_argument("--cli-cases", type=int, default=500, help="CLI process cases (default 500).")
    parser.add_argument("--kinds", default="", help="Comma-separated input kinds (default: all): "
                        + ", ".join(k.name for k in KINDS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Forked workers (default: cores).")
    parser.add_argument("--timeout", type=float, default=10.0, help="Seconds per in-process case (default 10).")
    parser.add_argument("--cli-timeout", type=float, default=60.0, help="Seconds per CLI case (default 60).")
    parser.add_argument("--headroom-mib", type=int, default=1024,
                        help="Address space allowed beyond a warmed-up worker's (default 1024 MiB).")
    parser.add_argument("--out", type=Path, default=None, help="Folder for seeds/, failures/ and worker logs "
                        "(default: a new temporary folder).")
    parser.add_argument("--seeds", type=Path, default=None, help="Reuse the seeds an earlier run built "
                        "(its OUT/seeds) instead of building them again.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results as JSON here.")
    parser.add_argument("--atheris", metavar="KIND", default=None, help="Coverage-guided fuzzing of one kind.")
    parser.add_argument("--runs", type=int, default=10_000, help="Inputs for --atheris (default 10,000).")
    args = parser.parse_args(argv)
    unknown = [k for k in _kind_names(args.kinds) + ([args.atheris] if args.atheris else []) if k not in KINDS_BY_NAME]
    if unknown:
        parser.error(f"unknown kinds {', '.join(unknown)}; choose from {', '.join(KINDS_BY_NAME)}")
    return args


def _kind_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


# --- the workers' side ---------------------------------------------------------------------------


def worker_setup(seed_dir: Path):
    """In each forked worker: one torch thread, onnxruntime quiet, every target run once on its
    valid seed, so that the address space measured afterwards includes what the cases need."""
    import onnxruntime
    import torch

    from scripts.fuzzing import targets
    from scripts.fuzzing.cases import Case
    from scripts.fuzzing.workers import OK, run_case

    torch.set_num_threads(1)
    onnxruntime.set_default_logger_severity(3)
    context = targets.make_context(seed_dir)
    scratch = Path(tempfile.mkdtemp(prefix="mnist-edge-fuzz-warm-"))
    for kind in KINDS:
        content = (seed_dir / kind.seed / kind.files[0]).read_bytes()
        case = Case(kind.name, -1, kind.files[0], "none (the valid seed)", content, kind.targets,
                    companions(seed_dir, kind, kind.files[0], content))
        outcome = run_case(case, context, run_target, seed_dir, scratch / kind.name)
        if outcome[0] != OK:  # the worker's log says so; a damaged case is then judged against a bad seed
            print(f"seed of {kind.name} is not accepted: {outcome[1]}: {outcome[2]}", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return context


def run_target(name: str, folder: Path, file: str, context) -> None:
    from scripts.fuzzing.targets import TARGETS

    TARGETS[name](folder, file, context)


# --- the battery ---------------------------------------------------------------------------------


def prepare_out(out: Path | None) -> Path:
    folder = out if out is not None else Path(tempfile.mkdtemp(prefix="mnist-edge-fuzz-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def seed_folder(args: argparse.Namespace, out: Path) -> Path:
    return args.seeds.resolve() if args.seeds else seeds.build_in_child(out / "seeds")


def heavy_imports() -> None:
    """Import what the workers use before forking them: each fork then shares those pages."""
    import onnx  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401 - torch.optim imports it on first use: 3 s in every worker otherwise

    import scripts.fuzzing.targets  # noqa: F401


def run_in_process(args: argparse.Namespace, maker: CaseMaker, plan: dict[str, int], out: Path,
                   seed_dir: Path) -> tuple[report.Tally, MemoryFigures]:
    tally = report.Tally()
    started = time.perf_counter()
    pool = Pool(args.workers, lambda: worker_setup(seed_dir), run_target, seed_dir, args.headroom_mib * MIB,
                args.timeout, out)
    try:
        for done, result in enumerate(pool.run(maker.cases(plan)), start=1):
            tally.add(result)
            if result.outcome in report.FAILURES:
                saved = report.save_failure(result, out, "in-process")
                print(f"FAIL {result.outcome}: {result.case.kind} #{result.case.index} ({result.case.mutation}) "
                      f"{result.target}: {result.error} -> {saved}", flush=True)
            if done % 1000 == 0:
                print(f"  {done:,} cases, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        pool.close()
    tally.wall_seconds = time.perf_counter() - started
    return tally, pool.memory


def run_cli(args: argparse.Namespace, maker: CaseMaker, plan: dict[str, int], out: Path, seed_dir: Path,
            limit: int) -> tuple[report.Tally, int]:
    tally = report.Tally()
    if args.cli_cases <= 0:
        return tally, 0
    started = time.perf_counter()
    battery = CliBattery(maker, seed_dir, limit, args.cli_timeout, args.workers)
    try:
        shares = cli_plan(args.cli_cases, {name: KINDS_BY_NAME[name].weight for name in plan})
        for result in battery.run(battery.cases(shares, CLI_INDEX_OFFSET)):
            tally.add(result)
            if result.outcome in report.FAILURES:
                saved = report.save_failure(result, out, "cli")
                print(f"FAIL {result.outcome}: {result.case.kind} #{result.case.index} ({result.case.mutation}) "
                      f"{result.target}: {result.error} -> {saved}", flush=True)
    finally:
        battery.close()
    tally.wall_seconds = time.perf_counter() - started
    return tally, battery.peak_rss


def battery(args: argparse.Namespace) -> int:
    out = prepare_out(args.out)
    heavy_imports()
    seed_dir = seed_folder(args, out)
    names = _kind_names(args.kinds) or [k.name for k in KINDS]
    plan = counts(args.cases, tuple(KINDS_BY_NAME[n] for n in names))
    maker = CaseMaker(seed_dir, args.seed)
    maker.prepare(plan)
    print(f"fuzzing: {args.cases:,} in-process cases on {args.workers} workers, {args.cli_cases:,} CLI cases, "
          f"seed {args.seed}; inputs and failures under {out}", flush=True)
    in_process, memory = run_in_process(args, maker, plan, out, seed_dir)
    cli, cli_rss = run_cli(args, maker, plan, out, seed_dir, memory.limit)
    lines = [*report.table(f"in-process ({in_process.wall_seconds:.0f} s wall)", in_process), "",
             *report.table(f"CLI processes ({cli.wall_seconds:.0f} s wall)", cli), "",
             report.memory_line(memory), "",
             *report.verdicts(in_process, cli, memory, cli_rss, args.workers)]
    print("\n".join(lines))
    if args.json:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.json.write_text(json.dumps(report.summary(in_process, cli, memory, cli_rss, settings, "not run"),
                                        indent=2))
    return 1 if in_process.failed() or cli.failed() else 0


# --- atheris -------------------------------------------------------------------------------------


def fuzz_with_atheris(args: argparse.Namespace) -> int:
    """libFuzzer on one kind's readers: each input replaces the kind's first file in its seed folder."""
    try:
        import atheris
    except ImportError:
        print(f"atheris is not installed (it has no wheel for Python {sys.version_info.major}."
              f"{sys.version_info.minor} on every platform): pip install 'mnist-edge[fuzz]'; --atheris skipped")
        return 0
    from mnist_edge.errors import MnistEdgeError
    from scripts.fuzzing import targets

    out = prepare_out(args.out)
    seed_dir = seed_folder(args, out)
    kind = KINDS_BY_NAME[args.atheris]
    file = kind.files[0]
    folder = Path(shutil.copytree(seed_dir / kind.seed, out / "atheris-case", dirs_exist_ok=True))
    corpus = out / "atheris-corpus"
    corpus.mkdir(exist_ok=True)
    shutil.copyfile(seed_dir / kind.seed / file, corpus / "seed")
    context = targets.make_context(seed_dir)

    def one_input(data: bytes) -> None:
        for name, content in {**companions(seed_dir, kind, file, data), file: data}.items():
            if content is None:
                (folder / name).unlink(missing_ok=True)
            else:
                (folder / name).write_bytes(content)
        for target in kind.targets:
            try:
                targets.TARGETS[target](folder, file, context)
            except MnistEdgeError:
                pass

    instrument(atheris)
    rss_mib = (args.headroom_mib * MIB + _peak_rss()) // MIB  # libFuzzer's own memory check
    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-seed={args.seed + 1}", f"-timeout={int(args.timeout)}",
                   f"-rss_limit_mb={rss_mib}", f"-artifact_prefix={out}/", str(corpus)], one_input)
    atheris.Fuzz()  # libFuzzer exits the process when done
    return 0


# Coverage is collected from the readers only: instrumenting everything loaded (torch included,
# 32,000 functions) takes minutes before the first input.
INSTRUMENTED = ("mnist_edge", "numpy.lib._format_impl", "PIL", "tomllib", "gzip", "json")


def instrument(atheris) -> int:
    """Instrument the functions and methods defined in the INSTRUMENTED modules; return how many."""
    count = 0
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(INSTRUMENTED):
            continue
        for value in list(vars(module).values()):
            for function in _defined_in(value, name):
                atheris.instrument_func(function)
                count += 1
    return count


def _defined_in(value, module: str) -> list:
    """`value` if it is a Python function of `module`; the methods of `value` if it is a class of it."""
    if inspect.isfunction(value) and value.__module__ == module:
        return [value]
    if inspect.isclass(value) and value.__module__ == module:
        return [f for f in vars(value).values() if inspect.isfunction(f)]
    return []


def _peak_rss() -> int:
    from scripts.fuzzing.workers import peak_rss

    return peak_rss()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.atheris:
        return fuzz_with_atheris(args)
    return battery(args)


if __name__ == "__main__":
    sys.exit(main())
