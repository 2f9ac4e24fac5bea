"""A2C as IMPALA's on-policy case: no lag and importance weights of exactly 1,
a value probe, config errors that name a2c, and learning CartPole-v1 through
the CLI (`slow`)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs
from jaxrl.agents import a2c, impala
from jaxrl.cli import main


def test_on_policy_weights_are_one_and_values_match_a_probe():
    env, env_params = envs.make("Probe-TwoStepDiscount-v0")
    config = a2c.Config(num_envs=16, rollout_len=4, learning_rate=3e-3, anneal_lr=False,
                        entropy_cost=0.0, hidden_sizes=(32,), gamma=0.9, max_grad_norm=40.0)
    agent = a2c.make(env, env_params, config)
    assert agent.name == "a2c"
    state, metrics = jax.jit(lambda k: jax.lax.scan(lambda s, _: agent.step(s), agent.init(k),
                                                    length=300))(jax.random.PRNGKey(0))
    # The behaviour policy is the learner's: π/μ = 1 up to float rounding, nothing clipped.
    np.testing.assert_allclose(metrics["mean_rho"], 1.0, atol=1e-5)
    assert float(metrics["clipped_rho_fraction"].max()) == 0.0
    assert float(metrics["policy_lag"].max()) == 0.0
    # Observation 0 pays 0 then reaches 1 which pays 1: V = [γ, 1].
    learner = impala.make_learner(env, env_params, config)
    values = learner.network.apply(state.params, jnp.array([[0.0], [1.0]]))[1]
    np.testing.assert_allclose(values, [0.9, 1.0], atol=0.1)


@pytest.mark.parametrize("field, value", [("policy_lag", 2), ("num_envs", 0), ("gamma", 1.5)])
def test_config_errors_name_a2c_and_the_field(field, value):
    with pytest.raises(ValueError, match=rf"a2c\.Config\.{field}={value}"):
        a2c.Config(**{field: value}).validate()



def test_lagged_actors_are_refused_with_the_reason():
    with pytest.raises(ValueError) as error:
        a2c.Config(policy_lag=2).validate()
    assert str(error.value) == (
        "a2c.Config.policy_lag=2 is invalid: expected 0 (A2C acts with the learner's "
        "parameters; use impala for lagged actors)")


def test_hparams_are_impalas_class_with_a2cs_defaults():
    # a2c redeclares entropy_cost and max_grad_norm; they must stay swept, in impala's order.
    hparams = a2c.Config().hparams()
    assert type(hparams) is a2c.HParams is impala.HParams
    assert jax.tree_util.tree_structure(hparams) == jax.tree_util.tree_structure(
        impala.Config().hparams())
    assert (float(hparams.entropy_cost), float(hparams.max_grad_norm)) == (
        np.float32(0.01), np.float32(0.5))

@pytest.mark.slow
def test_cli_trains_a2c_to_solve_cartpole(tmp_path):
    out = tmp_path / "run"
    code = main(["train", "a2c", "--env", "CartPole-v1", "--total-steps", "1000000",
                 "--eval-episodes", "20", "--out", str(out), "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_return"][0] >= 475, summary["eval_return"]
