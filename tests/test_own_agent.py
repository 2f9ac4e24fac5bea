"""README, "Writing your own agent": the module shown there, taken from the
README itself, is a working agent. It learns CartPole-v1 through
``jaxrl.run.train``, learns the known values of the time-limit probes (no
bootstrap past a termination, a bootstrap at a truncation) with its
hyperparameters swept in the state, and one registry line makes the command line train it.
notebooks/own_agent.ipynb writes the same module (checked here too)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import agents, cli, envs, run
from jaxrl.networks import ActorCritic

ROOT = Path(__file__).resolve().parents[1]
MODULE = "my_reinforce"


def readme_agent_source() -> str:
    """The code block between the own-agent markers of README.md."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- own-agent:begin -->\n```python\n(.*?)```\n<!-- own-agent:end -->",
                      text, re.S)
    assert match, "README.md lost its <!-- own-agent:begin/end --> block"
    return match.group(1)


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    """The README's module, importable as ``my_reinforce`` and registered as
    ``reinforce``, as the README tells a user to do; both undone afterwards."""
    folder = tmp_path_factory.mktemp("own_agent")
    (folder / f"{MODULE}.py").write_text(readme_agent_source())
    sys.path.insert(0, str(folder))
    agents.REGISTRY["reinforce"] = MODULE
    try:
        yield importlib.import_module(MODULE)
    finally:
        del agents.REGISTRY["reinforce"]
        sys.modules.pop(MODULE, None)
        sys.path.remove(str(folder))


def test_the_notebook_writes_the_readme_module():
    notebook = json.loads((ROOT / "notebooks" / "own_agent.ipynb").read_text())
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    written = [c.split("\n", 1)[1] for c in cells if c.startswith(f"%%writefile {MODULE}.py\n")]
    assert written == [readme_agent_source()]


def random_policy_return(env, env_params, episodes=100) -> float:
    num_actions = envs.num_actions(env, env_params)
    policy = lambda obs, key: jax.random.randint(key, obs.shape[:1], 0, num_actions)
    return float(envs.episode_returns(env, env_params, policy, jax.random.PRNGKey(1), episodes)
                 .returns.mean())


# Shared with the CLI test below, so that both compile the same programs.
LEARNING_RUN = ("--seeds", "2", "--eval-episodes", "20", "--chunk-iterations", "7")


def test_learns_cartpole_through_run_train(module):
    env, env_params = envs.make("CartPole-v1")
    agent = module.make(env, env_params, module.Config())
    result = run.train(agent, jax.random.PRNGKey(0), 49 * 1024, seeds=2, eval_episodes=20,
                       chunk_iterations=7, progress=False)
    random_return = random_policy_return(env, env_params)  # about 25
    # Measured: both seeds above 100 at 5·10^4 steps (the README reports 10^5 steps).
    assert min(result.summary["eval_return"]) > 4 * random_return, (
        result.summary["eval_return"], random_return)


GAMMAS = np.array([0.9, 0.5], np.float32)


@pytest.mark.parametrize("env_id, obs, expected", [
    # Reward 1 for ever, cut by a time limit: only a bootstrap at truncation gives 1/(1-γ).
    ("Probe-Truncation-v0", [[0.0]], lambda g: [1 / (1 - g)]),
    # Terminated at the step that is also the time limit: V([1]) = 1, V([0]) = γ;
    # a bootstrap there would give V([0]) = γ/(1-γ²).
    ("Probe-TerminalTimeLimit-v0", [[0.0], [1.0]], lambda g: [g, 1.0]),
])
def test_baseline_learns_the_probe_values(module, env_id, obs, expected):
    """Two discounts swept in one program (γ lives in the state), each learning its own values."""
    env, env_params = envs.make(env_id)
    agent = module.make(env, env_params, module.Config(num_envs=8, rollout_len=8,
                                                       learning_rate=3e-3, ent_coef=0.0))
    hparams = jax.tree.map(lambda x: jnp.full(len(GAMMAS), x), agent.default_hparams())
    hparams = hparams.replace(gamma=jnp.asarray(GAMMAS))

    def train(key, hp):
        return jax.lax.scan(lambda s, _: agent.step(s), agent.init(key, hp), length=300)[0]

    states = jax.jit(jax.vmap(train))(jax.random.split(jax.random.PRNGKey(0), len(GAMMAS)), hparams)
    values = jax.vmap(lambda p: ActorCritic(action_dim=1, discrete=True).apply(p, jnp.array(obs))[1])(
        states["params"])
    np.testing.assert_allclose(values, [expected(g) for g in GAMMAS], rtol=0.05)


def test_one_registry_line_makes_the_cli_train_it(module, tmp_path, capsys):
    """The learning test's run, through ``jaxrl train`` (its programs come from the
    compilation cache when that test ran first)."""
    out = tmp_path / "run"
    assert cli.main(["train", "reinforce", "--env", "CartPole-v1", "--total-steps", str(7 * 1024),
                     *LEARNING_RUN, "--out", str(out), "--set", "gamma=0.98", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == "reinforce" and summary["env_steps"] == 7 * 1024
    assert json.loads((out / "config.json").read_text())["agent_config"]["gamma"] == 0.98
    capsys.readouterr()
    assert cli.main(["config", "reinforce"]) == 0
    assert "--set gamma=0.99\n    # float. Discount factor." in capsys.readouterr().out


def test_bad_settings_are_one_line_naming_the_field(module):
    with pytest.raises(ValueError, match=r"^reinforce\.Config\.gamma=1\.5 is invalid: expected a "
                                         r"number in \[0, 1\]$"):
        module.Config(gamma=1.5).validate()
    with pytest.raises(ValueError, match=r"^reinforce\.Config\.num_envs='8' is invalid"):
        module.Config(num_envs="8")
