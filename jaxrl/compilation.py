"""XLA options for the programs jaxrl compiles itself (training chunks, inits).

On a CPU, compile time is mostly LLVM optimising the machine code of each
fused kernel. jaxrl's programs are many small kernels around a few dots (which
call into a library and gain nothing from LLVM), so the default ``-O2`` costs
a fifth of a training run's compile time and buys nothing measurable:

- training programs compile at LLVM ``-O1``. On the classic CartPole config
  this took the training program's compile from 3.2 to 2.4 s with the same
  steps/s, and left Breakout-MinAtar's steps/s unchanged
  (benchmarks/README.md).
- ``init`` programs run once per run, so they compile at ``-O0``
  (1.1 s -> 0.5 s for PPO's init on CartPole).

Other backends keep XLA's defaults. These options change floating-point
rounding a little (LLVM reassociates differently), so a run compiled with them
is reproducible with them, not bit-identical to a plain ``jax.jit``.
"""

from __future__ import annotations

from typing import Literal

import jax

_CPU_LLVM_LEVEL = {"train": 1, "init": 0}


def compiler_options(program: Literal["train", "init"]) -> dict[str, int] | None:
    """``compiler_options`` for ``jax.jit`` of one of jaxrl's own programs on
    the default backend; None (XLA's defaults) off the CPU."""
    if program not in _CPU_LLVM_LEVEL:
        raise ValueError(f"program must be one of {sorted(_CPU_LLVM_LEVEL)}, got {program!r}")
    if jax.default_backend() != "cpu":
        return None
    return {"xla_backend_optimization_level": _CPU_LLVM_LEVEL[program]}
