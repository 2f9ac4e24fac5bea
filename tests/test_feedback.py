"""Feedback from people: the durable label store under kills, the queries a
human-labelled run writes and waits on, clips, the web page, the notebook
labeller, and `jaxrl train rm-ppo --labels human` end to end (stop on timeout,
label, resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest

from jaxrl import feedback
from jaxrl.feedback import label_store as ls
from jaxrl.feedback import queries as fq
from jaxrl.feedback import render

# ------------------------------------------------------------ label store


def test_label_store_keeps_every_completed_label_when_the_writer_is_killed(tmp_path):
    path = tmp_path / "labels.jsonl"
    writer = subprocess.Popen([sys.executable, "-c", f"""
from jaxrl.feedback.label_store import LabelStore
store = LabelStore({str(path)!r})
i = 0
while True:
    store.append(i, i + 1, ("left", "right", "equal", "skip")[i % 4], "writer")
    i += 1
"""])
    try:
        deadline = time.monotonic() + 60
        while (not path.exists() or path.read_bytes().count(b"\n") < 200) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    data = path.read_bytes()
    complete = data.count(b"\n")
    assert complete >= 200
    labels = ls.read_labels(path)
    # Every line that was completed is a label, in order; nothing else is.
    assert [x.left for x in labels] == list(range(complete))
    assert [x.choice for x in labels[:4]] == ["left", "right", "equal", "skip"]
    # A torn last line (the kill landed mid-write) is skipped; the next label
    # starts a new line after it, and its bytes stay in the file.
    torn = b'{"v":1,"left":99999,"right":'
    with open(path, "ab") as f:
        f.write(torn)
    resumed = ls.LabelStore(path)
    assert len(resumed) == complete
    resumed.append(-1, -2, "left", "again")
    assert [x.left for x in ls.read_labels(path)][-2:] == [complete - 1, -1]
    assert path.read_bytes().startswith(data + torn + b"\n")


# ---------------------------------------------------------------- queries


def _segments(ids, steps=6, obs_dim=4, done_at=None):
    K = len(ids)
    obs = np.random.default_rng(int(ids[0])).normal(size=(K, steps, obs_dim)).astype(np.float32)
    mask = np.ones((K, steps), np.float32)
    if done_at is not None:
        mask[:, done_at + 1:] = 0
    return SimpleNamespace(ids=np.asarray(ids, np.int32), obs=obs,
                           action=np.tile(np.arange(steps) % 2, (K, 1)).astype(np.int32), mask=mask)


def _write_config(run_dir, env_id="CartPole-v1"):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"env_id": env_id}))


def test_human_labeller_writes_the_due_queries_and_returns_the_answers(tmp_path):
    run_dir = tmp_path / "run"
    _write_config(run_dir)
    left, right = _segments([10, 11, 12], done_at=3), _segments([20, 21, 22])
    valid = np.array([True, True, False])
    store = ls.LabelStore(fq.labels_path(run_dir))

    def person():  # answers whatever is pending, as the web page would
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pending = feedback.pending_queries(run_dir)
            if pending:
                assert [q.key for q in pending] == [(10, 20), (11, 21)]
                assert pending[0].left.obs.shape == (4, 4)  # cut at the episode end
                store.append(10, 20, "right", "ana")
                store.append(11, 21, "skip", "ana")
                return
            time.sleep(0.01)

    thread = threading.Thread(target=person)
    thread.start()
    messages = []
    labeller = fq.HumanLabeller(run_dir, timeout=30, poll_seconds=0.01, say=messages.append)
    preference, answered = labeller(7, left, right, valid)
    thread.join()
    np.testing.assert_array_equal(preference, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(answered, [True, False, False])  # skip and not-due teach nothing
    assert fq.round_path(run_dir, 7).exists() and "iteration 7" in messages[0]
    assert feedback.pending_queries(run_dir) == []
    # Asked again (a resumed run replays the iteration): answered from the store, no wait.
    messages.clear()
    preference, answered = fq.HumanLabeller(run_dir, timeout=0.01, say=messages.append)(7, left, right, valid)
    np.testing.assert_array_equal(answered, [True, False, False])
    assert messages == []


def test_human_labeller_times_out_with_a_clear_message(tmp_path):
    run_dir = tmp_path / "run"
    labeller = fq.HumanLabeller(run_dir, timeout=0.05, poll_seconds=0.01, say=lambda _: None)
    with pytest.raises(fq.LabelTimeout, match=r"no labels for 1 of 1 queries of iteration 3.*jaxrl label"):
        labeller(3, _segments([1]), _segments([2]), np.array([True]))
    assert labeller.timed_out is not None
    assert [q.key for q in feedback.pending_queries(run_dir)] == [(1, 2)]


# ------------------------------------------------------------------ clips


@pytest.mark.parametrize("env_id, obs_dim, action", [
    ("CartPole-v1", 4, np.array([0, 1, 1])),
    ("Pendulum-v1", 3, np.array([[-2.0], [0.0], [1.5]])),
    ("Acrobot-v1", 6, np.array([0, 1, 2])),
    ("MountainCar-v0", 2, np.array([0, 1, 2])),
    ("SomethingElse-v0", 5, np.array([0, 0, 0])),
])
def test_clips_have_one_frame_per_step_and_show_the_state(env_id, obs_dim, action):
    obs = np.random.default_rng(0).uniform(-1, 1, size=(3, obs_dim)).astype(np.float32)
    if env_id == "Pendulum-v1":
        angles = np.array([0.0, 1.0, 2.0])
        obs = np.stack([np.cos(angles), np.sin(angles), np.zeros(3)], axis=1)
    frames = render.frames(env_id, obs, action)
    assert len(frames) == 3 and frames[0].size == (render.WIDTH, render.HEIGHT)
    pixels = [np.asarray(f) for f in frames]
    assert not np.array_equal(pixels[0], pixels[1])  # a different state, a different picture
    clip = render.gif(frames)
    assert clip.startswith(b"GIF89a")


def test_cartpole_frame_moves_the_cart_with_x():
    cart_row = round(114 * render.WIDTH / 240)  # the cart spans y 108..120 of the 240 x 160 design grid
    centre = lambda x: np.nonzero(np.asarray(render.cartpole_frame(np.array([x, 0, 0, 0]), 0))
                                  [cart_row].sum(-1) < 200)[0].mean()
    assert centre(-1.0) < centre(0.0) < centre(1.0)


# ------------------------------------------------------------- web page


@pytest.fixture
def labelled_run(tmp_path):
    run_dir = tmp_path / "run"
    _write_config(run_dir)
    fq.write_round(run_dir, 0, _segments([1, 2]), _segments([3, 4]), np.array([0, 1]))
    return run_dir


def test_label_page_serves_clips_and_appends_choices(labelled_run):
    server = feedback.make_server(labelled_run, "127.0.0.1", 0, labeller="ana")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = server.url
    assert url.startswith("http://127.0.0.1:")
    opener = urllib.request.build_opener(_NoRedirect)

    def post(**form):
        data = urllib.parse.urlencode(form).encode()
        try:
            return opener.open(url + "label", data=data, timeout=10).status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "/clip/1/3/left.gif" in page and "/clip/1/3/right.gif" in page
        for choice in ("left", "right", "equal", "skip"):
            assert f'value="{choice}"' in page
        clip = urllib.request.urlopen(url + "clip/1/3/right.gif", timeout=10)
        assert clip.headers["Content-Type"] == "image/gif" and clip.read().startswith(b"GIF89a")
        assert json.loads(urllib.request.urlopen(url + "pending", timeout=10).read()) == [
            {"iteration": 0, "left": 1, "right": 3}, {"iteration": 0, "left": 2, "right": 4}]

        assert post(left=1, right=3, choice="both") == 400
        assert post(left=1, right=3, choice="equal") == 303
        assert post(left=1, right=3, choice="left") == 409  # answered already
        assert post(left=7, right=8, choice="left") == 409  # never asked
        assert "/clip/2/4/left.gif" in urllib.request.urlopen(url, timeout=10).read().decode()
        assert post(left=2, right=4, choice="skip") == 303
        assert "No query is waiting" in urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    labels = ls.read_labels(fq.labels_path(labelled_run))
    assert [(x.left, x.right, x.choice, x.labeller) for x in labels] == [
        (1, 3, "equal", "ana"), (2, 4, "skip", "ana")]
    assert all(abs(x.time - time.time()) < 60 for x in labels)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_notebook_labeller_shows_both_clips_and_appends(labelled_run):
    labeller = feedback.notebook_labeller(labelled_run, labeller="nb", display=False)
    html = labeller._repr_html_()
    # One animation of both clips, in sync; no internal segment ids; the guide and progress.
    assert html.count("data:image/gif;base64,") == 1 and "segment 1" not in html
    assert "pole upright" in html and "2 pending" in html and "starting" in html
    labeller.answer("right")
    assert labeller.current.key == (2, 4)
    with pytest.raises(ValueError, match="choice"):
        labeller.answer("up")
    labeller.answer("left")
    assert labeller.current is None and labeller.answer("left") is None
    labeller.undo()  # takes back (2, 4): it is pending again, and the store only grew
    assert labeller.current.key == (2, 4) and "taken back" in labeller.html()
    labeller.answer("equal")
    records = [(x.left, x.choice, x.labeller) for x in ls.read_labels(fq.labels_path(labelled_run))]
    assert records == [(1, "right", "nb"), (2, "left", "nb"), (2, "undo", "nb"), (2, "equal", "nb")]
    assert {k: x.choice for k, x in feedback.answers(labelled_run).items()} == {(1, 3): "right", (2, 4): "equal"}


def test_notebook_widget_buttons_label(labelled_run):
    pytest.importorskip("ipywidgets")
    labeller = feedback.notebook_labeller(labelled_run, display=False)
    view, buttons = labeller.widget.children
    assert [b.description for b in buttons.children] == [
        "left", "equal", "right", "skip", "undo", "slow motion", "refresh"]
    buttons.children[1].click()  # equal
    assert "Saved: equal" in view.value
    buttons.children[4].click()  # undo
    assert "taken back" in view.value and labeller.current.key == (1, 3)
    assert [(x.left, x.choice) for x in ls.read_labels(fq.labels_path(labelled_run))] == [(1, "equal"), (1, "undo")]


# ------------------------------------------------------- undo and run status


def test_an_undo_reopens_a_query_until_the_run_has_used_its_answer(labelled_run):
    store = ls.LabelStore(fq.labels_path(labelled_run))
    store.append(1, 3, "left", "ana")
    store.append(2, 4, "right", "ana")
    fq.undo_answer(labelled_run, store, 2, 4, "ana")
    assert [q.key for q in feedback.pending_queries(labelled_run)] == [(2, 4)]
    with pytest.raises(KeyError, match="no answer to undo"):
        fq.undo_answer(labelled_run, store, 2, 4, "ana")
    with pytest.raises(ValueError, match="retract"):
        store.append(2, 4, "undo", "ana")  # an undo is written by retract only
    store.append(2, 4, "equal", "ana")
    # The run takes round 0's answers: from then on they cannot be undone.
    labeller = fq.HumanLabeller(labelled_run, timeout=1, say=lambda _: None)
    preference, answered = labeller(0, _segments([1, 2]), _segments([3, 4]), np.array([True, True]))
    assert preference.tolist() == [1.0, 0.5] and answered.all()
    assert feedback.run_status(labelled_run).consumed_iteration == 0
    with pytest.raises(fq.AlreadyUsed, match="can no longer be undone"):
        fq.undo_answer(labelled_run, store, 1, 3, "ana")
    server = feedback.make_server(labelled_run, "127.0.0.1", 0, labeller="ana")
    try:
        with pytest.raises(fq.AlreadyUsed):
            server.undo(2, 4)
    finally:
        server.server_close()
    # Four records, none removed; the standing answers are the last ones given.
    assert [x.choice for x in ls.read_labels(fq.labels_path(labelled_run))] == ["left", "right", "undo", "equal"]


def test_run_status_follows_the_run(labelled_run, monkeypatch):
    from jaxrl.feedback import status

    config = {"env_id": "CartPole-v1", "agent_config": {"label_budget": 8}, "iterations": 6,
              "total_steps": 192, "env_steps_per_step": 32}
    (labelled_run / "config.json").write_text(json.dumps(config))
    assert status.run_status(labelled_run).state == "starting"
    writer = status.StatusWriter(labelled_run)
    writer.update(state="waiting", iteration=2, waiting_for=1)
    run = status.run_status(labelled_run)
    assert (run.state, run.iteration, run.env_steps, run.label_budget, run.waiting_for) == ("waiting", 2, 96, 8, 1)
    assert "Waiting for labels: 1 to answer in round 1" in status.run_text(run, 1, labelled_run)
    assert "Labels received" in status.run_text(run, 1, labelled_run, pending=0)
    later = time.time() + status.GONE_AFTER_SECONDS + 1
    assert status.run_status(labelled_run, now=later).state == "gone"  # no heartbeat: crashed or stopped
    (labelled_run / "summary.json").write_text(json.dumps({"status": "completed"}))
    assert status.run_status(labelled_run, now=later).state == "finished"
    writer.close()


def test_two_pages_get_different_queries_and_a_poll_wakes_on_an_answer(labelled_run):
    server = feedback.make_server(labelled_run, "127.0.0.1", 0)
    try:
        a, b = server.state("tab-a"), server.state("tab-b")
        assert (a["query"]["left"], b["query"]["left"]) == (1, 2)
        assert server.state("tab-a")["query"]["left"] == 1  # a page keeps its query
        assert a["progress"]["pending"] == 2 and a["run"]["state"] == "starting"
        woke = []
        poll = threading.Thread(target=lambda: (server.wait_for_change(a["version"], 10), woke.append(time.monotonic())))
        poll.start()
        time.sleep(0.2)
        answered = time.monotonic()
        server.answer(1, 3, "left")
        poll.join()
        assert woke and woke[0] - answered < 1.0
        assert server.state("tab-a")["query"]["left"] == 2  # the last one, shown to both now
    finally:
        server.server_close()


# -------------------------------------------------------------------- CLI


def test_cli_label_needs_a_run_directory(tmp_path, capsys):
    from jaxrl.cli import main

    assert main(["label", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_cli_human_labels_train_one_seed(tmp_path, capsys):
    from jaxrl.cli import main

    status = main(["train", "rm-ppo", "--labels", "human", "--seeds", "2", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "one seed" in err[0]
    assert not (tmp_path / "r").exists()


TINY = ["--set", "num_envs=2", "--set", "rollout_len=16", "--set", "segment_len=8",
        "--set", "num_candidates=8", "--set", "queries_per_iteration=4", "--set", "label_budget=12",
        "--set", "label_schedule=uniform", "--set", "hidden_sizes=16", "--set", "reward_hidden_sizes=16",
        "--set", "num_epochs=1", "--set", "num_minibatches=1", "--total-steps", "192",
        "--chunk-iterations", "2", "--eval-episodes", "2", "--no-progress"]


class _Person:
    """Answers every pending query of ``run_dir`` (the longer segment wins:
    on CartPole the one that did not fall), like someone at the web page."""

    def __init__(self, run_dir):
        self.run_dir, self.stop = run_dir, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self.stop.is_set():
            pending = feedback.pending_queries(self.run_dir) if self.run_dir.exists() else []
            if pending:
                store = ls.LabelStore(fq.labels_path(self.run_dir))
                for q in pending:
                    store.append(q.left.id, q.right.id,
                                 "left" if len(q.left.obs) >= len(q.right.obs) else "right", "person")
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@pytest.mark.slow
def test_cli_human_run_stops_on_timeout_and_resumes_with_the_stored_labels(tmp_path, capsys):
    from jaxrl.cli import main

    out = tmp_path / "run"
    # Nobody labels: the run writes its first queries, waits label_timeout, stops.
    status = main(["train", "rm-ppo", "--env", "CartPole-v1", "--labels", "human",
                   "--set", "label_timeout=1", "--out", str(out), *TINY])
    err = capsys.readouterr().err
    assert status == 3, err
    assert "no labels for 2 of 2 queries of iteration 0" in err and "--resume" in err
    first = feedback.pending_queries(out)
    assert len(first) == 2 and (out / "queries" / "round-00000000.npz").exists()

    # Someone labels while the run is down, then the run is resumed with a
    # person answering the later rounds as they come.
    store = ls.LabelStore(fq.labels_path(out))
    for q in first:
        store.append(q.left.id, q.right.id, "left", "person")
    with _Person(out):
        status = main(["train", "rm-ppo", "--out", str(out), "--resume", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "iteration 0)" not in captured.err  # round 0 came from the store, no wait
    assert "iteration 1)" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == "rm-ppo" and summary["iterations"] == 6
    labels = ls.read_labels(fq.labels_path(out))
    assert len(labels) == 12 and feedback.pending_queries(out) == []
    assert len({(x.left, x.right) for x in labels}) == 12
    # The metrics count the labels the run trained with: 2 a round, 12 by the end.
    rows = (out / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("labels")
    assert float(rows[-1].split(",")[column]) == 12
