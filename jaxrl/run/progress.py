"""The progress bar shown between chunks: env steps, throughput, recent return."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def recent_return(metrics: dict[str, np.ndarray]) -> float | None:
    """Mean return of the episodes completed in ``metrics`` (``[n, seeds]`` arrays),
    weighting each iteration's mean by its episode count; None if none completed."""
    returns = metrics.get("episode_return")
    counts = metrics.get("episodes_completed")
    if returns is None:
        return None
    if counts is None:
        return float(np.mean(returns))
    total = float(np.sum(counts))
    return float(np.sum(returns * counts) / total) if total > 0 else None


class Progress:
    """A tqdm bar over one seed's env steps (all seeds advance together).
    ``extra`` names metrics whose latest mean is shown beside the return."""

    def __init__(
        self,
        total_env_steps: int,
        initial_env_steps: int,
        seeds: int,
        enabled: bool,
        extra: Sequence[str] = (),
    ):
        self._bar = None
        self._seeds = seeds
        self._extra = tuple(extra)
        self._last_return: float | None = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total_env_steps,
                initial=initial_env_steps,
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                desc="train",
            )

    def update(self, env_steps: int, seconds: float, metrics: dict[str, np.ndarray]) -> None:
        """Advance by ``env_steps`` per seed, taken in ``seconds`` of chunk execution."""
        latest = recent_return(metrics)
        if latest is not None:
            self._last_return = latest
        if self._bar is None:
            return
        postfix = {"steps/s": f"{env_steps * self._seeds / max(seconds, 1e-9):.3g}"}
        if self._last_return is not None:
            postfix["return"] = f"{self._last_return:.4g}"
        for name in self._extra:
            if name in metrics:
                postfix[name] = f"{float(np.mean(metrics[name][-1])):.3g}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(env_steps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
