"""Step counters and schedules that stay exact on long accelerator runs.

An int32 ``env_steps`` wraps after 2^31 (2.1·10^9) steps, which a vmapped
accelerator run reaches in hours; jax's 64-bit mode would fix it but doubles
every default dtype in the program. :class:`StepCounter` instead keeps the
count in two uint32 words (exact up to 2^64) and schedules read it as a
float32 *fraction* of their span, which only loses precision (relative
error 6·10^-8), never wraps.

    counter = StepCounter.zeros()
    counter = counter.add(batch_size)                  # inside a jitted step
    lr = lr0 * (1 - counter.fraction_of(total_steps))  # linear annealing
    warm = counter.at_least(learning_starts)           # exact comparison
    int(counter)                                        # on the host
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

_WORD = 2**32


class StepCounter(struct.PyTreeNode):
    """A non-negative count ``high·2^32 + low`` in two uint32 words.

    A pytree: it lives in an agent's state, vmaps (leading axes on both words)
    and checkpoints like any array. ``int(counter)`` and ``counter[i]`` (one
    seed of a vmapped state) work on the host.
    """

    high: jax.Array
    low: jax.Array

    @classmethod
    def zeros(cls) -> "StepCounter":
        return cls.of(0)

    @classmethod
    def of(cls, count: int) -> "StepCounter":
        """The counter holding ``count`` (a Python int in [0, 2^64))."""
        if not 0 <= int(count) < _WORD * _WORD:
            raise ValueError(f"StepCounter count={count!r} is invalid: expected an integer in [0, 2^64)")
        high, low = divmod(int(count), _WORD)
        return cls(jnp.asarray(high, jnp.uint32), jnp.asarray(low, jnp.uint32))

    def add(self, n) -> "StepCounter":
        """The counter plus ``n`` (< 2^32 per call, e.g. one iteration's steps)."""
        low = self.low + jnp.asarray(n, jnp.uint32)  # wraps modulo 2^32 ...
        carry = (low < self.low).astype(jnp.uint32)  # ... and a wrap is a carry
        return StepCounter(self.high + carry, low)

    def as_float(self) -> jax.Array:
        """The count as float32 (rounded to 24 significant bits)."""
        return self.high.astype(jnp.float32) * float(_WORD) + self.low.astype(jnp.float32)

    def fraction_of(self, span) -> jax.Array:
        """``min(count / span, 1)`` in float32: the progress of a schedule that
        spans ``span`` steps (``span`` may be a traced hyperparameter)."""
        span = jnp.maximum(jnp.asarray(span, jnp.float32), 1.0)
        return jnp.clip(self.as_float() / span, 0.0, 1.0)

    def at_least(self, n: int) -> jax.Array:
        """``count >= n``, exact, for a static Python int ``n`` (a threshold
        such as ``learning_starts``)."""
        n_high, n_low = (jnp.uint32(word) for word in divmod(int(n), _WORD))
        return (self.high > n_high) | ((self.high == n_high) & (self.low >= n_low))

    def __int__(self) -> int:
        return int(self.high) * _WORD + int(self.low)

    __index__ = __int__

    def __getitem__(self, index) -> "StepCounter":
        return jax.tree.map(lambda word: word[index], self)
