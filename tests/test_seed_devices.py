"""Seeds across CPU cores (jaxrl.cpu, jaxrl.run.seeds): a run's seeds split
over the process's host devices, and every seed computes the same bits
whatever the split, alone or beside others, and across a resume on another
device count.

The suite runs with two host CPU devices (conftest.py), so these run on any
machine. The agent is tiny PPO: its vectorised update was the one whose
per-seed bits depended on how many seeds shared the program."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from stop_sink import StopAt
import tiny_agents

from jaxrl import run
from jaxrl.distributed.data_parallel import data_parallel
from jaxrl.run import seeds as seeds_lib
from jaxrl.run.loop import make_chunk_fn, make_init_fn

KEY = jax.random.PRNGKey(3)
SEEDS = 4
ITERATIONS = 4
CHUNK = 2


@pytest.fixture(scope="module")
def agent():
    return tiny_agents.make("ppo")


def train(agent, **kwargs):
    options = dict(seeds=SEEDS, chunk_iterations=CHUNK, eval_episodes=2, progress=False,
                   checkpoint_every_seconds=0)
    options.update(kwargs)
    return run.train(agent, KEY, ITERATIONS * agent.env_steps_per_step, **options)


@pytest.fixture(scope="module")
def over_two(agent):
    return train(agent)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_same_bits(a, b):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_suite_has_two_cpu_devices():
    assert len(jax.local_devices()) == 2


def test_seeds_split_over_the_cpu_devices(over_two):
    sharding = jax.tree.leaves(over_two.state)[0].sharding
    assert sharding.mesh.axis_names == (seeds_lib.SEEDS_AXIS,)
    assert sharding.mesh.devices.size == 2
    assert over_two.summary["seed_devices"] == 2
    assert over_two.eval_returns.shape == (SEEDS, 2)


def test_split_run_equals_the_one_device_run_bit_for_bit(agent, over_two):
    one = train(agent, seed_devices=1)
    assert len(jax.tree.leaves(one.state)[0].sharding.device_set) == 1
    assert one.summary["seed_devices"] == 1
    assert_same_bits(over_two.state, one.state)
    for name, values in one.metrics.items():
        np.testing.assert_array_equal(over_two.metrics[name], values)
    np.testing.assert_array_equal(over_two.eval_returns, one.eval_returns)


def test_a_seed_computes_the_same_bits_alone_as_beside_others(agent):
    # Vectorised over seeds, PPO's update rounded differently with the seed
    # count (1e-8 apart after one iteration); mapped, seed i is seed i.
    keys = jax.random.split(KEY, SEEDS)
    together, _ = make_chunk_fn(agent, CHUNK)(make_init_fn(agent, SEEDS)(keys, None), CHUNK)
    alone, _ = make_chunk_fn(agent, CHUNK)(make_init_fn(agent, 1)(keys[2:3], None), CHUNK)
    assert_same_bits(jax.tree.map(lambda x: x[2:3], together), alone)


def test_resume_on_another_device_count_is_bit_identical(agent, over_two, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(agent, out_dir=out, sinks=[StopAt(2)])
    resumed = train(agent, out_dir=out, resume=True, seed_devices=1)
    assert_same_bits(over_two.state, resumed.state)
    np.testing.assert_array_equal(over_two.eval_returns, resumed.eval_returns)


@pytest.mark.parametrize("seeds, available, expected", [
    (4, 2, 2), (3, 2, 1), (6, 4, 3), (1, 8, 1), (16, 8, 8), (7, 16, 7),
])
def test_seeds_split_over_the_most_devices_that_divide_them(seeds, available, expected):
    assert seeds_lib.seed_devices_for(seeds, available) == expected


def test_placement_stays_on_one_device_where_it_must(agent):
    assert seeds_lib.place_seeds(1, agent).devices == 1
    assert seeds_lib.place_seeds(3, agent).devices == 1  # 3 does not split over 2
    assert seeds_lib.place_seeds(4, agent, devices=1).devices == 1
    assert seeds_lib.place_seeds(4, agent).devices == 2
    # An agent placed by its own mesh (DPPO) keeps its placement.
    assert seeds_lib.place_seeds(4, data_parallel(agent, 2)).devices == 1


@pytest.mark.parametrize("devices", [0, -1, 1.5, True, "2"])
def test_bad_seed_devices_are_refused_before_anything_runs(agent, devices, no_training):
    with pytest.raises(ValueError, match=r"seed_devices=.* is invalid: expected None"):
        seeds_lib.place_seeds(4, agent, devices)


def test_over_seeds_maps_per_seed_and_shares_the_rest():
    fn = lambda x, scale, shift: x * scale + shift
    xs, shifts = np.arange(6.0).reshape(3, 2), np.array([1.0, 2.0, 3.0])
    out = seeds_lib.over_seeds(fn, (0, None, 0))(xs, 10.0, shifts)
    np.testing.assert_array_equal(np.asarray(out), xs * 10.0 + shifts[:, None])
    with pytest.raises(ValueError, match="in_axes entries must be 0 or None"):
        seeds_lib.over_seeds(fn, (1, None, 0))(xs, 10.0, shifts)


def device_count_in_a_fresh_process(env_changes):
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAXRL_CPU_DEVICES", "JAX_NUM_CPU_DEVICES")}
    env.update(env_changes)
    code = "import jaxrl, jax; print(jax.local_device_count())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stdout.strip(), done.stderr.strip().splitlines()[-1:]


@pytest.mark.parametrize("env_changes, expected", [
    ({}, str(len(os.sched_getaffinity(0)))),
    ({"JAXRL_CPU_DEVICES": "3"}, "3"),
    # JAX's own settings decide over jaxrl's.
    ({"JAXRL_CPU_DEVICES": "3", "XLA_FLAGS": "--xla_force_host_platform_device_count=5"}, "5"),
])
def test_import_asks_for_one_cpu_device_per_core(env_changes, expected):
    code, out, _ = device_count_in_a_fresh_process(env_changes)
    assert (code, out) == (0, expected)


def test_a_bad_cpu_device_count_is_named():
    code, _, last = device_count_in_a_fresh_process({"JAXRL_CPU_DEVICES": "many"})
    assert code != 0
    assert "JAXRL_CPU_DEVICES='many' is invalid: expected a positive number" in last[0]
