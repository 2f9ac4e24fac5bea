"""Smoke test of benchmarks/ppo_throughput.py: the smallest path runs and
writes a JSON report with the expected keys (numbers are not checked)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "ppo_throughput.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("ppo_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rollout_len_rule():
    bench = _load_script()
    assert bench.rollout_len_for(500_000, 2048) == 128
    assert bench.rollout_len_for(8_192, 64) == 128
    assert bench.rollout_len_for(8_192, 256) == 32
    assert bench.rollout_len_for(8_192, 2048) == 8
    assert bench.iterations_for(500_000, 512) == 977


def test_ppo_throughput_smoke(tmp_path):
    bench = _load_script()
    rc = bench.main([
        "--quick", "--no-compile-subprocess", "--no-plot",
        "--envs", "CartPole-v1", "--num-envs", "4", "--seed-counts", "1",
        "--budget-steps", "1024", "--classic-steps", "1024", "--repeats", "1", "--out", str(tmp_path),
    ])
    assert rc == 0
    report = json.loads((tmp_path / "ppo_throughput.json").read_text())
    assert set(report) >= {"meta", "classic", "train", "rollout", "compile", "rejax", "targets"}
    assert report["rejax"]["available"] is False
    cell = report["train"][0]
    for key in ("env", "num_envs", "rollout_len", "seeds", "iterations", "steps_per_s", "run_s_best", "compile_s"):
        assert key in cell
    assert cell["steps_per_s"] > 0
    assert report["rollout"] and report["rollout"][0]["steps_per_s"] > 0
    verdicts = {t["name"]: t["verdict"] for t in report["targets"]}
    assert all(v in ("PASS", "FAIL", "SKIP") for v in verdicts.values())
