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
| Probe-RememberCue-v0            | [±1.] (the cue),    | Discrete(2)  | 1 at the last step   | delay + 1 steps (delay=3),   | memory: 1; feed-forward: ½         |
|                                 | then [0.] × delay   |              | if action 1 ⇔ cue +1 | terminated                   |                                    |
| Probe-PixelCue-v0               | uint8 36x36x1, the  | Discrete(2)  | as above             | delay + 1 steps (delay=0),   | an image torso: 1; blind: ½        |
|                                 | cue's half lit      |              |                      | terminated                   | (delay ≥ 1: as above)              |

Memory probes (for recurrent policies):

- **Probe-RememberCue-v0** (``delay``, default 3): the first observation
  shows a cue of ±1, the next ``delay`` are blank, and the action taken on
  the last blank one earns 1 if it names the cue (action 1 for +1, action 0
  for −1). Every observation after the first is the same, so any
  feed-forward policy takes the last action independently of the cue and
  earns ½ in expectation; a policy that remembers the first observation
  earns 1.
- **Probe-PixelCue-v0** (``size``, default 36, the smallest image the Nature
  CNN takes; ``delay``, default 0): the same task in uint8 pixels: the cue
  lights the left (−1) or right (+1) half of a ``size`` x ``size`` x 1 image
  with 255, later frames are black. With ``delay=0`` it is one step, a probe
  for image encoders (and their uint8 scaling); with ``delay`` ≥ 1 it needs
  memory too.
- **CartPole-v1-no-velocity**: gymnax's CartPole-v1 observing only the cart
  position and the pole angle (:class:`ObservationSubset` drops the two
  velocities, from ``info["final_observation"]`` too); terminations and the
  500-step truncation are CartPole's. A policy must infer the velocities
  from successive observations.
- gymnax's ``MemoryChain-bsuite`` (bsuite's memory length test) is in
  :func:`jaxrl.envs.make` already.

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

import numbers
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
import gymnax
from gymnax.environments import environment, spaces

from jaxrl.envs.registry import register
from jaxrl.envs.wrappers import StepResult, Wrapper

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


@struct.dataclass
class CueState(environment.EnvState):
    cue: jax.Array
    """+1 or −1, drawn at reset."""
    time: jax.Array


def _check_count(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {least}")
    return int(value)


class RememberCue(environment.Environment[CueState, ProbeParams]):
    """The first observation is a cue [±1.] (uniform at reset), the next
    ``delay`` are [0.]; the action taken on the last of them earns 1 if it
    names the cue (action 1 for +1, 0 for −1), and the episode terminates.
    Actions before that do nothing.

    Known answer: a policy that remembers the first observation earns 1 per
    episode; a feed-forward one sees the same [0.] at the last step whatever
    the cue and earns ½ in expectation. ``max_steps_in_episode`` defaults to
    ``delay + 2``, a limit never reached.
    """

    env_id = "Probe-RememberCue-v0"
    # With no blank step the cue is in view when the action is judged.
    min_delay = 1

    def __init__(self, delay: int = 3):
        super().__init__()
        self.delay = _check_count("delay", delay, self.min_delay)

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=self.delay + 2)

    @property
    def name(self) -> str:
        return self.env_id

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(2)

    def observation_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def render_cue(self, cue: jax.Array, shown: jax.Array) -> jax.Array:
        """The observation: the cue where ``shown``, else blank."""
        return jnp.where(shown, cue, 0.0) * jnp.ones((1,), jnp.float32)

    def get_obs(self, state: CueState, params: Any = None, key: Any = None) -> jax.Array:
        return self.render_cue(state.cue, state.time == 0)

    def is_terminated(self, state: CueState, params: Any) -> jax.Array:
        return state.time > self.delay

    def reset_env(self, key: jax.Array, params: ProbeParams) -> tuple[jax.Array, CueState]:
        cue = jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)
        state = CueState(cue=cue, time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state: CueState, action, params):
        last = state.time == self.delay
        named = jnp.where(jnp.asarray(action) == 1, 1.0, -1.0)
        reward = (last & (named == state.cue)).astype(jnp.float32)
        state = CueState(cue=state.cue, time=state.time + 1)
        info = {"discount": 1.0 - last.astype(jnp.float32)}
        return self.get_obs(state), state, reward, last, info


class PixelCue(RememberCue):
    """:class:`RememberCue` in pixels: a ``size`` x ``size`` x 1 uint8 image
    whose left (cue −1) or right (cue +1) half is 255 in the first frame,
    black after. ``delay`` defaults to 0: one step, decided by the image.

    Known answer: a policy that sees (and, with ``delay`` ≥ 1, remembers)
    the image earns 1; a constant one ½. The default 36x36 is the smallest
    image the Nature CNN takes."""

    env_id = "Probe-PixelCue-v0"
    min_delay = 0

    def __init__(self, size: int = 36, delay: int = 0):
        super().__init__(delay)
        # Two columns at least, one per half.
        self.size = _check_count("size", size, 2)

    def observation_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(0, 255, (self.size, self.size, 1), jnp.uint8)

    def render_cue(self, cue: jax.Array, shown: jax.Array) -> jax.Array:
        right = jnp.arange(self.size) >= self.size // 2
        lit = shown & (right == (cue > 0))
        return jnp.broadcast_to(jnp.where(lit, 255, 0).astype(jnp.uint8)[None, :, None],
                                (self.size, self.size, 1))


class ObservationSubset(Wrapper):
    """Keeps the entries ``indices`` of a vector observation, in ``obs`` and in
    ``info["final_observation"]``; rewards and done flags pass through
    unchanged (a time limit stays ``truncated``, never ``terminated``)."""

    def __init__(self, env: Any, indices: tuple[int, ...], name: str):
        super().__init__(env)
        self.indices = tuple(indices)
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def observation_space(self, params: Any) -> spaces.Box:
        space = self._env.observation_space(params)
        pick = lambda bound: jnp.broadcast_to(jnp.asarray(bound), space.shape)[jnp.array(self.indices)]
        return spaces.Box(pick(space.low), pick(space.high), (len(self.indices),), space.dtype)

    def select(self, obs: jax.Array) -> jax.Array:
        return obs[..., jnp.array(self.indices)]

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None) -> tuple[Any, Any]:
        obs, state = self._env.reset(key, self._params(params))
        return self.select(obs), state

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> StepResult:
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, action, self._params(params))
        info = {**info, "final_observation": self.select(info["final_observation"])}
        return self.select(obs), state, reward, terminated, truncated, info


def cartpole_no_velocity() -> ObservationSubset:
    """gymnax's CartPole-v1 observing (cart position, pole angle) only."""
    env, _ = gymnax.make("CartPole-v1")
    # CartPole's observation is (x, x_dot, theta, theta_dot).
    return ObservationSubset(env, (0, 2), "CartPole-v1-no-velocity")


PROBES: dict[str, type[environment.Environment]] = {
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
        RememberCue,
        PixelCue,
    )
}

for _env_id, _cls in PROBES.items():
    # overwrite: re-importing this module (reloads) re-registers the same ids.
    register(_env_id, _cls, overwrite=True)
register("CartPole-v1-no-velocity", cartpole_no_velocity, overwrite=True)
