"""Checkpoints of the whole stacked training state, with orbax.

A checkpoint is the state pytree of all seeds (params, optimiser state, env
state, PRNG keys, counters) saved under the number of iterations done. Saves
are synchronous: orbax writes into a temporary directory and renames it only
once complete, and :meth:`Checkpointer.save` returns after that, so a process
killed at any moment leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from jaxrl.run.rundir import RunDirError

# A checkpoint costs about 0.1 s (orbax writes each leaf as its own array), so
# the training loop saves at a chunk boundary only once the last checkpoint is
# this old (and always after the last chunk): a kill loses at most this much.
DEFAULT_CHECKPOINT_SECONDS = 10.0


class CheckpointError(RunDirError):
    """No checkpoint of a run can be restored."""


class DamagedCheckpointWarning(UserWarning):
    """A checkpoint could not be restored and an older one is used instead."""


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

    def iterations(self) -> list[int]:
        """Iterations of every complete checkpoint, newest first."""
        return sorted(self._manager.all_steps(), reverse=True)

    def restore_latest_intact(
        self, abstract_state: Any, *, set_aside_damaged: bool = False
    ) -> tuple[int, Any] | None:
        """``(iteration, state)`` of the newest checkpoint that restores, or None
        when there is none. A damaged newer one (a truncated data file, missing
        metadata, leaves of the wrong shape) gets a warning and is skipped;
        with ``set_aside_damaged`` it is renamed ``<iteration>.damaged`` so a
        resumed run can save that iteration again. Raises CheckpointError when
        every checkpoint is damaged."""
        damaged = []
        for iteration in self.iterations():
            try:
                return iteration, self.restore(iteration, abstract_state)
            except Exception as e:  # orbax and tensorstore raise many types
                reason = " ".join(str(e).split())[:300] or type(e).__name__
                damaged.append(f"{self.directory / str(iteration)} ({reason})")
                warnings.warn(
                    f"checkpoint {self.directory / str(iteration)} is damaged and skipped: {reason}",
                    DamagedCheckpointWarning,
                    stacklevel=2,
                )
                if set_aside_damaged:
                    self._set_aside(iteration)
        if damaged:
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: every one is damaged: {'; '.join(damaged)}"
            )
        return None

    def _set_aside(self, iteration: int) -> None:
        source = self.directory / str(iteration)
        target = source.with_name(f"{iteration}.damaged")
        n = 1
        while target.exists():
            target, n = source.with_name(f"{iteration}.damaged{n}"), n + 1
        source.rename(target)
        self._manager.reload()

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
