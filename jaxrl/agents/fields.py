"""Config fields that several agents share, declared once: their check and
doc live here, the default stays with each agent (PPO's torso is (64, 64)
tanh, DDPG's (256, 256) relu)::

    class Config(AgentConfig):
        num_envs: int = fields.num_envs(4)
        hidden_sizes: tuple[int, ...] = fields.hidden_sizes((64, 64))

A docstring written under a field in an agent's Config wins over the doc
given here, for a field whose meaning is particular to that agent.
"""

from __future__ import annotations

from typing import Any

from jaxrl.config import Check, field, non_negative, one_of, positive, sizes, unit_interval
from jaxrl.networks import ACTIVATIONS

TORSOS = ("auto", "mlp", "minatar_cnn")

# h-DQN and DQN accept an empty torso: the Q function is then linear in the
# observation (tabular on one-hot observations).
possibly_empty_sizes = Check(lambda v: all(h > 0 for h in v), "a tuple of positive integers")


def num_envs(default: int) -> Any:
    return field(default, check=positive, doc="Parallel environments (vmapped).")


def rollout_len(default: int) -> Any:
    return field(default, check=positive,
                 doc="Environment steps per environment per iteration (T).")


def total_steps(default: int) -> Any:
    return field(default, check=positive,
                 doc="Environment steps of the run: the span of the agent's schedules "
                     "(learning-rate annealing, exploration decay, replay's β).")


def learning_rate(default: float, doc: str = "Optimiser step size.") -> Any:
    return field(default, check=positive, swept=True, doc=doc)


def anneal_lr(default: bool = True) -> Any:
    return field(default, doc="Decay the learning rate linearly to zero over total_steps.")


def gamma(default: float = 0.99) -> Any:
    return field(default, check=unit_interval, swept=True, doc="Discount factor γ.")


def max_grad_norm(default: float) -> Any:
    return field(default, check=positive, swept=True, doc="Global gradient-norm bound.")


def tau(default: float = 0.005) -> Any:
    return field(default, check=unit_interval, swept=True,
                 doc="Soft target update rate: θ' ← τθ + (1 − τ)θ'.")


def hidden_sizes(default: tuple[int, ...], *, allow_empty: bool = False) -> Any:
    return field(default, check=possibly_empty_sizes if allow_empty else sizes,
                 doc="Hidden layer sizes of the networks' MLP torsos"
                     + (" (empty: linear in the observation)." if allow_empty else "."))


def activation(default: str) -> Any:
    return field(default, check=one_of(*ACTIVATIONS),
                 doc="Hidden activation: " + " | ".join(ACTIVATIONS) + ".")


def torso(default: str = "auto") -> Any:
    return field(default, check=one_of(*TORSOS),
                 doc="Network torso: auto (CNN for image observations) | mlp | minatar_cnn.")


# Replay-based agents (DDPG, D4PG, DQN, h-DQN).


def updates_per_step(default: int) -> Any:
    return field(default, check=positive,
                 doc="Gradient updates per iteration once learning has started.")


def batch_size(default: int) -> Any:
    return field(default, check=positive, doc="Minibatch size of each update.")


def buffer_size(default: int) -> Any:
    return field(default, check=positive, doc="Replay capacity in transitions.")


def learning_starts(default: int) -> Any:
    return field(default, check=non_negative, doc="Env steps (over all envs) before the first update.")


# Target networks of the Q-learning agents (DQN, h-DQN).

TARGET_UPDATES = ("hard", "soft")


def double_dqn(default: bool = True) -> Any:
    return field(default, doc="Double-DQN targets (online argmax, target evaluation) "
                              "instead of the max over Q'.")


def target_update(default: str = "hard") -> Any:
    return field(default, check=one_of(*TARGET_UPDATES),
                 doc="Target network update: hard (a copy every target_update_period "
                     "updates) | soft (Polyak averaging with tau).")


def target_update_period(default: int) -> Any:
    return field(default, check=positive, doc="Updates between hard target copies.")
