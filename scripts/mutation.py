"""Mutation testing with mutmut 3.8.1, one module at a time, each against only its fast tests.

    MNIST_EDGE_DATA=/work/shared/data .venv/bin/python scripts/mutation.py --modules preprocess,inputs

For each module of MODULES it runs `mutmut run` over that one module with only the listed test
files (less the slow tests left out), then prints one row per module (mutants, killed, survived,
timeout, suspicious/no-tests, equivalent, score = killed / (total - equivalent), run time) and
writes a JSON summary (--out) that holds every surviving mutant with its diff, ready to write a
test against. --mutants 'mnist_edge.preprocess.x_grayscale*' re-tests only the mutants named.

--sample N judges N mutants drawn at random (seeded by --sample-seed) from the module's scope
instead of all of them, for modules whose every mutant compiles C or trains (codegen's graph.py
has 1,800 mutants at ~10 s each): the score is then an estimate, printed with its 95 % Wilson
interval, and the summary records the sample's size, seed and the population it was drawn from.

Why each module runs in its own throw-away copy of the checkout (a temporary folder outside it):
- mutmut reads its settings only from the [tool.mutmut] table of ./pyproject.toml (or setup.cfg)
  and keeps everything in ./mutants/. A copy gets its own pyproject.toml with a generated table,
  so the real pyproject.toml is never edited and no setup.cfg appears in the checkout.
- One mutants/ folder cannot be shared between modules: when a module is not mutated, mutmut
  copies it there with a new mtime, and a later run of that module then takes it for already
  mutated and tests a file without mutants. Fresh copies also mean fresh verdicts: mutmut keeps
  a "survived" verdict until the function changes, even after a test that kills it is written.
- The test suite fails a session that writes into the checkout (tests/conftest.py), and it
  would see files appearing in runs/ or a setup.cfg while another session's tests run.
The copy holds what git would commit (tracked and untracked-not-ignored files), so work in
progress in tests/ and mnist_edge/ is tested as it is on disk.

Exit status: 1 when mutmut could not run a module (its clean test run failed, for instance);
surviving mutants do not change it, this reports and does not gate.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@dataclass(frozen=True)
class Target:
    """One module's mutation run: the tests that judge its mutants, and what is mutated."""

    tests: tuple[str, ...]
    # Node ids in those files left out (pytest --deselect): tests that train a model or take many
    # seconds, which every surviving mutant they cover would pay again.
    left_out: tuple[str, ...] = ()
    # Seconds of fixture setup the tests pay in each worker: mutmut's timeouts count only the
    # test calls ((calls + timeout_constant) x 15), so a slow fixture would read as a timeout.
    fixture_seconds: float = 0.0
    # The functions that decide correctness ("Class.method" for methods); empty: the whole
    # module. Drawing and message-only code outside them is not mutated.
    scope: tuple[str, ...] = ()


# The fast codegen tests (no training, no board): what judges the C generator's modules.
CODEGEN_NUMPY_TESTS = (
    "tests/test_codegen_requantize.py",
    "tests/test_codegen_reference.py",
    "tests/test_foreign_models.py::test_every_layer_of_the_numpy_model_equals_onnxruntimes",
    "tests/test_codegen.py::test_numpy_model_of_the_c_arithmetic_equals_onnxruntime",
    "tests/test_codegen.py::test_fixed_requantization_is_integer_exact_and_within_a_step_of_onnxruntime",
    "tests/test_codegen_kernels.py::test_the_numpy_arithmetic_equals_onnxruntime",
    "tests/test_codegen_kernels.py::test_the_nets_reach_the_edges",
)
CODEGEN_REFUSALS = tuple(f"tests/test_foreign_models.py::{name}" for name in (
    "test_a_model_whose_input_is_not_one_28_by_28_image_is_refused",
    "test_an_unsupported_operator_is_named_with_the_supported_list",
    "test_accumulators_that_could_overflow_int32_are_refused",
    "test_codegen_refuses_an_int8_model_whose_names_are_not_utf8",
    "test_a_map_read_by_a_padded_convolution_and_a_dense_layer_is_refused",
    "test_an_average_pooling_over_the_whole_map_is_computed_as_onnxruntime_does")) + (
    "tests/test_codegen.py::test_for_mcu_quantizes_every_layer_and_the_logits",
    "tests/test_codegen.py::test_for_mcu_refuses_options_that_leave_float",
    "tests/test_codegen_graph.py",
)
CODEGEN_C_TESTS = (
    "tests/test_foreign_models.py::test_the_generated_c_of_each_graph_equals_onnxruntime",
    "tests/test_codegen.py::test_generated_c_equals_onnxruntime_on_every_score",
    "tests/test_codegen.py::test_padding_strides_lone_pooling_and_a_wide_gemm_are_exact",
    "tests/test_codegen_kernels.py::test_every_portable_host_build_equals_onnxruntime",
    "tests/test_codegen_kernels.py::test_every_x86_simd_build_equals_onnxruntime",
    "tests/test_codegen_kernels.py::test_the_cortex_m4_build_runs_the_dsp_kernels",
    "tests/test_codegen_kernels.py::test_an_accumulator_that_could_overflow_is_refused",
    "tests/test_codegen_kernels.py::test_weights_are_laid_out_as_the_kernels_read_them",
    "tests/test_codegen_kernels.py::test_a_scale_the_kernels_cannot_use_is_refused",
    "tests/test_codegen.py::test_fixed_requantization_is_integer_exact_and_within_a_step_of_onnxruntime",
    "tests/test_codegen_graph.py::test_the_c_follows_these_graphs_score_for_score",
)
CODEGEN_VERIFY_TESTS = (
    "tests/test_codegen.py::test_a_different_score_fails_the_proof",
    "tests/test_codegen.py::test_cli_writes_the_library_and_says_it_is_identical",
    "tests/test_codegen_kernels.py::test_native_builds_pick_the_best_family_this_cpu_has",
    "tests/test_codegen_verify.py",
    "tests/test_bench_c.py::test_bench_puts_a_c_library_beside_its_onnx_model",
)

# Module -> its fast covering tests and the part of it that decides correctness.
MODULES: dict[str, Target] = {
    # Bench measurement: the timing loops, statistics, memory, environment, the torch baseline. The
    # loops' arithmetic is judged on a fake clock (test_measure.py); test_bench.py times real models,
    # less the two that time a 5 M multiply-add model and a 51 MB one (seconds each per mutant).
    "mnist_edge/measure.py": Target(("tests/test_measure.py", "tests/test_bench.py"), left_out=(
        "tests/test_bench.py::test_models_of_known_cost_are_timed_by_their_work",
        "tests/test_bench.py::test_memory_added_is_each_models_own_not_the_process_peak",
    )),
    # Parity verdicts: everything but the figure of the disagreeing digits, judged by the tests
    # that need no trained model (test_parity.py trains one, ~10 s per worker).
    "mnist_edge/parity.py": Target(("tests/test_parity_verdicts.py",),
                                   scope=("Thresholds.validate", "ParityReport.pair", "ParityReport.score",
                                          "resolve_models", "_add_sibling", "_is_int8", "folder_of", "compare",
                                          "check", "_fp32_breaches", "_int8_breaches", "run_parity",
                                          "record_parity", "_measure", "_check_request", "_evaluate",
                                          "_disagreements", "_check_labels", "_score", "parity_command",
                                          "write_report", "metrics_for", "update_manifest")),
    # Quantize options: validation, per-architecture defaults, what the manifest records.
    "mnist_edge/quantize.py": Target(("tests/test_quantize.py",), fixture_seconds=10, left_out=(
        "tests/test_quantize.py::test_entropy_calibration_differs_from_minmax",  # 18 s of calibration
    ), scope=("QuantizeOptions.validate", "QuantizeOptions._check_integer_only", "QuantizeOptions.resolved_format",
              "QuantizeOptions.describe", "default_options", "_refuse_static_only", "arch_of", "calibration_images",
              "keep_float_outputs", "final_softmax", "int8_manifest")),
    # Pipeline resume: fingerprints, skipping and redoing, the output folder; not the step bodies
    # (training, export...), which the slow end-to-end tests cover.
    "mnist_edge/pipeline.py": Target(("tests/test_pipeline.py",), fixture_seconds=20, scope=(
        "run_pipeline", "_report_what_exists", "_check_options", "_prepare_out", "_load_or_new_state",
        "_save_state", "_run_step", "_stopped", "_outputs_exist", "_hash", "_file_hash", "_fingerprint",
        "_bench_threads", "_data_checksums", "_cached_sha256", "_trained_on", "PipelineState.step")),
    # Sweep resume and results: the runner (its runs as trials of search's engine), its folder,
    # reading each run's results.
    "mnist_edge/sweep.py": Target(("tests/test_sweep.py",), left_out=(
        "tests/test_sweep.py::test_small_sweep_measures_and_resumes",  # trains models: 18-28 s
    ), scope=("run_sweep", "_run_all", "_run_spec", "_run_one", "_recipe_changed", "_prepare", "collect",
              "write_results", "_csv", "markdown_table")),
    # Runtime input handling: model layouts, dtypes, normalisation, batching, outputs.
    "mnist_edge/runtime.py": Target(
        ("tests/test_runtime.py", "tests/test_runtime_rules.py", "tests/test_runtime_details.py",
         "tests/test_cli_runtime.py",
         # the hostile models: the memory cap, control flow, external data, names, batches
         *(f"tests/test_reliability.py::{name}" for name in (
             "test_a_graph_asking_for_a_huge_tensor_is_a_clear_error_within_the_memory_cap",
             "test_mnist_edge_memory_limit_mb_caps_every_session", "test_a_model_with_a_loop_is_refused_before_it_runs",
             "test_an_initializer_larger_than_its_external_file_is_a_clear_error",
             "test_external_data_through_a_symlink_leaving_the_folder_is_refused",
             "test_onnxruntime_logs_only_with_verbose", "test_a_model_without_outputs_is_a_typed_error",
             "test_a_huge_fixed_batch_is_refused_before_any_padding",
             "test_a_name_that_is_not_utf8_is_a_typed_error"))),
        # bench's own tests (seconds of timing loops each) are left out: they judge measure.py.
        left_out=tuple(f"tests/test_cli_runtime.py::{name}" for name in (
            "test_bench_writes_json_markdown_and_png", "test_bench_tables_profile_and_compare",
            "test_bench_torch_baseline_from_a_checkpoint",
            "test_one_model_file_shows_one_size_in_terminal_markdown_png_and_report"))),
    "mnist_edge/inputs.py": Target(("tests/test_inputs.py",)),
    # Search: the config and its distributions, the runner (trial counts, retries, the chain's
    # figures), the storage (URLs, heartbeat, the creation race, the space check); each judged by
    # its own fast tests (the workers of test_search.py train models).
    "mnist_edge/search/space.py": Target(("tests/test_search_space.py",)),
    "mnist_edge/search/engine.py": Target(("tests/test_search_engine.py",)),
    "mnist_edge/search/storage.py": Target(("tests/test_search_storage.py",)),
    # Web: the site's files, index.html per engine and model.json (the browser tests of test_web.py are
    # left to CI); the WebAssembly build, judged without the node runs over 2,000-10,000 images each.
    "mnist_edge/web/site.py": Target(("tests/test_web_site.py",)),
    "mnist_edge/web/wasm.py": Target(("tests/test_web_wasm.py",), left_out=tuple(
        f"tests/test_web_wasm.py::{name}" for name in (
            "test_wasm_scores_equal_the_c_librarys_bit_for_bit", "test_wasm_scores_equal_onnxruntimes",
            "test_the_module_loads_from_base64_and_from_a_url", "test_a_model_json_of_another_model_is_refused"))),
    "mnist_edge/preprocess.py": Target(("tests/test_preprocess.py",)),
    # The C generator: its arithmetic in numpy, judged by onnxruntime itself (requantization's
    # edges, every layer of the shipped and foreign graphs).
    "mnist_edge/codegen/reference.py": Target(CODEGEN_NUMPY_TESTS, fixture_seconds=5),
    # Reading onnxruntime's graph: the numpy tests above, the refusals and the foreign graphs' C.
    "mnist_edge/codegen/graph.py": Target((*CODEGEN_NUMPY_TESTS, *CODEGEN_REFUSALS, *CODEGEN_C_TESTS),
                                          fixture_seconds=5),
    # Writing the C: every mutant compiles it (portable -O2 and x86 SIMD builds, 300-1,000 images).
    "mnist_edge/codegen/emit.py": Target(CODEGEN_C_TESTS, fixture_seconds=5),
    # The proof itself: a wrong score must fail it, the harness must report what it built.
    "mnist_edge/codegen/verify.py": Target((*CODEGEN_C_TESTS, *CODEGEN_VERIFY_TESTS), fixture_seconds=5),
}

MUTMUT_VERSION = "3.8.1"
REPO = Path(__file__).resolve().parents[1]
PACKAGE = "mnist_edge"
EQUIVALENT_FILE = REPO / "scripts" / "mutation_equivalent.toml"
DEFAULT_OUT = REPO / "runs" / "mutation" / "summary.json"
# mutmut copies these into mutants/ itself; every other top-level entry goes in `also_copy`.
COPIED_BY_MUTMUT = {PACKAGE, "tests", "pyproject.toml"}


@dataclass
class ModuleResult:
    module: str
    tests: tuple[str, ...]
    left_out: tuple[str, ...]
    ok: bool = False
    error: str = ""
    run_seconds: float = 0.0
    status_counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    killed: int = 0
    survived: int = 0
    timeout: int = 0
    suspicious_or_no_tests: int = 0
    equivalent: int = 0
    score_percent: float | None = None
    population: int = 0  # mutants in scope; `total` of them were judged (all, unless sampled)
    sample_seed: int | None = None
    score_interval: tuple[float, float] | None = None  # 95 % Wilson interval when sampled
    survivors: list[dict] = field(default_factory=list)
    not_killed_other: list[dict] = field(default_factory=list)
    equivalents: list[dict] = field(default_factory=list)
    stale_equivalents: list[dict] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default="", help="comma-separated paths or stems (e.g. preprocess,inputs); "
                        "default: all of " + ", ".join(MODULES))
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel (default 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON summary (default %(default)s)")
    parser.add_argument("--mutants", default="",
                        help="comma-separated globs of mutant names: test only those "
                        "(e.g. 'mnist_edge.preprocess.x_grayscale*')")
    parser.add_argument("--sample", type=int, default=0,
                        help="judge this many mutants drawn at random from the module's scope (0: all)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of --sample's draw (default 0)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep each module's temporary copy (to run `mutmut browse` or `mutmut show` there)")
    return parser.parse_args(argv)


def select_modules(spec: str) -> list[str]:
    """'preprocess,mnist_edge/inputs.py' -> table keys; an empty spec selects every module."""
    if not spec.strip():
        return list(MODULES)
    by_stem = {Path(module).stem: module for module in MODULES}
    chosen = []
    for name in (part.strip() for part in spec.split(",") if part.strip()):
        module = name if name in MODULES else by_stem.get(name)
        if module is None:
            sys.exit(f"unknown module {name!r}; known: {', '.join(MODULES)}")
        chosen.append(module)
    return chosen


def check_environment() -> Path:
    """The mutmut executable of this interpreter's environment, at the pinned version."""
    try:
        installed = version("mutmut")
    except PackageNotFoundError:
        installed = None
    if installed != MUTMUT_VERSION:
        sys.exit(f"mutmut {MUTMUT_VERSION} is needed (found {installed}): pip install -e '.[mutation]'")
    if not os.environ.get("MNIST_EDGE_DATA"):
        sys.exit("MNIST_EDGE_DATA is not set: the tests need MNIST (e.g. MNIST_EDGE_DATA=/work/shared/data)")
    # `python -m mutmut` re-executes mutmut's __main__ (it warns); its console script does not.
    executable = Path(sys.executable).parent / "mutmut"
    return executable if executable.exists() else Path(shutil.which("mutmut") or "mutmut")


def load_equivalents(path: Path = EQUIVALENT_FILE) -> dict[str, list[dict]]:
    """module -> [{mutant, reason, diff_contains?}], checked enough to fail early on a typo."""
    if not path.exists():
        return {}
    table = tomllib.loads(path.read_text(encoding="utf-8"))
    for module, entries in table.items():
        if module not in MODULES:
            print(f"warning: {path.name} names {module!r}, which is not in MODULES", file=sys.stderr)
        for entry in entries:
            if not entry.get("mutant") or not entry.get("reason"):
                sys.exit(f"{path.name}: every entry of {module!r} needs `mutant` and `reason`: {entry}")
    return table


def repository_files() -> list[Path]:
    """What git would commit: tracked files still on disk plus untracked files not ignored."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, check=True, capture_output=True).stdout.decode()
    return [Path(name) for name in listing.split("\0") if name and (REPO / name).exists()]


def make_work_copy(work: Path) -> None:
    for relative in repository_files():
        target = work / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        # copy2 keeps mtimes: mutmut compares them to decide whether a file is already mutated.
        shutil.copy2(REPO / relative, target, follow_symlinks=False)


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"  # JSON strings are TOML strings


def write_mutmut_config(work: Path, module: str, target: Target) -> None:
    """Append a [tool.mutmut] table for this one module to the copy's pyproject.toml."""
    pyproject = work / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    if "mutmut" in tomllib.loads(text).get("tool", {}):
        sys.exit("pyproject.toml has a [tool.mutmut] table; this script writes its own per module: remove it")
    also_copy = sorted(entry.name for entry in work.iterdir() if entry.name not in COPIED_BY_MUTMUT)
    settings = {
        # The whole package is copied into mutants/ so it imports; only `module` gets mutants.
        "source_paths": toml_list([PACKAGE]),
        "only_mutate": toml_list([module]),
        "pytest_add_cli_args_test_selection": toml_list(list(target.tests)),
        "pytest_add_cli_args": toml_list([arg for node in target.left_out for arg in ("--deselect", node)]),
        "timeout_constant": str(1.0 + target.fixture_seconds),  # mutmut's default is 1.0
        # tests read sweeps/, exported/ and scripts/ relative to the checkout, which is mutants/ then.
        "also_copy": toml_list(also_copy),
        # The copy is not a git checkout; git would answer for the enclosing one, if any.
        "use_git_change_detection": "false",
        # mutmut's default ("fork") forks each worker from the process that already ran the tests
        # in-process for its stats; threads those tests left (torch, onnxruntime) hold locks the
        # forked copy never gets back: sweep.py's workers hung on a futex until their timeout. The
        # fork server forks workers from a process that has only collected the tests.
        "process_isolation": '"forkserver"',
    }
    table = "\n".join(f"{key} = {value}" for key, value in settings.items())
    pyproject.write_text(f"{text.rstrip()}\n\n[tool.mutmut]\n{table}\n", encoding="utf-8")


def keep_verdicts_out_of_the_test_tree(work: Path, module: str) -> None:
    """Make mutmut's verdict file mutants/<module>.meta a symlink to a file outside mutants/.

    The tests run with mutants/ as the checkout, and tests/conftest.py fails any session during
    which a file there changes (checked by lstat). mutmut rewrites that .meta file each time a
    mutant finishes, while the other children are still testing theirs: with 2 children, 75 of
    529 preprocess.py mutants were "killed" that way and survived with 1 child. Writes through a
    symlink leave the link's own lstat unchanged, so the guard keeps watching everything else.
    """
    meta = work / "mutants" / f"{module}.meta"
    outside = work / "mutmut-verdicts" / module.replace("/", ".")
    meta.parent.mkdir(parents=True, exist_ok=True)
    outside.parent.mkdir(parents=True, exist_ok=True)
    meta.symlink_to(outside)  # dangling until mutmut's first save: it reads a missing file as "no verdicts yet"


def run_mutmut(mutmut: Path, work: Path, selection: list[str], args: argparse.Namespace, log: Path) -> int:
    # CI=true turns a skipped test into a failure (tests/ci_skips.py): a test that silently skips
    # would let every mutant it covers survive; this way mutmut's clean run fails loudly instead.
    env = {**os.environ, "CI": "true"}
    with log.open("w", encoding="utf-8") as output:
        # Its own session, so that on Ctrl-C the whole group goes, workers included: killing mutmut
        # alone leaves its forked workers running their tests.
        command = [str(mutmut), "run", "--max-children", str(args.max_children), *selection]
        process = subprocess.Popen(command, cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            return process.wait()
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise


def mutant_globs(args: argparse.Namespace, module: str) -> list[str]:
    """--mutants when given, else the module's scope as mutmut's name globs (empty: everything)."""
    given = [part.strip() for part in args.mutants.split(",") if part.strip()]
    return given or scope_globs(module, MODULES[module].scope)


# mutmut's own mutation generator, run in the work copy (it reads the [tool.mutmut] table there):
# the names `mutmut run` will give the module's mutants, without generating or testing them.
LIST_MUTANTS = ("import sys\nfrom mutmut.mutation.file_mutation import mutate_file_contents\n"
                "path = sys.argv[1]\n"
                "print('\\n'.join(mutate_file_contents(path, open(path, encoding='utf-8').read()).mutant_names))")


def module_mutants(work: Path, module: str) -> list[str]:
    """Every mutant name of `module` as `mutmut results` spells it (package prefix included)."""
    listing = subprocess.run([sys.executable, "-c", LIST_MUTANTS, module], cwd=work, check=True,
                             capture_output=True, text=True).stdout
    prefix = module.removesuffix(".py").replace("/", ".")
    return [f"{prefix}.{name}" for name in listing.split()]


def sampled_selection(work: Path, module: str, args: argparse.Namespace) -> tuple[list[str], int]:
    """(--sample mutants drawn from the module's scope, the scope's size)."""
    globs = mutant_globs(args, module)
    in_scope = [name for name in module_mutants(work, module)
                if not globs or any(fnmatch.fnmatchcase(name, glob) for glob in globs)]
    chosen = random.Random(args.sample_seed).sample(in_scope, min(args.sample, len(in_scope)))
    return sorted(chosen), len(in_scope)


def wilson_interval(killed: int, judged: int, z: float = 1.96) -> tuple[float, float]:
    """95 % interval of the kill rate estimated from a sample, in percent (Wilson: stays inside
    [0, 100] and holds for rates near 100 %, where the normal approximation does not)."""
    p = killed / judged
    centre = (p + z * z / (2 * judged)) / (1 + z * z / judged)
    half = z * math.sqrt(p * (1 - p) / judged + z * z / (4 * judged * judged)) / (1 + z * z / judged)
    return round(100 * (centre - half), 1), round(100 * (centre + half), 1)


def scope_globs(module: str, functions: tuple[str, ...]) -> list[str]:
    """'mnist_edge/parity.py', ('check', 'Thresholds.validate') -> mutmut's mangled names:
    mnist_edge.parity.x_check__mutmut_*, mnist_edge.parity.xǁThresholdsǁvalidate__mutmut_*."""
    prefix = module.removesuffix(".py").replace("/", ".")
    globs = []
    for function in functions:
        owner, _, name = function.rpartition(".")
        mangled = f"xǁ{owner}ǁ{name}" if owner else f"x_{name}"
        globs.append(f"{prefix}.{mangled}__mutmut_*")
    return globs


def mutant_statuses(mutmut: Path, work: Path, globs: list[str]) -> dict[str, str]:
    """{mutant name: status} from `mutmut results --all true` ("    name: status" lines), only
    the names matching `globs` when there are any (the others were not tested this time)."""
    listing = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=work, check=True,
                             capture_output=True, text=True).stdout
    statuses = {}
    for line in listing.splitlines():
        name, separator, status = line.strip().partition(": ")
        if separator and (not globs or any(fnmatch.fnmatchcase(name, glob) for glob in globs)):
            statuses[name] = status
    return statuses


def mutant_diffs(work: Path, module: str, names: list[str]) -> dict[str, str]:
    """The diff `mutmut show NAME` prints, for each name.

    Called in-process: each `mutmut show` starts a Python that imports mutmut's whole UI (about
    1.2 s), minutes for a module with a hundred survivors. Tied to mutmut 3.8.1's internals,
    which is why the version is pinned and checked.
    """
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    with contextlib.chdir(work):  # mutmut reads mutants/ relative to the working directory
        return {name: get_diff_for_mutant(name, path=module) for name in names}


def function_of(mutant: str) -> str:
    """'pkg.mod.xǁInputSetǁ__len____mutmut_2' -> 'InputSet.__len__'; 'pkg.mod.x_f__mutmut_1' -> 'f'."""
    mangled = mutant.rpartition(".")[2].rpartition("__mutmut_")[0]
    if mangled.startswith("xǁ"):
        return ".".join(mangled[2:].split("ǁ"))
    return mangled.removeprefix("x_")


def split_equivalents(statuses: dict[str, str], listed: list[dict]) -> tuple[list[dict], list[dict]]:
    """(equivalent mutants, stale entries). Names are positions in a function, so an entry goes
    stale when the function changes: missing, killed, or no longer showing `diff_contains`."""
    equivalent, stale = [], []
    for entry in listed:
        status = statuses.get(entry["mutant"])
        if status is None or status == "killed":
            stale.append({**entry, "status": status or "no such mutant"})
        else:
            equivalent.append({**entry, "status": status})
    return equivalent, stale


def check_expected_diffs(equivalent: list[dict], stale: list[dict], diffs: dict[str, str]) -> list[dict]:
    """Moves an entry whose mutant's diff no longer contains `diff_contains` to `stale`."""
    still_equivalent = []
    for entry in equivalent:
        expected = entry.get("diff_contains")
        if expected and expected not in diffs[entry["mutant"]]:
            stale.append({**entry, "status": "diff_contains not found: the function changed"})
        else:
            still_equivalent.append(entry)
    return still_equivalent


def tally(result: ModuleResult, statuses: dict[str, str], equivalent_names: set[str]) -> None:
    counted = {name: status for name, status in statuses.items() if name not in equivalent_names}
    result.status_counts = {status: list(counted.values()).count(status) for status in sorted(set(counted.values()))}
    result.total = len(statuses)
    result.equivalent = len(equivalent_names)
    result.killed = result.status_counts.get("killed", 0)
    result.survived = result.status_counts.get("survived", 0)
    result.timeout = result.status_counts.get("timeout", 0)
    result.suspicious_or_no_tests = len(counted) - result.killed - result.survived - result.timeout
    scored = result.total - result.equivalent
    result.score_percent = round(100.0 * result.killed / scored, 1) if scored else None


def collect_results(result: ModuleResult, mutmut: Path, work: Path, globs: list[str],
                    equivalents: list[dict]) -> None:
    statuses = mutant_statuses(mutmut, work, globs)
    if globs:  # entries outside the selection were not checked this time
        equivalents = [entry for entry in equivalents if entry["mutant"] in statuses]
    equivalent, stale = split_equivalents(statuses, equivalents)
    not_killed = [name for name, status in statuses.items() if status != "killed"]
    diffs = mutant_diffs(work, result.module, not_killed)
    equivalent = check_expected_diffs(equivalent, stale, diffs)
    equivalent_names = {entry["mutant"] for entry in equivalent}
    tally(result, statuses, equivalent_names)
    result.equivalents, result.stale_equivalents = equivalent, stale
    for name in not_killed:
        if name in equivalent_names:
            continue
        entry = {"mutant": name, "function": function_of(name), "status": statuses[name], "diff": diffs[name]}
        (result.survivors if statuses[name] == "survived" else result.not_killed_other).append(entry)


def mutate_module(module: str, mutmut: Path, args: argparse.Namespace, equivalents: list[dict]) -> ModuleResult:
    target = MODULES[module]
    result = ModuleResult(module=module, tests=target.tests, left_out=target.left_out)
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{Path(module).stem}-"))
    # The log grows in the work copy and is copied next to the summary at the end: a file growing
    # in runs/ would fail the checkout guard of a test session running meanwhile.
    log, kept_log = work / "mutmut.log", args.out.parent / f"{Path(module).stem}.mutmut.log"
    try:
        make_work_copy(work)
        write_mutmut_config(work, module, target)
        keep_verdicts_out_of_the_test_tree(work, module)
        selection = mutant_globs(args, module)
        if args.sample:
            selection, result.population = sampled_selection(work, module, args)
            result.sample_seed = args.sample_seed
        started = time.monotonic()
        exit_code = run_mutmut(mutmut, work, selection, args, log)
        result.run_seconds = round(time.monotonic() - started, 1)
        if exit_code != 0:
            result.error = f"mutmut run exited {exit_code}; see {kept_log}"
            print(log.read_text(encoding="utf-8", errors="replace")[-3000:], file=sys.stderr)
            return result
        collect_results(result, mutmut, work, selection, equivalents)
        if not args.sample:
            result.population = result.total
        elif result.total > result.equivalent:
            result.score_interval = wilson_interval(result.killed, result.total - result.equivalent)
        result.ok = True
        return result
    finally:
        if log.exists():
            kept_log.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, kept_log)
        if args.keep_work:
            print(f"{module}: work copy kept in {work} (cd there and run `mutmut browse`)")
        else:
            shutil.rmtree(work, ignore_errors=True)


def print_table(results: list[ModuleResult]) -> None:
    header = ("module", "total", "killed", "survived", "timeout", "susp/no-tests", "equivalent", "score", "time")
    rows = [header]
    for r in results:
        score = "-" if r.score_percent is None else f"{r.score_percent:.1f}%"
        if r.score_interval:
            score += f" ({r.score_interval[0]:.1f}-{r.score_interval[1]:.1f}, {r.total} of {r.population})"
        counts = (r.total, r.killed, r.survived, r.timeout, r.suspicious_or_no_tests, r.equivalent)
        rows.append((r.module, *(map(str, counts) if r.ok else ["-"] * 6),
                     score if r.ok else "FAILED", f"{r.run_seconds:.0f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                        for i, (cell, width) in enumerate(zip(row, widths, strict=True))))


def print_details(results: list[ModuleResult]) -> None:
    """Survivors counted per function, and the equivalent mutants with their reasons."""
    for r in results:
        if r.error:
            print(f"\n{r.module}: {r.error}")
        by_function: dict[str, int] = {}
        for survivor in r.survivors:
            by_function[survivor["function"]] = by_function.get(survivor["function"], 0) + 1
        if by_function:
            print(f"\n{r.module}: survivors by function: "
                  + ", ".join(f"{name} {count}" for name, count in sorted(by_function.items())))
        for other in r.not_killed_other:
            print(f"  {other['status']}: {other['mutant']}")
        for entry in r.equivalents:
            print(f"  equivalent: {entry['mutant']}: {entry['reason']}")
        for entry in r.stale_equivalents:
            print(f"  STALE equivalent entry ({entry['status']}): {entry['mutant']}")


def write_summary(args: argparse.Namespace, results: list[ModuleResult]) -> None:
    summary = {"mutmut": MUTMUT_VERSION, "max_children": args.max_children, "mutants": args.mutants,
               "sample": args.sample, "sample_seed": args.sample_seed,
               "modules": [asdict(result) for result in results]}
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    modules = select_modules(args.modules)
    mutmut = check_environment()
    equivalents = load_equivalents()
    results = []
    for module in modules:
        left_out = f" (less {len(MODULES[module].left_out)} slow)" if MODULES[module].left_out else ""
        print(f"{module}: mutmut over {', '.join(MODULES[module].tests)}{left_out} ...", flush=True)
        results.append(mutate_module(module, mutmut, args, equivalents.get(module, [])))
        # After every module, not only at the end: a long run that is stopped keeps what it measured.
        write_summary(args, results)
        print_table(results[-1:])
    print()
    print_table(results)
    print_details(results)
    print(f"\nsummary: {args.out}")
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
