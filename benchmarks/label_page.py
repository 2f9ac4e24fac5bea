"""The labelling page in headless Chromium: click-to-next-query times, and
the README's screenshots.

Runs tests/test_label_page_browser.py (a person labels a real
``jaxrl train rm-ppo --env CartPole-v1 --labels human`` run by clicks and
keys) with its screenshots and timings written to
``results/label_page/`` (query.png, waiting.png, finished.png,
timings.json), then prints the times from an answer to the next query drawn
on the page:

- within a round: the next query of the same round (served from the page's
  preloaded sprite sheets);
- across rounds: the run uses the round's answers, trains an iteration and
  writes the next round, which the page's long-poll picks up; "round shown
  after written" is the part of that from the round file's write to the
  page drawing it.

    python benchmarks/label_page.py

Needs Debian's ``chromium`` and ``pip install playwright`` (the ``test`` extra).
Writes ``results/label_page.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "benchmarks" / "results" / "label_page"


def _row(name: str, values: list[float]) -> dict:
    if not values:
        return {"what": name, "n": 0}
    return {"what": name, "n": len(values), "median_ms": float(np.median(values)),
            "max_ms": float(np.max(values))}


def main() -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JAXRL_LABEL_PAGE_SHOTS": str(SHOTS)}
    test = "tests/test_label_page_browser.py::test_a_person_labels_a_real_run_in_the_browser"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-s", "-p", "no:cacheprovider", test],
                   cwd=ROOT, env=env, check=True)
    timings = json.loads((SHOTS / "timings.json").read_text())
    within = [t["ms"] for t in timings if t["kind"] == "within round"]
    across = [t for t in timings if t["kind"] == "across rounds"]
    rows = [_row("click to next query, within a round", within),
            _row("click to next query, across rounds", [t["ms"] for t in across]),
            _row("round shown after its file was written", [t["round_age_ms"] for t in across])]
    print(f"{'':44s} {'n':>3s} {'median ms':>10s} {'max ms':>8s}")
    for row in rows:
        if row["n"]:
            print(f"{row['what']:44s} {row['n']:3d} {row['median_ms']:10.0f} {row['max_ms']:8.0f}")
    result = {"rows": rows, "machine": platform.platform(), "cpus": os.cpu_count(),
              "screenshots": [str(p.relative_to(ROOT)) for p in sorted(SHOTS.glob("*.png"))]}
    (ROOT / "benchmarks" / "results" / "label_page.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
