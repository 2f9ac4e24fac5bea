"""jaxrl: functional reinforcement learning in JAX.

Layers, each importing only those below it::

    jaxrl.cli -> jaxrl.run -> jaxrl.agents -> jaxrl.networks, jaxrl.envs -> jaxrl.ops
"""

__version__ = "0.1.0"
