"""Probe environments: tiny MDPs with known answers that catch agent bugs in
seconds (value targets, discounting, bootstrapping, action selection).

| id                              | obs                 | actions      | reward               | episode                      | known answer                       |
|---------------------------------|---------------------|--------------|----------------------|------------------------------|------------------------------------|
| Probe-ConstantReward-v0         | [0.]                | Discrete(1)  | 1                    | 1 step, terminated           | V([0]) = 1                         |
| Probe-ObsDependentReward-v0     | [-1.] or [+1.]      | Discrete(1)  | obs                  | 1 step, terminated           | V(obs) = obs                       |
| Probe-TwoStepDiscount-v0        | [0.] then [1.]      | Discrete(1)  | 0 then 1             | 2 steps, terminated          | V([1]) = 1, V([0]) = γ             |
| Probe-ActionDependentReward-v0  | [0.]                | Discrete(2)  | 1 if action 1 else 0 | 1 step, terminated           | π picks 1; Q(0) = 0, Q(1) = 1      |
| Probe-ContinuousAction-v0       | [0.]                | Box[-1,1](1) | −(a − 0.5)²          | 1 step, terminated           | a* = 0.5; V* = 0                   |
| Probe-Truncation-v0             | [0.]                | Discrete(1)  | 1                    | never terminates; truncated  | V([0]) = 1/(1−γ) with bootstrapping|
|                                 |                     |              |                      | after max_steps_in_episode=5 | on truncation                      |
| Probe-TerminalTimeLimit-v0      | [0.] then [1.]      | Discrete(1)  | 0 then 1             | 2 steps, terminated *and*    | V([1]) = 1, V([0]) = γ             |
|                                 |                     |              |                      | truncated (limit 2)          |                                    |
| Probe-TerminalTimeLimitBox-v0   | as above            | Box[-1,1](1) | as above             | as above                     | as above (for continuous agents)   |

Terminal observations (``info["final_observation"]`` on the last step) repeat
an observation the agent acts on ([0.] for the one-step probes, the episode's
own obs for ObsDependentReward, [1.] for TwoStepDiscount). An agent that
wrongly bootstraps on termination therefore learns a visibly wrong value
(e.g. 1/(1−γ) instead of 1), not a quietly extrapolated one.

Probe-Truncation-v0's observation carries no time, so the only consistent
value is 1/(1−γ): an agent that treats the time limit as a terminal state
learns something between 1 and (1−γ⁵)/(1−γ) instead.

The non-truncation probes set ``max_steps_in_episode`` to 10, a limit their
episodes never reach, so ``truncated`` is always False for them.

Probe-TerminalTimeLimit-v0 terminates exactly at its time limit, so gymnax
sets ``terminated`` and ``truncated`` together on the last step (as on every
DeepSea-bsuite episode). The terminal observation is [0.], the start state: an
agent that bootstraps on ``truncated`` without checking ``terminated`` learns
V([0]) = γ / (1 − γ²) (about 50 for γ = 0.99) instead of γ.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from jaxrl.envs.registry import register

# A time limit the one- and two-step probes never reach.
_UNREACHED_LIMIT = 10


@struct.dataclass
class ProbeState(environment.EnvState):
    obs: jax.Array
    time: jax.Array


@struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: int = _UNREACHED_LIMIT


class _Probe(environment.Environment[ProbeState, ProbeParams]):
    """Shared plumbing: 1-d float observations held in the state."""

    env_id: str = ""
    n_actions: int = 1

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams()

    @property
    def name(self) -> str:
        return self.env_id

    @property
    def num_actions(self) -> int:
        return self.n_actions

    def observation_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def action_space(self, params: Any = None) -> spaces.Space:
        return spaces.Discrete(self.n_actions)

    def get_obs(self, state: ProbeState, params: Any = None, key: Any = None) -> jax.Array:
        return state.obs

    def is_terminated(self, state: ProbeState, params: Any) -> jax.Array:
        return jnp.asarray(False)

    def reset_env(self, key: jax.Array, params: ProbeParams) -> tuple[jax.Array, ProbeState]:
        state = ProbeState(obs=jnp.zeros((1,), jnp.float32), time=jnp.zeros((), jnp.int32))
        return state.obs, state

    def _transition(self, state: ProbeState, obs: jax.Array, reward: Any, terminated: Any):
        state = ProbeState(obs=obs, time=state.time + 1)
        terminated = jnp.asarray(terminated, bool)
        info = {"discount": 1.0 - terminated.astype(jnp.float32)}
        return state.obs, state, jnp.asarray(reward, jnp.float32), terminated, info


class ConstantReward(_Probe):
    """Obs [0.], one action, reward 1, every episode one step (terminated).

    Known answer: V([0]) = 1. Tests value fitting and that termination is not
    bootstrapped.
    """

    env_id = "Probe-ConstantReward-v0"

    def step_env(self, key, state, action, params):
        return self._transition(state, state.obs, 1.0, True)


class ObsDependentReward(_Probe):
    """Obs [-1.] or [+1.] (uniform at reset), one action, reward = obs, one step.

    Known answer: V(obs) = obs. Tests that the value depends on the input.
    """

    env_id = "Probe-ObsDependentReward-v0"

    def reset_env(self, key, params):
        sign = jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        state = ProbeState(obs=jnp.full((1,), sign, jnp.float32), time=jnp.zeros((), jnp.int32))
        return state.obs, state

    def step_env(self, key, state, action, params):
        return self._transition(state, state.obs, state.obs[0], True)


class TwoStepDiscount(_Probe):
    """Obs [0.] then [1.]; reward 0 then 1; terminated after the second step.

    Known answer: V([1]) = 1, V([0]) = γ. Tests discounting and that the
    bootstrap uses the next state's value.
    """

    env_id = "Probe-TwoStepDiscount-v0"

    def step_env(self, key, state, action, params):
        first_step = state.time == 0
        reward = jnp.where(first_step, 0.0, 1.0)
        # Both steps lead to obs [1.]: the second as its terminal observation.
        return self._transition(state, jnp.ones((1,), jnp.float32), reward, ~first_step)


class ActionDependentReward(_Probe):
    """Obs [0.], two actions, reward 1 for action 1 and 0 for action 0, one step.

    Known answer: the optimal policy picks action 1; Q([0], 0) = 0,
    Q([0], 1) = 1. Tests the policy/Q update direction.
    """

    env_id = "Probe-ActionDependentReward-v0"
    n_actions = 2

    def step_env(self, key, state, action, params):
        reward = (jnp.asarray(action) == 1).astype(jnp.float32)
        return self._transition(state, state.obs, reward, True)


class ContinuousAction(_Probe):
    """Obs [0.], Box action in [-1, 1] of shape (1,), reward −(a − 0.5)², one step.

    Known answer: optimal action 0.5 with V* = 0. Tests continuous-action
    agents (actor gradients, Gaussian heads).
    """

    env_id = "Probe-ContinuousAction-v0"

    @property
    def num_actions(self) -> int:
        return 1

    def action_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def step_env(self, key, state, action, params):
        reward = -jnp.sum((jnp.asarray(action, jnp.float32) - 0.5) ** 2)
        return self._transition(state, state.obs, reward, True)


@struct.dataclass
class TruncationParams(environment.EnvParams):
    max_steps_in_episode: int = 5


class Truncation(_Probe):
    """Obs [0.], one action, reward 1 every step, never terminates; truncated
    after ``max_steps_in_episode`` (5) steps.

    Known answer: V([0]) = 1/(1−γ), reached only by bootstrapping from
    ``info["final_observation"]`` on truncation. The returned episode return
    is 5.
    """

    env_id = "Probe-Truncation-v0"

    @property
    def default_params(self) -> TruncationParams:
        return TruncationParams()

    def step_env(self, key, state, action, params):
        return self._transition(state, state.obs, 1.0, False)


@struct.dataclass
class TerminalTimeLimitParams(environment.EnvParams):
    max_steps_in_episode: int = 2


class TerminalTimeLimit(_Probe):
    """Obs [0.] then [1.]; reward 0 then 1; terminated on the second step,
    which is also the time limit (``max_steps_in_episode`` = 2), so the last
    step is both terminated and truncated.

    Known answer: V([1]) = 1, V([0]) = γ (no bootstrap at the end). The
    terminal observation is [0.]: bootstrapping there would feed V([0])
    back into itself and give γ / (1 − γ²).
    """

    env_id = "Probe-TerminalTimeLimit-v0"

    @property
    def default_params(self) -> TerminalTimeLimitParams:
        return TerminalTimeLimitParams()

    def step_env(self, key, state, action, params):
        first_step = state.time == 0
        reward = jnp.where(first_step, 0.0, 1.0)
        next_obs = jnp.where(first_step, 1.0, 0.0) * jnp.ones((1,), jnp.float32)
        return self._transition(state, next_obs, reward, ~first_step)


class TerminalTimeLimitBox(TerminalTimeLimit):
    """:class:`TerminalTimeLimit` with a Box[-1, 1] action of shape (1,) that
    the dynamics ignore, for continuous-action agents."""

    env_id = "Probe-TerminalTimeLimitBox-v0"

    @property
    def num_actions(self) -> int:
        return 1

    def action_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


PROBES: dict[str, type[_Probe]] = {
    cls.env_id: cls
    for cls in (
        ConstantReward,
        ObsDependentReward,
        TwoStepDiscount,
        ActionDependentReward,
        ContinuousAction,
        Truncation,
        TerminalTimeLimit,
        TerminalTimeLimitBox,
    )
}

for _env_id, _cls in PROBES.items():
    # overwrite: re-importing this module (reloads) re-registers the same ids.
    register(_env_id, _cls, overwrite=True)
