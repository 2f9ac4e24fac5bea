"""A tiny deterministic agent with the shape of a real algorithm module.

It steps a real gymnax CartPole with a linear policy and "learns" by a random
walk of its weights, so every part of a state (params, env state, PRNG key,
counters) changes with every step, and its metrics include the
``episode_return``/``episodes_completed`` pair the host side expects. Small
enough to compile in a second or two.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import NamedTuple

import gymnax
import jax
import jax.numpy as jnp

from jaxrl.agents.base import Agent, AgentConfig

ACTION_SPACES = ("discrete",)
NOISES = ("normal", "uniform")


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    num_envs: int = 4
    """Parallel environments."""
    rollout_len: int = 8
    """Steps per environment per iteration."""
    learning_rate: float = 0.05
    """Scale of each random-walk step of the weights."""
    greedy: bool = False
    """Act greedily during training instead of sampling."""
    noise: str = "normal"
    """Distribution of the weight steps: normal | uniform."""
    hidden_sizes: tuple[int, ...] = (8,)
    """Unused by the linear policy; here to exercise tuple-valued settings."""
    eval_max_steps: int = 32
    """Cap on evaluation episode length (keeps evaluation cheap)."""
    diverge_after: int = 0
    """Report weight_norm as NaN once the counter reaches this (0: never): a divergence."""

    def validate(self) -> None:
        for name in ("num_envs", "rollout_len", "eval_max_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"fake.Config.{name}={getattr(self, name)!r} is invalid: expected a positive integer"
                )
        if self.learning_rate <= 0:
            raise ValueError(
                f"fake.Config.learning_rate={self.learning_rate!r} is invalid: expected a positive number"
            )
        if self.noise not in NOISES:
            raise ValueError(
                f"fake.Config.noise={self.noise!r} is invalid: expected one of {NOISES}"
            )
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ValueError(
                f"fake.Config.hidden_sizes={self.hidden_sizes!r} is invalid: expected positive sizes"
            )


class State(NamedTuple):
    params: dict
    env_state: object
    obs: jax.Array
    episode_return: jax.Array
    rng: jax.Array
    learning_rate: jax.Array
    counter: jax.Array


def make(env, env_params, config: Config = Config()) -> Agent:
    config.validate()
    obs_dim = env.observation_space(env_params).shape[0]
    num_actions = env.action_space(env_params).n
    reset = jax.vmap(env.reset, in_axes=(0, None))
    env_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key, hparams=None):
        learning_rate = config.learning_rate if hparams is None else hparams["learning_rate"]
        k_w, k_env, key = jax.random.split(key, 3)
        params = {
            "w": 0.1 * jax.random.normal(k_w, (obs_dim, num_actions)),
            "b": jnp.zeros((num_actions,)),
        }
        obs, env_state = reset(jax.random.split(k_env, config.num_envs), env_params)
        return State(
            params=params,
            env_state=env_state,
            obs=obs,
            episode_return=jnp.zeros((config.num_envs,)),
            rng=key,
            learning_rate=jnp.asarray(learning_rate, jnp.float32),
            counter=jnp.zeros((), jnp.int32),
        )

    def step(state: State):
        def one_step(carry, _):
            env_state, obs, ep_ret, rng = carry
            rng, k_act, k_env = jax.random.split(rng, 3)
            action = act(state.params, obs, k_act, deterministic=config.greedy)
            obs, env_state, reward, terminated, truncated, _ = env_step(
                jax.random.split(k_env, config.num_envs), env_state, action, env_params
            )
            ep_ret = ep_ret + reward
            done = jnp.logical_or(terminated, truncated)
            finished = (jnp.where(done, ep_ret, 0.0).sum(), done.sum())
            return (env_state, obs, jnp.where(done, 0.0, ep_ret), rng), finished

        (env_state, obs, ep_ret, rng), (returns, dones) = jax.lax.scan(
            one_step,
            (state.env_state, state.obs, state.episode_return, state.rng),
            length=config.rollout_len,
        )
        rng, k_walk, k_count = jax.random.split(rng, 3)
        sample = jax.random.normal if config.noise == "normal" else jax.random.uniform
        params = jax.tree.map(
            lambda p, k: p + state.learning_rate * sample(k, p.shape),
            state.params,
            dict(zip(state.params, jax.random.split(k_walk, len(state.params)), strict=True)),
        )
        episodes = dones.sum().astype(jnp.float32)
        counter = state.counter + jax.random.randint(k_count, (), 1, 4)
        metrics = {
            "episode_return": jnp.where(
                episodes > 0, returns.sum() / jnp.maximum(episodes, 1.0), 0.0
            ),
            "episodes_completed": episodes,
            "weight_norm": jnp.where(
                (config.diverge_after > 0) & (counter >= config.diverge_after),
                jnp.nan,
                jnp.linalg.norm(params["w"]),
            ),
            "counter": counter.astype(jnp.float32),
        }
        new_state = State(params, env_state, obs, ep_ret, rng, state.learning_rate, counter)
        return new_state, metrics

    def policy_params(state):
        return state.params

    def act(params, obs, key, deterministic=False):
        logits = obs @ params["w"] + params["b"]
        return jnp.argmax(logits, -1) if deterministic else jax.random.categorical(key, logits)

    def evaluate(state, key, num_episodes):
        def episode(k):
            k_reset, k_run = jax.random.split(k)
            obs, env_state = env.reset(k_reset, env_params)

            def one_step(carry, k_step):
                obs, env_state, total, alive = carry
                action = act(state.params, obs, None, deterministic=True)
                obs, env_state, reward, terminated, truncated, _ = env.step(
                    k_step, env_state, action, env_params
                )
                total = total + alive * reward
                alive = alive * (1.0 - jnp.logical_or(terminated, truncated))
                return (obs, env_state, total, alive), None

            (_, _, total, _), _ = jax.lax.scan(
                one_step, (obs, env_state, 0.0, 1.0), jax.random.split(k_run, config.eval_max_steps)
            )
            return total

        return jax.vmap(episode)(jax.random.split(key, num_episodes))

    return Agent(
        name="fake",
        config=config,
        env=env,
        env_params=env_params,
        init=init,
        step=step,
        act=act,
        policy_params=policy_params,
        evaluate=evaluate,
        default_hparams=lambda: {"learning_rate": jnp.float32(config.learning_rate)},
        env_steps_per_step=config.num_envs * config.rollout_len,
    )


def make_cartpole(config: Config = Config()) -> Agent:
    env, env_params = gymnax.make("CartPole-v1")
    return make(env, env_params, config)


@contextlib.contextmanager
def registered(name: str = "fake"):
    """Makes this module algorithm ``name`` of ``jaxrl.agents.REGISTRY`` for a while."""
    from jaxrl.agents import REGISTRY

    previous = REGISTRY.get(name)
    REGISTRY[name] = __name__ if __name__ != "__main__" else "fake_agent"
    try:
        yield name
    finally:
        if previous is None:
            del REGISTRY[name]
        else:
            REGISTRY[name] = previous


if __name__ == "__main__":
    # `python tests/fake_agent.py train fake ...` is the real `jaxrl` command
    # with this agent registered, for tests that run it as a subprocess.
    import sys

    from jaxrl.cli import main

    with registered():
        status = main()
    sys.exit(status)


def saved_config(**changes):
    """A config.json as jaxrl writes it (values of a tiny run)."""
    config = {
        "algorithm": "ppo", "env_id": "CartPole-v1", "env_kwargs": {}, "agent_config": {},
        "seeds": 1, "total_steps": 64, "iterations": 2, "chunk_iterations": 1,
        "env_steps_per_step": 32, "key": {"data": [0, 0], "impl": None}, "hparams": None,
        "eval_episodes": 0,
    }
    return {**config, **changes}
