"""jaxrl: functional reinforcement learning in JAX.

Layers, each importing only those below it::

    jaxrl.cli -> jaxrl.run -> jaxrl.agents -> jaxrl.networks, jaxrl.envs -> jaxrl.ops

``jaxrl.load_policy(DIR)`` loads a policy that ``jaxrl export`` wrote
(:mod:`jaxrl.export`); it is imported on first use, so ``import jaxrl`` stays light.

On the CPU, ``import jaxrl`` asks JAX for one host device per core (unless
``JAXRL_CPU_DEVICES`` or the user's own JAX settings say otherwise), so that a
run's seeds use every core: :mod:`jaxrl.cpu`.
"""

from jaxrl.cpu import use_cpu_cores_at_import as _use_cpu_cores_at_import

__version__ = "0.1.0"

_use_cpu_cores_at_import()


def __getattr__(name: str):
    if name == "load_policy":
        from jaxrl.export import load_policy

        return load_policy
    raise AttributeError(f"module 'jaxrl' has no attribute {name!r}")
