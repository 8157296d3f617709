"""The `[search]` config (mnist_edge/search/space.py) read exactly: every setting, every
distribution Optuna will sample from, and the recipe each trial gets. Fast: no study runs.

Optuna only warns when a range does not fit its step (and then samples from a shrunken range),
so its distribution warnings are errors here: a config the tests load must mean what it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from mnist_edge.config import PIPELINE_BENCH_SECONDS, PRESETS, Recipe
from mnist_edge.errors import ConfigError
from mnist_edge.search.space import SearchConfig, load_search_config, recipe_for
from tests.test_search import SMALL

pytestmark = [pytest.mark.filterwarnings("error:The distribution is specified by"),
              pytest.mark.filterwarnings("error:Choices for a categorical distribution")]

EXAMPLE = Path(__file__).parent.parent / "sweeps" / "search.toml"


def write(tmp_path: Path, text: str, name: str = "cfg") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def minimal(tmp_path: Path, head: str = "", space: str = "lr = [0.01, 0.02]") -> SearchConfig:
    return load_search_config(write(tmp_path, f"[search]\n{head}\n[search.space]\n{space}\n"))


def test_the_example_config_is_read_exactly() -> None:
    config = load_search_config(EXAMPLE)
    assert config.space == {
        "arch": CategoricalDistribution(["strided", "tiny", "cnn"]),
        "epochs": IntDistribution(2, 4),  # both ends drawn: 2, 3 and 4 epochs
        "lr": FloatDistribution(0.002, 0.03, log=True),
        "batch_size": CategoricalDistribution([128, 256]),
        "strided.width": IntDistribution(16, 48, step=8),
        "strided.depth": CategoricalDistribution([2, 3]),
        "tiny.width": IntDistribution(4, 10, step=2),
        "cnn.width": IntDistribution(4, 8, step=2),
    }
    assert config.fixed == {}
    assert (config.name, config.base, config.objectives, config.trials, config.sampler, config.population,
            config.seed, config.bench_seconds, config.device, config.prune_below) == (
        "int8-layouts", "fast", ("accuracy", "latency"), 40, "nsga2", 8, 0, 1.0, "auto", 0.97)
    assert config.directions == ["maximize", "minimize"] and config.path == EXAMPLE


def test_the_test_suites_small_config_is_read_exactly(tmp_path: Path) -> None:
    config = load_search_config(write(tmp_path, SMALL.format(name="small", trials=4)))
    assert config.space == {"arch": CategoricalDistribution(["tiny", "strided"]),
                            "lr": FloatDistribution(0.002, 0.03, log=True),
                            "strided.width": IntDistribution(8, 16, step=8)}
    assert config.fixed == {"epochs": 1, "train_limit": 512}
    assert (config.name, config.trials, config.population, config.bench_seconds) == ("small", 4, 2, 0.05)


def test_defaults_of_an_almost_empty_config(tmp_path: Path) -> None:
    config = minimal(tmp_path)
    assert (config.name, config.base, config.objectives, config.trials, config.sampler, config.population,
            config.seed, config.bench_seconds, config.device, config.prune_below) == (
        "cfg", "fast", ("accuracy", "latency"), 40, "nsga2", 8, 0, PIPELINE_BENCH_SECONDS, "auto", 0.0)
    assert config.space == {"lr": CategoricalDistribution([0.01, 0.02])}


def test_every_setting_is_taken_as_written(tmp_path: Path) -> None:
    config = minimal(tmp_path, 'name = "n"\npreset = "default"\nobjectives = ["size", "accuracy"]\ntrials = 3\n'
                     'sampler = "tpe"\npopulation = 2\nseed = 7\nbench_seconds = 2\ndevice = "cpu"\n'
                     "prune_below = 0.5\n")
    assert (config.name, config.base, config.objectives, config.trials, config.sampler, config.population,
            config.seed, config.bench_seconds, config.device, config.prune_below) == (
        "n", "default", ("size", "accuracy"), 3, "tpe", 2, 7, 2.0, "cpu", 0.5)
    assert config.directions == ["minimize", "maximize"]
    assert type(config.bench_seconds) is float and type(config.prune_below) is float
    assert minimal(tmp_path, "objectives = [\"latency\"]").directions == ["minimize"]


@pytest.mark.parametrize("space, expected", [
    ("epochs = {low = 1, high = 3}", IntDistribution(1, 3)),
    ("epochs = {low = 2, high = 2}", IntDistribution(2, 2)),  # low == high is allowed
    ("batch_size = {low = 32, high = 256, log = true}", IntDistribution(32, 256, log=True)),
    ("batch_size = {low = 32, high = 96, step = 32}", IntDistribution(32, 96, step=32)),
    ("batch_size = {low = 40, high = 104, step = 32}", IntDistribution(40, 104, step=32)),  # low off the grid
    ("lr = {low = 0.01, high = 0.05, step = 0.01}", FloatDistribution(0.01, 0.05, step=0.01)),
    ("lr = {low = 1, high = 2}", FloatDistribution(1.0, 2.0)),  # integers where floats are expected
    ("weight_decay = {low = 0.0, high = 0.01}", FloatDistribution(0.0, 0.01)),
    ("augment = [true, false]", CategoricalDistribution([True, False])),
    ('optimizer = ["sgd"]', CategoricalDistribution(["sgd"])),
])
def test_ranges_and_choices_become_these_distributions(tmp_path: Path, space: str, expected) -> None:
    (name,) = minimal(tmp_path, space=space).space
    assert minimal(tmp_path, space=space).space[name] == expected
    assert type(minimal(tmp_path, space=space).space[name]) is type(expected)


@pytest.mark.parametrize("space", ["batch_size = {low = 32, high = 100, step = 32}",
                                   "lr = {low = 0.01, high = 0.055, step = 0.01}"])
def test_a_range_whose_steps_do_not_reach_high_is_refused(tmp_path: Path, space: str) -> None:
    """Optuna would draw from a shorter range (and only warn): the config is refused instead."""
    with pytest.raises(ConfigError, match=r"high \((100|0.055)\) is not low \((32|0.01)\) plus a whole number "
                       r"of steps \((32|0.01)\)"):
        minimal(tmp_path, space=space)


def test_fixed_values_and_per_architecture_tables(tmp_path: Path) -> None:
    config = minimal(tmp_path, space='arch = ["mlp", "strided"]\nepochs = 2\nlr = 0.02\n'
                     "[search.space.mlp]\nwidth = [64, 128]\ndepth = 2\n"
                     "[search.space.strided]\nwidth = {low = 8, high = 24, step = 8}\n")
    assert config.fixed == {"epochs": 2, "lr": 0.02, "mlp.depth": 2}
    assert config.space == {"arch": CategoricalDistribution(["mlp", "strided"]),
                            "mlp.width": CategoricalDistribution([64, 128]),
                            "strided.width": IntDistribution(8, 24, step=8)}
    mlp = recipe_for(config, {"arch": "mlp", "mlp.width": 128, "strided.width": 16})
    assert (mlp.arch, mlp.width, mlp.depth, mlp.epochs, mlp.lr) == ("mlp", 128, 2, 2, 0.02)
    strided = recipe_for(config, {"arch": "strided", "mlp.width": 128, "strided.width": 16})
    assert (strided.arch, strided.width, strided.depth) == ("strided", 16, 0)  # mlp's knobs stay with mlp


def test_a_fixed_arch_scopes_its_table(tmp_path: Path) -> None:
    config = minimal(tmp_path, space='arch = "tiny"\n[search.space.tiny]\nwidth = [4, 8]\n')
    assert config.fixed == {"arch": "tiny"} and config.space == {"tiny.width": CategoricalDistribution([4, 8])}
    assert recipe_for(config, {"tiny.width": 8}) == PRESETS["fast"].__class__(
        **{**PRESETS["fast"].to_dict(), "arch": "tiny", "width": 8})


def test_the_presets_arch_scopes_a_table_when_arch_is_not_given(tmp_path: Path) -> None:
    config = minimal(tmp_path, space="[search.space.strided]\ndepth = [2, 3]\n")  # fast is strided
    assert config.space == {"strided.depth": CategoricalDistribution([2, 3])}
    assert recipe_for(config, {"strided.depth": 3}).depth == 3
    with pytest.raises(ConfigError, match=r"\[search.space.tiny\] can never apply: no trial has arch 'tiny'"):
        minimal(tmp_path, space="[search.space.tiny]\nwidth = [4]\n")


def test_recipe_for_lays_values_over_the_base_preset_and_validates(tmp_path: Path) -> None:
    config = minimal(tmp_path, head='preset = "default"', space="lr = {low = 0.01, high = 0.1}\nepochs = 2\n")
    recipe = recipe_for(config, {"lr": 0.05})
    assert recipe == Recipe(**{**PRESETS["default"].to_dict(), "lr": 0.05, "epochs": 2})
    assert type(recipe_for(config, {"lr": 1}).lr) is float  # a whole number drawn for a float key
    with pytest.raises(ConfigError, match="--lr must be greater than 0"):
        recipe_for(config, {"lr": 0.0})


def test_describe_is_canonical_and_names_what_the_study_optimizes(tmp_path: Path) -> None:
    one = minimal(tmp_path, space="epochs = 2\nlr = [0.01, 0.02]\nbatch_size = [64]")
    other_order = minimal(tmp_path, space="batch_size = [64]\nlr = [0.01, 0.02]\nepochs = 2")
    assert one.describe() == other_order.describe()
    # the fixed values too, whatever their order in the file
    assert minimal(tmp_path, space="epochs = 2\nseed = 3\nlr = [0.01]").describe() == minimal(
        tmp_path, space="seed = 3\nepochs = 2\nlr = [0.01]").describe()
    described = json.loads(one.describe())
    assert described["preset"] == "fast" and described["objectives"] == ["accuracy", "latency"]
    assert described["fixed"] == {"epochs": 2} and list(described["space"]) == ["batch_size", "lr"]
    for changed in ("epochs = 3\nlr = [0.01, 0.02]\nbatch_size = [64]",
                    "epochs = 2\nlr = [0.01, 0.03]\nbatch_size = [64]",
                    "epochs = 2\nlr = [0.01, 0.02]\nbatch_size = [64, 128]"):
        assert minimal(tmp_path, space=changed).describe() != one.describe()
    assert minimal(tmp_path, head='objectives = ["accuracy"]',
                   space="epochs = 2\nlr = [0.01, 0.02]\nbatch_size = [64]").describe() != one.describe()
    assert minimal(tmp_path, head='preset = "default"',
                   space="epochs = 2\nlr = [0.01, 0.02]\nbatch_size = [64]").describe() != one.describe()
    # what does not change the study (its name, the trial count, the seed) does not change the text
    assert minimal(tmp_path, head='name = "x"\ntrials = 3\nseed = 4',
                   space="epochs = 2\nlr = [0.01, 0.02]\nbatch_size = [64]").describe() == one.describe()


SEARCH_KEYS = "bench_seconds, device, name, objectives, population, preset, prune_below, sampler, seed, space, trials"
RECIPE_KEYS = ("arch, augment, batch_size, depth, distill_weight, epochs, label_smoothing, lr, momentum, optimizer, "
               "schedule, seed, teacher, temperature, train_limit, weight_decay, width")
NAMES = "must be a non-empty list of names without repeats"


@pytest.mark.parametrize("head, reason", [
    ('name = ""', "line 2: key 'name': must be a non-empty string"),
    ("name = 3", "line 2: key 'name': must be a non-empty string"),
    ('preset = "slow"', "line 2: key 'preset': unknown preset 'slow'; choose one of seed, default, fast, fast-distill"),
    ("preset = 1", "line 2: key 'preset': unknown preset 1; choose one of seed, default, fast, fast-distill"),
    ('objectives = ["accuracy", "accuracy"]', f"line 2: key 'objectives': {NAMES}"),
    ('objectives = "accuracy"', f"line 2: key 'objectives': {NAMES}"),
    ("objectives = []", f"line 2: key 'objectives': {NAMES}"),
    ('objectives = ["accuracy", ["latency"]]', f"line 2: key 'objectives': {NAMES}"),
    ('objectives = ["accuracy", {}]', f"line 2: key 'objectives': {NAMES}"),
    ("objectives = [1]", f"line 2: key 'objectives': {NAMES}"),
    ('objectives = ["speed", "energy"]',
     "line 2: key 'objectives': unknown objective 'speed'; choose from accuracy, latency, size"),
    ('objectives = ["size", "energy"]',
     "line 2: key 'objectives': unknown objective 'energy'; choose from accuracy, latency, size"),
    ('sampler = "grid"', "line 2: key 'sampler': unknown sampler 'grid'; choose one of nsga2, tpe, random"),
    ('device = "tpu"', "line 2: key 'device': unknown device 'tpu'; choose one of auto, cpu, cuda, mps"),
    ("colour = 1", f"line 2: key 'colour': unknown [search] key; expected one of {SEARCH_KEYS}"),
    ("trials = 0", "line 2: key 'trials': must be an integer of at least 1"),
    ("trials = 2.5", "line 2: key 'trials': must be an integer of at least 1"),
    ("trials = true", "line 2: key 'trials': must be an integer of at least 1"),
    ("population = 1", "line 2: key 'population': must be an integer of at least 2"),
    ("seed = -1", "line 2: key 'seed': must be an integer of at least 0"),
    ("bench_seconds = 0", "line 2: key 'bench_seconds': must be a number of at least 0.001"),
    ("bench_seconds = nan", "line 2: key 'bench_seconds': must be a number of at least 0.001"),
    ("bench_seconds = inf", "line 2: key 'bench_seconds': must be a number of at least 0.001"),
    ('bench_seconds = "1"', "line 2: key 'bench_seconds': must be a number of at least 0.001"),
    ("prune_below = -0.1", "line 2: key 'prune_below': must be a validation accuracy in [0, 1)"),
    ("prune_below = 1", "line 2: key 'prune_below': must be a validation accuracy in [0, 1)"),
    ("prune_below = true", "line 2: key 'prune_below': must be a validation accuracy in [0, 1)"),
    ('prune_below = "0.5"', "line 2: key 'prune_below': must be a validation accuracy in [0, 1)"),
])
def test_bad_settings_name_the_key_and_line(tmp_path: Path, head: str, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        minimal(tmp_path, head=head)
    assert (error.value.reason, error.value.path) == (reason, tmp_path / "cfg.toml")


def test_edges_of_the_settings_that_are_allowed(tmp_path: Path) -> None:
    config = minimal(tmp_path, head="trials = 1\npopulation = 2\nseed = 0\nbench_seconds = 0.001\nprune_below = 0")
    assert (config.trials, config.population, config.seed, config.bench_seconds, config.prune_below) == (
        1, 2, 0, 0.001, 0.0)
    assert minimal(tmp_path, head="prune_below = 0.999").prune_below == 0.999
    assert minimal(tmp_path, head="bench_seconds = 3").bench_seconds == 3.0


RANGE = "a range is {low = ..., high = ...} with optional step and log"
STEP = "step must be a positive number, and cannot be combined with log"


@pytest.mark.parametrize("space, reason", [
    ("lr = {low = 0.01}", f"line 4: key 'lr': {RANGE}"),
    ("lr = {high = 0.01}", f"line 4: key 'lr': {RANGE}"),
    ("lr = {low = 0.01, high = 0.1, steps = 2}", f"line 4: key 'lr': {RANGE}"),
    ('lr = {low = 0.01, high = 0.1, log = "yes"}', "line 4: key 'lr': log must be true or false"),
    ("lr = {low = 0.01, high = 0.1, step = 0.01, log = true}", f"line 4: key 'lr': {STEP}"),
    ("lr = {low = 0.01, high = 0.1, step = 0}", f"line 4: key 'lr': {STEP}"),
    ("lr = {low = 0.01, high = 0.1, step = -0.01}", f"line 4: key 'lr': {STEP}"),
    ("epochs = {low = 1, high = 3, step = true}", f"line 4: key 'epochs': {STEP}"),
    ('epochs = {low = 1, high = 3, step = "1"}', f"line 4: key 'epochs': {STEP}"),
    ("epochs = {low = 3, high = 1}", "line 4: key 'epochs': low (3) is greater than high (1)"),
    ("epochs = {low = 1.5, high = 3}", "line 4: key 'epochs': expected int, got 1.5"),
    ("epochs = [2, true]", "line 4: key 'epochs': expected int, got True"),
    ("epochs = []", "line 4: key 'epochs': an empty list: give at least one choice"),
    ('augment = ["yes"]', "line 4: key 'augment': expected bool, got 'yes'"),
    ("augment = [1]", "line 4: key 'augment': expected bool, got 1"),
    ('lr = ["0.1"]', "line 4: key 'lr': expected float, got '0.1'"),
    ("lr = [true]", "line 4: key 'lr': expected float, got True"),
    ("lr = {low = 0.0, high = 0.1}", "line 4: key 'lr': --lr must be greater than 0, got 0.0 (with arch strided)"),
    ("weight_decay = {low = 0.0, high = 0.01, log = true}",
     "line 4: key 'weight_decay': a log-scale range needs low > 0"),
    ("weight_decay = {low = -1.0, high = 0.01, log = true}",
     "line 4: key 'weight_decay': weight decay must be >= 0 and momentum in [0, 1) (with arch strided)"),
    ("batch_size = {low = 32, high = 100, step = 32}",
     "line 4: key 'batch_size': high (100) is not low (32) plus a whole number of steps (32)"),
    ('optimizer = {low = 1, high = 2}', "line 4: key 'optimizer': takes a list of choices, not a range (str values)"),
    ('arch = ["tiny", "resnet"]',
     "line 4: key 'arch': unknown architecture 'resnet'; choose one of mlp, lenet5, cnn, tiny, strided, micro"),
    ('arch = "resnet"',
     "line 4: key 'arch': unknown architecture 'resnet'; choose one of mlp, lenet5, cnn, tiny, strided, micro"),
    ('arch = ["tiny", "mlp"]\nwidth = [8]',
     "line 5: key 'width': --width of mlp must be in [16, 2048] (or 0 for the named layout), got 8 (with arch mlp)"),
    ('arch = ["mlp", "tiny"]\n[search.space.tiny]\narch = ["cnn"]',
     f"line 6: key 'arch': unknown [search.space.tiny] key; recipe keys are {RECIPE_KEYS}"),
    ('arch = ["tiny"]\n[search.space.tiny]\nwidth = [2]',
     "line 6: key 'width': --width of tiny must be in [4, 32] (or 0 for the named layout), got 2 (with arch tiny)"),
    ('arch = ["tiny"]\n[search.space.tiny]\nseed_of_life = [2]',
     f"line 6: key 'seed_of_life': unknown [search.space.tiny] key; recipe keys are {RECIPE_KEYS}"),
    ("split_seed = [1, 2]", f"line 4: key 'split_seed': unknown [search.space] key; recipe keys are {RECIPE_KEYS}"),
    ('arch = ["tiny"]\n[search.space.cnn]\nwidth = [8]',
     "key 'cnn': [search.space.cnn] can never apply: no trial has arch 'cnn'"),
])
def test_bad_spaces_name_the_key_and_line(tmp_path: Path, space: str, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        minimal(tmp_path, space=space)
    assert (error.value.reason, error.value.path) == (reason, tmp_path / "cfg.toml")


def test_a_width_is_checked_with_every_arch_it_can_meet(tmp_path: Path) -> None:
    config = minimal(tmp_path, space='arch = ["mlp", "tiny"]\nwidth = [16, 32]')
    assert config.space["width"] == CategoricalDistribution([16, 32])
    with pytest.raises(ConfigError, match=_literal("key 'width': --width of tiny must be in [4, 32] "
                                                   "(or 0 for the named layout), got 64 (with arch tiny)")):
        minimal(tmp_path, space='arch = ["mlp", "tiny"]\nwidth = {low = 16, high = 64}')


@pytest.mark.parametrize("text, message", [
    ("[sweep]\nname = 'x'\n", "line 1: key 'sweep': unknown table; a search config has one [search] table"),
    ("title = 'x'\n[search]\n[search.space]\nlr = [0.1]\n",
     "line 1: key 'title': unknown table; a search config has one [search] table"),
    ("", "no [search] table"),
    ("search = 3\n", "no [search] table"),
    ("[search]\nspace = 3\n", "line 2: key 'space': must be written as a [search.space] table"),
    ("[search]\n", "empty search space: [search.space] needs at least one list or range"),
    ("[search]\n[search.space]\nepochs = 2\n", "empty search space: [search.space] needs at least one list or range"),
])
def test_bad_documents(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_search_config(path)
    assert (error.value.reason, error.value.path) == (message, path)


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_search_config(tmp_path / "absent.toml")
    assert (error.value.reason, error.value.path) == ("search config not found", tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as error:
        load_search_config(write(tmp_path, "[search\n"))
    assert error.value.reason.startswith("not valid TOML: ") and "line 1" in error.value.reason


def _literal(text: str) -> str:
    import re

    return re.escape(text)
