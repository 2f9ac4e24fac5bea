"""Replay buffers as pytrees with pure functions that live inside ``jit``.

A buffer is a ``flax.struct`` dataclass (storage with a leading
``capacity`` axis, an insert position, a size); every function returns a new
one, so a buffer sits in an agent's state and is carried through
``lax.scan``, ``jit`` and ``vmap`` (one buffer per seed) like any other leaf.

``jaxrl.replay.uniform``
    ``init(example_transition, capacity) -> ReplayState``;
    ``add(state, batch, mask=None) -> state`` with ``batch`` a pytree whose
    leaves have a leading dim ``B`` (e.g. one step of ``B`` vmapped envs);
    ``sample(state, key, batch_size) -> batch`` (uniform with replacement,
    never from empty slots); ``can_sample(state, batch_size) -> bool array``.

``jaxrl.replay.prioritized``
    Proportional prioritised replay (Schaul et al. 2016) over a sum tree:
    ``init(example, capacity, alpha=0.6)``;
    ``add(state, batch, priorities=None, mask=None)`` (new items get the
    largest priority seen); ``sample(state, key, batch_size, beta) ->
    (batch, indices, importance_weights)``;
    ``update_priorities(state, indices, priorities)``; ``can_sample``;
    ``set_alpha(state, alpha)`` (rebuilds the trees for a new α) and
    ``annealed_beta(beta, progress)`` (β rising linearly to 1 over a run).

``jaxrl.replay.nstep``
    ``Transition(obs, action, reward, discount, next_obs)`` and
    ``n_step_transitions(steps, episode_end, n)``: time-major ``[T, B]``
    one-step transitions to n-step ones (discounted reward sums, Γ = Π γ_t,
    stopping at episode ends; truncation keeps the bootstrap);
    ``Window``, ``empty_window(example, n, B)`` and ``push(window, step,
    episode_end)``: a sliding window of the last n steps per env that emits
    one n-step transition per step.

Capacity, dtype, memory. Storage keeps the example's dtypes (float32 for
gymnax observations) and costs ``capacity × bytes(one item)``, allocated up
front and zero-filled. A Pendulum-v1 transition (obs 3, action 1, reward 1,
discount 1, next_obs 3 float32) is 36 bytes, so 10^6 of them take 36 MB
(plus 16 MiB of priority trees when prioritised); storing ``next_obs``
beside ``obs`` doubles the observation bytes but keeps the true final
observation of truncated episodes. Capacity and shapes are static; batches
must not exceed the capacity. For image observations, store ``uint8``
and convert in the learner.
"""

from jaxrl.replay import nstep, prioritized, uniform
from jaxrl.replay.nstep import Transition, Window, n_step_transitions
from jaxrl.replay.prioritized import PrioritizedState
from jaxrl.replay.uniform import ReplayState

__all__ = [
    "uniform",
    "prioritized",
    "nstep",
    "Transition",
    "Window",
    "n_step_transitions",
    "ReplayState",
    "PrioritizedState",
]
