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
