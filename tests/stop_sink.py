"""A sink that stops a run where a kill would: after the run's own files got
a chunk's rows (or an evaluation's), before that chunk's checkpoint."""

from __future__ import annotations


class StopAt:
    """Raises KeyboardInterrupt on its ``n``-th ``write`` (``evaluation=False``)
    or ``write_evaluation`` (``evaluation=True``); the run writer calls it
    after metrics.csv / eval.csv have the rows."""

    def __init__(self, n: int, *, evaluation: bool = False):
        self.n, self.evaluation, self.seen = n, evaluation, 0

    def open(self, metric_names, num_seeds, resume_env_steps):
        pass

    def _count(self):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt("stop")

    def write(self, chunk):
        if not self.evaluation:
            self._count()

    def write_evaluation(self, chunk):
        if self.evaluation:
            self._count()

    def close(self):
        pass
