"""The agent contract, checked once for every algorithm in the registry.

Every agent is ``init``/``step``/``act``/``evaluate`` over one pytree state:
seeds and numeric hyperparameters vmap together in one compiled program,
the same seed repeats bit for bit and different seeds differ, metrics are
flat float32 scalars, and step counters do not wrap at 2^31. The host side
(``act``, ``evaluate``, resume) is test_agent_contract_host.py. Agent-specific
behaviour (probes with known values, the algorithms' own rules) lives in each
agent's test module; test_time_limit_probe.py runs every agent on one probe.

Each agent compiles one small training program, shared by the tests below.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_agents

from jaxrl import agents
from jaxrl.ops.counters import StepCounter


def test_every_registered_agent_has_a_tiny_config():
    assert set(tiny_agents.TINY) == set(agents.REGISTRY)


ITERATIONS = 4


@dataclasses.dataclass(frozen=True)
class Contract:
    name: str
    agent: agents.Agent
    # jitted (keys [n], hparams at init [n], hparams the steps read [n], env
    # steps at the start [n]) -> (states, metrics [n, ITERATIONS])
    train: object

    def run(self, keys, hparams, start_env_steps=None, init_hparams=None):
        """``ITERATIONS`` steps per lane from ``init(key, init_hparams)``
        (default: ``hparams``) with the state's hyperparameters then replaced
        by ``hparams``, as population-based training changes them mid-run."""
        start = StepCounter.of(0) if start_env_steps is None else start_env_steps
        start = jax.tree.map(lambda w: jnp.broadcast_to(w, (len(keys),)), start)
        return self.train(keys, hparams if init_hparams is None else init_hparams, hparams, start)


def _train_fn(agent):
    def one(key, init_hparams, hparams, start_env_steps):
        state = _with_env_steps(agent.init(key, init_hparams), start_env_steps)
        state = state.replace(hparams=hparams)
        return jax.lax.scan(lambda s, _: agent.step(s), state, length=ITERATIONS)

    return jax.jit(jax.vmap(one))


@pytest.fixture(scope="module", params=tiny_agents.CONTRACT)
def contract(request):
    agent = tiny_agents.make(request.param)
    return Contract(request.param, agent, _train_fn(agent))


def _lanes(agent, keys, scale):
    """Per-lane hyperparameters: the config's, every float leaf times ``scale[i]``
    for lane ``i`` (a sweep over every numeric hyperparameter at once)."""
    base = agent.default_hparams()
    scale = jnp.asarray(scale, jnp.float32)
    return jax.tree.map(
        lambda x: jnp.asarray(x)[None] * (scale if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
                                         else jnp.ones_like(scale, jnp.asarray(x).dtype)),
        base,
    )


def _differs(a, b) -> bool:
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _lane(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def test_seeds_and_hyperparameters_vmap_in_one_program(contract):
    k0, k1 = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    keys = jnp.stack([k0, k1, k0])
    states, metrics = contract.run(keys, _lanes(contract.agent, keys, [1.0, 1.0, 1.0]))
    again, metrics_again = contract.run(keys, _lanes(contract.agent, keys, [1.0, 1.0, 1.0]))
    # The same seed repeats bit for bit, across lanes and across calls.
    assert not _differs(_lane(states, 0), _lane(states, 2))
    assert not _differs((states, metrics), (again, metrics_again))
    # Different seeds give different parameters and different trajectories.
    params = contract.agent.policy_params(states)
    assert _differs(_lane(params, 0), _lane(params, 1)), "seeds 0 and 1 gave equal parameters"
    assert _differs(_lane(states, 0), _lane(states, 1)), "seeds 0 and 1 gave equal states"
    # Other hyperparameter values reuse the compiled program.
    compiled = contract.train._cache_size()
    contract.run(keys, _lanes(contract.agent, keys, [0.5, 0.9, 1.0]))
    assert contract.train._cache_size() == compiled


def _learning_rates_scaled(agent, scale):
    """The config's hyperparameters in each lane, with every learning rate (any
    leaf whose name ends in ``learning_rate``) times ``scale[i]`` in lane ``i``."""
    scale = jnp.asarray(scale, jnp.float32)

    def lane_values(path, x):
        x = jnp.asarray(x)
        is_rate = str(getattr(path[-1], "name", "")).endswith("learning_rate")
        return x[None] * (scale if is_rate else jnp.ones_like(scale, x.dtype))

    return jax.tree_util.tree_map_with_path(lane_values, agent.default_hparams())


def test_learning_rate_is_a_swept_leaf_that_scales_the_updates(contract):
    """Every lane starts from the config's hyperparameters; then its learning
    rates are changed in the state, as population-based training changes them
    mid-run. A lane changed to rate 0 keeps its initial policy parameters, and
    a larger rate moves them further (same seed in every lane, same program):
    an agent that read a rate only at init would move every lane alike."""
    keys = jnp.stack([jax.random.PRNGKey(0)] * 3)
    configured = _learning_rates_scaled(contract.agent, [1.0, 1.0, 1.0])
    hparams = _learning_rates_scaled(contract.agent, [0.0, 1.0, 10.0])
    states, _ = contract.run(keys, hparams, init_hparams=configured)
    start = jax.vmap(contract.agent.init)(keys, configured)
    after, before = (contract.agent.policy_params(s) for s in (states, start))
    moved = [max(float(jnp.max(jnp.abs(a[i] - b[i])))
                 for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)))
             for i in range(3)]
    assert moved[0] == 0.0 and 0.0 < moved[1] < moved[2], moved


def test_metrics_are_flat_float32(contract):
    state = jax.eval_shape(contract.agent.init, jax.random.PRNGKey(0))
    metrics = jax.eval_shape(contract.agent.step, state)[1]
    assert "episode_return" in metrics
    for name, shape in metrics.items():
        assert shape.dtype == jnp.float32 and shape.ndim <= 1, (name, shape)


def _with_env_steps(state, counter: StepCounter):
    """``state`` with every step counter in it set to ``counter``."""
    return jax.tree.map(
        lambda leaf: counter if isinstance(leaf, StepCounter) else leaf,
        state, is_leaf=lambda x: isinstance(x, StepCounter),
    )


def _env_steps(state) -> int:
    counters = [x for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, StepCounter))
                if isinstance(x, StepCounter)]
    assert len(counters) == 1, counters
    return int(counters[0])


def test_env_steps_count_past_two_to_the_31(contract):
    """An int32 counter wraps to a negative count here (the same compiled
    program as above: the starting count is an input)."""
    agent = contract.agent
    start = 2**31 - 2 * agent.env_steps_per_step
    keys = jnp.stack([jax.random.PRNGKey(0)] * 3)
    states, _ = contract.run(keys, _lanes(agent, keys, [1.0, 1.0, 1.0]), StepCounter.of(start))
    assert _env_steps(_lane(states, 0)) == start + ITERATIONS * agent.env_steps_per_step
