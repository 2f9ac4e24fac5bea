"""``jaxrl train|eval|export|label|...``: parses the command line into configs and calls :mod:`jaxrl.run`.

Every mistake in the input (unknown algorithm, env or setting, a value of the
wrong type, an invalid config, an existing run directory) is reported as one
line, ``jaxrl: error: ...``, with exit status 2, before anything is compiled
or written. JAX and the agents are imported only once they are needed, so
``--help`` and those errors come back quickly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_ENV = "CartPole-v1"
DEFAULT_TOTAL_STEPS = 500_000
DEFAULT_SEEDS = 1
DEFAULT_SEED = 0
DEFAULT_EVAL_EPISODES = 10
# Evaluation points of `jaxrl train` (env steps per seed); see benchmarks/README.md for its cost.
DEFAULT_EVAL_EVERY = 50_000
# What --log may name; metrics.csv is always written (resume, plots and reports read it).
LOG_TARGETS = ("csv", "jsonl", "tensorboard", "wandb", "mlflow")
USAGE_ERROR = 2
LABEL_TIMEOUT = 3  # a human-labelled run waited label_timeout seconds in vain
DIVERGED = 4  # a metric became NaN or infinite; the last good checkpoint stays the latest


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits on errors; we want one line from main().
    def error(self, message: str):
        raise UsageError(message)


def _count(text: str) -> int:
    """A non-negative integer; ``1e6`` and ``500_000`` are accepted too."""
    try:
        value = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not (math.isfinite(value) and value.is_integer()):
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        value = int(value)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _log_targets(text: str) -> tuple[str, ...]:
    """``csv,tensorboard`` -> ``("csv", "tensorboard")``, each one of :data:`LOG_TARGETS`."""
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in LOG_TARGETS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"{unknown[0]!r} is not a log target; expected a comma-separated list of "
            f"{', '.join(LOG_TARGETS)}"
        )
    return names


def _bounded(least: int, most: int):
    """An integer in [least, most] (``1e6`` accepted), for a flag's ``type``."""

    def parse(text: str) -> int:
        value = _count(text)
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"expected an integer in [{least}, {most}], got {text!r}")
        return value

    return parse


def _seconds(text: str) -> float:
    """A finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text!r}")
    return value


def _directory(text: str) -> Path:
    """A run directory; an empty one would mean the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a directory, got {text!r}")
    return Path(text)


MAX_SEED = 2**32 - 1
MAX_PORT = 65_535


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxrl", description="Functional reinforcement learning in JAX.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser(
        "train",
        help="train an agent and write a run directory",
        description="Train ALGO on an environment; writes config.json, metrics.csv, eval.csv, "
        "checkpoints/, summary.json and curve.png to the run directory.",
        epilog="jaxrl train ALGO --help also lists ALGO's settings (--set NAME=VALUE).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("algo", metavar="ALGO", help="algorithm, e.g. ppo")
    train.add_argument("--env", metavar="ID", help=f"environment id (default {DEFAULT_ENV})")
    train.add_argument(
        "--env-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument of the environment (JSON value or string; repeatable)",
    )
    train.add_argument(
        "--seeds",
        type=_count,
        metavar="N",
        help=f"independent seeds trained together (default {DEFAULT_SEEDS})",
    )
    train.add_argument(
        "--total-steps",
        type=_count,
        metavar="N",
        help=f"environment steps per seed (default {DEFAULT_TOTAL_STEPS})",
    )
    train.add_argument(
        "--seed", type=_bounded(0, MAX_SEED), metavar="S", help=f"PRNG seed of the run (default {DEFAULT_SEED})"
    )
    train.add_argument(
        "--out", type=_directory, metavar="DIR", help="run directory (default runs/<algo>-<env>-<time>)"
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="algorithm setting, a field of its Config, e.g. --set num_envs=16 --set hidden_sizes=64,64",
    )
    train.add_argument(
        "--labels",
        metavar="SOURCE",
        help="preference labeller of reward-modelling agents (rm-ppo): synthetic | human; "
        "shorthand for --set labels=SOURCE",
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    train.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    train.add_argument(
        "--eval-episodes",
        type=_count,
        metavar="N",
        help=f"evaluation episodes per seed at the end (default {DEFAULT_EVAL_EPISODES}; 0 skips)",
    )
    train.add_argument(
        "--chunk-iterations",
        type=_count,
        metavar="N",
        help="iterations per jitted chunk (default: about 32 chunks)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=_seconds,
        metavar="SECONDS",
        help="checkpoint at the first chunk boundary this long after the last checkpoint "
        "(default 10; 0: after every chunk); the last chunk always checkpoints",
    )
    train.add_argument(
        "--eval-every",
        type=_count,
        metavar="N",
        help=f"also evaluate every N env steps per seed, at the first chunk boundary at or after "
        f"each multiple, into eval.csv (default {DEFAULT_EVAL_EVERY}; 0: only at the end)",
    )
    train.add_argument(
        "--log",
        type=_log_targets,
        default=(),
        metavar="LIST",
        help=f"where metrics and evaluations go, comma-separated from {','.join(LOG_TARGETS)}: "
        "metrics.csv is always written; jsonl: metrics.jsonl; tensorboard: DIR/tensorboard; "
        "wandb: Weights & Biases ($WANDB_PROJECT, $WANDB_MODE); mlflow: MLflow "
        "($MLFLOW_TRACKING_URI). Each but csv and jsonl needs its extra, e.g. "
        "pip install 'jaxrl[wandb]'",
    )
    train.add_argument("--jsonl", action="store_true", help="deprecated: --log jsonl")
    train.add_argument("--tensorboard", action="store_true", help="deprecated: --log tensorboard")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="compile every program afresh instead of keeping compiled programs for relaunches "
        "in $JAXRL_COMPILATION_CACHE (default ~/.cache/jaxrl/xla; 'off' also opts out)",
    )
    scale = train.add_argument_group("scaling out (see README, 'Scaling out')")
    scale.add_argument(
        "--cpu-devices",
        type=_count,
        metavar="N",
        help="on the CPU, split the seeds over N host devices, each on its own core "
        "(default: one per CPU core; 1: every seed on one device)",
    )
    scale.add_argument(
        "--devices",
        type=_count,
        metavar="N",
        help="train data-parallel over the first N local devices (num_envs split, "
        "gradients all-reduced)",
    )
    scale.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process job (jax.distributed) and train data-parallel over the devices "
        "of all processes; settings from the flags below, else JAX_COORDINATOR_ADDRESS / "
        "JAX_NUM_PROCESSES / JAX_PROCESS_ID, else SLURM and JAX's other cluster detection",
    )
    scale.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    scale.add_argument("--num-processes", type=_count, metavar="N", help="processes in the job")
    scale.add_argument("--process-id", type=_count, metavar="I", help="this process, 0..N-1")
    scale.add_argument(
        "--distributed-timeout",
        type=_count,
        metavar="SECONDS",
        help="seconds to wait for the coordinator and for the other processes to start the run, "
        "and for them at each chunk boundary or without heartbeats before a process counts as "
        "dead (default: 300 and 100)",
    )
    asynchronous = train.add_argument_group("asynchronous IMPALA (see README, 'IMPALA')")
    asynchronous.add_argument(
        "--async",
        dest="async_",
        action="store_true",
        help="impala only: actor threads and a learner thread (env ids gymnasium:<id> and "
        "envpool:<task> step on the host); --devices N splits the learner's batch over N devices",
    )
    asynchronous.add_argument(
        "--actors", type=_count, metavar="N", help="actor threads with --async (default 2)"
    )
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "eval",
        help="evaluate the latest checkpoint of a run",
        description="Rebuild the agent of run DIR, restore its latest checkpoint, "
        "evaluate every seed and write DIR/eval.json.",
    )
    evaluate.add_argument("dir", metavar="DIR", type=_directory, help="run directory")
    evaluate.add_argument(
        "--episodes",
        type=_count,
        metavar="N",
        help="episodes per seed (default: the run's eval_episodes)",
    )
    evaluate.add_argument(
        "--video",
        type=Path,
        metavar="FILE",
        help="also record deterministic episodes of the policy into FILE (.gif, or .mp4 with "
        "imageio-ffmpeg installed), drawn from the env states: gymnax classic control, MinAtar, "
        "KeyDoor-v0 and DecisionProcess-v0 can be drawn",
    )
    evaluate.add_argument(
        "--video-episodes",
        type=_count,
        metavar="K",
        help="episodes in the video, one after another (default 1)",
    )
    evaluate.add_argument(
        "--video-seed", type=_count, metavar="I", help="which of the run's seeds to record (default 0)"
    )
    evaluate.add_argument("--force", action="store_true", help="overwrite an existing --video FILE")
    evaluate.set_defaults(handler=_eval)

    export = commands.add_parser(
        "export",
        help="write a run's policy as files that need only JAX (jaxrl.load_policy)",
        description="Write the deterministic policy at the latest checkpoint of run DIR into "
        "--out OUT: policy.json (spaces, normalisation statistics, network settings), "
        "act.jaxexport (the act function as StableHLO) and params.npz. "
        "jaxrl.load_policy(OUT) returns it as a jitted act(obs) -> action.",
    )
    export.add_argument("dir", metavar="DIR", type=_directory, help="run directory")
    export.add_argument(
        "--out", type=_directory, metavar="OUT", required=True, help="new or empty directory to write"
    )
    export.add_argument("--seed", type=_count, metavar="I", help="which of the run's seeds (default 0)")
    export.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    export.set_defaults(handler=_export)

    label = commands.add_parser(
        "label",
        help="label a run's preference queries in a local web page",
        description="Serve a page that shows the pending queries of run DIR "
        "(rm-ppo --labels human) as two clips side by side and appends the "
        "answers (left / right / equal / skip) to DIR/labels.jsonl.",
    )
    label.add_argument("dir", metavar="DIR", type=_directory, help="run directory")
    label.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    label.add_argument("--port", type=_bounded(0, MAX_PORT), default=8765, help="port (default 8765; 0: any free)")
    label.add_argument("--labeller", metavar="NAME", help="name stored with each label (default $USER)")
    label.set_defaults(handler=_label)

    config = commands.add_parser(
        "config",
        help="print an algorithm's settings and their defaults as --set flags",
        description="Print every setting of ALGO with its default as a --set flag, "
        "followed by its type and what it does.",
    )
    config.add_argument("algo", metavar="ALGO", help="algorithm, e.g. ppo")
    config.set_defaults(handler=_config)

    report = commands.add_parser(
        "report", help="aggregate statistics over runs: IQM with CIs, profiles, P(X > Y)"
    )
    report.set_defaults(handler=_report_runs)
    parser.train_parser = train
    parser.report_parser = report
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxrl`` command; returns the exit status."""
    if argv is None:  # the command itself, not a caller inside a Python process
        _quiet_xla_log()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    _add_settings_to_train_help(parser, argv)
    if argv[:1] == ["report"]:
        # Its options come with jaxrl.run (and so jax): imported only when asked for.
        from jaxrl.run import report

        report.add_arguments(parser.report_parser)
    if not getattr(warnings.formatwarning, "jaxrl", False):
        warnings.formatwarning = _jaxrl_warnings_in_one_line(warnings.formatwarning)
    try:
        args = parser.parse_args(argv)
        return args.handler(args)
    except UsageError as e:
        print(f"jaxrl: error: {_one_line(e)}", file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0


def _quiet_xla_log() -> None:
    """Hides XLA's C++ log lines, unless ``TF_CPP_MIN_LOG_LEVEL`` is set.

    jaxlib 0.9's XLA:CPU logs an error for every program loaded from the
    compilation cache, warning of a machine mismatch that "could lead to
    SIGILL", because the tuning features it adds when compiling
    (+prefer-no-gather, +prefer-no-scatter) are missing from the host's
    feature list: a relaunch of the main job printed ten of them. They are
    false alarms: JAX's cache key hashes the CPU's model and features, so a
    program compiled for another CPU is never loaded. Errors that matter reach
    the command as Python exceptions. ``TF_CPP_MIN_LOG_LEVEL=0`` shows the log."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _jaxrl_warnings_in_one_line(format_other):
    """A ``warnings.formatwarning`` that prints jaxrl's own warnings as
    ``jaxrl: warning: ...`` and leaves other libraries' to ``format_other``."""

    def format_warning(message, category, filename, lineno, line=None):
        if category.__module__.startswith("jaxrl."):
            return f"jaxrl: warning: {_one_line(message)}\n"
        return format_other(message, category, filename, lineno, line)

    format_warning.jaxrl = True
    return format_warning


# ---------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> int:
    if args.async_ or args.actors is not None:
        return _train_async(args)
    from jaxrl import run
    from jaxrl.compilation import use_persistent_cache
    from jaxrl.cpu import use_cpu_cores
    from jaxrl.run import preemption
    from jaxrl.run.checkpoint import DEFAULT_CHECKPOINT_SECONDS

    use_persistent_cache(not args.no_compile_cache)
    if args.cpu_devices is not None:
        _require_positive(cpu_devices=args.cpu_devices)
        use_cpu_cores(args.cpu_devices)
    if args.labels is not None:
        args.set = [*args.set, f"labels={args.labels}"]
    # jax.distributed must start before JAX computes anything (PRNGKey included).
    mesh = _check_input(_start_scaling_out, args)
    agent, key, train_args, sinks = _check_input(
        _prepare_resume if args.resume else _prepare_new_run, args
    )
    out_dir = args.out
    # Bound before data_parallel wraps the agent: the labeller is part of its step.
    agent, labeller = _with_host_labeller(agent, out_dir, train_args["seeds"])
    if mesh is not None:
        from jaxrl.distributed.data_parallel import data_parallel

        agent = _check_input(lambda _: data_parallel(agent, mesh), args)
    if getattr(args, "generated_out", False):
        print(f"run directory: {out_dir}", file=sys.stderr)
    resume_command = f"jaxrl train {agent.name} --out {out_dir} --resume"

    def train():
        stopping = preemption.stop_on_signals(resume_hint=f"continue with: {resume_command}")
        with stopping:
            return run.train(
                agent,
                key,
                train_args.pop("total_steps"),
                out_dir=out_dir,
                sinks=sinks,
                progress=not args.no_progress,
                checkpoint_every_seconds=_pick(args.checkpoint_every, DEFAULT_CHECKPOINT_SECONDS),
                resume=args.resume,
                force=args.force,
                compile_cache=not args.no_compile_cache,
                seed_devices=args.cpu_devices,
                **train_args,
            )

    return _report(
        train,
        out_dir,
        preempted=f"; continue with: {resume_command}",
        interrupted=f"continue with: {resume_command}",
        labels_timed_out=lambda: getattr(labeller, "timed_out", None),
    )


def _train_async(args: argparse.Namespace) -> int:
    """``jaxrl train ALGO --async``: threads, see :mod:`jaxrl.distributed.async_impala`."""
    _check_async_flags(args)
    env_id, total_steps, config, async_config, eval_every, sinks = _check_input(
        _prepare_async_run, args)
    import jax

    from jaxrl.distributed import async_impala
    from jaxrl.run import preemption
    from jaxrl.run.checkpoint import DEFAULT_CHECKPOINT_SECONDS

    print(f"run directory: {args.out}", file=sys.stderr)
    checkpoints = f"{args.out}/checkpoints"

    def train():
        with preemption.stop_on_signals(resume_hint=f"the last checkpoint is in {checkpoints}"):
            return async_impala.train(
                env_id, config, async_config, jax.random.PRNGKey(_pick(args.seed, DEFAULT_SEED)),
                total_steps, env_kwargs=_parse_env_kwargs(args.env_set),
                learner_devices=args.devices, out_dir=args.out, force=args.force,
                checkpoint_every_seconds=_pick(args.checkpoint_every, DEFAULT_CHECKPOINT_SECONDS),
                eval_episodes=_pick(args.eval_episodes, DEFAULT_EVAL_EPISODES),
                eval_every=eval_every, sinks=sinks,
                progress=not args.no_progress, compile_cache=not args.no_compile_cache,
            )

    return _report(
        train,
        args.out,
        preempted=f" in {checkpoints} (async runs are not resumable)",
        interrupted=f"the last checkpoint is in {checkpoints}",
    )


def _check_async_flags(args: argparse.Namespace) -> None:
    """UsageError for a flag ``--async`` cannot serve, before anything is imported."""
    if not args.async_:
        raise UsageError("--actors needs --async (actor threads exist only in async IMPALA)")
    _require_positive(actors=args.actors)
    if not _check_input(lambda a: _host_needs(a.algo).async_actors, args):
        raise UsageError(
            f"--async does not support ALGO other than {', '.join(_algorithms_with_async_actors())}"
        )
    unsupported = {"--resume": args.resume, "--distributed": args.distributed,
                   "--labels": args.labels is not None}
    for flag, given in unsupported.items():
        if given:
            raise UsageError("--async runs cannot be resumed" if flag == "--resume"
                             else f"--async does not support {flag}")
    if args.seeds not in (None, 1):
        raise UsageError(f"--async trains one seed (threads, not vmap), got --seeds {args.seeds}")


def _prepare_async_run(args: argparse.Namespace):
    """``(env_id, total_steps, agent config, AsyncConfig, eval_every, sinks)`` of an
    ``--async`` run, checked."""
    from jaxrl.distributed import async_impala
    from jaxrl.run import config_io, experiment, rundir

    env_id = _pick(args.env, DEFAULT_ENV)
    total_steps = _pick(args.total_steps, DEFAULT_TOTAL_STEPS)
    _require_positive(total_steps=total_steps, devices=args.devices)
    module = experiment.algorithm_module(args.algo)
    overrides = config_io.parse_overrides(module.Config, config_io.parse_assignments(args.set))
    config = experiment.make_config(
        module, experiment.with_total_steps(module, overrides, total_steps))
    async_config = async_impala.AsyncConfig(num_actors=_pick(args.actors, 2))
    async_impala.validate(config, async_config, total_steps, args.devices)
    eval_episodes = _pick(args.eval_episodes, DEFAULT_EVAL_EPISODES)
    eval_every = _eval_every(args.eval_every, DEFAULT_EVAL_EVERY, eval_episodes)
    if args.out is None:
        args.out = _default_out_dir(f"{args.algo}-async", env_id)
    rundir.check_request(args.out, {}, resume=False, force=args.force)
    sinks = _extra_sinks(args.out, _requested_logs(args))
    return env_id, total_steps, config, async_config, eval_every, sinks


def _report(train, out_dir: Path, *, preempted: str, interrupted: str,
            labels_timed_out=lambda: None) -> int:
    """Runs ``train()`` and prints the run directory and its summary, or what
    stopped it; returns the exit status. ``preempted`` and ``interrupted`` say
    how to go on after SIGTERM and Ctrl-C; ``labels_timed_out()`` is why a run
    waiting for people's labels gave up, if it did."""
    from jaxrl import run
    from jaxrl.run import coordination, preemption

    try:
        result = train()
    except run.RunDirError as e:
        print(f"jaxrl: error: {_one_line(e)}", file=sys.stderr)
        return USAGE_ERROR
    except run.TrainingDiverged as e:
        print(f"jaxrl: error: {_one_line(e)} (recorded in {out_dir / 'summary.json'})", file=sys.stderr)
        return DIVERGED
    except preemption.Preempted as e:
        print(f"jaxrl: {_one_line(e)}{preempted}", file=sys.stderr)
        return preemption.EXIT_PREEMPTED
    except coordination.DistributedError as e:
        print(f"jaxrl: error: {_one_line(e)}", file=sys.stderr)
        return USAGE_ERROR if isinstance(e, coordination.RunMismatchError) else preemption.EXIT_STUCK
    except KeyboardInterrupt:
        print(f"\ninterrupted; {interrupted}", file=sys.stderr)
        return 130
    except Exception:
        reason = labels_timed_out()
        if reason is None:
            raise
        print(f"jaxrl: stopped: {reason}", file=sys.stderr)
        return LABEL_TIMEOUT
    print(f"run directory: {out_dir}")
    _print_summary(result.summary)
    return 0


def _prepare_new_run(args: argparse.Namespace):
    from jaxrl.run import config_io, experiment, rundir
    from jaxrl.run.loop import check_run_arguments

    env_id = _pick(args.env, DEFAULT_ENV)
    total_steps = _pick(args.total_steps, DEFAULT_TOTAL_STEPS)
    seeds = _pick(args.seeds, DEFAULT_SEEDS)
    eval_episodes = _pick(args.eval_episodes, DEFAULT_EVAL_EPISODES)
    eval_every = _eval_every(args.eval_every, DEFAULT_EVAL_EVERY, eval_episodes)
    _require_positive(total_steps=total_steps, seeds=seeds, chunk_iterations=args.chunk_iterations)
    if args.out is None:
        args.out, args.generated_out = _default_out_dir(args.algo, env_id), True
    rundir.check_request(args.out, {}, resume=False, force=args.force)

    module = experiment.algorithm_module(args.algo)
    overrides = config_io.parse_overrides(module.Config, config_io.parse_assignments(args.set))
    values = experiment.with_total_steps(module, overrides, total_steps)
    env_kwargs = _parse_env_kwargs(args.env_set)
    agent = experiment.build_agent(args.algo, env_id, env_kwargs, values)
    check_run_arguments(
        agent, total_steps, seeds, eval_episodes, args.chunk_iterations,
        _pick(args.checkpoint_every, 0.0), eval_every=eval_every,
    )
    sinks = _extra_sinks(args.out, _requested_logs(args))

    import jax

    key = jax.random.PRNGKey(_pick(args.seed, DEFAULT_SEED))
    train_args = dict(
        total_steps=total_steps,
        seeds=seeds,
        chunk_iterations=args.chunk_iterations,
        env_id=env_id,
        env_kwargs=env_kwargs,
        eval_episodes=eval_episodes,
        eval_every=eval_every,
    )
    return agent, key, train_args, sinks


def _prepare_resume(args: argparse.Namespace):
    from jaxrl.run import config_io, experiment, rundir

    if args.out is None:
        raise UsageError("--resume needs --out DIR, the run to continue")
    rundir.check_mode(resume=True, force=args.force, flags=True)
    module = experiment.algorithm_module(rundir.load_config(args.out)["algorithm"])
    requested = {
        "algorithm": args.algo,
        "env_id": args.env,
        "env_kwargs": _parse_env_kwargs(args.env_set) if args.env_set else None,
        "seeds": args.seeds,
        "total_steps": args.total_steps,
        "chunk_iterations": args.chunk_iterations,
        "agent_config": config_io.parse_overrides(
            module.Config, config_io.parse_assignments(args.set)
        ),
    }
    if args.seed is not None:
        import jax

        requested["key"] = config_io.key_to_json(jax.random.PRNGKey(args.seed))
    rundir.check_request(
        args.out, requested, resume=True, force=False, partial=True,
        names={"key": f"seed={args.seed}"},
    )
    agent, saved = experiment.load_agent(args.out)
    # A resumed run keeps writing every output it had, to the same tracked runs.
    from jaxrl.run.sinks import sinks_of_run

    sinks = _extra_sinks(args.out, _requested_logs(args) | sinks_of_run(args.out))
    eval_episodes = _pick(args.eval_episodes, saved["eval_episodes"])
    # Runs saved before periodic evaluation existed have no eval_every.
    eval_every = _eval_every(args.eval_every, saved.get("eval_every"), eval_episodes)
    if args.eval_episodes is not None or args.eval_every is not None:
        from jaxrl.run.loop import check_run_arguments

        check_run_arguments(
            agent, saved["total_steps"], saved["seeds"], eval_episodes, eval_every=eval_every
        )
    train_args = dict(
        total_steps=saved["total_steps"],
        seeds=saved["seeds"],
        chunk_iterations=saved["chunk_iterations"],
        env_id=saved["env_id"],
        env_kwargs=saved["env_kwargs"],
        eval_episodes=eval_episodes,
        eval_every=eval_every,
    )
    return agent, config_io.key_from_json(saved["key"]), train_args, sinks


def _start_scaling_out(args: argparse.Namespace):
    """The mesh of ``--devices``/``--distributed`` (None: one device), after
    joining the multi-process job where asked."""
    multi = [args.coordinator, args.num_processes, args.process_id, args.distributed_timeout]
    if not args.distributed:
        if any(v is not None for v in multi):
            raise UsageError(
                "--coordinator, --num-processes, --process-id and --distributed-timeout "
                "need --distributed"
            )
        if args.devices is None:
            return None
        _require_positive(devices=args.devices)
        from jaxrl.distributed import make_mesh

        return make_mesh(args.devices)
    if args.devices is not None:
        raise UsageError(
            "--devices and --distributed exclude each other: --distributed uses every device "
            "of every process (limit them with CUDA_VISIBLE_DEVICES or JAX_LOCAL_DEVICE_IDS)"
        )
    from jaxrl.distributed import make_mesh, multihost

    timeouts = {}
    if args.distributed_timeout is not None:
        _require_positive(distributed_timeout=args.distributed_timeout)
        timeouts = dict(
            initialization_timeout=args.distributed_timeout,
            heartbeat_timeout=args.distributed_timeout,
        )
    spec = multihost.resolve(args.coordinator, args.num_processes, args.process_id, **timeouts)
    try:
        multihost.initialize(spec)
    except multihost.DistributedError as e:
        raise UsageError(str(e)) from e
    return make_mesh()


# ---------------------------------------------------------------- eval


def _eval(args: argparse.Namespace) -> int:
    from jaxrl import run

    def check(args):
        from jaxrl.run.loop import MAX_EVAL_EPISODES

        if args.episodes is not None and not 1 <= args.episodes <= MAX_EVAL_EPISODES:
            raise UsageError(
                f"--episodes must be an integer in [1, {MAX_EVAL_EPISODES}], got {args.episodes}"
            )
        if args.video is not None:
            from jaxrl.run import video

            video.check_request(args.dir, args.video, episodes=_pick(args.video_episodes, 1),
                                seed=_pick(args.video_seed, 0), force=args.force)
        elif args.video_episodes is not None or args.video_seed is not None or args.force:
            raise UsageError("--video-episodes, --video-seed and --force need --video FILE")
        _check_trained_run(args.dir)

    _check_input(check, args)
    try:
        result = run.evaluate_run(args.dir, args.episodes)
    except run.RunDirError as e:
        raise UsageError(_one_line(e)) from e
    print(
        f"{result['algorithm']} on {result['env_id']}, checkpoint at {result['env_steps']} env steps, "
        f"{result['eval_episodes']} episodes per seed"
    )
    for seed, value in enumerate(result["eval_return"]):
        print(f"  seed {seed}: {value:.6g}")
    print(f"  mean {result['eval_return_mean']:.6g} +- {result['eval_return_std']:.6g}")
    print(f"wrote {args.dir / 'eval.json'}")
    if args.video is not None:
        _record_video(args)
    return 0


def _record_video(args: argparse.Namespace) -> None:
    from jaxrl.run import RunDirError, video

    seed = _pick(args.video_seed, 0)
    try:
        recorded = video.record_video(args.dir, args.video, episodes=_pick(args.video_episodes, 1),
                                      seed=seed, force=args.force)
    except RunDirError as e:
        raise UsageError(_one_line(e)) from e
    returns = ", ".join(f"{r:.6g}" for r in recorded.returns)
    print(f"wrote {recorded.path}: seed {seed}, {len(recorded.returns)} episodes "
          f"(returns {returns}; lengths {', '.join(map(str, recorded.lengths))}), {recorded.frames} frames")


def _check_trained_run(run_dir: Path) -> None:
    """RunDirError unless ``run_dir`` is a run whose agent can be rebuilt and
    that has a checkpoint; compiles nothing."""
    from jaxrl import run
    from jaxrl.run import checkpoint, experiment, rundir

    experiment.load_agent(run_dir)
    if checkpoint.latest_iteration(run_dir / rundir.CHECKPOINTS) is None:
        raise run.RunDirError(f"{run_dir} has no checkpoint yet")


# ---------------------------------------------------------------- export


def _export(args: argparse.Namespace) -> int:
    from jaxrl import export
    from jaxrl.run import RunDirError

    def check(args):
        from jaxrl.run import policy, rundir

        _check_trained_run(args.dir)
        saved = rundir.load_config(args.dir)
        policy.check_seed(saved, _pick(args.seed, 0), "--seed")
        export.check_export_dir(args.out, force=args.force)

    _check_input(check, args)
    try:
        description = export.export_run(args.dir, args.out, seed=_pick(args.seed, 0), force=args.force)
    except RunDirError as e:
        raise UsageError(_one_line(e)) from e
    source = description["source"]
    print(f"exported {description['algorithm']} on {description['env_id']} (seed {source['seed']}, "
          f"checkpoint at {source['env_steps']} env steps) to {args.out}")
    print(f"load it with: jaxrl.load_policy({str(args.out)!r})")
    return 0


# ---------------------------------------------------------------- config


def _report_runs(args: argparse.Namespace) -> int:
    from jaxrl.run import report

    try:
        return report.main(args.runs, args.out, reps=args.reps, seed=args.seed, raw=args.raw)
    except (ValueError, ImportError) as e:  # a damaged or foreign run; rliable missing
        raise UsageError(_one_line(e)) from e


def _config(args: argparse.Namespace) -> int:
    from jaxrl import agents, config

    module = _check_input(lambda a: agents.get(a.algo), args)
    print(f"# settings of {args.algo} and their defaults (jaxrl train {args.algo} --set NAME=VALUE)")
    print(config.format_defaults(module.Config))
    return 0


def _add_settings_to_train_help(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """``jaxrl train ALGO --help`` lists ALGO's settings after the flags."""
    if len(argv) < 3 or argv[0] != "train" or not {"-h", "--help"} & set(argv):
        return
    algo = argv[1]
    from jaxrl import agents, config

    if algo.startswith("-") or algo not in agents.REGISTRY:
        return
    parser.train_parser.epilog = (
        f"settings of {algo} (--set NAME=VALUE; defaults shown):\n"
        + config.format_help(agents.get(algo).Config)
    )


# ---------------------------------------------------------------- label


def _label(args: argparse.Namespace) -> int:
    from jaxrl.feedback import server

    if not (args.dir / "config.json").is_file():
        raise UsageError(f"{args.dir} is not a run directory (no config.json)")
    try:
        server.serve(args.dir, args.host, args.port, args.labeller)
    except (OSError, ValueError) as e:  # ValueError: a port outside 0..65535
        raise UsageError(f"cannot serve on {args.host}:{args.port}: {e}") from e
    return 0


def _with_host_labeller(agent, out_dir: Path, seeds: int):
    """``(agent, labeller)``: as the agent registry declares it
    (:func:`jaxrl.agents.host_needs`), an agent that takes labels from people
    made again to ask a labeller waiting for answers in ``out_dir``; any other
    agent unchanged, with no labeller."""
    needs = _host_needs(agent.name, agent.config)
    if not needs.human_labels:
        return agent, None
    if seeds != 1:
        raise UsageError(f"--labels human trains one seed (people label one run), got --seeds {seeds}")
    from jaxrl.feedback import HumanLabeller

    labeller = HumanLabeller(out_dir, timeout=needs.label_timeout)
    return needs.with_labeller(agent, labeller), labeller


def _host_needs(algo: str, config: Any = None):
    """What ``algo`` needs on the host (ValueError for an unknown algorithm)."""
    from jaxrl import agents

    return agents.host_needs(algo, config)


def _algorithms_with_async_actors() -> list[str]:
    from jaxrl import agents

    return [name for name in agents.REGISTRY if agents.host_needs(name).async_actors]


# ---------------------------------------------------------------- helpers


def _check_input(prepare, args):
    """Runs ``prepare(args)``, turning input errors into a UsageError (one line, exit 2)."""
    try:
        return prepare(args)
    except (ValueError, TypeError) as e:
        raise UsageError(_one_line(e)) from e


def _require_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _parse_env_kwargs(assignments: Sequence[str]) -> dict[str, Any]:
    from jaxrl.run.config_io import parse_assignments

    kwargs = {}
    for key, text in parse_assignments(assignments).items():
        try:
            kwargs[key] = json.loads(text)
        except json.JSONDecodeError:
            kwargs[key] = text
    return kwargs


def _eval_every(flag: int | None, default: int | None, eval_episodes: int) -> int | None:
    """The run's eval_every: ``--eval-every`` (0: off), else ``default`` unless
    ``--eval-episodes 0`` switched evaluation off."""
    if flag is None:
        return default if eval_episodes else None
    return flag or None


def _requested_logs(args: argparse.Namespace) -> set[str]:
    """``--log`` targets with the deprecated ``--jsonl``/``--tensorboard`` added."""
    return set(args.log) | {name for name in ("jsonl", "tensorboard") if getattr(args, name)}


def _extra_sinks(out_dir: Path, targets: set[str]) -> list:
    """The sinks of ``--log`` targets beside metrics.csv (``csv``: metrics.csv itself);
    a ValueError naming the pip command where a target's package is missing."""
    from jaxrl.run.sinks import make_sinks

    try:
        return make_sinks(out_dir, sorted(targets - {"csv"}))
    except ImportError as e:
        raise ValueError(str(e)) from e


def _default_out_dir(algo: str, env_id: str) -> Path:
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "_", s)
    return Path("runs") / f"{safe(algo)}-{safe(env_id)}-{time.strftime('%Y%m%d-%H%M%S')}"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _print_summary(summary: dict[str, Any]) -> None:
    for name, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, list):
            value = (
                "[" + ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value) + "]"
            )
        print(f"{name}: {value}")


if __name__ == "__main__":
    sys.exit(main())
