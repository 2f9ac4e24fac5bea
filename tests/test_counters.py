"""StepCounter: an env-step count and schedule progress that stay exact past
2^31 (and 2^32) steps without jax's 64-bit mode."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.ops.counters import StepCounter


@pytest.mark.parametrize(
    "start, increments",
    [
        (0, [1, 2, 3]),
        (2**31 - 5, [4, 1, 1, 100]),       # where an int32 wraps negative
        (2**32 - 3, [2, 1, 1]),            # the low word carries into the high one
        (2**32 - 1, [2**32 - 1]),          # the largest single increment
        (5 * 2**32 + 7, [2**31, 2**31]),   # two carries' worth in two steps
    ],
)
def test_add_is_exact_across_word_boundaries(start, increments):
    add = jax.jit(lambda c, n: c.add(n))
    counter = StepCounter.of(start)
    for n in increments:
        counter = add(counter, np.uint32(n))
    assert int(counter) == start + sum(increments)


@pytest.mark.parametrize(
    "count, threshold, expected",
    [
        (2**31, 2**31 - 1, True),
        (2**31 - 1, 2**31, False),
        (2**32, 2**32 - 1, True),
        (2**32 - 1, 2**32, False),
        (3 * 2**32, 3 * 2**32, True),
    ],
)
def test_at_least_is_exact(count, threshold, expected):
    assert bool(StepCounter.of(count).at_least(threshold)) is expected


def test_schedule_progress_past_two_to_the_31():
    """A linear ε schedule over 3·10^9 steps, read at 2.5·10^9 (past 2^31):
    an int32 count there is negative and the schedule would restart."""
    counter = StepCounter.of(2**31).add(2_500_000_000 - 2**31)
    progress = jax.jit(lambda c: c.fraction_of(3_000_000_000))(counter)
    np.testing.assert_allclose(progress, 2.5 / 3.0, rtol=1e-6)
    assert float(StepCounter.of(2**33).fraction_of(3_000_000_000)) == 1.0


def test_vmapped_counters_index_per_seed():
    counters = jax.vmap(lambda n: StepCounter.zeros().add(n))(jnp.array([1, 2**31 + 1], jnp.uint32))
    assert [int(counters[0]), int(counters[1])] == [1, 2**31 + 1]


@pytest.mark.parametrize("count", [-1, 2**64, 1.5e30])
def test_out_of_range_counts_are_refused(count):
    with pytest.raises(ValueError, match="StepCounter count="):
        StepCounter.of(count)
