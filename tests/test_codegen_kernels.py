"""Every kernel variant of the generated C against onnxruntime on synthetic nets built to reach the
kernels' edges: channel counts that are not multiples of the blocking (odd outputs, 3 and 5 input
channels), odd widths, padding, stride 2, a lone pooling on the input, 3x3 and stride-1 pooling
windows at the map's edge, one input channel, 5x5 and 2x2 kernels. Each variant is a build of the
same model.c: the host's portable C at several optimization levels and with the integer
requantization of cores without an FPU, and the boards' Cortex-M4 DSP, Cortex-M3 and Cortex-M0
builds under QEMU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from mnist_edge.codegen import generate, load_integer_model, reference  # noqa: E402
from mnist_edge.codegen.emit import SOURCE, blocked_weights, folded_bias  # noqa: E402
from mnist_edge.codegen.graph import Conv, checked_scales  # noqa: E402
from mnist_edge.codegen.plan import make_plan  # noqa: E402
from mnist_edge.codegen.verify import STRICT, onnxruntime_scores, verify_against_onnxruntime  # noqa: E402
from mnist_edge.data import load_split  # noqa: E402
from mnist_edge.errors import CodegenError  # noqa: E402
from mnist_edge.quantize import default_options, quantize_model  # noqa: E402

IMAGES = 300
BOARD_IMAGES = 30


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def _edge_net(name: str):
    from torch import nn

    torch.manual_seed(1)
    if name == "pool-first":
        # 28 -> pool 14 -> 5x5 s2 p2: 7 (odd) -> 3x3 p1: 7 -> pool 3 s2: 3 -> 2x2: 2 -> dense 24 -> 10
        return nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 3, 5, stride=2, padding=2), nn.ReLU(),
                             nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2),
                             nn.Conv2d(5, 6, 2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 10))
    # 28 -> 3x3: 26 -> 3x3 s2: 12 -> pool 2: 6 -> 3x3 p1: 6 -> pool 2 s1: 5 -> GAP -> dense 16 -> 10
    return nn.Sequential(nn.Conv2d(1, 7, 3), nn.ReLU(), nn.Conv2d(7, 9, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(9, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, stride=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


@pytest.fixture(scope="module", params=["pool-first", "odd-channels"])
def edge_model(request, tmp_path_factory, mnist_dir) -> Path:
    folder = tmp_path_factory.mktemp(request.param)
    fp32 = folder / "model.onnx"
    torch.onnx.export(_edge_net(request.param).eval(), torch.zeros(1, 1, 28, 28), str(fp32), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    out = folder / "int8-mcu"
    quantize_model(fp32, out, default_options(None, target="mcu", calib_images=200), download=False)
    return out


@pytest.fixture(scope="module")
def edge_library(edge_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("c") / "lib"
    generate(edge_model, out, download=False)
    return out


@pytest.fixture(scope="module")
def images(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    test = load_split("test", download=False).subset(IMAGES)
    return test.images, test.labels


def test_the_nets_reach_the_edges(edge_model):
    model = load_integer_model(edge_model)
    convs = [layer for layer in model.layers if isinstance(layer, Conv)]
    channels_in = {conv.weights.shape[1] for conv in convs}
    channels_out = {conv.weights.shape[0] for conv in convs}
    assert 1 in channels_in and any(c % 4 for c in channels_in - {1})  # one input channel; taps not whole words
    assert any(m % 2 for m in channels_out)  # a channel pair with one channel
    plan = make_plan(model)
    pools = [step.pool for step in plan.steps if step.pool]
    assert pools and any(step.target.width % 2 for step in plan.steps[1:])  # pooling fused; odd widths
    if model.layers[0].__class__.__name__ == "MaxPool":
        assert any(conv.pads != (0, 0, 0, 0) and conv.stride == (2, 2) for conv in convs)
        assert any(pool.kernel == (3, 3) for pool in pools)
    else:
        assert any(pool.stride == (1, 1) for pool in pools)


def test_the_numpy_arithmetic_equals_onnxruntime(edge_model, images):
    model = load_integer_model(edge_model)
    pixels, _ = images
    theirs = onnxruntime_scores(model.source, pixels, model.normalization)
    assert np.array_equal(reference.scores(model, pixels), theirs)


@pytest.mark.parametrize("flags", [("-O2",), ("-O0",), ("-O3", "-march=native", "-DMNIST_EDGE_ISA=0"),
                                   ("-O2", "-DMNIST_EDGE_SOFT_FLOAT=1"), ("-Os", "-DMNIST_EDGE_SOFT_FLOAT=1")],
                         ids=lambda f: " ".join(f))
def test_every_portable_host_build_equals_onnxruntime(edge_model, edge_library, images, flags):
    tool("cc")
    pixels, labels = images
    checked = verify_against_onnxruntime(load_integer_model(edge_model), edge_library, pixels, labels, flags=flags)
    assert checked.identical == IMAGES and checked.passed and checked.flags[-len(flags):] == list(flags)
    assert checked.kernels == "portable C"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))


AVX512 = ("-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni")
# (flags, the kernels the build must run, the CPU flags it needs to run here)
X86_BUILDS = {
    "avx512-vnni": (("-O3", *AVX512), "x86 AVX-512 VNNI", {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}),
    "vnni-256 (EVEX)": (("-O3", *AVX512, "-DMNIST_EDGE_ISA=3"), "x86 AVX-VNNI (256-bit)",
                        {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}),
    "avx-vnni (VEX)": (("-O3", "-mavx2", "-mfma", "-mavxvnni"), "x86 AVX-VNNI (256-bit)", {"avx_vnni"}),
    "avx2": (("-O3", "-mavx2", "-mfma"), "x86 AVX2", {"avx2"}),
    "avx2 one product": (("-O3", "-mavx2", "-mfma", "-DMNIST_EDGE_PAIRS_FIT_16=0"), "x86 AVX2", {"avx2"}),
}


@pytest.mark.parametrize("build", list(X86_BUILDS))
def test_every_x86_simd_build_equals_onnxruntime(edge_model, edge_library, images, tmp_path, build):
    """Each x86 family on the edge nets: run and proven where this CPU has its instructions;
    elsewhere compiled strictly and checked to pick the family (the CPU cannot run it)."""
    cc = tool("cc")
    from mnist_edge.codegen.verify import KERNELS

    flags, kernels, needs = X86_BUILDS[build]
    if needs <= _cpu_flags():
        pixels, labels = images
        checked = verify_against_onnxruntime(load_integer_model(edge_model), edge_library, pixels, labels, flags=flags)
        assert checked.identical == IMAGES and checked.kernels == kernels
        return
    isa = next(number for number, name in KERNELS.items() if name == kernels)
    source = tmp_path / "isa.c"  # compiles only if the build picks the family (C99 has no static_assert)
    source.write_text(f'#include "model.c"\ntypedef char picks_the_family[MNIST_EDGE_ISA == {isa} ? 1 : -1];\n')
    subprocess.run([cc, *STRICT, *flags, "-I", str(edge_library), "-c", str(source), "-o", str(tmp_path / "isa.o")],
                   check=True)


def test_native_builds_pick_the_best_family_this_cpu_has(edge_model, edge_library, images):
    tool("cc")
    flags = _cpu_flags()
    best = ("x86 AVX-512 VNNI" if {"avx512bw", "avx512vl", "avx512_vnni"} <= flags else
            "x86 AVX-VNNI (256-bit)" if "avx_vnni" in flags else "x86 AVX2" if "avx2" in flags else "portable C")
    pixels, labels = images
    checked = verify_against_onnxruntime(load_integer_model(edge_model), edge_library, pixels, labels)
    assert checked.flags[-2:] == ["-O3", "-march=native"] and checked.kernels == best and checked.passed


def test_eight_bit_weights_take_avx2s_exact_path(tmp_path, images, mnist_dir):
    """Weights up to 127 (quantized without reduce_range): two adjacent products can pass 16 bits,
    so the generator turns VPMADDUBSW's pair sums off and the AVX2 build still equals the exact
    integer arithmetic (the numpy model; onnxruntime's own AVX2 kernels saturate there)."""
    tool("cc")
    from torch import nn

    from mnist_edge.codegen.verify import build_harness, c_scores

    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    fp32 = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), str(fp32), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    quantize_model(fp32, tmp_path / "int8", default_options(None, target="mcu", calib_images=100,
                                                            reduce_range=False), download=False)
    model = load_integer_model(tmp_path / "int8")
    assert max(int(np.abs(layer.weights.astype(int)).max()) for layer in model.layers if hasattr(layer, "weights")) > 64
    generate(tmp_path / "int8", tmp_path / "c", download=False)
    assert "#define MNIST_EDGE_PAIRS_FIT_16 0" in (tmp_path / "c" / SOURCE).read_text()
    pixels = images[0][:200]
    flags = ("-O3", "-mavx2", "-mfma") if "avx2" in _cpu_flags() else ("-O2",)
    ours = c_scores(build_harness(tmp_path / "c", tmp_path, "cc", flags), pixels, 10)
    assert np.array_equal(ours, reference.scores(model, pixels))


def test_clang_builds_it_warning_free_and_equal(edge_model, edge_library, images):
    """clang warns where gcc does not (an unused inline function in the main file, say): the
    library must build with -Werror under both."""
    tool("clang")
    pixels, labels = images
    checked = verify_against_onnxruntime(load_integer_model(edge_model), edge_library, pixels, labels, cc="clang")
    assert checked.identical == IMAGES and checked.compiler == "clang"


@pytest.mark.parametrize("board", ["mps2-an386", "mps2-an385", "microbit"])
def test_every_board_build_equals_the_host(edge_model, edge_library, images, tmp_path, board):
    """The Cortex-M4's DSP kernels, the Cortex-M3's integer requantization and the Cortex-M0's
    portable C (no unaligned loads, no 64-bit multiply in hardware) give the host's scores."""
    tool("arm-none-eabi-gcc"), tool("qemu-system-arm")
    from mnist_edge.codegen import board as boards

    model = load_integer_model(edge_model)
    pixels = images[0][:BOARD_IMAGES]
    run = boards.run(edge_library, tmp_path, board, pixels, reference.scores(model, pixels))
    assert run.passed and run.first_differing == []


def test_the_cortex_m4_build_runs_the_dsp_kernels(edge_library, tmp_path):
    """SMLAD in the Cortex-M4's object file and none in the Cortex-M3's: the kernel family is
    chosen by the compiler's own macros, and the board proof above is a proof of the DSP path."""
    gcc, objdump = tool("arm-none-eabi-gcc"), tool("arm-none-eabi-objdump")
    from mnist_edge.codegen.board import BOARDS, library_flags

    found = {}
    for name in ("mps2-an386", "mps2-an385"):
        obj = tmp_path / f"{name}.o"
        subprocess.run([gcc, *library_flags(BOARDS[name]), "-c", str(edge_library / SOURCE), "-o", str(obj)],
                       check=True)
        found[name] = subprocess.run([objdump, "-d", str(obj)], capture_output=True, text=True, check=True).stdout
    assert "smlad" in found["mps2-an386"] and "sxtb16" in found["mps2-an386"]
    assert "smlad" not in found["mps2-an385"]


# --- generation-time proofs ---------------------------------------------------------------------------


def _conv(weights: np.ndarray, bias: np.ndarray, x_zero: int = 0) -> Conv:
    m, c, kh, kw = weights.shape
    return Conv("/c", weights.astype(np.int8), bias.astype(np.int32), np.full(m, 0.01, np.float32), x_zero, 0,
                (1, 1), (0, 0, 0, 0), (c, 8, 8), (m, 8 - kh + 1, 8 - kw + 1))


def test_an_accumulator_that_could_overflow_is_refused():
    """|bias - x_zero * sum(w)| + 255 * sum|w| must stay below 2^31 for every channel."""
    weights = np.full((2, 64, 3, 3), 127)
    fits = 2**31 - 1 - 255 * 127 * 64 * 9
    assert folded_bias(_conv(weights, np.array([fits, -fits]))).tolist() == [fits, -fits]
    with pytest.raises(CodegenError, match=r"node /c: its int32 accumulator could overflow \(up to 2,147,483,648"):
        folded_bias(_conv(weights, np.array([fits + 1, 0])))
    with pytest.raises(CodegenError, match="could overflow"):  # the zero point's share counts too
        folded_bias(_conv(weights, np.array([-fits, 0]), x_zero=1))


def test_weights_are_laid_out_as_the_kernels_read_them():
    """[blocks of 16 channels][groups of 4 taps][16 channels][4]: each kernel row's kw * c taps
    padded with zeros to whole groups (a 3-tap row to 4), the channels padded to a whole block."""
    weights = np.arange(18 * 1 * 3 * 3).reshape(18, 1, 3, 3) % 200 - 100  # m=18, c=1, 3x3
    blocked = blocked_weights(_conv(weights, np.zeros(18))).reshape(2, 3, 16, 4)  # blocks, groups, channels, taps
    assert blocked[0, 1, 0].tolist() == [*weights[0, 0, 1].tolist(), 0]  # channel 0, kernel row 1
    assert blocked[0, 2, 15].tolist() == [*weights[15, 0, 2].tolist(), 0]  # channel 15, kernel row 2
    assert blocked[1, 0, 1].tolist() == [*weights[17, 0, 0].tolist(), 0]  # channel 17: the second block
    assert not blocked[1, :, 2:].any() and not blocked[:, :, :, 3].any()  # padding channels and taps


@pytest.mark.parametrize("value", [0.0, -0.5, np.inf, np.nan, 1e-40])
def test_a_scale_the_kernels_cannot_use_is_refused(value):
    class Node:
        name = "/n"

    with pytest.raises(CodegenError, match="node /n: requantization scale .* is not a positive normal float32"):
        checked_scales(np.array([0.25, value], np.float32), Node(), Path("m.onnx"))


# --- boards' memory -------------------------------------------------------------------------------------


def test_a_library_over_the_chips_memory_is_one_error(tmp_path, mnist_dir):
    """A wide first layer whose rows alone need 10 KB: the STM32F100's 8 KiB of RAM is named, with
    the figure, and nothing is written."""
    tool("arm-none-eabi-gcc"), tool("qemu-system-arm")
    from torch import nn
    from typer.testing import CliRunner

    from mnist_edge.cli import app

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 128, 3), nn.ReLU(), nn.Conv2d(128, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 10)).eval()
    fp32 = tmp_path / "wide.onnx"
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), str(fp32), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    quantize_model(fp32, tmp_path / "wide-int8", default_options(None, target="mcu", calib_images=50), download=False)
    result = CliRunner().invoke(app, ["codegen", str(tmp_path / "wide-int8"), "--out", str(tmp_path / "c"),
                                      "--board", "stm32vldiscovery", "--board-images", "5"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "does not fit stm32vldiscovery: it needs" in lines[0] and "bytes of RAM" in lines[0]
    assert "the STM32F100RB has 8,192" in lines[0]
    assert not (tmp_path / "c").exists()


def test_flash_is_checked_too():
    from mnist_edge.codegen.board import BOARDS, check_fits

    check_fits(BOARDS["microbit"], 256 * 1024, 1024)
    with pytest.raises(CodegenError, match=r"does not fit microbit: it needs 262,145 bytes of flash, the nRF51822 "
                                           r"has 262,144"):
        check_fits(BOARDS["microbit"], 256 * 1024 + 1, 1024)
