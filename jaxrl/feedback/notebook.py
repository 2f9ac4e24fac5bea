"""Labelling in a notebook: the two clips in sync, left / right / equal / skip, undo.

``labeller = notebook_labeller("runs/rm")`` shows the oldest pending query as
one animation of both clips side by side, playing in sync (the shorter holds
its last frame, with how its episode ended written on it), with what
"better" means for the environment, the labels given against the budget and
what the run is doing. With ipywidgets installed (``pip install
jaxrl[notebooks]``) it is a widget with buttons (answers, undo, slow motion,
refresh); without, it shows the clips as HTML and you answer with
``labeller.answer("left")`` and take an answer back with ``labeller.undo()``.
Either way the answers go to the run's label store, as with ``jaxrl label``;
an undo is a new line there, refused once the run has used the answer.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from jaxrl.feedback import label_store
from jaxrl.feedback import queries as q
from jaxrl.feedback import render
from jaxrl.feedback import status as run_status

NORMAL_FPS, SLOW_FPS = 15.0, 4.0


def pair_html(env_id: str | None, query: q.Query, fps: float = NORMAL_FPS) -> str:
    """HTML of the query's two clips side by side, in sync (one GIF inlined as a data URL)."""
    data = base64.b64encode(render.pair_gif(env_id, query.left, query.right, fps)).decode()

    def caption(side, segment):
        end = render.segment_end(env_id, segment)
        ending = f"; {html.escape(end.text)}" if end else ""
        return f"<b>{side}</b>: {len(segment.obs)} of {segment.length or len(segment.obs)} steps{ending}"

    return (f'<div><img style="max-width:100%" src="data:image/gif;base64,{data}" '
            f'alt="left and right segments"><div style="display:flex;justify-content:space-around">'
            f"<span>{caption('left', query.left)}</span><span>{caption('right', query.right)}</span></div></div>")


class NotebookLabeller:
    """Answers the run's pending queries, oldest first, into its label store."""

    def __init__(self, run_dir: str | os.PathLike, labeller: str = "notebook"):
        self.run_dir = Path(run_dir)
        self.labeller = labeller
        self.env_id = q.run_env_id(self.run_dir)
        self.store = label_store.LabelStore(q.labels_path(self.run_dir))
        self.answered: list[tuple[int, int, str]] = []  # this labeller's answers, for undo
        self.fps = NORMAL_FPS
        self.message = ""
        self.widget = None

    @property
    def current(self) -> q.Query | None:
        pending = q.pending_queries(self.run_dir)
        return pending[0] if pending else None

    def progress(self) -> str:
        """The run's status and the labels given against the budget, in words."""
        run = run_status.run_status(self.run_dir)
        standing = q.answers(self.run_dir)
        skipped = sum(label.choice == "skip" for label in standing.values())
        pending = len(q.pending_queries(self.run_dir))
        progress = run_status.label_progress(len(standing), skipped, pending, run.label_budget)
        rounds = len(q.round_paths(self.run_dir))
        text = run_status.run_text(run, rounds, self.run_dir, pending)
        return (f"<p><b>{run.state}</b>: {html.escape(text)}<br>"
                f"{html.escape(progress['text'])}; {pending} pending.</p>")

    def html(self) -> str:
        query = self.current
        notes = "".join(f'<p style="color:#a00">{html.escape(line)}</p>'
                        for line in q.damage_report(self.run_dir))
        guide = render.guide(self.env_id)
        message = f"<p><i>{html.escape(self.message)}</i></p>" if self.message else ""
        head = notes + self.progress() + message
        if query is None:
            run = run_status.run_status(self.run_dir)
            return head + f"<p>{html.escape(run_status.waiting_text(run))} (refresh to look again)</p>"
        legend = "".join(f"<li>{html.escape(item)}</li>" for item in guide.legend)
        return (head + f"<p><b>Which segment does the task better?</b> {html.escape(guide.better)}</p>"
                f"<ul style='color:#555'>{legend}</ul>" + pair_html(self.env_id, query, self.fps))

    def answer(self, choice: str) -> label_store.Label | None:
        """Labels the current query (left | right | equal | skip) and shows the
        next one; None if nothing was pending."""
        if choice not in label_store.CHOICES:
            raise ValueError(f"choice={choice!r} is invalid: expected one of {label_store.CHOICES}")
        query = self.current
        if query is None:
            return None
        label = self.store.append(query.left.id, query.right.id, choice, self.labeller)
        self.answered.append((query.left.id, query.right.id, choice))
        self.message = f"Saved: {choice}."
        self.refresh()
        return label

    def undo(self) -> label_store.Label | None:
        """Takes back this labeller's last answer (a new undo line in the
        store) and shows its query again; None when there is nothing to undo
        or the run has already used it (the view says which)."""
        if not self.answered:
            self.message = "Nothing to undo."
            self.refresh()
            return None
        left, right, choice = self.answered[-1]
        try:
            label = q.undo_answer(self.run_dir, self.store, left, right, self.labeller)
        except (KeyError, q.AlreadyUsed) as e:
            self.message = f"Cannot undo {choice}: {e.args[0]}."
            self.refresh()
            return None
        self.answered.pop()
        self.message = f"Answer {choice} taken back."
        self.refresh()
        return label

    def toggle_slow_motion(self) -> None:
        self.fps = SLOW_FPS if self.fps == NORMAL_FPS else NORMAL_FPS
        self.refresh()

    def refresh(self) -> None:
        if self.widget is not None:
            self.widget.children[0].value = self.html()

    def _repr_html_(self) -> str:  # the fallback display: a cell whose value is the labeller
        return self.html() + ("<p>Answer with <code>.answer('left' | 'right' | 'equal' | 'skip')</code>; "
                              "take the last answer back with <code>.undo()</code>.</p>")


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
        for description, icon, action in (("undo", "undo", result.undo),
                                          ("slow motion", "clock-o", result.toggle_slow_motion),
                                          ("refresh", "refresh", result.refresh)):
            button = widgets.Button(description=description, icon=icon)
            button.on_click(lambda _, act=action: act())
            buttons.append(button)
        result.widget = widgets.VBox([view, widgets.HBox(buttons)])
    if display:
        from IPython.display import HTML
        from IPython.display import display as show

        show(result.widget if result.widget is not None else HTML(result._repr_html_()))
    return result
