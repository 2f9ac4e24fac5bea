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

**KeyDoor-v0** is a two-room key-and-door task in the spirit of Montezuma's
Revenge, built so that ε-greedy exploration of a flat agent almost never sees
its only reward. With the default ``room_size=6`` the map is::

    ###############
    #D.....#......#
    #......#......#
    #......#......#
    #......O......#
    #......#......#
    #S.....#.....K#
    ###############

Two ``room_size`` x ``room_size`` rooms joined by a one-cell doorway ``O`` in
the middle of the wall between them. The agent starts at ``S`` (bottom-left
of the left room); the door ``D`` is in the same room's top-left corner, the
key ``K`` in the far (bottom-right) corner of the other room. Stepping onto
the key picks it up; stepping onto the door while holding it opens the door:
reward 1 and the episode terminates. Every other step pays 0 (no shaping:
visiting the door without the key pays nothing), walls stop movement, and
episodes are truncated after 100 steps. The shortest solution takes 33 steps
(start → doorway → key → doorway → door); a uniformly random policy opens the
door in none of 20,000 episodes (with ``room_size=5``, in 1 of 10,000).

Observation: the one-hot of the agent's cell over the whole map
(``(room_size + 2) x (2 room_size + 3)`` cells, walls included) followed by
``has_key``. Goals are the objects and the doorway: ``key``, ``door``,
``doorway`` (indices 0, 1, 2); goal g is reached when the agent stands on its
cell, whether or not it holds the key, so each option is a walk within one
room.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
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


def key_door_layout(room_size: int) -> list[str]:
    """The two-room map as text rows: ``#`` wall, ``S`` start, ``D`` door,
    ``K`` key, ``O`` the doorway between the rooms, ``.`` floor."""
    n = room_size
    middle = 1 + n // 2
    rows = ["#" * (2 * n + 3)]
    for r in range(1, n + 1):
        left = ["."] * n
        right = ["."] * n
        if r == 1:
            left[0] = "D"  # the door: top-left corner of the left room
        if r == n:
            left[0] = "S"  # the start: bottom-left corner of the left room
            right[-1] = "K"  # the key: bottom-right corner of the right room
        wall = "O" if r == middle else "#"
        rows.append("#" + "".join(left) + wall + "".join(right) + "#")
    rows.append("#" * (2 * n + 3))
    return rows


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
    """Two rooms, a key and a door (see the module docstring)."""

    goal_names = ("key", "door", "doorway")

    def __init__(self, room_size: int = 6):
        if not isinstance(room_size, int) or room_size < 2:
            raise ValueError(f"KeyDoor room_size must be an integer >= 2, got {room_size!r}")
        super().__init__()
        self.room_size = room_size
        self.layout = key_door_layout(room_size)
        self.height, self.width = len(self.layout), len(self.layout[0])
        find = lambda ch: next((r, row.index(ch)) for r, row in enumerate(self.layout) if ch in row)
        self.start, self.door_cell, self.key_cell, self.doorway_cell = find("S"), find("D"), find("K"), find("O")
        self.walls = np.array([[ch == "#" for ch in row] for row in self.layout])
        # Goal g is reached on cell goal_cells[g]: key, door, doorway.
        self.goal_cells = np.array([self._cell_index(*c) for c in (self.key_cell, self.door_cell, self.doorway_cell)])

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
        return spaces.Box(0.0, 1.0, (self.height * self.width + 1,), jnp.float32)

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def _cell_index(self, row, col):
        return row * self.width + col

    def get_obs(self, state: KeyDoorState, params: Any = None, key: Any = None) -> jax.Array:
        cell = jax.nn.one_hot(self._cell_index(state.row, state.col), self.height * self.width, dtype=jnp.float32)
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
        row, col = state.row + move[0], state.col + move[1]
        # The map is walled all round, so a move never leaves it; walls stop it.
        blocked = jnp.asarray(self.walls)[row, col]
        row = jnp.where(blocked, state.row, row).astype(jnp.int32)
        col = jnp.where(blocked, state.col, col).astype(jnp.int32)
        on_key = (row == self.key_cell[0]) & (col == self.key_cell[1])
        on_door = (row == self.door_cell[0]) & (col == self.door_cell[1])
        opened = on_door & state.has_key
        state = KeyDoorState(row=row, col=col, has_key=state.has_key | on_key, time=state.time + 1)
        info = {"discount": 1.0 - opened.astype(jnp.float32)}
        return self.get_obs(state), state, opened.astype(jnp.float32), opened, info

    def goal_reached(self, obs: jax.Array, goal: jax.Array) -> jax.Array:
        """Goal 0 key, 1 door, 2 doorway: reached when the agent stands on that cell."""
        return jnp.take(obs, jnp.asarray(self.goal_cells)[goal], axis=-1) > 0.5


register("DecisionProcess-v0", DecisionProcess)
register("KeyDoor-v0", KeyDoor)
