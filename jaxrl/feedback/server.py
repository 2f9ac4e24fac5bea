"""``jaxrl label RUN_DIR``: a small local web page for labelling queries.

Stdlib only (``http.server``). The page shows the oldest pending query of the
run as two clips side by side and four buttons; an answer is appended to the
run's label store (fsync'd before the reply) and the next query is shown.
With nothing pending the page reloads itself every few seconds, so a person
can keep it open while the run trains between label rounds.

Routes: ``GET /`` the page; ``GET /clip/<left id>/<right id>/<left|right>.gif``
a clip; ``GET /pending`` the pending pairs as JSON; ``POST /label`` with form
fields ``left``, ``right``, ``choice`` (left | right | equal | skip), which
answers 303 (back to the page), 400 for a bad choice, 409 for a pair that
is not pending.
"""

from __future__ import annotations

import html
import json
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from jaxrl.agents import label_store
from jaxrl.feedback import queries as q
from jaxrl.feedback import render

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
BUTTONS = (("left", "Left is better"), ("equal", "Equally good"), ("right", "Right is better"),
           ("skip", "Can't tell (skip)"))


class LabelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, run_dir: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 labeller: str | None = None):
        self.run_dir = Path(run_dir)
        self.labeller = labeller or os.environ.get("USER", "person")
        self.env_id = q.run_env_id(self.run_dir)
        self.store = label_store.LabelStore(q.labels_path(self.run_dir))
        self.lock = threading.Lock()  # one answer at a time: no pair labelled twice
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def pending(self) -> list[q.Query]:
        return q.pending_queries(self.run_dir)

    def answer(self, left: int, right: int, choice: str) -> label_store.Label:
        """Appends the label; ValueError for a bad choice, KeyError for a pair not pending."""
        if choice not in label_store.CHOICES:
            raise ValueError(f"choice={choice!r} is invalid: expected one of {label_store.CHOICES}")
        with self.lock:
            if (left, right) not in {x.key for x in self.pending()}:
                raise KeyError(f"query ({left}, {right}) is not pending")
            return self.store.append(left, right, choice, self.labeller)


def make_server(run_dir: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                labeller: str | None = None) -> LabelServer:
    """A labelling server bound to ``host:port`` (port 0: any free port); call
    ``serve_forever()`` (in a thread for tests), then ``shutdown()``."""
    return LabelServer(run_dir, host, port, labeller)


def page(server: LabelServer) -> str:
    pending = server.pending()
    labelled = len(label_store.read_labels(q.labels_path(server.run_dir)))
    title = f"jaxrl label: {html.escape(str(server.run_dir))}"
    status = f"{len(pending)} pending, {labelled} labelled ({html.escape(server.env_id or 'unknown env')})"
    if not pending:
        body = (f"<p>{status}.</p><p>No query is waiting; this page reloads until the run asks "
                "for more.</p>")
        return _document(title, body, refresh=3)
    query = pending[0]
    clip = lambda side: f"/clip/{query.left.id}/{query.right.id}/{side}.gif"
    buttons = "".join(
        f'<button type="submit" name="choice" value="{value}">{text}</button> '
        for value, text in BUTTONS)
    body = f"""<p>{status}. Which segment does the task better?</p>
<div class="pair">
  <figure><img src="{clip('left')}" alt="left segment"><figcaption>left (segment {query.left.id}, {len(query.left.obs)} steps)</figcaption></figure>
  <figure><img src="{clip('right')}" alt="right segment"><figcaption>right (segment {query.right.id}, {len(query.right.obs)} steps)</figcaption></figure>
</div>
<form method="post" action="/label">
  <input type="hidden" name="left" value="{query.left.id}">
  <input type="hidden" name="right" value="{query.right.id}">
  {buttons}
</form>"""
    return _document(title, body)


def _document(title: str, body: str, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8">{meta}<title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}} .pair{{display:flex;gap:2em}}
figure{{margin:0}} img{{border:1px solid #ccc;image-rendering:pixelated}}
button{{font-size:1.1em;margin:0.5em 0.3em 0 0}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: LabelServer

    def log_message(self, format, *args):  # quiet: the terminal shows the run's own messages
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _text(self, status: int, text: str):
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def do_GET(self):
        path = urlparse(self.path).path
        if path == "/":
            return self._send(HTTPStatus.OK, page(self.server).encode(), "text/html; charset=utf-8")
        if path == "/pending":
            pairs = [{"iteration": x.iteration, "left": x.left.id, "right": x.right.id}
                     for x in self.server.pending()]
            return self._send(HTTPStatus.OK, json.dumps(pairs).encode(), "application/json")
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "clip" and parts[3] in ("left.gif", "right.gif"):
            try:
                key = (int(parts[1]), int(parts[2]))
            except ValueError:
                return self._text(HTTPStatus.NOT_FOUND, "no such clip")
            for query in q.all_queries(self.server.run_dir):
                if query.key == key:
                    segment = query.left if parts[3] == "left.gif" else query.right
                    return self._send(HTTPStatus.OK, render.segment_clip(self.server.env_id, segment),
                                      "image/gif")
        return self._text(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self):
        if urlparse(self.path).path != "/label":
            return self._text(HTTPStatus.NOT_FOUND, "not found")
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        field = lambda name: (form.get(name) or [""])[0]
        try:
            left, right = int(field("left")), int(field("right"))
            self.server.answer(left, right, field("choice"))
        except ValueError as e:
            return self._text(HTTPStatus.BAD_REQUEST, str(e))
        except KeyError as e:
            return self._text(HTTPStatus.CONFLICT, str(e.args[0]))
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": "/"})


def serve(run_dir: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          labeller: str | None = None) -> None:
    """Serves until Ctrl-C."""
    server = make_server(run_dir, host, port, labeller)
    print(f"labelling {run_dir} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
