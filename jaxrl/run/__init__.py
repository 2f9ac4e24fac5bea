"""The host side: chunked training loop, progress bar, metric sinks,
checkpoints, run directories and plots.

::

    from jaxrl import run
    result = run.train(agent, jax.random.PRNGKey(0), 500_000, seeds=4, out_dir="runs/cp")
    result.summary["eval_return_mean"]
    run.resume("runs/cp")              # continue an interrupted run, bit for bit
    run.evaluate_run("runs/cp")        # re-evaluate the latest checkpoint -> eval.json
"""

from jaxrl.run.checkpoint import Checkpointer
from jaxrl.run.evaluation import evaluate, evaluation_keys
from jaxrl.run.experiment import build_agent, evaluate_run, load_agent, resume
from jaxrl.run.checkpoint import CheckpointError, DamagedCheckpointWarning
from jaxrl.run.loop import ChunkPlan, TrainingDiverged, TrainResult, plan_chunks, train
from jaxrl.run.plots import plot_curves
from jaxrl.run.report import write_report
from jaxrl.run.rundir import RunDirError
from jaxrl.run.writer import RunWriter
from jaxrl.run.sinks import (
    CSVSink,
    JSONLSink,
    MetricsChunk,
    MlflowSink,
    Sink,
    TensorBoardSink,
    WandbSink,
    read_csv,
)

__all__ = [
    "CSVSink",
    "CheckpointError",
    "DamagedCheckpointWarning",
    "TrainingDiverged",
    "Checkpointer",
    "ChunkPlan",
    "JSONLSink",
    "MetricsChunk",
    "MlflowSink",
    "RunDirError",
    "RunWriter",
    "Sink",
    "TensorBoardSink",
    "WandbSink",
    "TrainResult",
    "build_agent",
    "evaluate",
    "evaluate_run",
    "evaluation_keys",
    "load_agent",
    "plan_chunks",
    "plot_curves",
    "read_csv",
    "resume",
    "train",
    "write_report",
]
