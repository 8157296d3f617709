"""What the battery feeds: the input kinds, their seeds and targets, and the damaged cases.

A case is one damaged file in a copy of a seed folder, plus the targets to run on it. Cases are
drawn from (seed, kind, index) alone, so a run is the same for the same --seed whatever the
number of workers, and a failing case can be drawn again by its index.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scripts.fuzzing import documents, mutate
from scripts.fuzzing.onnx_edits import OnnxEditor


@dataclass(frozen=True)
class Kind:
    """One kind of input: the seed folder, the files in it that get damaged, and the readers."""

    name: str
    seed: str
    files: tuple[str, ...]
    fmt: str  # mutate.FORMAT_MUTATORS key
    targets: tuple[str, ...]
    weight: float  # share of the cases
    structured: float = 0.0  # share of the cases damaged by documents.py or onnx_edits.py
    drop: tuple[str, ...] = ()  # seed files left out of the case folder
    fix_hashes: bool = False  # make config.json / manifest.json name the damaged file's sha256


_INPUT = ("run_input", "run_inputs")
_MODEL = ("load_predictor", "model_facts", "parity_models")
_CHECKPOINT = ("checkpoint_inference", "checkpoint_resume")
KINDS: tuple[Kind, ...] = (
    Kind("png", "images", ("digit.png",), "png", _INPUT, 1.0),
    Kind("jpeg", "images", ("digit.jpg",), "jpeg", _INPUT, 1.0),
    Kind("bmp", "images", ("digit.bmp",), "bmp", _INPUT, 1.0),
    Kind("npy", "images", ("digits.npy", "digits-float.npy"), "npy", _INPUT, 1.2),
    Kind("idx", "mnist", ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), "idx",
         ("run_input", "read_idx", "load_test_split", "eval_on_folder"), 1.0),
    Kind("idx-gz", "mnist-gz", ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"), "idx",
         ("run_input", "read_idx", "load_test_split", "eval_on_folder"), 0.8),
    Kind("onnx", "model-int8", ("model.onnx",), "onnx", (*_MODEL, "quantize_reader"), 0.7, structured=0.5,
         drop=("manifest.json",)),
    Kind("onnx-fp32", "model-fp32", ("model.onnx",), "onnx", (*_MODEL, "quantize_reader"), 0.5, structured=0.5,
         fix_hashes=True),
    Kind("onnx-cnn", "model-cnn", ("model.onnx",), "onnx", _MODEL, 0.3, structured=0.5, drop=("manifest.json",)),
    Kind("onnx-external", "model-external", ("model.onnx", "model.onnx.data"), "onnx",
         (*_MODEL, "quantize_reader"), 0.7, structured=0.6, fix_hashes=True),
    Kind("manifest", "model-int8", ("manifest.json",), "json", (*_MODEL, "read_manifest"), 1.2, structured=0.7),
    Kind("checkpoint-config", "checkpoint", ("config.json",), "json", _CHECKPOINT, 0.8, structured=0.7),
    Kind("safetensors", "checkpoint", ("model.safetensors", "state.safetensors"), "safetensors", _CHECKPOINT,
         0.8, fix_hashes=True),
    Kind("sweep-toml", "sweep", ("example.toml", "small.toml"), "toml", ("sweep_config",), 1.0, structured=0.7),
    Kind("search-toml", "search", ("search.toml", "small.toml"), "toml", ("search_config",), 1.0, structured=0.7),
    Kind("pipeline-json", "run", ("pipeline.json",), "json", ("pipeline_resume", "build_report"), 0.8,
         structured=0.7),
    Kind("run-folder", "run", ("data/stats.json", "checkpoint/config.json", "checkpoint/metrics.json",
                               "checkpoint/eval.json", "exported/int8/manifest.json", "parity/parity.json",
                               "bench/bench.json"), "json", ("build_report", "sweep_collect", "bench_previous"),
         0.8, structured=0.7),
)
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}


@dataclass(frozen=True)
class Case:
    """One damaged input: `content` replaces `file` in a copy of the seed folder."""

    kind: str
    index: int
    file: str
    mutation: str
    content: bytes
    targets: tuple[str, ...]
    # Other files of the folder rewritten to match (hash fix-ups); None removes a file.
    extra: dict[str, bytes | None] = field(default_factory=dict)


def apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """`total` shared by weight, exactly (largest remainders), every name getting one when there
    are enough to go round."""
    floor = 1 if total >= len(weights) else 0
    spare = total - floor * len(weights)
    whole = sum(weights.values())
    exact = {name: spare * weight / whole for name, weight in weights.items()}
    shares = {name: floor + int(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: exact[name] - int(exact[name]), reverse=True)
    for name in by_remainder[: total - sum(shares.values())]:
        shares[name] += 1
    return shares


def counts(total: int, kinds: tuple[Kind, ...] = KINDS) -> dict[str, int]:
    """`total` in-process cases shared by the kinds' weights."""
    return apportion(total, {kind.name: kind.weight for kind in kinds})


class CaseMaker:
    """Draws the cases of every kind for one --seed (structured documents are drawn up front)."""

    def __init__(self, seeds: Path, seed: int):
        self.seeds, self.seed = seeds, seed
        self.onnx = OnnxEditor()
        self._documents: dict[tuple[str, str], list[tuple[str, bytes]]] = {}

    def prepare(self, plan: dict[str, int]) -> None:
        """Draw the Hypothesis documents every structured JSON/TOML kind will need."""
        for name, count in plan.items():
            kind = KINDS_BY_NAME[name]
            if kind.fmt not in ("json", "toml") or not kind.structured:
                continue
            needed = max(1, int(count * kind.structured / len(kind.files)) + 1)
            for number, file in enumerate(kind.files):
                text = (self.seeds / kind.seed / file).read_text()
                doc = tomllib.loads(text) if kind.fmt == "toml" else json.loads(text)
                self._documents[name, file] = documents.generate(doc, needed, self.seed * 1000 + number,
                                                                 toml=kind.fmt == "toml")

    def cases(self, plan: dict[str, int]) -> Iterator[Case]:
        """Every case of the plan, the kinds interleaved so that a short run still covers all."""
        order = [(name, index) for name, count in plan.items() for index in range(count)]
        random.Random(self.seed).shuffle(order)
        for name, index in order:
            yield self.case(KINDS_BY_NAME[name], index)

    def case(self, kind: Kind, index: int) -> Case:
        rng = random.Random(f"{self.seed}:{kind.name}:{index}")
        file = rng.choice(kind.files)
        original = (self.seeds / kind.seed / file).read_bytes()
        structured = rng.random() < kind.structured
        mutation, content = self._damage(kind, file, original, index, structured, rng)
        extra = companions(self.seeds, kind, file, content)
        return Case(kind.name, index, file, mutation, content, kind.targets, extra)

    def _damage(self, kind: Kind, file: str, original: bytes, index: int, structured: bool,
                rng: random.Random) -> tuple[str, bytes]:
        if structured and kind.fmt == "onnx" and file.endswith(".onnx"):
            return self.onnx.edit(self.seeds / kind.seed / file, rng, external=kind.name == "onnx-external")
        if structured and kind.fmt in ("json", "toml"):
            drawn = self._documents[kind.name, file]
            return drawn[index % len(drawn)]
        if file.endswith(".gz") and rng.random() < 0.5:
            # The IDX inside: its header fields, then compressed again, reach the IDX parser.
            mutation, raw = mutate.mutate(gzip.decompress(original), kind.fmt, rng)
            return f"gzipped after: {mutation}", gzip.compress(raw, mtime=0)
        return mutate.mutate(original, "bytes" if file.endswith(".gz") else kind.fmt, rng)


def companions(seeds: Path, kind: Kind, file: str, content: bytes) -> dict[str, bytes | None]:
    """The other files of a case folder that change with the damaged one: those the kind leaves
    out (None), and config.json or manifest.json naming the damaged file's sha256 (and size), so
    that the parser behind the hash check gets to read it."""
    extra: dict[str, bytes | None] = {name: None for name in kind.drop}
    if not kind.fix_hashes:
        return extra
    folder = seeds / kind.seed
    digest = hashlib.sha256(content).hexdigest()
    if (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
        config["files"][file] = digest
        extra["config.json"] = json.dumps(config, indent=2).encode()
    elif file == "model.onnx" and (folder / "manifest.json").is_file():
        found = json.loads((folder / "manifest.json").read_text())
        found["files"] |= {"sha256": digest, "bytes": len(content)}
        extra["manifest.json"] = json.dumps(found, indent=2).encode()
    return extra


def materialize(case: Case, seeds: Path, folder: Path) -> Path:
    """Write the case's folder: the seed folder copied, the damaged file and fix-ups written."""
    shutil.copytree(seeds / KINDS_BY_NAME[case.kind].seed, folder, symlinks=True)
    for name, content in {**case.extra, case.file: case.content}.items():
        path = folder / name
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(content)
    return folder
