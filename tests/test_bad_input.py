"""Bad input, table-driven: every case is refused with one clear line that
names the flag or field, the value and what is allowed, before anything
compiles, and nothing already saved is lost.

The labelling side (label stores, query rounds, the server) has its own table
in test_label_safety.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fake_agent
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_helpers import assert_usage_error, run_cli

from jaxrl import envs, ops, run
from jaxrl.agents import ddpg, dqn, hdqn, impala, ppo, reward_model
from jaxrl.run import rundir

TINY = ["--set", "num_envs=2", "--set", "rollout_len=4", "--set", "eval_max_steps=8"]


@pytest.fixture(scope="module", autouse=True)
def fake_algorithm():
    with fake_agent.registered() as name:
        yield name


def snapshot(directory: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
        for p in sorted(directory.rglob("*"))
    }


# ------------------------------------------------------------------ the CLI

CLI_CASES = [
    # (argv after "train fake", fragments the error line must hold)
    (["--set", "num_envs=1e20"], ["num_envs", "100000000000000000000", "2147483647"]),
    (["--set", "num_envs=2.5"], ["num_envs", "2.5", "int"]),
    (["--set", "learning_rate=inf"], ["learning_rate", "inf", "finite"]),
    (["--set", "learning_rate=nan"], ["learning_rate", "nan", "finite"]),
    (["--set", "learning_rate=1e6"], ["learning_rate", "1000000.0", "(0, 1]"]),
    (["--set", "learning_rate=-1"], ["learning_rate", "-1", "(0, 1]"]),
    (["--set", "hidden_sizes=1e20"], ["hidden_sizes", "tuple of integers"]),
    (["--set", "greedy=2"], ["greedy", "'2'", "bool"]),
    (["--set", "eval_max_steps=-3"], ["eval_max_steps", "-3", "positive"]),
    (["--seeds", "1e20"], ["seeds", "100000000000000000000", "65536"]),
    (["--seeds", "70000"], ["seeds", "70000", "65536"]),
    (["--cpu-devices", "0"], ["--cpu-devices", "positive"]),
    (["--cpu-devices", "two"], ["--cpu-devices", "'two'"]),
    (["--total-steps", "1e30"], ["total_steps", "1000000000000000019884624838656"]),
    (["--total-steps", "0"], ["total-steps", "positive"]),
    (["--eval-episodes", "1e20"], ["eval_episodes", "100000000000000000000", "1000000"]),
    (["--seed", "1e20"], ["--seed", "1e20", "4294967295"]),
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--chunk-iterations", "1e20"], ["chunk_iterations", "2147483647"]),
    (["--checkpoint-every", "inf"], ["--checkpoint-every", "inf", "finite"]),
    (["--checkpoint-every", "nan"], ["--checkpoint-every", "nan"]),
    (["--checkpoint-every", "-1"], ["--checkpoint-every", "-1"]),
    (["--env-set", "max_steps_in_episode=abc"], ["max_steps_in_episode", "'abc'", "integer"]),
    (["--env-set", "max_steps_in_episode=-5"], ["max_steps_in_episode", "-5", "positive"]),
    (["--env-set", "max_steps_in_episode=1.5"], ["max_steps_in_episode", "1.5", "integer"]),
    (["--env-set", "gravity=nan"], ["gravity", "'nan'", "finite"]),
    (["--env-set", "gravity=true"], ["gravity", "True", "finite"]),
    (["--env-set", "wind=3"], ["wind", "CartPole-v1"]),
    (["--env", "Catch-bsuite", "--env-set", "rows=-3"], ["rows", "-3", "positive"]),
    (["--env", "Catch-bsuite", "--env-set", "rows=x"], ["rows", "'x'", "integer"]),
]


@pytest.mark.parametrize("argv, fragments", CLI_CASES, ids=lambda v: " ".join(map(str, v)))
def test_cli_train_refuses(capsys, tmp_path, no_training, argv, fragments):
    out_dir = tmp_path / "run"
    status, _, err, seconds = run_cli(capsys, "train", "fake", *argv, "--out", out_dir)
    assert_usage_error(status, err, seconds, *fragments)
    assert not out_dir.exists()


PPO_CASES = [
    (["--set", "total_steps=1000", "--total-steps", "5000"], ["total_steps=5000", "1000"]),
    (["--set", "gamma=2"], ["ppo.Config.gamma", "2.0", "[0, 1]"]),
    (["--set", "clip_eps=nan"], ["clip_eps", "nan", "finite"]),
]


@pytest.mark.parametrize("argv, fragments", PPO_CASES, ids=lambda v: " ".join(map(str, v)))
def test_cli_ppo_refuses(capsys, tmp_path, no_training, argv, fragments):
    status, _, err, seconds = run_cli(capsys, "train", "ppo", *argv, "--out", tmp_path / "run")
    assert_usage_error(status, err, seconds, *fragments)
    assert not (tmp_path / "run").exists()


def _user_dir(tmp_path: Path) -> Path:
    user = tmp_path / "mine"
    user.mkdir()
    (user / "metrics.csv").write_text("my own numbers\n")
    (user / "summary.json").write_text('{"mine": true}\n')
    return user


def _foreign_config(tmp_path: Path) -> Path:
    user = tmp_path / "mine"
    user.mkdir()
    (user / "config.json").write_text('{"learning_rate": 0.1}\n')
    (user / "checkpoints").mkdir()
    (user / "checkpoints" / "notes.txt").write_text("mine\n")
    return user


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("not a directory\n")
    return tmp_path / "file"


OUT_CASES = [
    # (make the --out path, extra flags, fragments)
    (lambda t: "", [], ["--out", "''"]),
    (lambda t: " ", [], ["--out"]),
    (_user_dir, [], ["not empty", "not a jaxrl run"]),
    (_user_dir, ["--force"], ["not empty", "not a jaxrl run"]),
    (_foreign_config, ["--force"], ["config.json", "did not write"]),
    (_a_file, [], ["not a directory"]),
    (lambda t: _a_file(t) / "run", [], ["cannot be created", "not a directory"]),
]


@pytest.mark.parametrize("make_out, flags, fragments", OUT_CASES)
def test_cli_out_dir_refused_and_untouched(capsys, tmp_path, no_training, make_out, flags, fragments):
    out = make_out(tmp_path)
    before = snapshot(tmp_path)
    status, _, err, seconds = run_cli(capsys, "train", "fake", "--out", out, *flags)
    assert_usage_error(status, err, seconds, *fragments)
    assert snapshot(tmp_path) == before


def test_cli_empty_out_dir_is_used(capsys, tmp_path, monkeypatch):
    calls = []

    def record_and_interrupt(*args, **kwargs):
        calls.append(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "train", record_and_interrupt)
    (tmp_path / "empty").mkdir()
    status, _, _, _ = run_cli(capsys, "train", "fake", "--out", tmp_path / "empty", *TINY)
    assert status == 130 and calls and calls[0]["out_dir"] == tmp_path / "empty"


OTHER_COMMAND_CASES = [
    (["label", "RUN", "--port", "99999"], ["--port", "99999", "65535"]),
    (["label", "RUN", "--port", "-1"], ["--port", "-1"]),
    (["label", ""], ["DIR", "''"]),
    (["eval", "RUN", "--episodes", "1e20"], ["--episodes", "100000000000000000000", "1000000"]),
    (["eval", "RUN", "--episodes", "0"], ["--episodes", "0"]),
    (["eval", ""], ["DIR", "''"]),
]


@pytest.mark.parametrize("argv, fragments", OTHER_COMMAND_CASES, ids=lambda v: " ".join(map(str, v)))
def test_cli_label_and_eval_refuse(capsys, tmp_path, no_training, argv, fragments):
    out = tmp_path / "run"
    out.mkdir()
    rundir.write_json(out / "config.json", fake_agent.saved_config(algorithm="fake"))
    before = snapshot(tmp_path)
    argv = [str(out) if a == "RUN" else a for a in argv]
    status, _, err, seconds = run_cli(capsys, *argv)
    assert_usage_error(status, err, seconds, *fragments)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------ the Python API

T, B = 3, 2
Z, ZB = jnp.zeros((T, B)), jnp.zeros((B,))

API_CASES = [
    ("gae lambda > 1", lambda: ops.gae(Z, Z, Z, ZB, 1.5), ["lambda_=1.5", "[0, 1]"]),
    ("gae lambda < 0", lambda: ops.gae(Z, Z, Z, ZB, -0.1), ["lambda_=-0.1", "[0, 1]"]),
    ("gae lambda nan", lambda: ops.gae(Z, Z, Z, ZB, float("nan")), ["lambda_=nan"]),
    ("gae lambda array", lambda: ops.gae(Z, Z, Z, ZB, np.array([0.5, 2.0])), ["lambda_=2.0"]),
    ("gae T=0", lambda: ops.gae(Z[:0], Z[:0], Z[:0], ZB, 0.9), ["T >= 1", "(0, 2)"]),
    ("vtrace lambda", lambda: ops.vtrace(Z, Z, Z, Z, ZB, lambda_=2.0), ["lambda_=2.0"]),
    ("vtrace rho", lambda: ops.vtrace(Z, Z, Z, Z, ZB, clip_rho_threshold=-1.0), ["clip_rho_threshold=-1.0", ">= 0"]),
    ("vtrace c", lambda: ops.vtrace(Z, Z, Z, Z, ZB, clip_c_threshold=-1.0), ["clip_c_threshold=-1.0"]),
    ("vtrace pg rho", lambda: ops.vtrace(Z, Z, Z, Z, ZB, clip_pg_rho_threshold=-0.5), ["clip_pg_rho_threshold"]),
    ("vtrace T=0", lambda: ops.vtrace(Z[:0], Z[:0], Z[:0], Z[:0], ZB), ["T >= 1"]),
    ("td_lambda lambda", lambda: ops.td_lambda(Z, Z, Z, ZB, 1.1), ["lambda_=1.1"]),
    ("make(None)", lambda: envs.make(None), ["environment id", "None"]),
    ("make(42)", lambda: envs.make(42), ["environment id", "42"]),
    ("make('')", lambda: envs.make(""), ["environment id", "''"]),
    ("env param type", lambda: envs.make("CartPole-v1", max_steps_in_episode="abc"), ["max_steps_in_episode='abc'"]),
    ("env ctor value", lambda: envs.make("DeepSea-bsuite", size=0), ["size=0", "positive"]),
    ("Config str for int", lambda: ppo.Config(num_envs="8"), ["ppo.Config.num_envs='8'", "integer"]),
    ("Config bool for int", lambda: ppo.Config(num_envs=True), ["ppo.Config.num_envs=True"]),
    ("Config inf", lambda: ppo.Config(learning_rate=float("inf")), ["ppo.Config.learning_rate=inf"]),
    ("Config nan gamma", lambda: ppo.Config(gamma=float("nan")), ["ppo.Config.gamma=nan"]),
    ("Config str for bool", lambda: ppo.Config(anneal_lr="yes"), ["ppo.Config.anneal_lr='yes'", "bool"]),
    ("Config huge buffer", lambda: dqn.Config(buffer_size=10**12), ["dqn.Config.buffer_size"]),
    ("Config huge lr", lambda: ddpg.Config(actor_learning_rate=5.0), ["ddpg.Config.actor_learning_rate=5.0", "(0, 1]"]),
    ("Config tuple item", lambda: impala.Config(hidden_sizes=(64, "a")), ["impala.Config.hidden_sizes"]),
    ("rm-ppo names itself", lambda: reward_model.Config(learning_rate=2.0), ["rm-ppo.Config.learning_rate=2.0"]),
    ("Config unknown torso", lambda: dqn.Config(torso="resnet").validate(), ["dqn.Config.torso='resnet'", "impala_resnet"]),
    ("image torso on vectors", lambda: dqn.make(*envs.make("CartPole-v1"), dqn.Config(torso="nature_cnn")),
     ["dqn.Config.torso='nature_cnn'", "('auto', 'mlp')", "shape (4,)", "takes images (H, W, C)"]),
    ("image torso on vectors, ppo", lambda: ppo.make(*envs.make("CartPole-v1"), ppo.Config(torso="impala_resnet")),
     ["ppo.Config.torso='impala_resnet'", "shape (4,)"]),
    ("image too small for torso", lambda: hdqn.make(
        *envs.make("Probe-PixelCue-v0", size=8), hdqn.Config(torso="nature_cnn"),
        goals=hdqn.GoalSpec(("any",), lambda obs, goal: True)),
     ["hdqn.Config.torso='nature_cnn'", "shape (8, 8, 1)", "at least 36x36", "'impala_resnet'"]),
]


@pytest.mark.parametrize("name, call, fragments", API_CASES, ids=[c[0] for c in API_CASES])
def test_python_api_refuses(name, call, fragments):
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.fixture(scope="module")
def fake():
    return fake_agent.make_cartpole(fake_agent.Config(num_envs=2, rollout_len=4, eval_max_steps=8))


@pytest.fixture(scope="module")
def small_ppo():
    env, env_params = envs.make("CartPole-v1")
    return ppo.make(env, env_params, ppo.Config(num_envs=2, rollout_len=8, num_minibatches=2, total_steps=1000))


TRAIN_CASES = [
    ("total_steps 0", dict(total_steps=0), ["total_steps", "0"]),
    ("total_steps float", dict(total_steps=1e3), ["total_steps", "1000.0"]),
    ("seeds huge", dict(seeds=10**9), ["seeds", "1000000000", "65536"]),
    ("eval_episodes < 0", dict(eval_episodes=-1), ["eval_episodes", "-1"]),
    ("chunk_iterations 0", dict(chunk_iterations=0), ["chunk_iterations", "0"]),
    ("checkpoint inf", dict(checkpoint_every_seconds=float("inf")), ["checkpoint_every_seconds", "inf"]),
    ("out_dir ''", dict(out_dir=""), ["out_dir", "''"]),
    ("resume and force", dict(resume=True, force=True, out_dir="x"), ["resume and force"]),
]


@pytest.mark.parametrize("name, kwargs, fragments", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_run_train_refuses(fake, no_training_compile, tmp_path, monkeypatch, name, kwargs, fragments):
    monkeypatch.chdir(tmp_path)
    kwargs = {"total_steps": 64, **kwargs}
    with pytest.raises(ValueError) as error:
        run.train(fake, jax.random.PRNGKey(0), kwargs.pop("total_steps"), progress=False, **kwargs)
    for fragment in fragments:
        assert fragment in str(error.value), (fragment, str(error.value))
    assert list(tmp_path.iterdir()) == []


def test_run_longer_than_schedule_refused(small_ppo, no_training_compile):
    with pytest.raises(ValueError, match=r"total_steps=5000 exceeds ppo.Config.total_steps=1000"):
        run.train(small_ppo, jax.random.PRNGKey(0), 5000, progress=False)


def test_non_finite_hparams_refused(small_ppo, no_training_compile):
    hparams = small_ppo.default_hparams().replace(learning_rate=jnp.float32(jnp.nan))
    with pytest.raises(ValueError, match=r"hparams.learning_rate=nan is invalid"):
        run.train(small_ppo, jax.random.PRNGKey(0), 64, progress=False, hparams=hparams)


@pytest.fixture
def no_training_compile():
    """Fails the test if anything big compiles."""
    compiles = []

    def on_event(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration" and duration > 0.25:
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(on_event)
    yield
    jax.monitoring.unregister_event_duration_listener(on_event)
    assert not compiles, compiles


# ------------------------------------ saved runs: config, metrics, checkpoints

RUN_ARGS = ["--total-steps", "64", "--chunk-iterations", "2", "--checkpoint-every", "0",
            "--eval-episodes", "1", "--no-progress", *TINY]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished fake run with checkpoints at iterations 6 and 8 (of 8)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    from jaxrl.cli import main

    assert main(["train", "fake", "--out", str(out), *RUN_ARGS]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["6", "8"]
    return out


@pytest.fixture
def saved_run(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


def _edit_config(**changes):
    def edit(out: Path):
        config = json.loads((out / "config.json").read_text())
        for name, value in changes.items():
            if "." in name:
                outer, inner = name.split(".")
                config[outer][inner] = value
            else:
                config[name] = value
        (out / "config.json").write_text(json.dumps(config))

    return edit


def _write(name: str, text: str):
    return lambda out: (out / name).write_text(text)


def _garble_metrics_row(row: int, text: str):
    def edit(out: Path):
        lines = (out / "metrics.csv").read_text().split("\n")
        lines[row] = text
        (out / "metrics.csv").write_text("\n".join(lines))

    return edit


SAVED_RUN_CASES = [
    ("config seeds str", _edit_config(seeds="2"), ["config.json", "seeds='2'", "integer >= 1"]),
    ("config total_steps float", _edit_config(total_steps=64.5), ["config.json", "total_steps=64.5"]),
    ("config key garbled", _edit_config(key={"data": "x"}), ["config.json", "key="]),
    ("config env_kwargs list", _edit_config(env_kwargs=[1]), ["config.json", "env_kwargs=[1]", "object"]),
    ("config iterations mismatch", _edit_config(iterations=99), ["config.json", "iterations=99", "does not match"]),
    ("config agent field type", _edit_config(**{"agent_config.num_envs": "x"}), ["config.json", "num_envs='x'"]),
    ("config agent field unknown", _edit_config(**{"agent_config.bogus": 1}), ["config.json", "bogus"]),
    ("config missing field", lambda out: _edit_config()(out) or _drop_field(out, "seeds"), ["config.json", "lacks seeds"]),
    ("config a list", _write("config.json", "[1, 2]\n"), ["config.json", "not an object"]),
    ("config not JSON", _write("config.json", "{oops\n"), ["config.json", "not valid JSON"]),
    ("metrics garbled step", _garble_metrics_row(3, "abc,0,1,2,3,4"), ["metrics.csv, line 4", "env_steps='abc'"]),
    ("metrics garbled value", _garble_metrics_row(2, "16,0,x,2,3,4"), ["metrics.csv, line 3", "episode_return='x'"]),
    ("metrics short row", _garble_metrics_row(2, "16,0"), ["metrics.csv, line 3", "2 fields"]),
    ("metrics empty", _write("metrics.csv", ""), ["metrics.csv", "empty"]),
    ("metrics no index columns", _write("metrics.csv", "a,b\n1,2\n"), ["metrics.csv, line 1", "env_steps"]),
]


def _drop_field(out: Path, name: str) -> None:
    config = json.loads((out / "config.json").read_text())
    del config[name]
    (out / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("name, damage, fragments", SAVED_RUN_CASES, ids=[c[0] for c in SAVED_RUN_CASES])
def test_resume_of_damaged_run_refused(capsys, saved_run, no_training_compile, name, damage, fragments):
    for step in sorted((saved_run / "checkpoints").iterdir())[-1:]:
        shutil.rmtree(step)  # leave work to resume
    damage(saved_run)
    before = snapshot(saved_run)
    status, _, err, seconds = run_cli(capsys, "train", "fake", "--out", saved_run, "--resume")
    assert_usage_error(status, err, seconds, *fragments)
    assert snapshot(saved_run) == before


def _truncate_data_files(step_dir: Path) -> None:
    for data in step_dir.rglob("d/*"):
        with open(data, "r+b") as f:
            f.truncate(max(1, data.stat().st_size // 3))


CHECKPOINT_DAMAGE = [
    ("truncated data", _truncate_data_files),
    ("missing metadata", lambda step: (step / "default" / "_METADATA").unlink()),
    ("missing array data", lambda step: shutil.rmtree(step / "default" / "d")),
]


@pytest.mark.parametrize("name, damage", CHECKPOINT_DAMAGE, ids=[c[0] for c in CHECKPOINT_DAMAGE])
def test_resume_falls_back_to_the_newest_intact_checkpoint(capsys, finished_run, saved_run, name, damage):
    damage(saved_run / "checkpoints" / "8")
    with pytest.warns(run.DamagedCheckpointWarning, match=r"checkpoints/8 is damaged"):
        status, _, err, _ = run_cli(
            capsys, "train", "fake", "--out", saved_run, "--resume", "--no-progress"
        )
    assert status == 0, err
    # The run continued from iteration 6 and ended exactly as the original did.
    assert (saved_run / "metrics.csv").read_bytes() == (finished_run / "metrics.csv").read_bytes()
    assert (saved_run / "checkpoints" / "8.damaged").is_dir()  # set aside, not deleted
    summary = json.loads((saved_run / "summary.json").read_text())
    original = json.loads((finished_run / "summary.json").read_text())
    assert summary["resumed_from_iteration"] == 6
    assert summary["eval_return"] == original["eval_return"]


def test_eval_falls_back_and_reports_when_none_is_intact(capsys, saved_run):
    _truncate_data_files(saved_run / "checkpoints" / "8")
    with pytest.warns(run.DamagedCheckpointWarning, match=r"checkpoints/8 is damaged"):
        status, out, err, _ = run_cli(capsys, "eval", saved_run)
    assert status == 0 and "checkpoint at 48 env steps" in out, err
    assert (saved_run / "checkpoints" / "8").is_dir()  # eval only reads
    (saved_run / "checkpoints" / "6" / "default" / "_METADATA").unlink()
    with pytest.warns(run.DamagedCheckpointWarning):
        status, _, err, _ = run_cli(capsys, "eval", saved_run)
    lines = [line for line in err.strip().splitlines() if line.startswith("jaxrl: error: ")]
    assert status == 2 and len(lines) == 1 and "no intact checkpoint" in lines[0]


def test_resume_with_no_intact_checkpoint_refused(capsys, saved_run):
    for step in ("6", "8"):
        (saved_run / "checkpoints" / step / "default" / "_METADATA").unlink()
    before = (saved_run / "metrics.csv").read_bytes()
    with pytest.warns(run.DamagedCheckpointWarning):
        status, _, err, _ = run_cli(capsys, "train", "fake", "--out", saved_run, "--resume")
    lines = [line for line in err.strip().splitlines() if line.startswith("jaxrl: error: ")]
    assert status == 2 and len(lines) == 1 and "no intact checkpoint" in lines[0]
    assert (saved_run / "metrics.csv").read_bytes() == before


# ------------------------------------------------------------- divergence


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(capsys, tmp_path):
    out = tmp_path / "run"
    status, _, err, _ = run_cli(
        capsys, "train", "fake", "--out", out, *RUN_ARGS, "--set", "diverge_after=9"
    )
    lines = err.strip().splitlines()
    assert status == 4, err
    assert lines[-1].startswith("jaxrl: error: training diverged: metric 'weight_norm' is nan for seed 0")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged"
    failure = summary["failure"]
    assert failure["metric"] == "weight_norm" and failure["seed"] == 0 and failure["value"] == "nan"
    assert f"env step {failure['env_steps']}" in lines[-1]
    # Rows stop at the first non-finite one; no checkpoint was taken after it.
    rows = run.read_csv(out / "metrics.csv")
    assert int(rows["env_steps"][-1]) == failure["env_steps"] and np.isnan(rows["weight_norm"][-1])
    assert np.isfinite(rows["weight_norm"][:-1]).all()
    latest = max(int(p.name) for p in (out / "checkpoints").iterdir())
    assert latest * 8 < failure["env_steps"]


def test_divergence_in_a_real_agent_names_the_metric(tmp_path):
    # A policy loss that turns NaN: PPO's own metrics carry it to the host.
    env, env_params = envs.make("CartPole-v1")
    poisoned = lambda x: ppo.clip_objective(x) * jnp.nan
    agent = ppo.make(
        env, env_params, ppo.Config(num_envs=2, rollout_len=8, num_minibatches=2, total_steps=64),
        policy_loss=poisoned,
    )
    with pytest.raises(run.TrainingDiverged, match=r"metric '\w+' is nan for seed 0 at env step 16"):
        run.train(agent, jax.random.PRNGKey(0), 64, out_dir=tmp_path / "run", progress=False,
                  eval_episodes=0)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"
