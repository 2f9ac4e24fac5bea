"""Checkpoints of the whole stacked training state, with orbax.

A checkpoint is the state pytree of all seeds (params, optimiser state, env
state, PRNG keys, counters) saved under the number of iterations done. Saves
are synchronous: orbax writes into a temporary directory and renames it only
once complete, and :meth:`Checkpointer.save` returns after that, so a process
killed at any moment leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# A checkpoint costs about 0.1 s (orbax writes each leaf as its own array), so
# the training loop saves at a chunk boundary only once the last checkpoint is
# this old (and always after the last chunk): a kill loses at most this much.
DEFAULT_CHECKPOINT_SECONDS = 10.0


class Checkpointer:
    """Saves and restores stacked states in ``directory``, keeping the last ``keep``."""

    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            enable_async_checkpointing=False,
            # Leftovers of a save interrupted by a kill are never a checkpoint.
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_iteration(self) -> int | None:
        """Iterations done at the latest complete checkpoint, or None if there is none."""
        return self._manager.latest_step()

    def save(self, iteration: int, state: Any) -> None:
        self._manager.save(iteration, args=self._ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def restore(self, iteration: int, abstract_state: Any) -> Any:
        """The state saved at ``iteration``, shaped like ``abstract_state``
        (``jax.eval_shape`` of the vmapped init)."""
        return self._manager.restore(iteration, args=self._ocp.args.StandardRestore(abstract_state))

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def latest_iteration(directory: str | os.PathLike) -> int | None:
    """Latest checkpoint in ``directory`` without creating anything there."""
    if not Path(directory).is_dir():
        return None
    with Checkpointer(directory) as checkpointer:
        return checkpointer.latest_iteration()
