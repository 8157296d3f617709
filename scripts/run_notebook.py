"""Execute a notebook top to bottom in a fresh temporary folder, with a Jupyter kernel of this
interpreter (the project's venv, whatever kernels the user has installed), under a time limit
for the whole run; a cell that raises stops it with exit 1. `--store` writes the executed
notebook, outputs included, back over the original: how `notebooks/walkthrough.ipynb` gets the
outputs it is stored with. `tests/test_notebook.py` runs the same function.

    MNIST_EDGE_DATA=../shared/data .venv/bin/python scripts/run_notebook.py notebooks/walkthrough.ipynb
    MNIST_EDGE_DATA=../shared/data .venv/bin/python scripts/run_notebook.py notebooks/walkthrough.ipynb --store
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KERNEL_NAME = "mnist-edge-venv"
# A guard against a hung or runaway run, not the speed goal (3 minutes on an idle 2-core CPU,
# which this script's printout checks): a machine shared with other jobs takes several times longer.
TIME_LIMIT_S = 600.0


@dataclass(frozen=True)
class Executed:
    notebook: Any  # nbformat.NotebookNode, outputs filled in (no timestamps)
    seconds: float
    folder: Path  # where it ran (the notebook's working directory)
    cell_seconds: list[tuple[int, float]]  # (code cell number from 1, seconds), in notebook order
    cpu_seconds: float  # user + system time of the kernel and what it ran (compilers), all cores


def kernel_manager(kernels: Path) -> Any:
    """A kernel manager whose only kernel is this interpreter running ipykernel."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = kernels / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mnist-edge (this venv)", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    # IPC sockets in the run's folder: nothing listens on the network.
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs, transport="ipc",
                         ip=str(kernels / "kernel"))


def execute(notebook: Path, folder: Path, time_limit: float = TIME_LIMIT_S) -> Executed:
    """Run a copy of `notebook` in `folder` (its working directory); nbclient.CellExecutionError
    when a cell raises, nbclient's timeout error when the whole run passes `time_limit`."""
    import nbformat
    from nbclient import NotebookClient

    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / notebook.name
    shutil.copyfile(notebook, copy)
    nb = nbformat.read(copy, as_version=4)
    before = _children_cpu_seconds()
    start = time.monotonic()
    deadline = start + time_limit
    km = kernel_manager(folder / ".kernels")
    client = NotebookClient(
        nb, km=km, resources={"metadata": {"path": str(folder)}},
        # One limit for the whole run: each cell may take what is left of it.
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        allow_errors=False)
    try:
        client.execute()
    finally:
        if km.has_kernel:  # nbclient shuts down only the kernels it made itself
            km.shutdown_kernel(now=True)
    seconds = time.monotonic() - start
    return Executed(nb, seconds, folder, _cell_seconds(nb), _children_cpu_seconds() - before)


def _children_cpu_seconds() -> float:
    """CPU time of the child processes that have ended: the kernel, once shut down and waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cell_seconds(nb: Any) -> list[tuple[int, float]]:
    """Each code cell's run time, from nbclient's timestamps, which are then removed: the stored
    notebook's diffs show what changed, not when."""
    from datetime import datetime

    found = []
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code, start=1):
        stamps = cell.metadata.pop("execution", {})
        began, ended = stamps.get("iopub.execute_input"), stamps.get("shell.execute_reply")
        if began and ended:
            seconds = (datetime.fromisoformat(ended.replace("Z", "+00:00"))
                       - datetime.fromisoformat(began.replace("Z", "+00:00"))).total_seconds()
            found.append((number, seconds))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--store", action="store_true", help="write the executed notebook back over the original")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S, help="seconds for the whole run")
    args = parser.parse_args()
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    with tempfile.TemporaryDirectory(prefix="mnist-edge-notebook-") as tmp:
        try:
            executed = execute(args.notebook, Path(tmp), args.time_limit)
        except (CellExecutionError, CellTimeoutError) as exc:
            print(f"error: {args.notebook}: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
            raise SystemExit(1) from None
    print(f"{args.notebook}: ran top to bottom in {executed.seconds:.1f} s (kernel start-up included), "
          f"{executed.cpu_seconds:.1f} s of CPU time, load average {os.getloadavg()[0]:.1f} at the end")
    print("code cells, seconds: " + ", ".join(f"{n}: {s:.1f}" for n, s in executed.cell_seconds))
    if args.store:
        nbformat.write(executed.notebook, args.notebook)
        print(f"stored the outputs in {args.notebook}")


if __name__ == "__main__":
    main()
