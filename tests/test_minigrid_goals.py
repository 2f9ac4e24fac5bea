"""Goals of XLand-MiniGrid's DoorKey ids (``key``, ``door``): reached exactly
when the agent carries the key and when the door is open, read from the
observation's status row. (h-DQN against flat DQN on DoorKey-5x5:
benchmarks/hdqn_sparse.py.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs
from jaxrl.agents import hdqn

from xminigrid.core.constants import TILES_REGISTRY, Colors, Tiles

FORWARD, TURN_RIGHT, TURN_LEFT, PICK_UP, PUT_DOWN, TOGGLE = range(6)
DOWN = 2


def fixed_layout(timestep):
    """DoorKey-5x5 with a known layout: the wall in column 2 with the locked
    door at (2, 2), the key at (3, 1), the goal at (3, 3), the agent at (1, 1)
    facing down."""
    grid = timestep.state.grid
    wall, floor = TILES_REGISTRY[Tiles.WALL, Colors.GREY], TILES_REGISTRY[Tiles.FLOOR, Colors.BLACK]
    grid = grid.at[1:4, 1:4].set(floor).at[1:4, 2].set(wall)
    grid = grid.at[2, 2].set(TILES_REGISTRY[Tiles.DOOR_LOCKED, Colors.YELLOW])
    grid = grid.at[3, 1].set(TILES_REGISTRY[Tiles.KEY, Colors.YELLOW])
    grid = grid.at[3, 3].set(TILES_REGISTRY[Tiles.GOAL, Colors.GREEN])
    agent = timestep.state.agent.replace(position=jnp.array([1, 1]), direction=jnp.array(DOWN),
                                         pocket=TILES_REGISTRY[Tiles.EMPTY, Colors.EMPTY])
    return timestep.replace(state=timestep.state.replace(grid=grid, agent=agent))


def test_doorkey_goals_are_reached_exactly_when_key_carried_and_door_open():
    env, env_params = envs.make("xminigrid:MiniGrid-DoorKey-5x5")
    assert env.goal_names == ("key", "door")
    _, timestep = env.reset(jax.random.PRNGKey(0), env_params)
    timestep = fixed_layout(timestep)
    reached = jax.jit(lambda obs: jnp.stack([env.goal_reached(obs, g) for g in range(2)]))
    # forward, pick up the key, put it down, pick it up again, turn to the
    # door, open it, close it, open it, walk through to the goal.
    script = [(FORWARD, (0, 0)), (PICK_UP, (1, 0)), (PUT_DOWN, (0, 0)), (PICK_UP, (1, 0)),
              (TURN_LEFT, (1, 0)), (TOGGLE, (1, 1)), (TOGGLE, (1, 0)), (TOGGLE, (1, 1)),
              (FORWARD, (1, 1)), (FORWARD, (1, 1)), (TURN_RIGHT, (1, 1)), (FORWARD, (1, 1))]
    step = jax.jit(env.step_env)
    for i, (action, expected) in enumerate(script):
        obs, timestep, reward, terminated, _ = step(jax.random.PRNGKey(i), timestep, action, env_params)
        assert obs.shape == env.observation_space(env_params).shape == (8, 7, 2)
        assert obs.dtype == jnp.uint8
        assert tuple(np.asarray(reached(obs))) == expected, (i, action)
        # the flattened float observation the agents keep reads the same
        assert tuple(np.asarray(reached(obs.reshape(-1).astype(jnp.float32)))) == expected
        assert bool(terminated) == (i == len(script) - 1)
    assert float(reward) > 0


def test_other_xminigrid_ids_keep_the_plain_view_and_no_goals():
    env, env_params = envs.make("xminigrid:MiniGrid-Empty-5x5")
    assert not hasattr(env, "goal_names")
    assert env.observation_space(env_params).shape == (7, 7, 2)
    with pytest.raises(ValueError, match="declares none"):
        hdqn.make(env, env_params, hdqn.Config(num_envs=2))
    with pytest.raises(ValueError, match="view_size=1 .* expected at least 2"):
        envs.make("xminigrid:MiniGrid-DoorKey-5x5", view_size=1)
