"""A2C: synchronous advantage actor-critic (Mnih et al. 2016, the synchronous
form of A3C), as the on-policy case of :mod:`jaxrl.agents.impala`.

``num_envs`` vmapped environments run ``rollout_len`` steps with the current
parameters, then one gradient step on

    L = −mean log π(a_t|x_t) (G_t − V(x_t))  +  baseline_cost · mean ½ (G_t − V(x_t))²
        − entropy_cost · mean H[π(·|x_t)]

where G_t is the bootstrapped n-step return to the end of the rollout
(``vtrace_lambda`` < 1 mixes them into λ-returns). That is IMPALA's loss with
no policy lag: the behaviour policy is the learner's, so every importance
weight π/μ is 1, V-trace's truncations are inactive and its targets v_s are
exactly these returns. One implementation serves both, and the same
``jaxrl.distributed.data_parallel`` wrapper makes either data-parallel.

Defaults are scaled to small control tasks (Adam, 8 envs x 20 steps, gradient
norm bounded at 0.5): CartPole-v1 reaches 500 within 10^6 env steps.
"""

from __future__ import annotations

import dataclasses

from jaxrl.agents import fields, impala
from jaxrl.agents.base import Agent
from jaxrl.config import Check, field, non_negative

ACTION_SPACES = impala.ACTION_SPACES
Trajectory = impala.Trajectory
HParams = impala.HParams
State = impala.State

ON_POLICY = Check(lambda lag: lag == 0,
                  "0 (A2C acts with the learner's parameters; use impala for lagged actors)")


@dataclasses.dataclass(frozen=True)
class Config(impala.Config):
    """IMPALA's settings with no policy lag. ``correction`` and the ρ̄/c̄
    thresholds are kept for a common interface but have no effect: on-policy,
    every importance weight is 1."""

    # A redeclared field replaces impala's declaration whole (check and swept too),
    # so each restates them; it keeps its place in the field order (and HParams).
    policy_lag: int = field(0, check=ON_POLICY)
    """Always 0 (A2C is on-policy; lagged actors are ``impala``)."""
    entropy_cost: float = field(0.01, check=non_negative, swept=True)
    """Weight of the entropy bonus (A2C's customary 0.01)."""
    max_grad_norm: float = fields.max_grad_norm(0.5)
    """Global gradient-norm bound (A2C's customary 0.5)."""


def make(env, env_params, config: Config = Config()) -> Agent:
    """Binds A2C to a gymnax environment (the interface of ``ppo.make``)."""
    if not isinstance(config, Config):
        raise TypeError(f"a2c.make expects an a2c.Config, got {type(config).__name__}")
    return dataclasses.replace(impala.make(env, env_params, config), name="a2c")
