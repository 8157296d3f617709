"""`mnist-edge search`: a multi-objective Optuna study over recipes, on one machine or many."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from mnist_edge.cli.commands_train import TrainingDisplay
from mnist_edge.cli.common import DataDirOption, DownloadOption, JsonOption, command, console, fail, print_json
from mnist_edge.units import format_bytes, format_us


@command()
def search(
    config: Path = typer.Argument(..., help="Search config (TOML): a [search] table and its [search.space]."),
    out: Path = typer.Option(..., "--out", help="Folder for one run folder per trial plus the results (and the "
                             "study, unless --storage)."),
    trials: int | None = typer.Option(None, "--trials", help="Stop when the study holds this many trials "
                                      "(default: the config's `trials`)."),
    storage: str | None = typer.Option(None, "--storage", help="The study's storage: an RDB URL "
                                       "(postgresql://user@host/db, mysql://..., sqlite:///path) or an Optuna "
                                       "journal file (PATH.log). Default: OUT/study.db."),
    worker: bool = typer.Option(False, "--worker", help="Join the study (creating it if new) while other "
                                "workers may be running on it."),
    resume: bool = typer.Option(False, "--resume", help="Continue the study; trials stopped by Ctrl-C run again."),
    force: bool = typer.Option(False, "--force", help="Start over: drop the study and the trial folders in --out."),
    heartbeat: int = typer.Option(60, "--heartbeat", help="Seconds between a worker's heartbeats (RDB storages): "
                                  "a trial silent for twice this is failed and retried."),
    cpu_lock: Path | None = typer.Option(None, "--cpu-lock", help="Lock file the workers of one machine share, "
                                         "so latency is measured while none of them computes (default: one in "
                                         "the temporary folder)."),
    data_dir: DataDirOption = None,
    download: DownloadOption = True,
    as_json: JsonOption = False,
) -> None:
    """Search recipes and layouts for the best deployed int8 models: validation accuracy against
    batch-1 latency (and file size), with Optuna's NSGA-II.

    Each trial trains, exports, quantizes and benchmarks one recipe in OUT/trial-NNNN; a failing
    trial is recorded and the search goes on. Writes results.csv, results.md, results.json and
    pareto.png, with the test accuracy of the Pareto trials measured once at the end.

    Example: mnist-edge search sweeps/search.toml --out runs/search --trials 40
    """
    try:
        from mnist_edge.search.space import load_search_config
        from mnist_edge.search.study import SearchOptions, run_search
    except ImportError as exc:
        raise fail(f"search needs the training extra ({exc.name} is missing): pip install 'mnist-edge[train]'") \
            from None
    parsed = load_search_config(config)
    options: dict[str, Any] = {"out": out, "trials": trials, "storage_url": storage, "worker": worker,
                               "resume": resume, "force": force, "heartbeat_seconds": heartbeat,
                               "data_dir": data_dir, "download": download}
    if cpu_lock is not None:
        options["cpu_lock"] = cpu_lock
    if as_json:
        result = run_search(parsed, SearchOptions(**options))
        print_json({"study": result.study, "storage": result.storage, "trials": result.trials,
                    "files": {k: str(v) for k, v in result.paths.items()}})
        return
    console.print(f"search [bold]{escape(parsed.name)}[/]: {', '.join(parsed.objectives)} over "
                  f"{len(parsed.space)} parameters -> {escape(str(out))}")
    with TrainingDisplay() as display:
        options["hooks"] = _hooks(display)
        result = run_search(parsed, SearchOptions(**options))
    _summary(result, out)


def _hooks(display: TrainingDisplay) -> dict[str, Any]:
    def trial_start(number: int, folder: str, recipe: Any) -> None:
        knobs = "".join(f" {k}={getattr(recipe, k)}" for k in ("width", "depth") if getattr(recipe, k))
        console.print(f"[bold]trial {number}[/] ({recipe.arch}{knobs}, {recipe.epochs} epochs, lr {recipe.lr:.3g}, "
                      f"batch {recipe.batch_size}) in {escape(folder)}")

    def trial_end(row: dict[str, Any]) -> None:
        if row["state"] == "complete":
            console.print(f"  done: val {row['val_accuracy']:.2%}, {format_us(row['latency_us'])}, "
                          f"{format_bytes(row['int8_bytes'])}")
        else:
            console.print(f"  [red]{row['state']}[/]: {escape(row['message'])}")

    return {"trial_start": trial_start, "trial_end": trial_end, "train_step": display.step,
            "train_epoch": display.epoch, "train_start": display.start}


def _summary(result: Any, out: Path) -> None:
    done = [r for r in result.trials if r["state"] == "complete"]
    front = [r for r in done if r["pareto"]]
    console.print(f"[bold]done[/]: study {escape(result.study)} in {escape(result.storage)}: {len(result.trials)} "
                  f"trials, {len(done)} complete, {len(front)} on the Pareto front")
    for r in sorted(front, key=lambda r: r["latency_us"]):
        test = f", test {r['test_accuracy']:.2%}" if r["test_accuracy"] is not None else ""
        console.print(f"  ★ trial {r['trial']} ({r['arch']}): val {r['val_accuracy']:.2%}, "
                      f"{format_us(r['latency_us'])}, {format_bytes(r['int8_bytes'])}{test}")
    console.print(f"results: {escape(str(out))}/results.md, {escape(str(out))}/pareto.png")
