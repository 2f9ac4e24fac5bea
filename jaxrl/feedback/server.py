"""``jaxrl label RUN_DIR``: a small local web page for labelling queries.

Stdlib only (``http.server``). The page shows a pending query of the run as
two clips playing in sync, with what "better" means for the environment, and
four answer buttons (keys ← ↑ → space); an answer is appended to the run's
label store (fsync'd before the reply) and the next query is shown at once.
The page follows the run by long-polling ``GET /api/state``: the next round
appears as soon as the run writes it, with the run's status (training,
waiting for labels, finished, gone) and the labels given against the budget.
The last answers can be undone until the run has used them (an undo is a new
line in the store; see :mod:`jaxrl.feedback.label_store`).

Several pages (tabs, people) get different pending queries while there are
several: each page is a client that holds a lease on the query it shows,
renewed by its polls and dropped when it answers, leaves, or goes quiet for
:data:`LEASE_SECONDS`.

Routes: ``GET /`` the page; ``GET /api/state?client=ID&since=VERSION`` the
page's state as JSON, once it differs from ``VERSION`` (or after
:data:`LONG_POLL_SECONDS`); ``GET /clip/<left id>/<right id>/<left|right>.jpg``
a clip's frames as a sprite sheet (``.gif``: an animation);
``GET /pending`` the pending pairs as JSON; ``POST /label`` with the fields
``left``, ``right`` (integer segment ids) and ``choice`` (left | right |
equal | skip), as a form (``application/x-www-form-urlencoded``) or a JSON
object (``application/json``); ``POST /undo`` with ``left`` and ``right``
(JSON); ``POST /api/leave?client=ID`` (a page closes). ``POST /label``
answers 303 (back to the page), or 200 with the new state for a request that
accepts ``application/json``, or an error with a one-line message and nothing
written: 400 for a malformed body or field, 403 for a request from another
site, 409 for a pair that is not pending, 411 without a ``Content-Length``,
413 for a body over :data:`MAX_BODY` bytes (not read), 415 for another
content type. A browser (``Accept: text/html``) gets each error as a page
with a way back; a form answer to a query answered elsewhere goes back to
the page with a note.

Any web page the user visits could send requests to this server, so every
request must name it in ``Host`` (a loopback name, on any port for an SSH
tunnel, or the bound address and port: this stops DNS rebinding), and an
``Origin``, when sent, must be the page's own (this stops a foreign page from
posting labels).
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse, urlsplit

from jaxrl.feedback import label_store
from jaxrl.feedback import page as label_page
from jaxrl.feedback import queries as q
from jaxrl.feedback import render
from jaxrl.feedback import status as run_status

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
BUTTONS = label_page.BUTTONS
LEASE_SECONDS = 60.0  # a page that has not polled for this long gives its query back
LONG_POLL_SECONDS = 20.0
POLL_INTERVAL = 0.05  # how often a waiting poll looks at the run directory
CLIP_CACHE = 64  # rendered clips kept (about 100 KB each)
UPCOMING = 2  # queries after the shown one whose clips the page preloads
MAX_BODY = 64 * 1024  # an answer is ~30 bytes; a larger body is refused unread
REQUEST_TIMEOUT = 30.0  # seconds a client may take to send a request, so none holds a thread forever
LINGER_SECONDS, LINGER_BYTES = 1.0, 1 << 20  # what a refused client may still send before the close
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
_ALL_INTERFACES = {"", "0.0.0.0", "::"}
_SEGMENT_ID = re.compile(r"-?[0-9]{1,20}")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


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
        self.leases: dict[tuple[int, int], tuple[str, float]] = {}  # query -> (client, until)
        self.lease_lock = threading.Lock()
        self.clips: collections.OrderedDict = collections.OrderedDict()
        self.clip_lock = threading.Lock()
        self.rendering: dict[tuple, concurrent.futures.Future] = {}  # clips being prefetched
        self.renderer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxrl-clips")
        self.closing = threading.Event()
        super().__init__((host, port), _Handler)
        self.bound_host = host

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def shutdown(self) -> None:
        self.closing.set()  # waiting polls answer now
        super().shutdown()

    def server_close(self) -> None:
        super().server_close()
        self.renderer.shutdown(wait=False, cancel_futures=True)

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

    def undo(self, left: int, right: int, client: str | None = None) -> label_store.Label:
        """Takes back the answer of ``(left, right)`` by appending an undo,
        and gives the query back to ``client``; KeyError when the pair has
        no answer, :class:`AlreadyUsed` when the run has used it."""
        with self.lock:
            label = q.undo_answer(self.run_dir, self.store, left, right, self.labeller)
        if client is not None:
            with self.lease_lock:
                self.leases = {k: v for k, v in self.leases.items() if v[0] != client}
                self.leases[(left, right)] = (client, time.monotonic() + LEASE_SECONDS)
        return label

    def leave(self, client: str) -> None:
        with self.lease_lock:
            self.leases = {k: v for k, v in self.leases.items() if v[0] != client}

    def assign(self, client: str | None, pending: list[q.Query]) -> tuple[q.Query | None, bool]:
        """The query ``client`` should see, and whether another page shows it
        too: the one it holds, else the oldest nobody holds, else (every
        pending query is held) the oldest. Renews the client's lease."""
        now = time.monotonic()
        keys = {x.key for x in pending}
        with self.lease_lock:
            self.leases = {k: v for k, v in self.leases.items() if v[1] > now and k in keys}
            held = [x for x in pending if self.leases.get(x.key, ("",))[0] == client]
            free = [x for x in pending if x.key not in self.leases]
            query = (held or free or pending or [None])[0]
            shared = query is not None and not (held or free)
            if client is not None and query is not None and not shared:
                self.leases[query.key] = (client, now + LEASE_SECONDS)
        return query, shared

    def version(self) -> str:
        """Changes whenever what a page shows may change: the labels, the
        rounds, or what the run is doing."""
        status = run_status.run_status(self.run_dir).to_json()
        status.pop("heartbeat_age")
        parts = [q.file_version(q.labels_path(self.run_dir)),
                 [(p.name, q.file_version(p)) for p in q.round_paths(self.run_dir)], status]
        return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:16]

    def state(self, client: str | None) -> dict:
        """What the page of ``client`` shows, as JSON."""
        version = self.version()
        pending = self.pending()
        standing = q.answers(self.run_dir)
        run = run_status.run_status(self.run_dir)
        rounds = len(q.round_paths(self.run_dir))
        query, shared = self.assign(client, pending)
        upcoming = [x for x in pending if query is None or x.key != query.key][:UPCOMING]
        for x in ([query] if query else []) + upcoming:
            self.prefetch(x)
        skipped = sum(label.choice == "skip" for label in standing.values())
        return {
            "version": version,
            "client": client,
            "run": {**run.to_json(), "round": rounds,
                    "text": run_status.run_text(run, rounds, self.run_dir, len(pending))},
            "progress": run_status.label_progress(len(standing), skipped, len(pending), run.label_budget),
            "query": None if query is None else self._query_json(query, shared),
            "upcoming": [{side: _clip_url(x, side, "jpg") for side in q.SIDES} for x in upcoming],
            "waiting_text": run_status.waiting_text(run),
            "damage": q.damage_report(self.run_dir),
        }

    def _query_json(self, query: q.Query, shared: bool) -> dict:
        def side_json(side: str, segment: q.Segment) -> dict:
            end = render.segment_end(self.env_id, segment)
            return {"id": segment.id, "steps": len(segment.obs), "length": segment.length or len(segment.obs),
                    "sprite": _clip_url(query, side, "jpg"),
                    "end": None if end is None else {"kind": end.kind, "text": end.text, "good": end.good}}

        try:
            written = q.round_path(self.run_dir, query.iteration).stat().st_mtime
        except OSError:
            written = None
        return {"left": query.left.id, "right": query.right.id, "iteration": query.iteration,
                "round_written": written, "shared": shared,
                "sides": {"left": side_json("left", query.left), "right": side_json("right", query.right)}}

    def wait_for_change(self, since: str | None, seconds: float = LONG_POLL_SECONDS) -> None:
        """Returns once the version differs from ``since``, after ``seconds``,
        or when the server shuts down."""
        deadline = time.monotonic() + seconds
        while since is not None and self.version() == since and time.monotonic() < deadline:
            if self.closing.wait(POLL_INTERVAL):
                return

    def clip(self, query: q.Query, side: str, kind: str) -> bytes:
        """The rendered clip of one side (``jpg``: sprite sheet, ``gif``),
        cached; one being rendered in the background is waited for, not
        rendered twice."""
        key = (query.key, side, kind)
        with self.clip_lock:
            if key in self.clips:
                self.clips.move_to_end(key)
                return self.clips[key]
            rendering = self.rendering.get(key)
        if rendering is not None:
            return rendering.result()
        return self._render(query, side, kind)

    def _render(self, query: q.Query, side: str, kind: str) -> bytes:
        segment = query.left if side == "left" else query.right
        key = (query.key, side, kind)
        try:
            data = (render.segment_sprite if kind == "jpg" else render.segment_clip)(self.env_id, segment)
        except Exception:  # a failed render is tried again by the next request
            with self.clip_lock:
                self.rendering.pop(key, None)
            raise
        with self.clip_lock:
            self.clips[key] = data
            self.rendering.pop(key, None)
            while len(self.clips) > CLIP_CACHE:
                self.clips.popitem(last=False)
        return data

    def prefetch(self, query: q.Query) -> None:
        """Renders the query's sprite sheets in the background, so they are
        ready when the page asks."""
        for side in q.SIDES:
            key = (query.key, side, "jpg")
            with self.clip_lock:  # held while submitting, so the render's pop comes after the entry
                if key in self.clips or key in self.rendering:
                    continue
                try:
                    self.rendering[key] = self.renderer.submit(self._render, query, side, "jpg")
                except RuntimeError:  # shutting down
                    return


AlreadyUsed = q.AlreadyUsed


def _clip_url(query: q.Query, side: str, kind: str) -> str:
    return f"/clip/{query.left.id}/{query.right.id}/{side}.{kind}"


def make_server(run_dir: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                labeller: str | None = None) -> LabelServer:
    """A labelling server bound to ``host:port`` (port 0: any free port); call
    ``serve_forever()`` (in a thread for tests), then ``shutdown()``."""
    return LabelServer(run_dir, host, port, labeller)


def page(server: LabelServer, client: str | None = None, notice: str | None = None) -> str:
    """The labelling page for a new client (a tab)."""
    client = client or secrets.token_urlsafe(12)
    title = f"jaxrl label: {server.run_dir}"
    guide = render.guide(server.env_id)
    return label_page.label_page(title, server.state(client),
                                 {"better": guide.better, "legend": list(guide.legend)}, notice)


NOTICES = {"taken": "That query was answered elsewhere (another tab or person); here is the next one."}


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

    def _accepts(self, media: str) -> bool:
        return media in (self.headers.get("Accept") or "").lower()

    def _json(self, status: int, record: dict):
        self._send(status, json.dumps(record).encode(), "application/json")

    def _refuse(self, status: int, message: str):
        """Answers an error: a page with a way back for a browser, JSON for
        the page's script, one line of text for anything else."""
        if self._accepts("text/html"):
            body, media = label_page.error_page(int(status), HTTPStatus(status).phrase, message), "text/html"
        elif self._accepts("application/json"):
            body, media = json.dumps({"error": message}), "application/json"
        else:
            body, media = message + "\n", "text/plain"
        # The connection closes: a body left unread must not be taken for the next request.
        self._send(status, body.encode(), f"{media}; charset=utf-8", {"Connection": "close"})
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

    def _client(self) -> str | None:
        values = parse_qs(urlparse(self.path).query).get("client", [])
        return values[0] if values and _CLIENT_ID.fullmatch(values[0]) else None

    def _get(self):
        url = urlparse(self.path)
        path, params = url.path, parse_qs(url.query)
        if path == "/":
            notice = NOTICES.get((params.get("note") or [""])[0])
            return self._send(HTTPStatus.OK, page(self.server, notice=notice).encode(),
                              "text/html; charset=utf-8")
        if path == "/api/state":
            self.server.wait_for_change((params.get("since") or [None])[0])
            return self._json(HTTPStatus.OK, self.server.state(self._client()))
        if path == "/favicon.ico":
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        if path == "/pending":
            pairs = [{"iteration": x.iteration, "left": x.left.id, "right": x.right.id}
                     for x in self.server.pending()]
            return self._send(HTTPStatus.OK, json.dumps(pairs).encode(), "application/json")
        parts = path.strip("/").split("/")
        clips = {"left.gif", "right.gif", "left.jpg", "right.jpg"}
        if len(parts) == 4 and parts[0] == "clip" and parts[3] in clips:
            try:
                key = (int(parts[1]), int(parts[2]))
            except ValueError:
                raise Refused(HTTPStatus.NOT_FOUND, "no such clip") from None
            side, kind = parts[3].split(".")
            media = {"gif": "image/gif", "jpg": "image/jpeg"}[kind]
            for query in q.all_queries(self.server.run_dir):
                if query.key == key:
                    # A clip never changes: the browser may keep it.
                    return self._send(HTTPStatus.OK, self.server.clip(query, side, kind), media,
                                      {"Cache-Control": "private, max-age=3600"})
        raise Refused(HTTPStatus.NOT_FOUND, "not found")

    def _post(self):
        path = urlparse(self.path).path
        if path == "/api/leave":
            if self._client():
                self.server.leave(self._client())
            # The beacon's body is not read, so the connection cannot carry another request.
            return self._send(HTTPStatus.NO_CONTENT, b"", "text/plain", {"Connection": "close"})
        if path == "/undo":
            return self._undo()
        if path != "/label":
            raise Refused(HTTPStatus.NOT_FOUND, "not found")
        left, right, choice = parse_answer(self._body(), self._single_header("Content-Type"))
        try:
            self.server.answer(left, right, choice)
        except ValueError as e:
            raise Refused(HTTPStatus.BAD_REQUEST, str(e)) from None
        except KeyError as e:
            if self._accepts("application/json"):  # the page shows the next query instead
                return self._json(HTTPStatus.CONFLICT, {"error": str(e.args[0]),
                                                        "state": self.server.state(self._client())})
            if self._accepts("text/html"):  # a form answer: back to the page, with a note
                return self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": "/?note=taken"})
            raise Refused(HTTPStatus.CONFLICT, str(e.args[0])) from None
        except OSError as e:
            raise Refused(HTTPStatus.INTERNAL_SERVER_ERROR, f"the label was not saved: {e}") from None
        if self._accepts("application/json"):
            return self._json(HTTPStatus.OK, {"saved": [left, right, choice],
                                              "state": self.server.state(self._client())})
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": "/"})

    def _undo(self):
        body = self._body()
        try:
            record = json.loads(body.decode("utf-8"))
            left, right = record["left"], record["right"]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right)):
                raise ValueError("left and right must be integer segment ids")
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            raise Refused(HTTPStatus.BAD_REQUEST,
                          f"an undo is a JSON object with integer left and right ({q._one_line(e)})") from None
        try:
            self.server.undo(left, right, self._client())
        except (KeyError, AlreadyUsed) as e:
            message = str(e.args[0])
            if self._accepts("application/json"):
                return self._json(HTTPStatus.CONFLICT, {"error": message, "state": self.server.state(self._client())})
            raise Refused(HTTPStatus.CONFLICT, message) from None
        self._json(HTTPStatus.OK, {"undone": [left, right], "state": self.server.state(self._client())})

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
