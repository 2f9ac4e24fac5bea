"""Feedback from people for reward modelling (``rm-ppo --labels human``).

- :mod:`jaxrl.feedback.queries`: the queries a run asks (``<run>/queries/``),
  the pending ones, and :class:`HumanLabeller`, which the run's jitted step
  calls to wait for answers in ``<run>/labels.jsonl``;
- :mod:`jaxrl.feedback.status`: what the run is doing (``<run>/labelling.json``),
  for the people labelling it;
- :mod:`jaxrl.feedback.render`: frames, sprite sheets and GIF clips of
  segments, how a segment ended, and what "better" means per environment;
- :mod:`jaxrl.feedback.server` (page in :mod:`jaxrl.feedback.page`):
  ``jaxrl label RUN_DIR``, a local web page;
- :mod:`jaxrl.feedback.notebook`: the same in a notebook.

A human run and a labeller are two processes (or a training thread and a
notebook) that share only the run directory: the run writes queries and reads
labels, the labeller reads queries and appends labels.
"""

from jaxrl.feedback.notebook import NotebookLabeller, notebook_labeller
from jaxrl.feedback.queries import (
    AlreadyUsed,
    DamagedRound,
    HumanLabeller,
    LabelTimeout,
    Query,
    all_queries,
    answers,
    damage_report,
    labels_path,
    pending_queries,
    undo_answer,
)
from jaxrl.feedback.server import make_server, serve
from jaxrl.feedback.status import mark_finished, run_status

__all__ = [
    "AlreadyUsed",
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
    "mark_finished",
    "notebook_labeller",
    "pending_queries",
    "run_status",
    "serve",
    "undo_answer",
]
