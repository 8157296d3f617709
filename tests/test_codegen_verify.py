"""The proof's harness (mnist_edge/codegen/verify.py) on the shipped tiny library: what a C that
does not compile says, how pixels reach the compiled C, and which layer it names when the numpy
model and onnxruntime part (exactly in float, by more than one step with --requant fixed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from mnist_edge.codegen import load_integer_model, reference, verify  # noqa: E402
from mnist_edge.errors import CodegenError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_C, TINY_INT8 = REPO / "exported" / "tiny-mcu", REPO / "exported" / "tiny-mcu-int8"


def compiler() -> str:
    found = shutil.which("cc")
    if found is None:
        pytest.skip("no C compiler (apt-get install gcc)")
    return found


def test_c_that_does_not_compile_is_named_by_its_first_error_and_the_flags(tmp_path: Path) -> None:
    cc = compiler()
    library = Path(shutil.copytree(TINY_C, tmp_path / "lib"))
    (library / "model.c").write_text('#include "model.h"\nint mnist_edge_predict(void) { return missing; }\n')
    with pytest.raises(CodegenError) as caught:
        verify.build_harness(library, tmp_path, "cc", ("-O1",))
    prefix = f"the generated C does not compile with {cc} {' '.join(verify.STRICT)} -O1: "
    reason = caught.value.reason
    assert reason.startswith(prefix), reason
    first = reason.removeprefix(prefix)
    assert ": error: " in first and "model.c:2:" in first and not first.startswith("In file included"), first


def test_pixels_reach_the_c_as_bytes_whatever_their_integer_type(tmp_path: Path) -> None:
    compiler()
    exe = verify.build_harness(TINY_C, tmp_path, "cc", ("-O1",))
    pixels = np.random.default_rng(5).integers(0, 256, (7, 784), dtype=np.uint8)
    scores = verify.c_scores(exe, pixels, 10)
    assert scores.dtype == np.uint8 and scores.shape == (7, 10)
    np.testing.assert_array_equal(verify.c_scores(exe, pixels.astype(np.int64), 10), scores)


@pytest.fixture(scope="module")
def tiny_layers() -> tuple:
    model = load_integer_model(TINY_INT8)
    pixels = np.random.default_rng(6).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    return model, pixels, verify.onnxruntime_layer_outputs(model, pixels)


def test_the_first_differing_layer_is_exact_in_float_and_one_step_in_fixed(tiny_layers, monkeypatch) -> None:
    model, pixels, theirs = tiny_layers
    assert verify._first_differing_layer(model, pixels, "float") is None  # the numpy model is onnxruntime's

    def one_step_off(layer_index: int, step: int):
        def outputs(m, p, mode="float"):
            shifted = [t.reshape(len(p), *layer.out_shape).copy() for t, layer in zip(theirs, m.layers, strict=True)]
            flat = shifted[layer_index].reshape(-1)
            flat[np.argmax(flat < 200)] += step
            return shifted
        return outputs

    monkeypatch.setattr(reference, "layer_outputs", one_step_off(2, 1))
    assert verify._first_differing_layer(model, pixels, "float") == model.layers[2].name
    assert verify._first_differing_layer(model, pixels, "fixed") is None  # one step is fixed point's allowance
    monkeypatch.setattr(reference, "layer_outputs", one_step_off(1, 2))
    assert verify._first_differing_layer(model, pixels, "fixed") == model.layers[1].name
