"""The labelling page in a real browser (headless Chromium driven by
Playwright): a person labels a real `jaxrl train rm-ppo --labels human` run
by clicks and keys, undoes an answer, and sees the run resume and finish;
two tabs get different queries; errors are pages with a way back.

Screenshots of a query, the waiting page and the finished page, and the
click-to-next-query timings, are written to the directory the test prints
(``$JAXRL_LABEL_PAGE_SHOTS`` if set: benchmarks/label_page.py refreshes the
copy under benchmarks/results/label_page/ that way).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from jaxrl import feedback
from jaxrl.feedback import label_store as ls
from jaxrl.feedback import queries as fq

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("no chromium (apt-get install chromium chromium-driver)", allow_module_level=True)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# 6 iterations of 32 env steps; 8 labels due uniformly: rounds of 2, 1, 1, 2, 1, 1 queries.
RUN = ["--set", "num_envs=2", "--set", "rollout_len=16", "--set", "segment_len=12",
       "--set", "num_candidates=8", "--set", "queries_per_iteration=4", "--set", "label_budget=8",
       "--set", "label_schedule=uniform", "--set", "hidden_sizes=16", "--set", "reward_hidden_sizes=16",
       "--set", "num_epochs=1", "--set", "num_minibatches=1", "--set", "label_timeout=120",
       "--total-steps", "192", "--chunk-iterations", "1", "--eval-episodes", "1", "--no-progress"]
STEP_SECONDS = 60  # the longest a step of the run may take (the first includes compilation)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("JAXRL_LABEL_PAGE_SHOTS") or tmp_path / "label-page")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nlabelling page screenshots and timings: {folder}")
    return folder


def _serve(run_dir, labeller="ana"):
    server = feedback.make_server(run_dir, "127.0.0.1", 0, labeller=labeller)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _stop(server):
    server.shutdown()
    server.server_close()


def _shown(page) -> str:
    return page.evaluate("document.body.dataset.shownQuery || ''")


def _wait_for_query(page, other_than: str = "", timeout: float = STEP_SECONDS) -> str:
    """The key ("left-right") of the next query the page plays."""
    page.wait_for_function(
        "([other]) => (document.body.dataset.shownQuery || '') !== '' "
        "&& document.body.dataset.shownQuery !== other", arg=[other_than], timeout=timeout * 1000)
    return _shown(page)


def _training_between_rounds(page) -> bool:
    """Whether the page shows no query while the run trains (it does, for
    a moment, after each round)."""
    try:
        page.wait_for_function("() => !document.body.dataset.shownQuery && "
                               "document.body.dataset.runState === 'training'", timeout=3000)
    except playwright.TimeoutError:
        return False
    page.wait_for_timeout(100)
    return True


def test_a_person_labels_a_real_run_in_the_browser(browser, tmp_path, shots):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "jaxrl", "train", "rm-ppo", "--env", "CartPole-v1", "--labels", "human",
               "--out", str(run_dir), *RUN]
    log = open(tmp_path / "run.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = None
    try:
        deadline = time.monotonic() + STEP_SECONDS
        while not (run_dir / "config.json").exists():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.05)
        server = _serve(run_dir)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)

        given: dict[str, str] = {}  # query key -> the answer that stands
        records: list[tuple[str, str]] = []  # every line we expect in labels.jsonl, in order
        ways = [("key", "ArrowLeft", "left"), ("click", "right", "right"), ("key", "ArrowUp", "equal"),
                ("click", "left", "left"), ("key", "ArrowRight", "right")]
        key, answered, undone, waiting_shot, marked_shot = "", 0, False, False, False
        while True:
            page.wait_for_function(
                "() => document.body.dataset.runState === 'finished' || "
                "((document.body.dataset.shownQuery || '') !== '')", timeout=STEP_SECONDS * 1000)
            if page.evaluate("document.body.dataset.runState") == "finished":
                break
            key = _shown(page)
            ends = page.evaluate("document.getElementById('end-left').textContent + "
                                 "document.getElementById('end-right').textContent")
            if answered == 0 or (ends and not marked_shot):  # the README's query: one with an end marked
                page.wait_for_selector(".end-marker.shown" if ends else "canvas", timeout=5000)
                page.wait_for_timeout(150)
                page.screenshot(path=str(shots / "query.png"))
                marked_shot = bool(ends)
            how, what, choice = ways[answered % len(ways)]
            if how == "key":
                page.keyboard.press(what)
            else:
                page.click(f"button[data-choice={what}]")
            records.append((key, choice))
            given[key] = choice
            answered += 1
            if not undone:  # the run still waits for round 0's second query: take this one back
                page.wait_for_function("() => !document.getElementById('undo').disabled")
                page.keyboard.press("u")
                page.wait_for_function(f"() => document.body.dataset.shownQuery === '{key}'")
                records.append((key, "undo"))
                del given[key]
                undone = True
                continue
            page.wait_for_function(f"() => document.body.dataset.shownQuery !== '{key}' || "
                                   "document.body.dataset.runState === 'finished'",
                                   timeout=STEP_SECONDS * 1000)
            if not waiting_shot and not _shown(page) and _training_between_rounds(page):
                page.screenshot(path=str(shots / "waiting.png"))
                waiting_shot = True
        page.wait_for_selector("#finished-view:not([hidden])")
        page.screenshot(path=str(shots / "finished.png"))
        # Finished: the page stops asking the server.
        asked = []
        page.on("request", lambda r: asked.append(r.url) if "/api/state" in r.url else None)
        page.wait_for_timeout(1500)
        assert asked == []
        assert "finished" in page.inner_text("#run-state") and "completed" in page.inner_text("#run-text")
        # The run has used every answer: the last can no longer be taken back.
        assert page.is_disabled("#undo") and "can no longer be undone" in page.inner_text("#undo-text")
        assert process.wait(timeout=STEP_SECONDS) == 0, (tmp_path / "run.log").read_text()
        timings = page.evaluate("window.labelTimings")
        assert errors == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        if server is not None:
            _stop(server)

    assert undone and waiting_shot
    # labels.jsonl holds exactly the answers given, the undo honoured.
    labels = ls.read_labels(fq.labels_path(run_dir))
    assert [(f"{x.left}-{x.right}", x.choice) for x in labels] == records
    assert all(x.labeller == "ana" for x in labels)
    standing = fq.answers(run_dir)
    assert {f"{a}-{b}": x.choice for (a, b), x in standing.items()} == given and len(given) == 8
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["iterations"] == 6
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert float(rows[-1].split(",")[rows[0].split(",").index("labels")]) == 8
    (shots / "timings.json").write_text(json.dumps(timings, indent=1))
    for kind in ("within round", "across rounds"):
        ms = [t["ms"] for t in timings if t["kind"] == kind]
        print(f"click to next query, {kind}: {len(ms)} times, median {np.median(ms):.0f} ms, "
              f"max {max(ms):.0f} ms" if ms else f"click to next query, {kind}: none")


# ----------------------------------------------------------- no run needed


def _segments(ids, steps=6, done_at=None):
    K = len(ids)
    obs = np.cumsum(np.random.default_rng(int(ids[0])).normal(0, 0.05, size=(K, steps, 4)), axis=1)
    mask = np.ones((K, steps), np.float32)
    if done_at is not None:
        mask[:, done_at + 1:] = 0
        obs[:, done_at, 2] = 0.25  # past the 12° the pole may lean: it fell
    return SimpleNamespace(ids=np.asarray(ids, np.int32), obs=obs.astype(np.float32),
                           action=np.tile(np.arange(steps) % 2, (K, 1)).astype(np.int32), mask=mask)


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"env_id": "CartPole-v1", "agent_config": {"label_budget": 4}}))
    fq.write_round(run, 0, _segments([1, 2, 3]), _segments([4, 5, 6], done_at=2), np.array([0, 1, 2]))
    return run


def test_two_tabs_get_different_queries_and_a_taken_one_is_replaced(browser, run_dir):
    server = _serve(run_dir)
    try:
        context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        first, second = context.new_page(), context.new_page()
        # The second tab hears nothing from the server but the answers to its own clicks, so it
        # still shows a query after the first tab has answered it.
        held = []
        second.route("**/api/state**", lambda route: held.append(route))
        first.goto(server.url)
        a = _wait_for_query(first)
        second.goto(server.url)
        b = _wait_for_query(second)
        assert a != b
        # The pole-fell marker is shown once the shorter clip ends.
        first.wait_for_selector("#end-right.shown", timeout=5000)
        assert "pole fell" in first.inner_text("#end-right")
        # Nothing is cut off at phone width.
        assert first.evaluate("document.documentElement.scrollWidth") <= 390
        # The second tab answers; then both are shown the last query; the first answers it,
        # and the second's answer to it is replaced by the waiting page, not an error.
        second.click("button[data-choice=left]")
        c = _wait_for_query(second, other_than=b)
        assert c not in (a, b)
        first.keyboard.press("ArrowRight")
        assert _wait_for_query(first, other_than=a) == c
        assert first.is_visible("#shared-note")  # the second tab shows it too
        first.keyboard.press(" ")  # skip
        second.click("button[data-choice=equal]")
        second.wait_for_selector("#waiting-view:not([hidden])")
        assert "answered elsewhere" in second.inner_text("#toast")
        first.wait_for_selector("#waiting-view:not([hidden])")
        context.close()
    finally:
        _stop(server)
    labels = [(x.left, x.right, x.choice) for x in ls.read_labels(fq.labels_path(run_dir))]
    assert sorted(labels) == [(1, 4, "right"), (2, 5, "left"), (3, 6, "skip")]


def test_errors_are_pages_with_a_way_back(browser, run_dir):
    server = _serve(run_dir)
    try:
        page = browser.new_page()
        response = page.goto(server.url + "no/such/page")
        assert response.status == 404 and "404 Not Found" in page.inner_text("body")
        page.click("a.back")
        assert _wait_for_query(page)
    finally:
        _stop(server)
