"""Labelling in a notebook: the two clips side by side, left / right / equal / skip.

``labeller = notebook_labeller("runs/rm")`` shows the oldest pending query.
With ipywidgets installed (``pip install jaxrl[notebooks]``) it is a widget
with four buttons; without, it shows the clips as HTML and you answer with
``labeller.answer("left")`` (which shows the next). Either way the answers go
to the run's label store, as with ``jaxrl label``.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from jaxrl.agents import label_store
from jaxrl.feedback import queries as q
from jaxrl.feedback import render


def pair_html(env_id: str | None, query: q.Query) -> str:
    """HTML of the query's two clips side by side (GIFs inlined as data URLs)."""
    def figure(side, segment):
        data = base64.b64encode(render.segment_clip(env_id, segment)).decode()
        return (f'<figure style="margin:0 2em 0 0"><img src="data:image/gif;base64,{data}">'
                f"<figcaption>{side} (segment {segment.id}, {len(segment.obs)} steps)</figcaption></figure>")
    return f'<div style="display:flex">{figure("left", query.left)}{figure("right", query.right)}</div>'


class NotebookLabeller:
    """Answers the run's pending queries, oldest first, into its label store."""

    def __init__(self, run_dir: str | os.PathLike, labeller: str = "notebook"):
        self.run_dir = Path(run_dir)
        self.labeller = labeller
        self.env_id = q.run_env_id(self.run_dir)
        self.store = label_store.LabelStore(q.labels_path(self.run_dir))
        self.widget = None

    @property
    def current(self) -> q.Query | None:
        pending = q.pending_queries(self.run_dir)
        return pending[0] if pending else None

    def html(self) -> str:
        query = self.current
        notes = "".join(f'<p style="color:#a00">{html.escape(line)}</p>'
                        for line in q.damage_report(self.run_dir))
        if query is None:
            return notes + "<p>No query is waiting.</p>"
        left = len(q.pending_queries(self.run_dir))
        return (notes + f"<p>{left} pending. Which segment does the task better?</p>"
                + pair_html(self.env_id, query))

    def answer(self, choice: str) -> label_store.Label | None:
        """Labels the current query (left | right | equal | skip) and shows the
        next one; None if nothing was pending."""
        if choice not in label_store.CHOICES:
            raise ValueError(f"choice={choice!r} is invalid: expected one of {label_store.CHOICES}")
        query = self.current
        if query is None:
            return None
        label = self.store.append(query.left.id, query.right.id, choice, self.labeller)
        self.refresh()
        return label

    def refresh(self) -> None:
        if self.widget is not None:
            self.widget.children[0].value = self.html()

    def _repr_html_(self) -> str:  # the fallback display: a cell whose value is the labeller
        return self.html() + "<p>Answer with <code>.answer('left' | 'right' | 'equal' | 'skip')</code>.</p>"


def notebook_labeller(run_dir: str | os.PathLike, labeller: str = "notebook",
                      display: bool = True) -> NotebookLabeller:
    """Shows the labelling interface for ``run_dir`` and returns the labeller."""
    result = NotebookLabeller(run_dir, labeller)
    try:
        import ipywidgets as widgets
    except ImportError:
        widgets = None
    if widgets is not None:
        view = widgets.HTML(result.html())
        buttons = []
        for choice in ("left", "equal", "right", "skip"):
            button = widgets.Button(description=choice)
            button.on_click(lambda _, c=choice: result.answer(c))
            buttons.append(button)
        refresh = widgets.Button(description="refresh", icon="refresh")
        refresh.on_click(lambda _: result.refresh())
        result.widget = widgets.VBox([view, widgets.HBox(buttons + [refresh])])
    if display:
        from IPython.display import HTML
        from IPython.display import display as show

        show(result.widget if result.widget is not None else HTML(result._repr_html_()))
    return result
