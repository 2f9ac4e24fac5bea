"""jaxrl: functional reinforcement learning in JAX.

Layers, each importing only those below it::

    jaxrl.cli -> jaxrl.run -> jaxrl.agents -> jaxrl.networks, jaxrl.envs -> jaxrl.ops

``jaxrl.load_policy(DIR)`` loads a policy that ``jaxrl export`` wrote
(:mod:`jaxrl.export`); it is imported on first use, so ``import jaxrl`` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load_policy":
        from jaxrl.export import load_policy

        return load_policy
    raise AttributeError(f"module 'jaxrl' has no attribute {name!r}")
