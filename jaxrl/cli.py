"""``jaxrl train|eval|label``: parses the command line into configs and calls :mod:`jaxrl.run`.

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
        description="Train ALGO on an environment; writes config.json, metrics.csv, "
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
    train.add_argument("--jsonl", action="store_true", help="also write metrics.jsonl")
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard events (needs tensorboardX)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    scale = train.add_argument_group("scaling out (see README, 'Scaling out')")
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
        help="impala only: actor threads and a learner thread (env ids gymnasium:<id> step "
        "Gymnasium on the host); --devices N splits the learner's batch over N devices",
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
    evaluate.set_defaults(handler=_eval)

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
    parser.train_parser = train
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxrl`` command; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    _add_settings_to_train_help(parser, argv)
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
    from jaxrl.distributed import multihost
    from jaxrl.run import preemption
    from jaxrl.run.checkpoint import DEFAULT_CHECKPOINT_SECONDS

    if args.labels is not None:
        args.set = [*args.set, f"labels={args.labels}"]
    # jax.distributed must start before JAX computes anything (PRNGKey included).
    mesh = _check_input(_start_scaling_out, args)
    agent, key, train_args, sinks = _check_input(
        _prepare_resume if args.resume else _prepare_new_run, args
    )
    if mesh is not None:
        from jaxrl.distributed.data_parallel import data_parallel

        agent = _check_input(lambda _: data_parallel(agent, mesh), args)
    out_dir = args.out
    labelling, labeller = _human_labelling(agent, out_dir, train_args["seeds"]), None
    if getattr(args, "generated_out", False):
        print(f"run directory: {out_dir}", file=sys.stderr)
    resume_command = f"jaxrl train {agent.name} --out {out_dir} --resume"
    stopping = preemption.stop_on_signals(resume_hint=f"continue with: {resume_command}")
    try:
        with labelling as labeller, stopping:
            result = run.train(
                agent,
                key,
                train_args.pop("total_steps"),
                out_dir=out_dir,
                sinks=sinks,
                progress=not args.no_progress,
                checkpoint_every_seconds=_pick(args.checkpoint_every, DEFAULT_CHECKPOINT_SECONDS),
                resume=args.resume,
                force=args.force,
                **train_args,
            )
    except run.RunDirError as e:
        print(f"jaxrl: error: {_one_line(e)}", file=sys.stderr)
        return USAGE_ERROR
    except run.TrainingDiverged as e:
        print(f"jaxrl: error: {_one_line(e)} (recorded in {out_dir / 'summary.json'})", file=sys.stderr)
        return DIVERGED
    except preemption.Preempted as e:
        print(f"jaxrl: {_one_line(e)}; continue with: {resume_command}", file=sys.stderr)
        return preemption.EXIT_PREEMPTED
    except multihost.DistributedError as e:
        print(f"jaxrl: error: {_one_line(e)}", file=sys.stderr)
        return USAGE_ERROR if isinstance(e, multihost.RunMismatchError) else preemption.EXIT_STUCK
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; continue with: jaxrl train {agent.name} --out {out_dir} --resume",
            file=sys.stderr,
        )
        return 130
    except Exception:
        if labeller is None or labeller.timed_out is None:
            raise
        print(f"jaxrl: stopped: {labeller.timed_out}", file=sys.stderr)
        return LABEL_TIMEOUT
    print(f"run directory: {out_dir}")
    _print_summary(result.summary)
    return 0


def _train_async(args: argparse.Namespace) -> int:
    """``jaxrl train impala --async``: threads, see :mod:`jaxrl.distributed.async_impala`."""
    if not args.async_:
        raise UsageError("--actors needs --async (actor threads exist only in async IMPALA)")
    _require_positive(actors=args.actors)
    unsupported = {"ALGO other than impala": args.algo != "impala",
                   "--resume": args.resume, "--distributed": args.distributed,
                   "--labels": args.labels is not None, "--jsonl": args.jsonl,
                   "--tensorboard": args.tensorboard}
    for flag, given in unsupported.items():
        if given:
            raise UsageError("--async runs cannot be resumed" if flag == "--resume"
                             else f"--async does not support {flag}")
    if args.seeds not in (None, 1):
        raise UsageError(f"--async trains one seed (threads, not vmap), got --seeds {args.seeds}")

    def prepare(args):
        from jaxrl.distributed import async_impala
        from jaxrl.run import config_io, experiment, rundir

        env_id = _pick(args.env, DEFAULT_ENV)
        total_steps = _pick(args.total_steps, DEFAULT_TOTAL_STEPS)
        _require_positive(total_steps=total_steps, devices=args.devices)
        module = experiment.algorithm_module("impala")
        overrides = config_io.parse_overrides(module.Config, config_io.parse_assignments(args.set))
        config = experiment.make_config(
            module, experiment.with_total_steps(module, overrides, total_steps))
        actors = _pick(args.actors, 2)
        async_config = async_impala.AsyncConfig(num_actors=actors)
        async_impala.validate(config, async_config, total_steps, args.devices)
        if args.out is None:
            args.out = _default_out_dir("impala-async", env_id)
        rundir.check_new_run(args.out, force=args.force)
        return env_id, total_steps, config, async_config

    env_id, total_steps, config, async_config = _check_input(prepare, args)
    import jax

    from jaxrl.distributed import async_impala
    from jaxrl.run.checkpoint import DEFAULT_CHECKPOINT_SECONDS
    from jaxrl.run.loop import TrainingDiverged

    from jaxrl.run import preemption

    print(f"run directory: {args.out}", file=sys.stderr)
    try:
        with preemption.stop_on_signals(resume_hint=f"the last checkpoint is in {args.out}/checkpoints"):
            result = async_impala.train(
                env_id, config, async_config, jax.random.PRNGKey(_pick(args.seed, DEFAULT_SEED)),
                total_steps, env_kwargs=_parse_env_kwargs(args.env_set),
                learner_devices=args.devices, out_dir=args.out, force=args.force,
                checkpoint_every_seconds=_pick(args.checkpoint_every, DEFAULT_CHECKPOINT_SECONDS),
                eval_episodes=_pick(args.eval_episodes, DEFAULT_EVAL_EPISODES),
                progress=not args.no_progress,
            )
    except preemption.Preempted as e:
        print(f"jaxrl: {_one_line(e)} in {args.out}/checkpoints (async runs are not resumable)",
              file=sys.stderr)
        return preemption.EXIT_PREEMPTED
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last checkpoint is in {args.out}/checkpoints", file=sys.stderr)
        return 130
    except TrainingDiverged as e:
        print(f"jaxrl: error: {_one_line(e)} (recorded in {args.out / 'summary.json'})", file=sys.stderr)
        return DIVERGED
    print(f"run directory: {args.out}")
    _print_summary(result.summary)
    return 0


def _prepare_new_run(args: argparse.Namespace):
    from jaxrl.run import config_io, experiment, rundir
    from jaxrl.run.loop import check_run_arguments

    env_id = _pick(args.env, DEFAULT_ENV)
    total_steps = _pick(args.total_steps, DEFAULT_TOTAL_STEPS)
    seeds = _pick(args.seeds, DEFAULT_SEEDS)
    eval_episodes = _pick(args.eval_episodes, DEFAULT_EVAL_EPISODES)
    _require_positive(total_steps=total_steps, seeds=seeds, chunk_iterations=args.chunk_iterations)
    if args.out is None:
        args.out, args.generated_out = _default_out_dir(args.algo, env_id), True
    rundir.check_new_run(args.out, force=args.force)

    module = experiment.algorithm_module(args.algo)
    overrides = config_io.parse_overrides(module.Config, config_io.parse_assignments(args.set))
    values = experiment.with_total_steps(module, overrides, total_steps)
    env_kwargs = _parse_env_kwargs(args.env_set)
    agent = experiment.build_agent(args.algo, env_id, env_kwargs, values)
    check_run_arguments(
        agent, total_steps, seeds, eval_episodes, args.chunk_iterations,
        _pick(args.checkpoint_every, 0.0),
    )
    sinks = _extra_sinks(args.out, jsonl=args.jsonl, tensorboard=args.tensorboard)

    import jax

    key = jax.random.PRNGKey(_pick(args.seed, DEFAULT_SEED))
    train_args = dict(
        total_steps=total_steps,
        seeds=seeds,
        chunk_iterations=args.chunk_iterations,
        env_id=env_id,
        env_kwargs=env_kwargs,
        eval_episodes=eval_episodes,
    )
    return agent, key, train_args, sinks


def _prepare_resume(args: argparse.Namespace):
    from jaxrl.run import config_io, experiment, rundir

    if args.out is None:
        raise UsageError("--resume needs --out DIR, the run to continue")
    if args.force:
        raise UsageError(
            "--resume and --force contradict each other: resume continues a run, force replaces it"
        )
    saved = rundir.load_config(args.out)
    module = experiment.algorithm_module(saved["algorithm"])
    overrides = config_io.parse_overrides(module.Config, config_io.parse_assignments(args.set))
    given = {
        "algorithm": args.algo,
        "env_id": args.env,
        "env_kwargs": _parse_env_kwargs(args.env_set) if args.env_set else None,
        "seeds": args.seeds,
        "total_steps": args.total_steps,
        "chunk_iterations": args.chunk_iterations,
    }
    conflicts = [
        f"{name}={value!r} (saved {saved[name]!r})"
        for name, value in given.items()
        if value is not None and _as_json(value) != _as_json(saved[name])
    ]
    if args.seed is not None:
        import jax

        if config_io.key_to_json(jax.random.PRNGKey(args.seed)) != saved["key"]:
            conflicts.append(f"seed={args.seed} (the saved run used another key)")
    conflicts += [
        f"{name}={value!r} (saved {saved['agent_config'].get(name)!r})"
        for name, value in overrides.items()
        if _as_json(value) != _as_json(saved["agent_config"].get(name))
    ]
    if conflicts:
        raise UsageError(
            f"cannot resume {args.out} with different settings: {'; '.join(conflicts)}"
        )
    agent, saved = experiment.load_agent(args.out)
    # A resumed run keeps writing every output it had.
    sinks = _extra_sinks(
        args.out,
        jsonl=args.jsonl or (args.out / rundir.METRICS_JSONL).exists(),
        tensorboard=args.tensorboard or (args.out / "tensorboard").exists(),
    )
    if args.eval_episodes is not None:
        from jaxrl.run.loop import check_run_arguments

        check_run_arguments(agent, saved["total_steps"], saved["seeds"], args.eval_episodes)
    train_args = dict(
        total_steps=saved["total_steps"],
        seeds=saved["seeds"],
        chunk_iterations=saved["chunk_iterations"],
        env_id=saved["env_id"],
        env_kwargs=saved["env_kwargs"],
        eval_episodes=_pick(args.eval_episodes, saved["eval_episodes"]),
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
        from jaxrl.run import checkpoint, experiment, rundir
        from jaxrl.run.loop import MAX_EVAL_EPISODES

        if args.episodes is not None and not 1 <= args.episodes <= MAX_EVAL_EPISODES:
            raise UsageError(
                f"--episodes must be an integer in [1, {MAX_EVAL_EPISODES}], got {args.episodes}"
            )
        experiment.load_agent(args.dir)
        if checkpoint.latest_iteration(args.dir / rundir.CHECKPOINTS) is None:
            raise run.RunDirError(f"{args.dir} has no checkpoint to evaluate")

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
    return 0


# ---------------------------------------------------------------- config


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


def _human_labelling(agent, out_dir: Path, seeds: int):
    """For rm-ppo with labels=human: the context that installs a labeller
    waiting for answers in ``out_dir`` (``None`` as its value otherwise)."""
    import contextlib

    if getattr(agent.config, "labels", None) != "human":
        return contextlib.nullcontext()
    if seeds != 1:
        raise UsageError(f"--labels human trains one seed (people label one run), got --seeds {seeds}")
    from jaxrl.agents import reward_model
    from jaxrl.feedback import HumanLabeller

    return reward_model.use_labeller(HumanLabeller(out_dir, timeout=agent.config.label_timeout))


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


def _extra_sinks(out_dir: Path, *, jsonl: bool, tensorboard: bool) -> list:
    from jaxrl.run import rundir, sinks

    extra = []
    if jsonl:
        extra.append(sinks.JSONLSink(out_dir / rundir.METRICS_JSONL))
    if tensorboard:
        try:
            extra.append(sinks.TensorBoardSink(out_dir / "tensorboard"))
        except ImportError as e:
            raise ValueError(str(e)) from e
    return extra


def _default_out_dir(algo: str, env_id: str) -> Path:
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "_", s)
    return Path("runs") / f"{safe(algo)}-{safe(env_id)}-{time.strftime('%Y%m%d-%H%M%S')}"


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


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
