"""Sparse-reward environments with goals, for hierarchical agents (h-DQN).

| id                  | obs                              | actions            | reward                                        |
|---------------------|----------------------------------|--------------------|-----------------------------------------------|
| DecisionProcess-v0  | one-hot of the state s1..s6 [6]  | 0 left, 1 right    | at s1: 1 if s6 was visited, else 0.01         |
| KeyDoor-v0          | one-hot agent cell + has_key     | 0 up 1 down 2 left 3 right | 1 on reaching the door with the key   |

**Goals.** An environment declares its goals with two members, which
``jaxrl.agents.hdqn`` reads:

- ``goal_names``: a tuple of names, one per goal (``num_goals`` is its length);
- ``goal_reached(obs, goal) -> bool``: a pure, jittable test on one
  observation (of the unwrapped env) and an int goal index.

The test looks at observations only, so it works through any wrapper and on
``info["final_observation"]`` at episode ends.

**DecisionProcess-v0** is the stochastic decision process of Kulkarni et al.
(2016, §4.1): states s1..s6 (indices 0..5), every episode starts in s2;
``left`` moves one state left; ``right`` moves right with probability ½ and
otherwise left. Choices the paper leaves open, following the authors' code:
``right`` in s6 clamps (stays in s6 with probability ½, else moves to s5),
and episodes are truncated after 100 steps. Reaching s1 terminates with
reward 1 if s6 was visited in the episode and 0.01 otherwise, so an episode's
return is 1 exactly when it visited s6. The observation is only the current
state, so the task is non-Markov for a flat agent: the best policy (right
until s6, then left) earns 0.208 = ⅕·1 + ⅘·0.01, while flat Q-learning
settles on going left at once (0.01). Goals: every state, ``s1``..``s6``.

**KeyDoor-v0** is a ``size`` x ``size`` room (default 7) in the spirit of
Montezuma's Revenge: the agent starts at the middle of the bottom row, the
key lies in the top-right corner and the door in the top-left one. Stepping
onto the key picks it up; stepping onto the door while holding the key opens
it: reward 1 and the episode terminates. Every other step pays 0, walls stop
movement, and episodes are truncated after 100 steps. Goals are the objects:
``key`` and ``door`` (reached when the agent stands on them).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from jaxrl.envs.registry import register

# --------------------------------------------------------------------------- decision process

NUM_STATES = 6
START_STATE = 1  # s2
GOAL_STATE = 5  # s6
LEFT, RIGHT = 0, 1
BONUS_REWARD = 1.0
SMALL_REWARD = 0.01


@struct.dataclass
class DecisionProcessState(environment.EnvState):
    position: jax.Array
    """Index of the current state (0 = s1, ..., 5 = s6)."""
    visited_s6: jax.Array
    time: jax.Array


@struct.dataclass
class DecisionProcessParams(environment.EnvParams):
    max_steps_in_episode: int = 100
    right_success_prob: float = 0.5


class DecisionProcess(environment.Environment[DecisionProcessState, DecisionProcessParams]):
    """The six-state stochastic decision process of h-DQN (see the module docstring)."""

    goal_names = tuple(f"s{i + 1}" for i in range(NUM_STATES))

    @property
    def default_params(self) -> DecisionProcessParams:
        return DecisionProcessParams()

    @property
    def name(self) -> str:
        return "DecisionProcess-v0"

    @property
    def num_actions(self) -> int:
        return 2

    def observation_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (NUM_STATES,), jnp.float32)

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(2)

    def get_obs(self, state: DecisionProcessState, params: Any = None, key: Any = None) -> jax.Array:
        return jax.nn.one_hot(state.position, NUM_STATES, dtype=jnp.float32)

    def is_terminated(self, state: DecisionProcessState, params: Any) -> jax.Array:
        return state.position == 0

    def reset_env(self, key, params):
        state = DecisionProcessState(
            position=jnp.int32(START_STATE), visited_s6=jnp.asarray(False), time=jnp.int32(0)
        )
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        moves_right = (action == RIGHT) & jax.random.bernoulli(key, params.right_success_prob)
        position = jnp.where(moves_right, jnp.minimum(state.position + 1, NUM_STATES - 1), state.position - 1)
        position = jnp.maximum(position, 0).astype(jnp.int32)
        visited_s6 = state.visited_s6 | (position == GOAL_STATE)
        terminated = position == 0
        reward = jnp.where(terminated, jnp.where(visited_s6, BONUS_REWARD, SMALL_REWARD), 0.0)
        state = DecisionProcessState(position=position, visited_s6=visited_s6, time=state.time + 1)
        info = {"discount": 1.0 - terminated.astype(jnp.float32)}
        return self.get_obs(state), state, reward.astype(jnp.float32), terminated, info

    @staticmethod
    def goal_reached(obs: jax.Array, goal: jax.Array) -> jax.Array:
        """Goal g is state s_{g+1}: reached when the agent is in it."""
        return jnp.take(obs, goal, axis=-1) > 0.5


# --------------------------------------------------------------------------- key and door

UP, DOWN, LEFT_MOVE, RIGHT_MOVE = 0, 1, 2, 3
_MOVES = jnp.array([[-1, 0], [1, 0], [0, -1], [0, 1]], jnp.int32)  # (row, col)


@struct.dataclass
class KeyDoorState(environment.EnvState):
    row: jax.Array
    col: jax.Array
    has_key: jax.Array
    time: jax.Array


@struct.dataclass
class KeyDoorParams(environment.EnvParams):
    max_steps_in_episode: int = 100


class KeyDoor(environment.Environment[KeyDoorState, KeyDoorParams]):
    """A room with a key and a door (see the module docstring)."""

    goal_names = ("key", "door")

    def __init__(self, size: int = 7):
        if not isinstance(size, int) or size < 3:
            raise ValueError(f"KeyDoor size must be an integer >= 3, got {size!r}")
        super().__init__()
        self.size = size
        self.start = (size - 1, size // 2)
        self.key_cell = (0, size - 1)
        self.door_cell = (0, 0)

    @property
    def default_params(self) -> KeyDoorParams:
        return KeyDoorParams()

    @property
    def name(self) -> str:
        return "KeyDoor-v0"

    @property
    def num_actions(self) -> int:
        return 4

    def observation_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.size * self.size + 1,), jnp.float32)

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def _cell_index(self, row, col):
        return row * self.size + col

    def get_obs(self, state: KeyDoorState, params: Any = None, key: Any = None) -> jax.Array:
        cell = jax.nn.one_hot(self._cell_index(state.row, state.col), self.size * self.size, dtype=jnp.float32)
        return jnp.concatenate([cell, state.has_key.astype(jnp.float32)[None]])

    def is_terminated(self, state: KeyDoorState, params: Any) -> jax.Array:
        return jnp.asarray(False)

    def reset_env(self, key, params):
        state = KeyDoorState(
            row=jnp.int32(self.start[0]), col=jnp.int32(self.start[1]),
            has_key=jnp.asarray(False), time=jnp.int32(0),
        )
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        move = _MOVES[action]
        row = jnp.clip(state.row + move[0], 0, self.size - 1).astype(jnp.int32)
        col = jnp.clip(state.col + move[1], 0, self.size - 1).astype(jnp.int32)
        on_key = (row == self.key_cell[0]) & (col == self.key_cell[1])
        on_door = (row == self.door_cell[0]) & (col == self.door_cell[1])
        opened = on_door & state.has_key
        state = KeyDoorState(row=row, col=col, has_key=state.has_key | on_key, time=state.time + 1)
        info = {"discount": 1.0 - opened.astype(jnp.float32)}
        return self.get_obs(state), state, opened.astype(jnp.float32), opened, info

    def goal_reached(self, obs: jax.Array, goal: jax.Array) -> jax.Array:
        """Goal 0 (key) or 1 (door): reached when the agent stands on that object."""
        cells = jnp.array([self._cell_index(*self.key_cell), self._cell_index(*self.door_cell)])
        return jnp.take(obs, cells[goal], axis=-1) > 0.5


register("DecisionProcess-v0", DecisionProcess)
register("KeyDoor-v0", KeyDoor)
