"""`report.html`: one self-contained page for a pipeline run folder, rebuilt from its JSON files.

Everything the page needs is inside it: figures are base64 data URIs, the CSS is inline, there
is no JavaScript and no external link, so it opens offline, mails as one file and prints. Any
part of the run may be missing or unreadable (a failed or partial run): each section then shows
what exists and names what is missing. Only standard-library code; nothing here prints.

The run folder (see mnist_edge.pipeline): pipeline.json, data/, checkpoint/, exported/NAME/,
parity/, bench/. The package: run_folder (reading it), formats and blocks (values and HTML
pieces), sections_training and sections_exported (the sections), page (frame, page.html, style.css).
"""

from __future__ import annotations

from pathlib import Path

from mnist_edge.errors import ConfigError, OutputError
from mnist_edge.fileio import atomic_write_text
from mnist_edge.report.formats import FORMATS, NA, ROLES, STATUS_KINDS
from mnist_edge.report.page import SECTIONS, render_page
from mnist_edge.report.run_folder import EXPECTED, RunFolder, manifest_dirs
from mnist_edge.report.sections_exported import ENV_ROWS, PAIR_ROWS, PARITY_CHECKS
from mnist_edge.report.sections_training import EPOCH_COLUMNS

__all__ = [
    "ENV_ROWS", "EPOCH_COLUMNS", "EXPECTED", "FORMATS", "NA", "PAIR_ROWS", "PARITY_CHECKS", "REPORT_FILE",
    "ROLES", "SECTIONS", "STATUS_KINDS", "RunFolder", "build_report", "check_run_dir", "missing_parts",
    "render_report",
]

REPORT_FILE = "report.html"


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
    return render_page(RunFolder(Path(run_dir)))


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
    if not any((root / rel).is_file() for rel, _, _ in EXPECTED) and not manifest_dirs(root):
        names = ", ".join(rel for rel, _, _ in EXPECTED[:3])
        raise ConfigError(f"holds no pipeline results ({names}, ... are all missing); "
                          "create them with: mnist-edge pipeline --out FOLDER", root)
    return root
