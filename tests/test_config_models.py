from __future__ import annotations

import pytest

from mnist_edge.config import PRESETS, Recipe, preset
from mnist_edge.errors import ConfigError


def test_seed_preset_is_the_original_notebook() -> None:
    seed = PRESETS["seed"]
    assert (seed.arch, seed.optimizer, seed.lr, seed.batch_size, seed.epochs, seed.augment) == \
        ("mlp", "sgd", 0.01, 64, 50, False)
    assert seed.momentum == 0 and seed.schedule == "none"


def test_explicit_options_override_a_preset() -> None:
    recipe = preset("fast", epochs=7, lr=None)
    assert recipe.epochs == 7 and recipe.lr == PRESETS["fast"].lr


@pytest.mark.parametrize("overrides, message", [
    ({"lr": 0.0}, "--lr"), ({"lr": -1.0}, "--lr"), ({"batch_size": 0}, "--batch-size"),
    ({"epochs": 0}, "--epochs"), ({"arch": "resnet"}, "unknown architecture"),
    ({"optimizer": "lbfgs"}, "unknown optimizer"),
])
def test_nonsensical_options_are_rejected(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        preset("default", **overrides)


def test_unknown_preset_and_recipe_keys() -> None:
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("turbo")
    with pytest.raises(ConfigError, match="unknown recipe keys"):
        Recipe.from_dict({"arch": "cnn", "dropout": 0.5})


def test_architectures_sizes_and_shapes() -> None:
    torch = pytest.importorskip("torch")
    from mnist_edge.models import BUILDERS, build, count_parameters

    assert count_parameters(build("mlp")) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    assert count_parameters(build("cnn")) <= 50_000
    assert count_parameters(build("tiny")) <= 10_000
    for arch in BUILDERS:
        model = build(arch).eval()
        assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10), arch


def test_width_and_depth_knobs_resize_the_layouts() -> None:
    torch = pytest.importorskip("torch")
    from mnist_edge.config import ARCH_KNOBS
    from mnist_edge.models import build, build_recipe, count_parameters

    # the notebook's experiments: hidden units and layers of the MLP
    assert count_parameters(build("mlp", width=128, depth=3)) == 784 * 128 + 128 + 2 * (128 * 128 + 128) + 1290
    assert count_parameters(build("mlp", width=512, depth=2)) == count_parameters(build("mlp"))
    # 0 keeps the named layout; the strided family's third stage ends on a 2x2 map
    assert count_parameters(build("strided", width=32, depth=2)) == count_parameters(build("strided"))
    deep = build_recipe(preset("fast", arch="strided", width=16, depth=3)).eval()
    assert deep(torch.zeros(2, 1, 28, 28)).shape == (2, 10) and deep[-1].in_features == 32 * 2 * 2
    assert count_parameters(build("cnn", width=16)) > count_parameters(build("cnn")) > \
        count_parameters(build("cnn", width=4))
    for arch, knobs in ARCH_KNOBS.items():
        for knob, (low, high) in knobs.items():
            for value in (low, high):
                assert build(arch, **{knob: value}).eval()(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("overrides, message", [
    ({"arch": "lenet5", "width": 8}, "'lenet5' has no width knob"),
    ({"arch": "cnn", "depth": 3}, "'cnn' has no depth knob"),
    ({"arch": "strided", "depth": 4}, r"--depth of strided must be in \[2, 3\]"),
    ({"arch": "mlp", "width": 8}, r"--width of mlp must be in \[16, 2048\]"),
])
def test_knobs_an_architecture_lacks_or_out_of_range_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        preset("fast", **overrides)
