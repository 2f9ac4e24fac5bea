"""What every family's adapter shares: it is a gymnax ``Environment`` (so
``step`` auto-resets and reports ``info["final_observation"]``) named by its
``"<family>:<task>"`` id."""

from __future__ import annotations

from gymnax.environments import environment


class FamilyEnv(environment.Environment):
    """Base of the adapters: subclasses set ``family`` and implement
    ``reset_env``, ``step_env`` (natural terminations only), ``is_truncated``
    (the time limit) and the spaces."""

    family = ""

    def __init__(self, task: str):
        self.task = task

    def step_limit(self, params) -> int | None:
        """The most steps an episode takes (its time limit), or None where
        the family declares none: what evaluation bounds its loop by."""
        return getattr(params, "max_steps_in_episode", None)

    @property
    def name(self) -> str:
        return f"{self.family}:{self.task}"
