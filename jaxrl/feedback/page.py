"""The HTML, style and script of the labelling page (served by
:mod:`jaxrl.feedback.server`), and its styled error page.

The page works without its script (a form per query, answered with a
reload), and with it plays the two clips in sync on canvases from sprite
sheets, answers by button or key without a reload, undoes, and follows the
run through a long-poll of ``GET /api/state``.
"""

from __future__ import annotations

import html
import json

KEYS = {"left": ("←", "ArrowLeft"), "equal": ("↑", "ArrowUp"), "right": ("→", "ArrowRight"),
        "skip": ("space", " ")}
BUTTONS = (("left", "Left is better"), ("equal", "Equally good"), ("right", "Right is better"),
           ("skip", "Can't tell (skip)"))

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#f6f6f4}
header{background:#fff;border-bottom:1px solid #ddd;padding:.6em 1em}
header h1{font-size:1.1em;margin:0;word-break:break-all}
main{max-width:1040px;margin:0 auto;padding:.8em 1em 2em}
.status{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center;font-size:.95em}
.badge{display:inline-block;padding:.15em .6em;border-radius:1em;font-weight:600;color:#fff;background:#777}
.badge.training{background:#2f6fb3}.badge.waiting{background:#c77d00}.badge.finished{background:#2e8540}
.badge.gone{background:#b3261e}.badge.starting{background:#777}
.meter{height:.5em;background:#ddd;border-radius:.25em;overflow:hidden;flex:1 1 12em;min-width:8em}
.meter>div{height:100%;background:#2e8540;width:0}
.note{background:#fff8e1;border:1px solid #f0d98c;padding:.5em .8em;border-radius:.4em;margin:.6em 0}
.note.error{background:#fdecea;border-color:#f5b5ae}
.damaged{color:#a00}
.task{background:#fff;border:1px solid #ddd;border-radius:.5em;padding:.6em .9em;margin:.8em 0}
.task p{margin:.2em 0}.legend{margin:.3em 0 0;padding-left:1.2em;color:#555;font-size:.9em}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em}
figure{margin:0;background:#fff;border:1px solid #ccc;border-radius:.5em;overflow:hidden;position:relative}
figure canvas,figure img.still{display:block;width:100%;height:auto;aspect-ratio:3/2}
figcaption{padding:.35em .6em;font-size:.9em;display:flex;justify-content:space-between;gap:.5em}
.steps{height:.35em;background:#eee;position:relative}
.steps>div{position:absolute;left:0;top:0;bottom:0;background:#2f6fb3}
.steps.ended>div{background:#b3261e}
.end-marker{position:absolute;left:0;right:0;top:0;padding:.35em .6em;color:#fff;font-weight:600;
  background:#b3261e;display:none}
.end-marker.time-limit,.end-marker.episode-end{background:#2f6fb3}
.end-marker.shown{display:block}
.controls{display:flex;flex-wrap:wrap;gap:.5em;align-items:center;margin:.7em 0}
.controls input[type=range]{flex:1 1 10em}
.answers{display:grid;grid-template-columns:repeat(4,1fr);gap:.5em;margin:.6em 0}
button{font:inherit;padding:.65em .5em;border-radius:.45em;border:1px solid #999;background:#fff;cursor:pointer}
button:hover{background:#eef3fb}button:disabled{opacity:.5;cursor:default}
.answers button{font-size:1.05em;font-weight:600}
kbd{font:inherit;font-size:.8em;border:1px solid #bbb;border-bottom-width:2px;border-radius:.3em;
  padding:0 .35em;margin-left:.3em;background:#f4f4f4;color:#333;white-space:nowrap}
.undo{display:flex;flex-wrap:wrap;gap:.6em;align-items:center;font-size:.92em;color:#555}
.waiting-panel{background:#fff;border:1px dashed #bbb;border-radius:.5em;padding:1.4em;text-align:center}
.finished-panel{background:#e8f5e9;border:1px solid #a5d6a7;border-radius:.5em;padding:1.4em;text-align:center}
.toast{position:fixed;left:50%;bottom:1em;transform:translateX(-50%);background:#333;color:#fff;
  padding:.5em 1em;border-radius:.4em;opacity:0;transition:opacity .3s;pointer-events:none}
.toast.shown{opacity:.92}
[hidden]{display:none!important}
a.back{display:inline-block;margin-top:1em;font-weight:600}
@media (max-width:700px){
  .pair{grid-template-columns:1fr}
  .answers{grid-template-columns:1fr 1fr}
  main{padding:.5em .6em 2em}
}
"""


def _escape(value) -> str:
    return html.escape(str(value), quote=True)


def document(title: str, body: str, script: str = "") -> str:
    """A whole page: viewport set, so it fits a phone's width."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_escape(title)}</title><style>{STYLE}</style></head>
<body>{body}{script}</body></html>
"""


def error_page(status: int, phrase: str, message: str) -> str:
    """The page a browser gets for a refused request: what went wrong, and
    the way back to labelling."""
    body = f"""<header><h1>jaxrl label</h1></header><main>
<div class="note error"><p><strong>{status} {_escape(phrase)}</strong></p><p>{_escape(message)}</p></div>
<p>Nothing was changed by this request; every saved label is kept.</p>
<a class="back" href="/">← Back to labelling</a></main>"""
    return document(f"{status} {phrase}", body)


def label_page(title: str, state: dict, guide: dict, notice: str | None = None) -> str:
    """The labelling page, its first state drawn on the server (readable
    without the script) and handed to the script as JSON."""
    query = state["query"]
    notes = "".join(f"<li>{_escape(line)}</li>" for line in state["damage"])
    damage = (f'<div class="note damaged"><p>Damaged files, skipped (nothing was removed):</p><ul>{notes}</ul></div>'
              if notes else "")
    legend = "".join(f"<li>{_escape(item)}</li>" for item in guide["legend"])
    buttons = "".join(
        f'<button type="submit" name="choice" value="{value}" data-choice="{value}">{text}'
        f'<kbd>{KEYS[value][0]}</kbd></button>' for value, text in BUTTONS)
    progress = state["progress"]
    if query is None:
        clip_html = ""
        form_fields = ""
    else:
        stills = "".join(
            f'<noscript><img class="still" src="/clip/{query["left"]}/{query["right"]}/{side}.gif" '
            f'alt="{side} segment"></noscript>' for side in ("left", "right"))
        clip_html = stills
        form_fields = (f'<input type="hidden" name="left" value="{query["left"]}">'
                       f'<input type="hidden" name="right" value="{query["right"]}">')
    body = f"""<header><h1>{_escape(title)}</h1></header>
<main>
<section class="status" id="status">
  <span class="badge {state['run']['state']}" id="run-state">{_escape(state['run']['state'])}</span>
  <span id="run-text">{_escape(state['run']['text'])}</span>
</section>
<section class="status">
  <span id="progress-text">{_escape(progress['text'])}</span>
  <div class="meter" title="labels given of the budget"><div id="progress-bar"></div></div>
  <span id="counts">{progress['pending']} pending, {progress['labelled']} labelled</span>
</section>
<div class="note" id="notice"{'' if notice else ' hidden'}>{_escape(notice or '')}</div>
{damage}
<section class="task">
  <p><strong>Which segment does the task better?</strong> {_escape(guide['better'])}</p>
  <ul class="legend">{legend}</ul>
</section>
<section id="query-view"{'' if query else ' hidden'}>
  <p class="note" id="shared-note" hidden>Another page is showing this query too (every other waiting
  query is taken); if it answers first, you get the next one.</p>
  <div class="pair">
    <figure><canvas id="clip-left" width="480" height="320"></canvas>
      <div class="end-marker" id="end-left"></div><div class="steps" id="steps-left"><div></div></div>
      <figcaption><strong>Left</strong><span id="caption-left"></span></figcaption></figure>
    <figure><canvas id="clip-right" width="480" height="320"></canvas>
      <div class="end-marker" id="end-right"></div><div class="steps" id="steps-right"><div></div></div>
      <figcaption><strong>Right</strong><span id="caption-right"></span></figcaption></figure>
  </div>
  {clip_html}
  <div class="controls">
    <button type="button" id="play">Pause<kbd>P</kbd></button>
    <button type="button" id="slow">Slow motion<kbd>S</kbd></button>
    <input type="range" id="scrub" min="0" max="0" value="0" aria-label="step">
    <span id="step-text"></span>
  </div>
  <form method="post" action="/label" id="answer-form">{form_fields}
    <div class="answers">{buttons}</div>
  </form>
</section>
<section id="waiting-view" class="waiting-panel"{' hidden' if query else ''}>
  <p id="waiting-text">No query is waiting. New queries appear here by themselves as soon as the run asks.</p>
</section>
<section id="finished-view" class="finished-panel" hidden>
  <p><strong>The run has finished.</strong> Every label you gave was used. Thank you! You can close this page.</p>
</section>
<div class="undo">
  <button type="button" id="undo" disabled>Undo last answer<kbd>U</kbd></button>
  <span id="undo-text"></span>
</div>
</main>
<div class="toast" id="toast"></div>"""
    script = (f'<script id="initial-state" type="application/json">{_json_for_script(state)}</script>'
              f"<script>{SCRIPT}</script>")
    return document(title, body, script)


def _json_for_script(value) -> str:
    # "</" would end the script element early.
    return json.dumps(value).replace("</", "<\\/")


SCRIPT = r"""
(() => {
"use strict";
const $ = id => document.getElementById(id);
let state = JSON.parse($("initial-state").textContent);
const client = state.client;
const FPS = 20, HOLD_MS = 1000, W = 480, H = 320, COLUMNS = 10;
const undoStack = [];
const timings = window.labelTimings = [];
let clickedAt = null, clickedIteration = null, busy = false, polling = false, stopped = false;
let player = null;

function toast(text) {
  const t = $("toast"); t.textContent = text; t.classList.add("shown");
  clearTimeout(toast.timer); toast.timer = setTimeout(() => t.classList.remove("shown"), 2500);
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image(); img.onload = () => resolve(img); img.onerror = reject; img.src = url;
  });
}

const preloaded = new Map();
function sprite(url) {
  if (!preloaded.has(url)) preloaded.set(url, loadImage(url));
  return preloaded.get(url);
}

// Two clips on one clock: both start together, the shorter holds its last
// frame (its end marked) until the longer ends, then both hold a moment.
class Player {
  constructor(query, images) {
    this.query = query; this.images = images;
    this.steps = Math.max(query.sides.left.steps, query.sides.right.steps, 1);
    this.speed = 1; this.playing = true; this.t = 0; this.last = null; this.fresh = true;
    $("scrub").max = String(this.steps - 1);
    this.frame = this.frame.bind(this);
    requestAnimationFrame(this.frame);
  }
  stepAt() { return Math.min(Math.floor(this.t * FPS / 1000), this.steps - 1); }
  frame(now) {
    if (player !== this) return;
    if (this.playing && this.last !== null) {
      this.t += (now - this.last) * this.speed;
      const loop = this.steps * 1000 / FPS + HOLD_MS;
      if (this.t >= loop) this.t = 0;
    }
    this.last = now;
    this.draw(this.stepAt());
    requestAnimationFrame(this.frame);
  }
  draw(step) {
    for (const side of ["left", "right"]) {
      const info = this.query.sides[side], img = this.images[side];
      const k = Math.min(step, info.steps - 1);
      const ctx = $("clip-" + side).getContext("2d");
      ctx.drawImage(img, (k % COLUMNS) * W, Math.floor(k / COLUMNS) * H, W, H, 0, 0, W, H);
      const over = step >= info.steps - 1;
      $("end-" + side).classList.toggle("shown", over && info.end !== null);
      $("steps-" + side).firstElementChild.style.width = (100 * (k + 1) / info.length) + "%";
      if (over && info.steps < this.steps) ctx.fillStyle = "rgba(255,255,255,0.35)", ctx.fillRect(0, 0, W, H);
    }
    if (document.activeElement !== $("scrub")) $("scrub").value = String(step);
    $("step-text").textContent = `step ${step + 1} of ${this.steps}` + (this.speed < 1 ? " (slow)" : "");
    if (this.fresh && clickedAt !== null) {  // the first frame of the query after an answer
      timings.push({kind: this.query.iteration === clickedIteration ? "within round" : "across rounds",
                    ms: performance.now() - clickedAt,
                    round_age_ms: Date.now() - this.query.round_written * 1000});
      clickedAt = null;
    }
    if (this.fresh) {
      this.fresh = false;
      document.body.dataset.shownQuery = this.query.left + "-" + this.query.right;
    }
  }
  toggle() { this.playing = !this.playing; this.last = null; showPlay(); }
}

function showPlay() {
  $("play").firstChild.textContent = player && !player.playing ? "Play" : "Pause";
  $("slow").firstChild.textContent = player && player.speed < 1 ? "Normal speed" : "Slow motion";
}

function describeSide(side, info) {
  const end = $("end-" + side);
  end.className = "end-marker" + (info.end ? " " + info.end.kind.replace(" ", "-") : "");
  end.textContent = info.end ? info.end.text : "";
  $("steps-" + side).classList.toggle("ended", !!(info.end && info.end.kind === "termination"));
  $("caption-" + side).textContent = `${info.steps} of ${info.length} steps` +
    (info.end ? ` · ${info.end.kind}` : " · still running at the end");
}

async function showQuery(query) {
  const key = query ? query.left + "-" + query.right : null;
  const current = player ? player.query.left + "-" + player.query.right : null;
  $("query-view").hidden = !query; $("waiting-view").hidden = !!query || state.run.state === "finished";
  $("shared-note").hidden = !(query && query.shared);
  if (!query) { player = null; document.body.dataset.shownQuery = ""; return; }
  if (key === current) return;
  const form = $("answer-form");
  form.dataset.left = query.left; form.dataset.right = query.right;
  let images;
  try {
    images = {left: await sprite(query.sides.left.sprite), right: await sprite(query.sides.right.sprite)};
  } catch (e) {  // forget the failed load, so the next state tries again
    preloaded.delete(query.sides.left.sprite); preloaded.delete(query.sides.right.sprite);
    toast("A clip could not be loaded; retrying."); return;
  }
  if (state.query === null || state.query.left !== query.left || state.query.right !== query.right) return;
  describeSide("left", query.sides.left); describeSide("right", query.sides.right);
  const speed = player ? player.speed : 1;
  player = new Player(query, images); player.speed = speed; showPlay();
  document.body.dataset.shownQuery = key;
}

function showState(next) {
  state = next;
  const run = state.run;
  $("run-state").className = "badge " + run.state; $("run-state").textContent = run.state;
  $("run-text").textContent = run.text;
  $("progress-text").textContent = state.progress.text;
  $("counts").textContent = `${state.progress.pending} pending, ${state.progress.labelled} labelled`;
  $("progress-bar").style.width = state.progress.fraction * 100 + "%";
  $("finished-view").hidden = run.state !== "finished";
  $("waiting-text").textContent = state.waiting_text;
  document.body.dataset.runState = run.state;
  for (const q of state.upcoming) { sprite(q.left); sprite(q.right); }
  showUndo();
  showQuery(state.query);
  if (run.state === "finished") stopped = true;
}

function showUndo() {
  const last = undoStack[undoStack.length - 1];
  const button = $("undo");
  if (!last) { button.disabled = true; $("undo-text").textContent = ""; return; }
  const used = last.iteration <= state.run.consumed_iteration;
  button.disabled = used;
  $("undo-text").textContent = used
    ? `Your answer "${last.choice}" has been used by the run and can no longer be undone.`
    : `Last answer: "${last.choice}". You can take it back until the run uses it.`;
}

async function post(path, body) {
  const response = await fetch(path + "?client=" + encodeURIComponent(client), {
    method: "POST", headers: {"Content-Type": "application/json", "Accept": "application/json"},
    body: JSON.stringify(body)});
  let data = null;
  try { data = await response.json(); } catch (e) { data = {error: `the server answered ${response.status}`}; }
  return [response.status, data];
}

async function answer(choice) {
  const query = state.query;
  if (!query || busy || $("query-view").hidden) return;
  busy = true; clickedAt = performance.now(); clickedIteration = query.iteration;
  try {
    const [status, data] = await post("/label", {left: query.left, right: query.right, choice});
    if (status === 200) {
      undoStack.push({left: query.left, right: query.right, iteration: query.iteration, choice});
    } else if (status === 409) {
      toast("That query was answered elsewhere; here is the next one.");
    } else {
      clickedAt = null; toast("Not saved: " + (data.error || status));
    }
    if (data.state) showState(data.state);
  } catch (e) {
    clickedAt = null; toast("Not saved: the labelling server cannot be reached.");
  } finally { busy = false; }
}

async function undo() {
  const last = undoStack[undoStack.length - 1];
  if (!last || busy) return;
  busy = true;
  try {
    const [status, data] = await post("/undo", {left: last.left, right: last.right});
    if (status === 200) { undoStack.pop(); toast(`Answer "${last.choice}" taken back.`); }
    else { toast(data.error || "Could not undo"); if (status === 409) last.iteration = -Infinity; }
    if (data.state) showState(data.state);
  } catch (e) { toast("The labelling server cannot be reached."); }
  finally { busy = false; showUndo(); }
}

async function poll() {
  if (polling) return;
  polling = true;
  while (!stopped) {
    try {
      const response = await fetch(`/api/state?client=${encodeURIComponent(client)}&since=${state.version}`,
                                   {headers: {"Accept": "application/json"}});
      if (response.ok) showState(await response.json());
      else await new Promise(r => setTimeout(r, 2000));
    } catch (e) {
      $("run-text").textContent = "The labelling server cannot be reached; retrying.";
      await new Promise(r => setTimeout(r, 2000));
    }
  }
  polling = false;
}

$("answer-form").addEventListener("submit", event => {
  event.preventDefault();
  if (event.submitter) { event.submitter.blur(); answer(event.submitter.dataset.choice); }
});
$("undo").addEventListener("click", undo);
$("play").addEventListener("click", () => player && player.toggle());
$("slow").addEventListener("click", () => { if (player) { player.speed = player.speed < 1 ? 1 : 0.25; showPlay(); } });
$("scrub").addEventListener("input", event => {
  if (!player) return;
  player.playing = false; player.t = Number(event.target.value) * 1000 / FPS; showPlay();
});
const KEYS = {ArrowLeft: "left", ArrowRight: "right", ArrowUp: "equal", " ": "skip"};
document.addEventListener("keydown", event => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.tagName === "INPUT") return;
  if (KEYS[event.key]) { event.preventDefault(); answer(KEYS[event.key]); }
  else if (event.key === "u" || event.key === "U") { event.preventDefault(); undo(); }
  else if (event.key === "p" || event.key === "P") { if (player) player.toggle(); }
  else if (event.key === "s" || event.key === "S") $("slow").click();
});
// A focused button would also take space as a click: the key means skip only.
document.addEventListener("keyup", event => { if (event.key === " ") event.preventDefault(); });
window.addEventListener("pagehide", () => navigator.sendBeacon("/api/leave?client=" + encodeURIComponent(client)));
showState(state);
poll();
})();
"""
