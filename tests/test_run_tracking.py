"""Tracking sinks (TensorBoard, Weights & Biases offline, MLflow on a local
file store): what they log, and that a resumed run continues the same tracked
run. One interrupted and resumed run feeds all three."""

from __future__ import annotations

import json
import struct

import fake_agent
from stop_sink import StopAt
import jax
import numpy as np
import pytest

from jaxrl import run
from jaxrl.run import rundir
from jaxrl.run.sinks import MlflowSink, TensorBoardSink, WandbSink, read_csv

CONFIG = fake_agent.Config(num_envs=2, rollout_len=4, eval_max_steps=8)
SEEDS = 2
CHUNK = 2
ITERATIONS = 7


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """``(run directory, MLflow tracking URI)`` of a run stopped once and resumed."""
    root = tmp_path_factory.mktemp("tracked")
    out, uri = root / "run", f"file:{root / 'mlruns'}"
    agent = fake_agent.make_cartpole(CONFIG)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_DIR", str(root))
        env.setenv("WANDB_SILENT", "true")
        env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps file stores behind this

        def train(*extra):
            sinks = [TensorBoardSink(out / "tensorboard"), WandbSink(out), MlflowSink(out, uri)]
            return run.train(
                agent, jax.random.PRNGKey(1), ITERATIONS * agent.env_steps_per_step,
                seeds=SEEDS, out_dir=out, sinks=[*sinks, *extra], chunk_iterations=CHUNK,
                eval_episodes=2, eval_every=3 * agent.env_steps_per_step, progress=False,
                checkpoint_every_seconds=0,
            )

        with pytest.raises(KeyboardInterrupt):
            train(StopAt(1, evaluation=True))
        # run.resume finds the run's sinks itself: TensorBoard, and W&B and MLflow (in
        # the store the run started in, whatever $MLFLOW_TRACKING_URI says) by tracking.json.
        env.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://elsewhere")
        with fake_agent.registered():
            run.resume(out, progress=False, checkpoint_every_seconds=0)
    return out, uri


def test_tracking_ids_are_stored_in_the_run(tracked):
    out, uri = tracked
    ids = rundir.read_tracking(out)
    assert set(ids) == {"wandb", "mlflow"} and ids["mlflow"]["tracking_uri"] == uri


def test_mlflow_logs_one_run_without_repeating_steps(tracked):
    from mlflow.tracking import MlflowClient

    out, uri = tracked
    client = MlflowClient(uri)
    run_id = rundir.read_tracking(out)["mlflow"]["run_id"]
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.params["agent_config.num_envs"] == "2"
    assert logged.data.params["algorithm"] == "fake"
    metrics = read_csv(out / "metrics.csv")
    evaluations = read_csv(out / "eval.csv")
    history = client.get_metric_history(run_id, "train/episode_return")
    assert [m.step for m in history] == sorted(set(metrics["env_steps"].tolist()))
    seed_1 = client.get_metric_history(run_id, "train/seed_1/episode_return")
    np.testing.assert_allclose(
        [m.value for m in seed_1], metrics["episode_return"][metrics["seed"] == 1], rtol=1e-6
    )
    points = client.get_metric_history(run_id, "eval/eval_return")
    assert [m.step for m in points] == sorted(set(evaluations["env_steps"].tolist()))
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"summary.json", "curve.png", "eval.csv"} <= artifacts
    experiments = client.search_runs([logged.info.experiment_id])
    assert len(experiments) == 1


def test_wandb_offline_run_is_continued(tracked):
    out, _ = tracked
    run_id = rundir.read_tracking(out)["wandb"]
    logs = sorted(out.parent.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(logs) == 2  # the first session and the resumed one, under one W&B run id
    records = [r for path in logs for r in wandb_records(path)]
    config = {}
    for record in records:
        if record.WhichOneof("record_type") == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    assert config["algorithm"] == "fake" and config["eval_every"] > 0
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json)
         for item in r.history.item}
        for r in records if r.WhichOneof("record_type") == "history"
    ]
    steps = {row["_step"] for row in history if "train/episode_return" in row}
    assert steps == set(read_csv(out / "metrics.csv")["env_steps"].tolist())
    evaluations = {row["_step"] for row in history if "eval/eval_return" in row}
    assert evaluations == set(read_csv(out / "eval.csv")["env_steps"].tolist())
    assert any(row.get("curve/_type") == "image-file" for row in history)
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            summary.update({
                item.key or "/".join(item.nested_key): json.loads(item.value_json)
                for item in record.summary.update
            })
    saved = json.loads((out / "summary.json").read_text())
    assert summary["best_eval_return"] == saved["best_eval_return"]


def test_tensorboard_holds_config_evaluations_and_plot(tracked):
    out, _ = tracked
    events = [e for path in sorted((out / "tensorboard" / "seed_0").iterdir())
              for e in tensorboard_events(path)]
    tags = {(v.tag, e.step) for e in events for v in e.summary.value}
    eval_steps = sorted(set(read_csv(out / "eval.csv")["env_steps"].tolist()))
    assert {step for tag, step in tags if tag == "eval/eval_return"} == set(eval_steps)
    names = {tag for tag, _ in tags}
    assert {"episode_return", "curve"} <= names
    assert any(name.startswith("config") for name in names)
    assert any(name.startswith("summary") for name in names)


def test_missing_extra_names_the_pip_command(monkeypatch):
    import sys

    from jaxrl.run import sinks

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now fails
    with pytest.raises(ImportError, match=r"pip install 'jaxrl\[wandb\]'"):
        sinks.WandbSink(None)


def wandb_records(path):
    """The protobuf records of a W&B transaction log (LevelDB-style 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2

    data, block, position, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if (length, kind) == (0, 0):
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def tensorboard_events(path):
    """The events of a TensorBoard event file (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    data, position = path.read_bytes(), 0
    while position + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[position : position + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[position + 12 : position + 12 + length])
        position += 12 + length + 4
        yield event
