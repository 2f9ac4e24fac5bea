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

from jaxrl import networks
from jaxrl.agents.base import config_requirer
from jaxrl.config import Check, field, non_negative, one_of, positive, sizes, unit_interval
from jaxrl.networks import ACTIVATIONS, CORES

TORSOS = ("auto", "mlp", *networks.IMAGE_TORSOS)

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
                     + (" (empty: linear in the observation)" if allow_empty else "")
                     + "; with an image torso, the dense layers after its convolutions "
                       "(the papers': (512,) for nature_cnn, (256,) for impala_resnet).")


def activation(default: str) -> Any:
    return field(default, check=one_of(*ACTIVATIONS),
                 doc="Hidden activation: " + " | ".join(ACTIVATIONS) + ".")


def torso(default: str = "auto") -> Any:
    return field(default, check=one_of(*TORSOS), doc=(
        "Network torso: auto (minatar_cnn for image observations, else mlp) | mlp | "
        "minatar_cnn (one 3x3 conv, Young & Tian 2019) | nature_cnn (Mnih et al. 2015; "
        "images of at least 36x36) | impala_resnet (IMPALA's deep residual encoder, "
        "Espeholt et al. 2018). The image torsos take (H, W, C) observations, divide "
        "uint8 ones by 255 (float ones are taken as they are) and use ReLU in their "
        "convolutions; hidden_sizes and activation are their dense layers."))


def torso_for(config: Any, obs_shape: Any) -> str:
    """``config.torso`` for observations of ``obs_shape`` (one observation's
    shape, or a dict of them), ``auto`` resolved for an array observation;
    ValueError naming the field when the torso cannot take them. Called when
    an agent is made, before anything compiles.

    A Dict observation is encoded key by key (:class:`jaxrl.networks.DictEncoder`:
    the MinAtar conv on image keys unless the torso is mlp), so it takes
    auto, mlp and minatar_cnn."""
    require = config_requirer(config)
    if isinstance(obs_shape, dict):
        allowed = ("auto", "mlp", "minatar_cnn")
        require(config.torso in allowed, "torso",
                f"one of {allowed} for a Dict observation (keys {sorted(obs_shape)})")
        return config.torso
    kind = networks.resolve_torso(config.torso, obs_shape)
    mismatch = networks.torso_mismatch(kind, obs_shape)
    if mismatch is not None:
        takes = [t for t in TORSOS
                 if networks.torso_mismatch(networks.resolve_torso(t, obs_shape), obs_shape) is None]
        require(False, "torso", f"one of {tuple(takes)} for observations of shape "
                                f"{tuple(obs_shape)} ({mismatch})")
    return kind


def core(default: str = "none") -> Any:
    return field(default, check=one_of(*CORES),
                 doc="Recurrent core: none (feed-forward) | lstm | gru. With a core the network "
                     "is the torso of hidden_sizes (a shared embedding), the core of core_size "
                     "units, then actor and critic heads of one hidden_sizes[-1]-unit layer "
                     "each; the core's state is reset where an episode ends and the learner "
                     "replays each rollout from its start state (truncated BPTT).")


def core_size(default: int = 128) -> Any:
    return field(default, check=positive, doc="Units of the recurrent core (unused when core is none).")


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
