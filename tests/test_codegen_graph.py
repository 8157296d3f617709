"""Reading onnxruntime's graph for the C generator (mnist_edge/codegen/graph.py): what it refuses,
named exactly with the model's path, and layouts it follows. Small PyTorch nets exported as a user
would, quantized with `quantize --for mcu` (100 calibration images), then `codegen`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
from torch import nn  # noqa: E402

from mnist_edge.cli import app  # noqa: E402

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def quantized(tmp_path, net: nn.Module):
    """NET exported to ONNX and quantized every layer int8: the folder codegen takes."""
    torch.manual_seed(0)
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, 0.0, 0.2)
    torch.onnx.export(net.eval(), torch.zeros(1, 1, 28, 28), str(tmp_path / "net.onnx"), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}}, opset_version=17, dynamo=False)
    result = invoke("quantize", tmp_path / "net.onnx", "--for", "mcu", "--calib-images", 100, "--out", tmp_path / "q")
    assert result.exit_code == 0, result.output
    return tmp_path / "q"


def head(features: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, 10))


CONV = "grouped or dilated convolutions are not supported"
MAXPOOL = "MaxPool with pads, ceil_mode or dilations is not supported"
AVGPOOL = "AveragePool with pads, ceil_mode or channels_last is not supported"
REFUSED = {
    "grouped-conv": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2), nn.ReLU(),
                                           *head(4)), CONV),
    "dilated-conv": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2), nn.ReLU(), *head(4)), CONV),
    "maxpool-ceil": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(3, ceil_mode=True),
                                           *head(4)), MAXPOOL),
    "maxpool-pads": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2, padding=1), *head(4)),
                     MAXPOOL),
    "maxpool-dilated": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2, dilation=2),
                                              *head(4)), MAXPOOL),
    "avgpool-ceil": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(3, ceil_mode=True),
                                           *head(4)), AVGPOOL),
    "avgpool-pads": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(2, padding=1), *head(4)),
                     AVGPOOL),
    "constant-per-channel-over-a-map": (
        lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), AddPerChannel(4), nn.ReLU(), *head(4)),
        "QLinearAdd with a constant of 4 values over a (4, 13, 13) map is not supported"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_the_c_cannot_compute_is_refused_by_name_and_path(tmp_path, mnist_dir, case) -> None:
    make, reason = REFUSED[case]
    folder = quantized(tmp_path, make())
    result = invoke("codegen", folder, "--out", tmp_path / "c")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {folder / 'model.onnx'}: node ") and lines[0].endswith(f": {reason}")
    assert not (tmp_path / "c").exists()


class AddPerChannel(nn.Module):
    """A learned constant added to each channel: onnxruntime's QLinearAdd with B an initializer."""

    def __init__(self, channels: int, shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.constant = nn.Parameter(torch.zeros(*(shape or (1, channels, 1, 1))))

    def forward(self, x):
        return x + self.constant


FOLLOWED = {
    "constant-over-a-map": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(),
                                                 AddPerChannel(4, shape=(1,)), nn.ReLU(), *head(4)),
    "constant-per-class-after-dense": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), *head(4)[:2],
                                                            nn.Linear(4, 10, bias=False), AddPerChannel(10, (10,))),
    "padding-on-one-side": lambda: nn.Sequential(nn.ZeroPad2d((1, 0, 2, 0)), nn.Conv2d(1, 4, 3, stride=2),
                                                 nn.ReLU(), nn.ZeroPad2d((0, 1, 0, 0)), nn.Conv2d(4, 4, 3), nn.ReLU(),
                                                 *head(4)),
    "flattened-map": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                           nn.Linear(4 * 6 * 6, 10)),
}


@pytest.mark.parametrize("case", FOLLOWED)
def test_the_c_follows_these_graphs_score_for_score(tmp_path, mnist_dir, case) -> None:
    import json
    import shutil

    if shutil.which("cc") is None:
        pytest.skip("no C compiler (apt-get install gcc)")
    folder = quantized(tmp_path, FOLLOWED[case]())
    result = invoke("codegen", folder, "--out", tmp_path / "c", "--verify", "--images", 300)
    assert result.exit_code == 0, result.output
    checked = json.loads((tmp_path / "c" / "manifest.json").read_text())["verification"]
    assert checked["identical"] == checked["images"] == 300
