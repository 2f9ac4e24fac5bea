"""Pure array kernels: returns, losses, distributions, gradient clipping.

No flax and no agent knowledge: plain arrays in, arrays out, jittable and
vmappable. A user composing losses needs only ``from jaxrl import ops``.
"""

from jaxrl.ops.distributions import (
    Categorical,
    DiagGaussian,
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    categorical_mode,
    categorical_sample,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    gaussian_mode,
    gaussian_sample,
    tanh_gaussian_log_prob,
    tanh_gaussian_sample,
)
from jaxrl.ops.losses import (
    adaptive_kl_beta,
    approx_kl,
    bradley_terry_loss,
    categorical_cross_entropy,
    categorical_l2_project,
    categorical_td_loss,
    clip_fraction,
    clipped_value_loss,
    entropy_loss,
    huber_loss,
    kl_penalty_loss,
    policy_gradient_loss,
    ppo_clip_loss,
    squared_loss,
)
from jaxrl.ops.optim import clip_by_global_norm, global_norm, with_learning_rate
from jaxrl.ops.returns import (
    VTraceOutput,
    discounted_returns,
    gae,
    n_step_returns,
    td_lambda,
    vtrace,
)

__all__ = [
    # returns
    "VTraceOutput",
    "discounted_returns",
    "gae",
    "n_step_returns",
    "td_lambda",
    "vtrace",
    # losses
    "adaptive_kl_beta",
    "approx_kl",
    "bradley_terry_loss",
    "categorical_cross_entropy",
    "categorical_l2_project",
    "categorical_td_loss",
    "clip_fraction",
    "clipped_value_loss",
    "entropy_loss",
    "huber_loss",
    "kl_penalty_loss",
    "policy_gradient_loss",
    "ppo_clip_loss",
    "squared_loss",
    # optim
    "clip_by_global_norm",
    "global_norm",
    "with_learning_rate",
    # distributions
    "Categorical",
    "DiagGaussian",
    "categorical_entropy",
    "categorical_kl",
    "categorical_log_prob",
    "categorical_mode",
    "categorical_sample",
    "gaussian_entropy",
    "gaussian_kl",
    "gaussian_log_prob",
    "gaussian_mode",
    "gaussian_sample",
    "tanh_gaussian_log_prob",
    "tanh_gaussian_sample",
]
