"""``jaxrl label RUN_DIR``: a small local web page for labelling queries.

Stdlib only (``http.server``). The page shows the oldest pending query of the
run as two clips side by side and four buttons; an answer is appended to the
run's label store (fsync'd before the reply) and the next query is shown.
With nothing pending the page reloads itself every few seconds, so a person
can keep it open while the run trains between label rounds.

Routes: ``GET /`` the page; ``GET /clip/<left id>/<right id>/<left|right>.gif``
a clip; ``GET /pending`` the pending pairs as JSON; ``POST /label`` with the
fields ``left``, ``right`` (integer segment ids) and ``choice`` (left | right |
equal | skip), as a form (``application/x-www-form-urlencoded``) or a JSON
object (``application/json``). It answers 303 (back to the page), or an error
with a one-line message and nothing written: 400 for a malformed body or
field, 403 for a request from another site, 409 for a pair that is not
pending, 411 without a ``Content-Length``, 413 for a body over
:data:`MAX_BODY` bytes (not read), 415 for another content type.

Any web page the user visits could send requests to this server, so every
request must name it in ``Host`` (a loopback name, on any port for an SSH
tunnel, or the bound address and port: this stops DNS rebinding), and an
``Origin``, when sent, must be the page's own (this stops a foreign page from
posting labels).
"""

from __future__ import annotations

import html
import ipaddress
import json
import os
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse, urlsplit

from jaxrl.agents import label_store
from jaxrl.feedback import queries as q
from jaxrl.feedback import render

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
BUTTONS = (("left", "Left is better"), ("equal", "Equally good"), ("right", "Right is better"),
           ("skip", "Can't tell (skip)"))
MAX_BODY = 64 * 1024  # an answer is ~30 bytes; a larger body is refused unread
REQUEST_TIMEOUT = 30.0  # seconds a client may take to send a request, so none holds a thread forever
LINGER_SECONDS, LINGER_BYTES = 1.0, 1 << 20  # what a refused client may still send before the close
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
_ALL_INTERFACES = {"", "0.0.0.0", "::"}
_SEGMENT_ID = re.compile(r"-?[0-9]{1,20}")


class Refused(Exception):
    """A request answered with an HTTP error ``status`` and a one-line message."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def names_this_server(netloc: str, bound_host: str, port: int) -> bool:
    """Whether ``host[:port]`` (a ``Host`` header, or an origin's) addresses
    the server bound to ``bound_host:port``: a loopback name on any port (an
    SSH tunnel may forward another port), or the bound address on its port.
    A domain name other than the bound host or this machine's name is refused,
    since DNS rebinding can point any domain at this address."""
    try:
        parts = urlsplit("//" + netloc)
        name, given_port = parts.hostname, parts.port or 80
    except ValueError:
        return False
    if not name or parts.username is not None or parts.path or parts.query or parts.fragment:
        return False
    if name in _LOOPBACK_NAMES:
        return True
    if given_port != port:
        return False
    if bound_host in _ALL_INTERFACES:
        return _is_ip_literal(name) or name == socket.gethostname().lower()
    return name == bound_host.lower().strip("[]")


def check_sender(host: str | None, origin: str | None, bound_host: str, port: int) -> None:
    """Refuses (403) a request that does not address this server or that a
    page of another origin sent."""
    if host is None:
        raise Refused(HTTPStatus.BAD_REQUEST, "the request has no Host header")
    if not names_this_server(host, bound_host, port):
        raise Refused(HTTPStatus.FORBIDDEN,
                      f"Host {host!r} is not this server: open the page at http://127.0.0.1:{port}/ "
                      f"or http://localhost:{port}/")
    if origin is not None and origin.lower() != f"http://{host.lower()}":
        raise Refused(HTTPStatus.FORBIDDEN,
                      f"Origin {origin!r} is not this page (http://{host}): labels are accepted "
                      "only from the labelling page itself")


def parse_answer(body: bytes, content_type: str | None) -> tuple[int, int, str]:
    """``(left, right, choice)`` of a ``POST /label`` body; :class:`Refused`
    (400 or 415) naming what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refused(HTTPStatus.BAD_REQUEST, f"the body is not UTF-8 (byte {e.start})") from None
    media = (content_type or "application/x-www-form-urlencoded").split(";")[0].strip().lower()
    if media == "application/json":
        return _answer_of_json(text)
    if media == "application/x-www-form-urlencoded":
        return _answer_of_form(text)
    raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                  f"Content-Type {content_type!r} is not accepted: send "
                  "application/x-www-form-urlencoded or application/json")


def _answer_of_form(text: str) -> tuple[int, int, str]:
    try:
        form = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except ValueError as e:  # UnicodeDecodeError included: a %-escape that is not UTF-8
        raise Refused(HTTPStatus.BAD_REQUEST, f"the body is not a valid form ({e})") from None

    def field(name):
        values = form.get(name)
        if not values:
            raise Refused(HTTPStatus.BAD_REQUEST, f"field {name!r} is missing")
        if len(values) > 1:
            raise Refused(HTTPStatus.BAD_REQUEST, f"field {name!r} is given {len(values)} times")
        return values[0]

    ids = []
    for name in ("left", "right"):
        value = field(name)
        if not _SEGMENT_ID.fullmatch(value):
            raise Refused(HTTPStatus.BAD_REQUEST,
                          f"field {name!r}={_shown(value)} is invalid: expected an integer segment id")
        ids.append(int(value))
    return ids[0], ids[1], _checked_choice(field("choice"))


def _answer_of_json(text: str) -> tuple[int, int, str]:
    try:
        record = json.loads(text)
    except ValueError as e:
        raise Refused(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON ({e})") from None
    if not isinstance(record, dict):
        raise Refused(HTTPStatus.BAD_REQUEST,
                      f"the body is a JSON {type(record).__name__}: expected an object with "
                      "left, right and choice")
    for name in ("left", "right", "choice"):
        if name not in record:
            raise Refused(HTTPStatus.BAD_REQUEST, f"field {name!r} is missing")
    for name in ("left", "right"):
        value = record[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise Refused(HTTPStatus.BAD_REQUEST,
                          f"field {name!r}={_shown(value)} is invalid: expected an integer segment id")
    return record["left"], record["right"], _checked_choice(record["choice"])


def _checked_choice(choice) -> str:
    if not isinstance(choice, str) or choice not in label_store.CHOICES:
        raise Refused(HTTPStatus.BAD_REQUEST,
                      f"choice={_shown(choice)} is invalid: expected one of {label_store.CHOICES}")
    return choice


def _shown(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class LabelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, run_dir: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 labeller: str | None = None):
        if not (isinstance(port, int) and 0 <= port <= 65535):
            raise ValueError(f"port={port!r} is invalid: expected an integer in 0..65535 (0: any free port)")
        self.run_dir = Path(run_dir)
        self.labeller = labeller or os.environ.get("USER", "person")
        self.env_id = q.run_env_id(self.run_dir)
        self.store = label_store.LabelStore(q.labels_path(self.run_dir))  # reads only
        self.lock = threading.Lock()  # one answer at a time: no pair labelled twice
        super().__init__((host, port), _Handler)
        self.bound_host = host

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
    notes = _damage_notes(server.run_dir)
    if not pending:
        body = (f"<p>{status}.</p>{notes}<p>No query is waiting; this page reloads until the run asks "
                "for more.</p>")
        return _document(title, body, refresh=3)
    query = pending[0]
    clip = lambda side: f"/clip/{query.left.id}/{query.right.id}/{side}.gif"
    buttons = "".join(
        f'<button type="submit" name="choice" value="{value}">{text}</button> '
        for value, text in BUTTONS)
    body = f"""<p>{status}.</p>{notes}<p>Which segment does the task better?</p>
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


def _damage_notes(run_dir: Path) -> str:
    report = q.damage_report(run_dir)
    if not report:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in report)
    return f'<div class="damaged"><p>Damaged files, skipped (nothing was removed):</p><ul>{items}</ul></div>'


def _document(title: str, body: str, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8">{meta}<title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}} .pair{{display:flex;gap:2em}}
figure{{margin:0}} img{{border:1px solid #ccc;image-rendering:pixelated}}
button{{font-size:1.1em;margin:0.5em 0.3em 0 0}} .damaged{{color:#a00}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: LabelServer
    timeout = REQUEST_TIMEOUT

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

    def _refuse(self, status: int, message: str):
        # The connection closes: a body left unread must not be taken for the next request.
        self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8", {"Connection": "close"})
        self._linger()

    def _linger(self):
        """Closing a socket with unread input resets the connection, and the
        client may lose the answer with it: after answering, stop sending
        and discard what the client still sends, for a bounded time and
        amount (never keeping it)."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS)
            for _ in range(LINGER_BYTES // 65536):
                if not self.connection.recv(65536):
                    break
        except OSError:  # timed out or reset: the client had its chance
            pass

    def do_GET(self):
        self._respond(self._get)

    def do_POST(self):
        self._respond(self._post)

    def _respond(self, handle):
        """Runs ``handle`` for a request from a sender this server accepts;
        every failure is answered with a status and a message, and the
        server keeps serving."""
        try:
            check_sender(self._single_header("Host"), self._single_header("Origin"),
                         self.server.bound_host, self.server.server_address[1])
            handle()
        except Refused as e:
            self._refuse(e.status, str(e))
        except ConnectionError:  # the client left; nobody to answer
            self.close_connection = True
        except socket.timeout:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT, f"the request did not arrive within {REQUEST_TIMEOUT:g} s")
        except Exception as e:  # a bug must cost one request, not the page
            self._refuse(HTTPStatus.INTERNAL_SERVER_ERROR,
                         f"internal error: {type(e).__name__}: {' '.join(str(e).split())}")

    def _single_header(self, name: str) -> str | None:
        values = self.headers.get_all(name) or []
        if len(values) > 1:
            raise Refused(HTTPStatus.BAD_REQUEST, f"the {name} header is given {len(values)} times")
        return values[0] if values else None

    def _get(self):
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
                raise Refused(HTTPStatus.NOT_FOUND, "no such clip") from None
            for query in q.all_queries(self.server.run_dir):
                if query.key == key:
                    segment = query.left if parts[3] == "left.gif" else query.right
                    return self._send(HTTPStatus.OK, render.segment_clip(self.server.env_id, segment),
                                      "image/gif")
        raise Refused(HTTPStatus.NOT_FOUND, "not found")

    def _post(self):
        if urlparse(self.path).path != "/label":
            raise Refused(HTTPStatus.NOT_FOUND, "not found")
        left, right, choice = parse_answer(self._body(), self._single_header("Content-Type"))
        try:
            self.server.answer(left, right, choice)
        except ValueError as e:
            raise Refused(HTTPStatus.BAD_REQUEST, str(e)) from None
        except KeyError as e:
            raise Refused(HTTPStatus.CONFLICT, str(e.args[0])) from None
        except OSError as e:
            raise Refused(HTTPStatus.INTERNAL_SERVER_ERROR, f"the label was not saved: {e}") from None
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": "/"})

    def _body(self) -> bytes:
        """The request body, read only when its declared length is valid and
        at most :data:`MAX_BODY`."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise Refused(HTTPStatus.LENGTH_REQUIRED,
                          "a Transfer-Encoding body is not accepted: send the body with a Content-Length")
        raw = self._single_header("Content-Length")
        if raw is None:
            raise Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        raw = raw.strip()
        if not (raw.isascii() and raw.isdigit()):
            raise Refused(HTTPStatus.BAD_REQUEST,
                          f"Content-Length {_shown(raw)} is invalid: expected a number of bytes >= 0")
        if len(raw.lstrip("0")) > len(str(MAX_BODY)) or int(raw) > MAX_BODY:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                          f"the body is {_shown(raw)} bytes: at most {MAX_BODY} are accepted")
        length = int(raw)
        body = self.rfile.read(length)
        if len(body) < length:
            raise Refused(HTTPStatus.BAD_REQUEST,
                          f"the body ended after {len(body)} of the {length} bytes of its Content-Length")
        return body


def serve(run_dir: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          labeller: str | None = None) -> None:
    """Serves until Ctrl-C."""
    server = make_server(run_dir, host, port, labeller)
    print(f"labelling {run_dir} at {server.url} (Ctrl-C to stop)", flush=True)
    server.pending()  # reads every round and label now, so damage is reported (once) at the start
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
