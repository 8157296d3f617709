"""The `bench` job: measure ONNX models (and the PyTorch baseline), conclude, write the files.

    job.py       the request, the run, the PyTorch baseline
    verdicts.py  ratios, int8 explanations, the comparison with an earlier bench.json
    render.py    the tables (terminal and bench.md), bench.md, bench.png
The measuring primitives are in `mnist_edge.measure`.
"""

from mnist_edge.benchmark.job import BenchOutcome, BenchRequest, parse_batch_sizes, parse_threads, run_benchmark
from mnist_edge.benchmark.render import (
    TableData,
    comparison_table,
    findings,
    headline,
    isa_text,
    markdown,
    tables,
    write_bench_files,
    write_png,
)
from mnist_edge.benchmark.verdicts import (
    BenchReport,
    Comparison,
    MetricChange,
    Ratio,
    Settings,
    compare,
    explain_int8,
    load_previous,
    ratio,
    report,
)

__all__ = [
    "BenchOutcome", "BenchReport", "BenchRequest", "Comparison", "MetricChange", "Ratio", "Settings", "TableData",
    "compare", "comparison_table", "explain_int8", "findings", "headline", "isa_text", "load_previous", "markdown",
    "parse_batch_sizes", "parse_threads", "ratio", "report", "run_benchmark", "tables", "write_bench_files",
    "write_png",
]
