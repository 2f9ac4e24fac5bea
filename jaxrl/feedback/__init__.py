"""Feedback from people for reward modelling (``rm-ppo --labels human``).

- :mod:`jaxrl.feedback.queries`: the queries a run asks (``<run>/queries/``),
  the pending ones, and :class:`HumanLabeller`, which the run's jitted step
  calls to wait for answers in ``<run>/labels.jsonl``;
- :mod:`jaxrl.feedback.render`: frames and GIF clips of segments;
- :mod:`jaxrl.feedback.server`: ``jaxrl label RUN_DIR``, a local web page;
- :mod:`jaxrl.feedback.notebook`: the same in a notebook.

A human run and a labeller are two processes (or a training thread and a
notebook) that share only the run directory: the run writes queries and reads
labels, the labeller reads queries and appends labels.
"""

from jaxrl.feedback.notebook import NotebookLabeller, notebook_labeller
from jaxrl.feedback.queries import (
    DamagedRound,
    HumanLabeller,
    LabelTimeout,
    Query,
    all_queries,
    answers,
    damage_report,
    labels_path,
    pending_queries,
)
from jaxrl.feedback.server import make_server, serve

__all__ = [
    "DamagedRound",
    "HumanLabeller",
    "LabelTimeout",
    "NotebookLabeller",
    "Query",
    "all_queries",
    "answers",
    "damage_report",
    "labels_path",
    "make_server",
    "notebook_labeller",
    "pending_queries",
    "serve",
]
