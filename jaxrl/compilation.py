"""How jaxrl compiles: XLA options for its own programs (training chunks,
inits), and the persistent compilation cache that lets a relaunch skip
compiling (:func:`use_persistent_cache`).

On a CPU, compile time is mostly LLVM optimising the machine code of each
fused kernel. jaxrl's programs are many small kernels around a few dots (which
call into a library and gain nothing from LLVM), so the default ``-O2`` costs
a fifth of a training run's compile time and buys nothing measurable:

- training programs compile at LLVM ``-O1``. On the classic CartPole config
  this took the training program's compile from 3.2 to 2.4 s with the same
  steps/s, and left Breakout-MinAtar's steps/s unchanged
  (benchmarks/README.md).
- ``init`` programs run once per run, so they compile at ``-O0`` and with
  XLA:CPU's older loop emitters (``xla_cpu_use_fusion_emitters=False``),
  which compile a kernel several times faster and run it more slowly.
- ``evaluate`` programs (a few episodes per seed) compile at ``-O1`` with the
  older emitters too: their compile dwarfs their running time.

benchmarks/README.md ("Compile options") has the measurements behind each.
Other backends keep XLA's defaults. These options change floating-point
rounding a little (LLVM reassociates differently), so a run compiled with them
is reproducible with them, not bit-identical to a plain ``jax.jit``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import jax

_FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False}
_CPU_OPTIONS: dict[str, dict[str, int | bool]] = {
    "train": {"xla_backend_optimization_level": 1},
    "init": {"xla_backend_optimization_level": 0, **_FAST_COMPILE},
    "evaluate": {"xla_backend_optimization_level": 1, **_FAST_COMPILE},
}


def compiler_options(program: Literal["train", "init", "evaluate"]) -> dict[str, int | bool] | None:
    """``compiler_options`` for ``jax.jit`` of one of jaxrl's own programs on
    the default backend; None (XLA's defaults) off the CPU."""
    if program not in _CPU_OPTIONS:
        raise ValueError(f"program must be one of {sorted(_CPU_OPTIONS)}, got {program!r}")
    if jax.default_backend() != "cpu":
        return None
    return dict(_CPU_OPTIONS[program])


# ------------------------------------------------------- the persistent cache

CACHE_ENV = "JAXRL_COMPILATION_CACHE"
"""Environment variable: the directory of jaxrl's compilation cache, or ``off``."""

_OFF = ("off", "0", "false", "no", "none")
# Big enough for a few hundred configurations; JAX evicts the least recently
# used programs past it.
_CACHE_MAX_BYTES = 2 * 1024**3
# JAX caches only programs that took a second or more to compile; jaxrl's
# init and evaluation programs take less, and a relaunch would recompile them.
_CACHE_MIN_COMPILE_SECONDS = 0.1


def persistent_cache_dir() -> Path | None:
    """Where jaxrl keeps compiled programs between launches: ``$JAXRL_COMPILATION_CACHE``
    if set (``off`` opts out: None), else ``$XDG_CACHE_HOME/jaxrl/xla``
    (``~/.cache/jaxrl/xla``)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in _OFF else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxrl" / "xla"


def use_persistent_cache(enabled: bool = True) -> Path | None:
    """Turns on JAX's persistent compilation cache in :func:`persistent_cache_dir`,
    so that relaunching a configuration loads its programs instead of compiling
    them; returns the directory in use (None: no cache).

    A cache the user configured already (``JAX_COMPILATION_CACHE_DIR``,
    ``jax.config``) is kept as it is, and so are their other cache settings.
    ``enabled=False`` (``--no-compile-cache``) and ``JAXRL_COMPILATION_CACHE=off``
    leave JAX as it was."""
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    directory = persistent_cache_dir() if enabled else None
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        warnings.warn(
            f"compilation cache off: cannot create {directory} ({e.strerror or e}); "
            f"set {CACHE_ENV} to a writable directory, or to 'off'",
            CompilationCacheWarning, stacklevel=2,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", _CACHE_MIN_COMPILE_SECONDS)
    if jax.config.jax_compilation_cache_max_size == -1:
        jax.config.update("jax_compilation_cache_max_size", _CACHE_MAX_BYTES)
    return directory


class CompilationCacheWarning(UserWarning):
    """The compilation cache could not be used; the run compiles as usual."""
