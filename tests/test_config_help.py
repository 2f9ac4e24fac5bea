"""Settings are described from their one declaration: ``jaxrl config ALGO``
prints every field's default as a --set flag that reads back to the same
config, and ``jaxrl train ALGO --help`` lists every field with its doc."""

from __future__ import annotations

import dataclasses

import pytest
from cli_helpers import run_cli

from jaxrl import agents, config
from jaxrl.run import config_io

ALGORITHMS = sorted(agents.REGISTRY)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_field_is_documented(algo):
    module = agents.get(algo)
    undocumented = [f.name for f in config.describe(module.Config) if not f.doc]
    assert not undocumented, f"{algo}.Config fields without a docstring: {undocumented}"


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_config_command_prints_flags_that_read_back_to_the_defaults(capsys, algo):
    status, out, err, _ = run_cli(capsys, "config", algo)
    assert status == 0, err
    flags = [line.removeprefix("--set ") for line in out.splitlines() if line.startswith("--set ")]
    config_cls = agents.get(algo).Config
    assert [flag.split("=", 1)[0] for flag in flags] == [f.name for f in dataclasses.fields(config_cls)]
    texts = config_io.parse_assignments(flags)
    rebuilt = config_io.config_from_dict(config_cls, config_io.parse_overrides(config_cls, texts))
    assert rebuilt == config_cls()


@pytest.mark.parametrize("algo", ["ppo", "rm-ppo", "d4pg"])
def test_train_help_lists_the_settings(capsys, algo):
    status, out, _, _ = run_cli(capsys, "train", algo, "--help")
    assert status == 0
    settings = out.split(f"settings of {algo}", 1)[1]
    for info in config.describe(agents.get(algo).Config):
        assert f"  {info.name} = " in settings, info.name
    # Inherited fields keep their docs (rm-ppo's PPO fields, d4pg's DDPG fields).
    assert "Discount factor" in settings


def test_config_of_an_unknown_algorithm_is_one_line(capsys):
    status, _, err, _ = run_cli(capsys, "config", "ppo2")
    assert status == 2 and err.count("\n") == 1 and "unknown algorithm 'ppo2'" in err


# Values that fail one check or another; each field gets the first one of its type
# that its declared check refuses.
CANDIDATES = {int: [0, -1], float: [0.0, -1.0, 1.5, -0.5], str: ["no-such-option"],
              tuple: [(), (0,)]}


def _declared_failures():
    import typing

    for algo in ALGORITHMS:
        config_cls = agents.get(algo).Config
        hints = typing.get_type_hints(config_cls)
        for f in dataclasses.fields(config_cls):
            check = f.metadata.get("check")
            if check is None or f.name.endswith("learning_rate"):
                continue  # learning rates are refused outside (0, 1] on construction
            kind = typing.get_origin(hints[f.name]) or hints[f.name]
            bad = next(v for v in CANDIDATES[kind] if not check.test(v))
            yield pytest.param(algo, f.name, bad, check.describe(hints[f.name]),
                               id=f"{algo}.{f.name}")


@pytest.mark.parametrize("algo, name, bad, allowed", list(_declared_failures()))
def test_every_declared_check_refuses_in_one_line(algo, name, bad, allowed):
    config_cls = agents.get(algo).Config
    with pytest.raises(ValueError) as error:
        config_cls(**{name: bad}).validate()
    assert str(error.value) == f"{algo}.Config.{name}={bad!r} is invalid: expected {allowed}"


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_the_swept_fields_are_the_state_hyperparameters(algo):
    module = agents.get(algo)
    hparams = module.Config().hparams()
    swept = config.swept_fields(module.Config)
    leaves = dataclasses.fields(hparams)
    if algo == "rm-ppo":  # PPO's hyperparameters nested under ppo, then the reward model's
        assert [f.name for f in leaves][0] == "ppo"
    else:
        assert tuple(f.name for f in leaves) == swept
