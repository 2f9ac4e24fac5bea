"""Bad inputs to the labelling side: damaged label stores, damaged query
rounds, and malformed or foreign requests to the labelling server. Each case
must get a clear report (a warning naming the file and line, or a 4xx with a
message) and lose nothing already saved. No JAX compilation here."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from jaxrl import feedback
from jaxrl.feedback import label_store as ls
from jaxrl.feedback import queries as fq
from jaxrl.feedback import server as fs


def _line(left, right=None, choice="left", labeller="ana", t=1.0) -> bytes:
    right = left + 100 if right is None else right
    return (json.dumps({"v": 1, "left": left, "right": right, "choice": choice, "labeller": labeller,
                        "time": t}, separators=(",", ":")) + "\n").encode()


def _record(**fields) -> bytes:
    record = {"v": 1, "left": 7, "right": 107, "choice": "left", "labeller": "ana", "time": 1.0}
    record.update(fields)
    return (json.dumps({k: v for k, v in record.items() if v is not _MISSING}) + "\n").encode()


_MISSING = object()
G1, G2, G3 = _line(1), _line(2), _line(3)

# ------------------------------------------------------------ label store

# (name, file bytes, left ids of the valid labels, damaged line numbers, torn last line)
STORE_CASES = [
    ("bad line at start", b"garbage\n" + G1 + G2, [1, 2], [1], False),
    ("bad line in the middle", G1 + b"{oops\n" + G2 + G3, [1, 2, 3], [2], False),
    ("bad line at the end", G1 + G2 + b"not json\n", [1, 2], [3], False),
    ("torn last line", G1 + G2 + b'{"v":1,"left":9,"ri', [1, 2], [], True),
    ("torn last line of non-UTF-8", G1 + b"\xff\xfe\x00", [1], [], True),
    ("valid last line without newline", G1 + G2.rstrip(b"\n"), [1, 2], [], False),
    ("torn line in the middle (later appended after)", G1 + b'{"v":1,"left":9\n' + G2, [1, 2], [2], False),
    ("blank lines", b"\n" + G1 + b"\n   \n\t\n" + G2 + b"\n\n", [1, 2], [], False),
    ("CRLF line ends", G1.replace(b"\n", b"\r\n") + G2.replace(b"\n", b"\r\n"), [1, 2], [], False),
    ("UTF-8 byte order mark", b"\xef\xbb\xbf" + G1 + G2, [1, 2], [], False),
    ("non-UTF-8 line", G1 + b"\xff\xfe{}\n" + G2, [1, 2], [2], False),
    ("NUL bytes", G1 + b"\x00\x00\x00\n" + G2, [1, 2], [2], False),
    ("JSON array", G1 + b"[1, 2, 3]\n" + G2, [1, 2], [2], False),
    ("JSON null", G1 + b"null\n" + G2, [1, 2], [2], False),
    ("JSON number", G1 + b"42\n" + G2, [1, 2], [2], False),
    ("JSON string", G1 + b'"left"\n' + G2, [1, 2], [2], False),
    ("left as a string", G1 + _record(left="7") + G2, [1, 2], [2], False),
    ("left as a bool", G1 + _record(left=True) + G2, [1, 2], [2], False),
    ("left as a float", G1 + _record(left=7.5) + G2, [1, 2], [2], False),
    ("right missing", G1 + _record(right=_MISSING) + G2, [1, 2], [2], False),
    ("choice missing", G1 + _record(choice=_MISSING) + G2, [1, 2], [2], False),
    ("choice unknown", G1 + _record(choice="both") + G2, [1, 2], [2], False),
    ("choice null", G1 + _record(choice=None) + G2, [1, 2], [2], False),
    ("choice a list", G1 + _record(choice=["left"]) + G2, [1, 2], [2], False),
    ("labeller a number", G1 + _record(labeller=5) + G2, [1, 2], [2], False),
    ("time a string", G1 + _record(time="yesterday") + G2, [1, 2], [2], False),
    ("time NaN", G1 + _record(time=float("nan")) + G2, [1, 2], [2], False),
    ("time infinite", G1 + _record(time=float("inf")) + G2, [1, 2], [2], False),
    ("unknown schema version", G1 + _record(v=2) + G2, [1, 2], [2], False),
    ("several bad lines", G1 + b"x\n" + G2 + b"y\n{\n" + G3, [1, 2, 3], [2, 4, 5], False),
    ("a long garbage line", G1 + b"#" * 200_000 + b"\n" + G2, [1, 2], [2], False),
    ("duplicate pair (the first answers)", G1 + _line(1, choice="right") + G2, [1, 1, 2], [], False),
]


@pytest.mark.filterwarnings("ignore::jaxrl.feedback.label_store.DamagedFileWarning")  # the last read's
@pytest.mark.parametrize("name, data, lefts, damaged, torn", STORE_CASES, ids=[c[0] for c in STORE_CASES])
def test_damaged_label_store_is_read_past_reported_and_never_rewritten(tmp_path, name, data, lefts,
                                                                       damaged, torn):
    path = tmp_path / "labels.jsonl"
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = ls.LabelStore(path)  # what `jaxrl label` and the notebook do on start
        read = ls.read_labels(path)
    assert [x.left for x in store] == lefts and [x.left for x in read] == lefts
    reports = [str(w.message) for w in caught if issubclass(w.category, ls.DamagedFileWarning)]
    # One report per damaged line, naming the file and the line; none for a torn last line.
    assert len(reports) == len(damaged)
    for number, report in zip(damaged, reports):
        assert report.startswith(f"{path}:{number}: label line skipped (")
    contents = ls.scan(data)
    assert [n for n, _ in contents.damaged] == damaged and contents.torn == torn
    assert path.read_bytes() == data  # opening and reading changed nothing

    store.append(50, 51, "equal", "bo", timestamp=5.0)
    after = path.read_bytes()
    assert after.startswith(data)  # only appended: no byte removed or rewritten
    assert after.endswith(_line(50, 51, "equal", "bo", 5.0))
    assert [x.left for x in ls.read_labels(path)] == lefts + [50]  # not glued to a torn line


def test_a_damaged_line_is_reported_once_per_process(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_bytes(G1 + b"garbage\n" + G2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):  # the run polls the store many times a second
            assert len(ls.read_labels(path)) == 2
    assert len(caught) == 1 and f"{path}:2:" in str(caught[0].message)


@pytest.mark.parametrize("field, value", [
    ("timestamp", float("nan")), ("timestamp", float("inf")), ("labeller", None), ("labeller", 3),
    ("labeller", object()), ("choice", "both"), ("choice", None),
])
def test_store_refuses_to_write_a_label_its_readers_would_skip(tmp_path, field, value):
    path = tmp_path / "labels.jsonl"
    store = ls.LabelStore(path)
    store.append(1, 2, "left", "ana", timestamp=1.0)
    before = path.read_bytes()
    kwargs = {"left": 3, "right": 4, "choice": "right", "labeller": "ana", "timestamp": 2.0, field: value}
    with pytest.raises(ValueError, match="choice|cannot be stored"):
        store.append(**kwargs)
    assert path.read_bytes() == before


def _segments(ids, steps=5, obs_dim=4):
    K = len(ids)
    return SimpleNamespace(ids=np.asarray(ids, np.int32),
                           obs=np.random.default_rng(int(ids[0])).normal(size=(K, steps, obs_dim)).astype(np.float32),
                           action=np.zeros((K, steps), np.int32), mask=np.ones((K, steps), np.float32))


@pytest.fixture
def run_dir(tmp_path):
    """A human-labelled run: round 0 asks (1, 3) and (2, 4)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"env_id": "CartPole-v1"}))
    fq.write_round(run, 0, _segments([1, 2]), _segments([3, 4]), np.array([0, 1]))
    return run


def _serving(run, **kwargs):
    server = feedback.make_server(run, "127.0.0.1", 0, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _stop(server):
    server.shutdown()
    server.server_close()


def test_every_reader_sees_the_labels_after_a_bad_line(run_dir):
    """The run (HumanLabeller), the page and the notebook agree: a label
    written after a damaged line answers its query."""
    path = fq.labels_path(run_dir)
    path.write_bytes(b"{damaged\n" + _line(2, 4, "right"))
    with pytest.warns(ls.DamagedFileWarning, match=r"labels.jsonl:1: "):
        assert [x.key for x in feedback.pending_queries(run_dir)] == [(1, 3)]
    # The run's side: query (2, 4) is answered from the store, without waiting.
    labeller = fq.HumanLabeller(run_dir, timeout=0.01, say=lambda _: None)
    preference, answered = labeller(0, _segments([2]), _segments([4]), np.array([True]))
    assert answered.tolist() == [True] and preference.tolist() == [0.0]
    assert feedback.notebook_labeller(run_dir, display=False).current.key == (1, 3)
    server = _serving(run_dir)
    try:
        status, body = _raw(server, _get("/pending", server))
        assert status == 200 and json.loads(body) == [{"iteration": 0, "left": 1, "right": 3}]
        status, body = _raw(server, _get("/", server))
        assert status == 200 and "1 pending, 1 labelled" in body and "labels.jsonl:1: label line skipped" in body
        # The server refuses a second answer to a pair the run already has.
        assert _raw(server, _post(server, "left=2&right=4&choice=left"))[0] == 409
    finally:
        _stop(server)
    assert path.read_bytes() == b"{damaged\n" + _line(2, 4, "right")


def test_jaxrl_label_start_leaves_the_store_untouched_even_when_it_cannot_serve(run_dir, capsys):
    from jaxrl.cli import main

    path = fq.labels_path(run_dir)
    data = G1 + b"garbage\n" + G2 + b'{"v":1,"left":'
    path.write_bytes(data)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.warns(ls.DamagedFileWarning):
            assert main(["label", str(run_dir), "--port", str(port)]) == 2
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["label", str(run_dir), "--port", "99999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--port" in err[0] and "99999" in err[0] and "65535" in err[0]
    assert path.read_bytes() == data


# ------------------------------------------------------------ query rounds


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _round_arrays(K=2, L=5, **changes):
    arrays = {"iteration": np.int64(1)}
    for side, first in (("left", 10), ("right", 20)):
        arrays.update({f"{side}_ids": np.arange(first, first + K, dtype=np.int32),
                       f"{side}_obs": np.zeros((K, L, 4), np.float32),
                       f"{side}_action": np.zeros((K, L), np.int32),
                       f"{side}_mask": np.ones((K, L), np.float32)})
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not _MISSING}


def _valid_round() -> bytes:
    return _npz(**_round_arrays())


ROUND_CASES = [
    ("empty file", b""),
    ("truncated to half", _valid_round()[: len(_valid_round()) // 2]),
    ("truncated by one byte", _valid_round()[:-1]),
    ("only the zip header", _valid_round()[:30]),
    ("random bytes", np.random.default_rng(0).bytes(500)),
    ("text", b"this is not a round\n"),
    ("a single .npy array", (lambda b: (np.save(b, np.arange(3)), b.getvalue())[1])(io.BytesIO())),
    ("pickled object array", _npz(**_round_arrays(left_obs=np.array([{"a": 1}, None], dtype=object)))),
    ("no iteration", _npz(**_round_arrays(iteration=_MISSING))),
    ("iteration a string", _npz(**_round_arrays(iteration=np.array("seven")))),
    ("mask of strings", _npz(**_round_arrays(left_mask=np.full((2, 5), "1")))),
    ("no left_mask", _npz(**_round_arrays(left_mask=_MISSING))),
    ("no right_ids", _npz(**_round_arrays(right_ids=_MISSING))),
    ("right_ids of another length", _npz(**_round_arrays(right_ids=np.arange(3, dtype=np.int32)))),
    ("float ids", _npz(**_round_arrays(left_ids=np.array([1.5, 2.5])))),
    ("ids of two dimensions", _npz(**_round_arrays(left_ids=np.zeros((2, 2), np.int32)))),
    ("mask of one dimension", _npz(**_round_arrays(left_mask=np.ones((2,), np.float32)))),
    ("mask with values other than 0/1", _npz(**_round_arrays(right_mask=np.full((2, 5), 7.0)))),
    ("mask NaN", _npz(**_round_arrays(right_mask=np.full((2, 5), np.nan)))),
    ("obs shorter than the mask", _npz(**_round_arrays(left_obs=np.zeros((2, 3, 4), np.float32)))),
    ("actions as strings", _npz(**_round_arrays(left_action=np.full((2, 5), "up")))),
]


@pytest.mark.parametrize("name, data", ROUND_CASES, ids=[c[0] for c in ROUND_CASES])
def test_a_damaged_round_is_skipped_and_reported_and_the_others_stay_labellable(run_dir, name, data):
    damaged = fq.round_path(run_dir, 1)
    damaged.write_bytes(data)
    fq.write_round(run_dir, 2, _segments([5]), _segments([6]), np.array([0]))
    store = ls.LabelStore(fq.labels_path(run_dir))
    store.append(2, 4, "left", "ana", timestamp=1.0)
    saved = fq.labels_path(run_dir).read_bytes()

    with pytest.warns(ls.DamagedFileWarning, match=rf"{damaged.name} is damaged.*its queries are skipped"):
        pending = [x.key for x in feedback.pending_queries(run_dir)]
    assert pending == [(1, 3), (5, 6)]  # rounds 0 and 2, before and after the damaged one
    assert [line.split(" is damaged")[0] for line in fq.damage_report(run_dir)] == [str(damaged)]

    server = _serving(run_dir)
    try:
        status, body = _raw(server, _get("/", server))
        assert status == 200 and "/clip/1/3/left.gif" in body and f"{damaged.name} is damaged" in body
        status, clip = _raw(server, _get("/clip/5/6/right.gif", server), raw=True)
        assert status == 200 and clip.startswith(b"GIF89a")
        assert _raw(server, _post(server, "left=5&right=6&choice=right"))[0] == 303
    finally:
        _stop(server)
    assert "round-00000001.npz" in feedback.notebook_labeller(run_dir, display=False).html()
    assert damaged.read_bytes() == data  # reported, not removed
    with pytest.raises(fq.DamagedRound, match=rf"^{re.escape(str(damaged))} is damaged: \S"):
        fq.read_round(damaged)
    assert fq.labels_path(run_dir).read_bytes().startswith(saved)
    assert [x.key for x in feedback.pending_queries(run_dir)] == [(1, 3)]


# ------------------------------------------------------------ the server


def _get(path: str, server, host: str | None = None) -> bytes:
    host = host or f"127.0.0.1:{server.server_address[1]}"
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def _post(server, body: bytes | str, headers: list[tuple[str, str]] | None = None, path="/label") -> bytes:
    body = body.encode() if isinstance(body, str) else body
    if headers is None:
        headers = [("Host", "{host}"), ("Content-Type", "application/x-www-form-urlencoded"),
                   ("Content-Length", str(len(body)))]
    host = f"127.0.0.1:{server.server_address[1]}"
    lines = [f"POST {path} HTTP/1.1"] + [f"{k}: {v.format(host=host, port=server.server_address[1])}"
                                         for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _raw(server, request: bytes, half_close: bool = False, raw: bool = False):
    """Sends ``request`` as bytes and returns (status, body): a dropped
    connection or a server that waits fails here rather than passing."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), f"no HTTP response: {data[:200]!r}"
    return int(head.split()[1]), body if raw else body.decode()


FORM = "application/x-www-form-urlencoded"
GOOD = "left=1&right=3&choice=left"


def _h(content_type=FORM, length=None, host="{host}", origin=None, extra=()):
    """Headers for a POST of GOOD (or of another body when ``length`` is given)."""
    headers = [] if host is None else [("Host", host)]
    if origin is not None:
        headers.append(("Origin", origin))
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    if length is not None:
        headers.append(("Content-Length", length))
    return headers + list(extra)


def _sized(body: bytes | str, **kwargs):
    body = body.encode() if isinstance(body, str) else body
    return _h(length=str(len(body)), **kwargs), body


# (name, headers, body, expected status, words in the message)
SERVER_CASES = [
    ("foreign Origin", *_sized(GOOD, origin="http://evil.example"), 403, "Origin"),
    ("Origin null", *_sized(GOOD, origin="null"), 403, "Origin"),
    ("Origin over https", *_sized(GOOD, origin="https://{host}"), 403, "Origin"),
    ("Origin of another port", *_sized(GOOD, origin="http://127.0.0.1:1"), 403, "Origin"),
    ("Origin of localhost on another port", *_sized(GOOD, origin="http://localhost:1"), 403, "Origin"),
    ("Origin twice", *_sized(GOOD, origin="http://{host}", extra=[("Origin", "http://evil.example")]),
     400, "Origin header is given 2 times"),
    ("foreign Host", *_sized(GOOD, host="evil.example:{port}"), 403, "Host"),
    ("rebinding Host", *_sized(GOOD, host="127.0.0.1.nip.io:{port}"), 403, "Host"),
    ("Host of another interface", *_sized(GOOD, host="10.1.2.3:{port}"), 403, "Host"),
    ("Host with user info", *_sized(GOOD, host="evil@127.0.0.1:{port}"), 403, "Host"),
    ("Host with a bad port", *_sized(GOOD, host="127.0.0.1:http"), 403, "Host"),
    ("no Host", *_sized(GOOD, host=None), 400, "no Host header"),
    ("Host twice", *_sized(GOOD, extra=[("Host", "evil.example")]), 400, "Host header is given 2 times"),
    ("huge Content-Length, body not sent", _h(length=str(10**9)), b"", 413, "at most 65536"),
    ("Content-Length just over the cap", _h(length="65537"), b"", 413, "at most 65536"),
    ("Content-Length of 100 digits", _h(length="9" * 100), b"", 413, "at most 65536"),
    ("negative Content-Length", _h(length="-5"), GOOD.encode(), 400, "Content-Length '-5' is invalid"),
    ("Content-Length not a number", _h(length="ten"), GOOD.encode(), 400, "Content-Length 'ten'"),
    ("Content-Length in exponent form", _h(length="1e3"), GOOD.encode(), 400, "Content-Length '1e3'"),
    ("Content-Length twice", _h(length="26", extra=[("Content-Length", "5")]), GOOD.encode(), 400,
     "Content-Length header is given 2 times"),
    ("no Content-Length", _h(), GOOD.encode(), 411, "Content-Length is required"),
    ("chunked body", _h(extra=[("Transfer-Encoding", "chunked")]), b"1a\r\n" + GOOD.encode() + b"\r\n0\r\n\r\n",
     411, "Transfer-Encoding"),
    ("body shorter than its Content-Length", _h(length="400"), GOOD.encode(), 400, "ended after 26 of the 400"),
    ("non-UTF-8 body", *_sized(b"left=1&right=3&choice=\xff\xfe"), 400, "not UTF-8"),
    ("non-UTF-8 escape", *_sized("left=1&right=3&choice=%ff"), 400, "not a valid form"),
    ("form that is not a form", *_sized("just some text"), 400, "not a valid form"),
    ("empty body", *_sized(""), 400, "field 'left' is missing"),
    ("form without choice", *_sized("left=1&right=3"), 400, "field 'choice' is missing"),
    ("form without right", *_sized("left=1&choice=left"), 400, "field 'right' is missing"),
    ("form with left not a number", *_sized("left=one&right=3&choice=left"), 400, "field 'left'='one'"),
    ("form with a float id", *_sized("left=1.0&right=3&choice=left"), 400, "field 'left'='1.0'"),
    ("form with an id of 40 digits", *_sized(f"left={'9' * 40}&right=3&choice=left"), 400,
     "expected an integer segment id"),
    ("form with left twice", *_sized("left=1&left=2&right=3&choice=left"), 400, "given 2 times"),
    ("form with a bad choice", *_sized("left=1&right=3&choice=both"), 400, "choice='both' is invalid"),
    ("form with an empty choice", *_sized("left=1&right=3&choice="), 400, "choice='' is invalid"),
    ("invalid JSON", *_sized("{left: 1", content_type="application/json"), 400, "not valid JSON"),
    ("JSON array", *_sized("[1, 3, \"left\"]", content_type="application/json"), 400, "JSON list"),
    ("JSON id as a string", *_sized('{"left": "1", "right": 3, "choice": "left"}',
                                    content_type="application/json"), 400, "field 'left'='1'"),
    ("JSON id as a bool", *_sized('{"left": true, "right": 3, "choice": "left"}',
                                  content_type="application/json"), 400, "field 'left'=True"),
    ("JSON without choice", *_sized('{"left": 1, "right": 3}', content_type="application/json"), 400,
     "field 'choice' is missing"),
    ("JSON choice a number", *_sized('{"left": 1, "right": 3, "choice": 1}', content_type="application/json"),
     400, "choice=1 is invalid"),
    ("text/plain body", *_sized(GOOD, content_type="text/plain"), 415, "Content-Type 'text/plain'"),
    ("multipart body", *_sized(GOOD, content_type="multipart/form-data; boundary=x"), 415, "multipart"),
    ("query never asked", *_sized("left=7&right=8&choice=left"), 409, "query (7, 8) is not pending"),
    ("query answered already", *_sized("left=2&right=4&choice=left"), 409, "query (2, 4) is not pending"),
    ("negative ids", *_sized("left=-1&right=-3&choice=left"), 409, "not pending"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A server over a run with one answered and one pending query, and a
    damaged line in its store: the bad requests must change none of it."""
    run = tmp_path_factory.mktemp("live") / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"env_id": "CartPole-v1"}))
    fq.write_round(run, 0, _segments([1, 2]), _segments([3, 4]), np.array([0, 1]))
    fq.labels_path(run).write_bytes(_line(2, 4, "right") + b"{damaged\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ls.DamagedFileWarning)
        server = _serving(run)
        yield server
    _stop(server)


@pytest.mark.parametrize("name, headers, body, status, message", SERVER_CASES, ids=[c[0] for c in SERVER_CASES])
def test_server_refuses_bad_requests_with_a_message_and_keeps_every_label(live, name, headers, body, status,
                                                                          message):
    path = fq.labels_path(live.run_dir)
    saved = path.read_bytes()
    port = live.server_address[1]
    message = message.format(host=f"127.0.0.1:{port}", port=port)
    got, text = _raw(live, _post(live, body, headers), half_close=True)
    assert (got, message in text) == (status, True), text
    assert len(text.strip().splitlines()) == 1  # one line that says what is wrong
    assert path.read_bytes() == saved
    # Still up and unchanged.
    got, pending = _raw(live, _get("/pending", live))
    assert got == 200 and json.loads(pending) == [{"iteration": 0, "left": 1, "right": 3}]


@pytest.mark.parametrize("request_of, status", [
    (lambda s: _get("/", s, host="evil.example:{}".format(s.server_address[1])), 403),
    (lambda s: _get("/pending", s, host="attacker.test"), 403),
    (lambda s: _get("/clip/1/3/left.gif", s, host="evil.example"), 403),
    (lambda s: _get("/clip/x/3/left.gif", s), 404),
    (lambda s: _get("/nothing", s), 404),
    (lambda s: _post(s, GOOD, path="/other"), 404),
], ids=["page", "pending", "clip", "clip of a bad id", "unknown page", "POST elsewhere"])
def test_server_refuses_reads_from_foreign_hosts_and_unknown_routes(live, request_of, status):
    saved = fq.labels_path(live.run_dir).read_bytes()
    got, text = _raw(live, request_of(live), half_close=True)
    assert got == status and text.strip()
    assert fq.labels_path(live.run_dir).read_bytes() == saved


@pytest.mark.parametrize("host, origin, content_type, body", [
    ("127.0.0.1:{port}", "http://127.0.0.1:{port}", FORM, GOOD),  # the page's own form
    ("localhost:{port}", "http://localhost:{port}", FORM, GOOD),
    ("localhost:9000", "http://localhost:9000", FORM, GOOD),  # through `ssh -L 9000:localhost:PORT`
    ("127.0.0.1:{port}", None, "application/json", json.dumps({"left": 1, "right": 3, "choice": "skip"})),
    ("127.0.0.1:{port}", None, "application/x-www-form-urlencoded; charset=utf-8", GOOD),
])
def test_server_accepts_its_own_page_and_appends(run_dir, host, origin, content_type, body):
    server = _serving(run_dir, labeller="ana")
    try:
        headers = _h(content_type, str(len(body)), host=host, origin=origin)
        assert _raw(server, _post(server, body, headers))[0] == 303
        assert _raw(server, _post(server, body, headers))[0] == 409  # answered now
    finally:
        _stop(server)
    assert [(x.left, x.right, x.labeller) for x in ls.read_labels(fq.labels_path(run_dir))] == [(1, 3, "ana")]


@pytest.mark.parametrize("bound, netloc, port, accepted", [
    ("127.0.0.1", "127.0.0.1:8765", 8765, True),
    ("127.0.0.1", "localhost:8765", 8765, True),
    ("127.0.0.1", "[::1]:8765", 8765, True),
    ("127.0.0.1", "LOCALHOST:8765", 8765, True),
    ("127.0.0.1", "localhost:9000", 8765, True),  # a tunnel to another port
    ("127.0.0.1", "127.0.0.1", 8765, True),  # a loopback name, port 80 through a proxy
    ("127.0.0.1", "evil.example:8765", 8765, False),
    ("127.0.0.1", "192.168.1.5:8765", 8765, False),
    ("127.0.0.1", "", 8765, False),
    ("127.0.0.1", "127.0.0.1:8765/x", 8765, False),
    ("127.0.0.1", "127.0.0.1:99999", 8765, False),
    ("0.0.0.0", "192.168.1.5:8765", 8765, True),  # served on every interface: any address literal
    ("0.0.0.0", "192.168.1.5:8766", 8765, False),
    ("0.0.0.0", "evil.example:8765", 8765, False),
    ("labeller.lan", "labeller.lan:8765", 8765, True),
    ("labeller.lan", "labeller.lan:8766", 8765, False),
    ("labeller.lan", "other.lan:8765", 8765, False),
])
def test_which_host_names_this_server(bound, netloc, port, accepted):
    assert fs.names_this_server(netloc, bound, port) is accepted
