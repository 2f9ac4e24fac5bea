"""A trained policy as files that run with JAX alone.

``jaxrl export RUN --out DIR`` (:func:`export_run`) writes three files::

    DIR/policy.json      what the policy is: algorithm, env id, observation and
                         action spaces, observation-normalisation statistics,
                         network settings and parameter shapes, versions
    DIR/act.jaxexport    the deterministic act function as serialised StableHLO
                         (``jax.export``), the parameters one of its arguments
    DIR/params.npz       the parameters, one array per leaf, in argument order

and :func:`load_policy` turns them back into a jitted ``act(obs) -> action``::

    act = jaxrl.load_policy("DIR")
    action = act(obs)            # one observation, or a batch [B, *obs_shape]

Why this form: the act function (observation normalisation, the network, the
policy's mode, the map of [-1, 1] onto a continuous action space's bounds)
is traced once, at export, into StableHLO, so loading needs neither the
environment library nor jaxrl's agents nor flax's modules: only ``jax``
(and numpy). The batch size is symbolic, so any batch runs. Lowered for
CPU, CUDA, ROCm and TPU, the file runs on whichever the loading process has.
The parameters stay outside the program, in a plain ``.npz`` any tool reads,
rather than baked in as constants: the program stays small, the weights
inspectable. Observation-normalisation statistics are leaves of those
parameters, and also listed in policy.json.

This module imports only the standard library, numpy and jax at load time;
exporting imports :mod:`jaxrl.run` when called.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

POLICY_JSON = "policy.json"
ACT_FILE = "act.jaxexport"
PARAMS_FILE = "params.npz"
FORMAT = "jaxrl-policy"
FORMAT_VERSION = 1
# A policy with a recurrent core: act takes and returns the core's state. An
# older reader refuses it by the version instead of calling it wrongly.
RECURRENT_FORMAT_VERSION = 2
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
_FILES = (POLICY_JSON, ACT_FILE, PARAMS_FILE)
# Config fields that shape an agent's network, copied into policy.json's "network".
_NETWORK_FIELDS = ("hidden_sizes", "activation", "torso", "num_atoms")


class ExportDirError(ValueError):
    """A directory cannot take or give an exported policy as asked."""


# ------------------------------------------------------------------ export


def check_export_dir(path: str | os.PathLike, *, force: bool = False) -> Path:
    """``path`` as a directory to export into: new, empty, or (with ``force``)
    an earlier export, whose files alone are replaced. ExportDirError otherwise."""
    if path is None or not str(path).strip():
        raise ExportDirError(f"--out must name a directory, got {str(path)!r}")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ExportDirError(f"--out {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not _is_export(path):
            raise ExportDirError(
                f"--out {path} is not empty and holds no jaxrl policy; choose a new or empty directory"
            )
        if not force:
            raise ExportDirError(f"--out {path} already holds an exported policy; pass --force to replace it")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ExportDirError(f"--out {path} cannot be written: {existing} is not a writable directory")
    return path


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / POLICY_JSON).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0,
               force: bool = False) -> dict[str, Any]:
    """Exports seed ``seed``'s deterministic policy at the latest checkpoint of
    the run in ``run_dir`` into ``out`` (new or empty; an earlier export only
    with ``force``). Returns the description written to policy.json.
    Every check happens before anything is compiled or written."""
    from jaxrl.run import rundir
    from jaxrl.run.policy import check_seed, load_saved_policy

    saved = rundir.load_config(run_dir)
    check_seed(saved, seed, "--seed (seed)")
    check_export_dir(out, force=force)
    policy = load_saved_policy(run_dir, seed)
    exported, leaves, names = export_policy(policy.agent, policy.params)
    description = describe(policy, names, leaves, run_dir)
    _write_export(Path(out), description, exported.serialize(), leaves)
    return description


def export_policy(agent: Any, params: Any):
    """``(jax.export.Exported, leaves, names)``: the agent's deterministic
    policy (:func:`jaxrl.run.policy.deterministic_policy`) as a function of
    ``(leaves, obs [batch, ...])`` with a symbolic batch size, lowered for
    :data:`PLATFORMS`, and ``params``' leaves (host arrays) with their key paths.

    A recurrent policy (:func:`jaxrl.run.policy.deterministic_recurrent_policy`)
    is exported as ``(leaves, obs [batch, ...], carry leaves [batch, ...]) ->
    (actions, carry leaves)``: the caller keeps the core's state."""
    import jax

    from jaxrl.run.policy import deterministic_policy, deterministic_recurrent_policy

    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [jax.tree_util.keystr(path) for path, _ in paths_and_leaves]
    leaves = [np.asarray(jax.device_get(leaf)) for _, leaf in paths_and_leaves]
    obs = _observation_struct(agent.env, agent.env_params)
    (batch,) = jax.export.symbolic_shape("batch")
    args = [
        [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in leaves],
        jax.ShapeDtypeStruct((batch, *obs.shape), obs.dtype),
    ]
    if agent.initial_carry is None:
        policy = deterministic_policy(agent)

        def act(leaves, obs):
            return policy(jax.tree_util.tree_unflatten(treedef, leaves), obs)
    else:
        policy, initial_carry = deterministic_recurrent_policy(agent)
        carry_leaves, carry_treedef = jax.tree_util.tree_flatten(jax.eval_shape(lambda: initial_carry(1)))
        args.append([jax.ShapeDtypeStruct((batch, *c.shape[1:]), c.dtype) for c in carry_leaves])

        def act(leaves, obs, carry):
            actions, carry = policy(jax.tree_util.tree_unflatten(treedef, leaves), obs,
                                    jax.tree_util.tree_unflatten(carry_treedef, carry))
            return actions, jax.tree_util.tree_leaves(carry)

    exported = jax.export.export(jax.jit(act), platforms=PLATFORMS)(*args)
    return exported, leaves, names


def _carry_description(agent: Any) -> list[dict[str, Any]] | None:
    """One ``{"shape", "dtype"}`` per leaf of one environment's core state (the
    exported act's carry, in order), or None for a feed-forward policy."""
    if agent.initial_carry is None:
        return None
    import jax

    carry = jax.tree_util.tree_leaves(jax.eval_shape(agent.initial_carry, ()))
    return [{"shape": list(c.shape), "dtype": str(c.dtype)} for c in carry]


def _observation_struct(env: Any, env_params: Any):
    """Shape and dtype of one observation, as ``env.reset`` gives it (compiles nothing)."""
    import jax

    obs, _ = jax.eval_shape(env.reset, jax.random.PRNGKey(0), env_params)
    return obs


def describe(policy: Any, names: list[str], leaves: list[np.ndarray],
             run_dir: str | os.PathLike) -> dict[str, Any]:
    """policy.json's contents for a :class:`jaxrl.run.policy.SavedPolicy`."""
    import jax

    from jaxrl import __version__

    agent, saved = policy.agent, policy.saved
    obs = _observation_struct(agent.env, agent.env_params)
    config = saved["agent_config"]
    carry = _carry_description(agent)
    signature = "act(params leaves in params.npz order, obs [batch, *observation.shape])"
    if carry is not None:
        signature = ("act(params leaves in params.npz order, obs [batch, *observation.shape], "
                     "carry leaves [batch, *carry[i].shape]) -> (actions, carry leaves)")
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION if carry is None else RECURRENT_FORMAT_VERSION,
        "algorithm": saved["algorithm"],
        "env_id": saved["env_id"],
        "env_kwargs": saved["env_kwargs"],
        "observation": {"shape": list(obs.shape), "dtype": str(obs.dtype)},
        "observation_space": _space(agent.env.observation_space(agent.env_params)),
        "action_space": _space(agent.env.action_space(agent.env_params)),
        "actions": "deterministic (the policy's mode, or its greedy action), in the env's own units",
        "observation_normalization": _normalization(policy.params),
        "network": {name: config[name] for name in _NETWORK_FIELDS if name in config},
        "agent_config": config,
        "parameters": [{"name": n, "shape": list(x.shape), "dtype": str(x.dtype)}
                       for n, x in zip(names, leaves)],
        "act": {"file": ACT_FILE, "platforms": list(PLATFORMS), "signature": signature},
        "params": {"file": PARAMS_FILE},
        "source": {"run_dir": str(Path(run_dir).absolute()), "seed": policy.seed,
                   "iteration": policy.iteration, "env_steps": policy.env_steps},
        "versions": {"jaxrl": __version__, "jax": jax.__version__},
    }
    if carry is not None:
        description["recurrent"] = {
            "core": config.get("core"),
            "carry": carry,
            "initial_carry": "zeros, at every episode's start",
        }
    return description


def _space(space: Any) -> dict[str, Any]:
    """A gymnax space as JSON: Discrete's ``n``, or Box's shape and bounds
    (infinite bounds written as the strings ``"inf"``/``"-inf"``)."""
    from gymnax.environments import spaces

    if isinstance(space, spaces.Discrete):
        return {"kind": "discrete", "n": int(space.n), "dtype": np.dtype(space.dtype).name}
    if isinstance(space, spaces.Box):
        bound = lambda b: _finite_or_text(np.broadcast_to(np.asarray(b, np.float64), space.shape))
        return {"kind": "box", "shape": list(space.shape), "dtype": np.dtype(space.dtype).name,
                "low": bound(space.low), "high": bound(space.high)}
    return {"kind": type(space).__name__}


def _finite_or_text(values: np.ndarray) -> Any:
    text = lambda v: v if np.isfinite(v) else ("inf" if v > 0 else "-inf")
    return np.vectorize(text, otypes=[object])(values).tolist() if values.ndim else text(float(values))


def _normalization(params: Any) -> dict[str, Any] | None:
    """The observation-normalisation statistics inside the policy's parameters, if any."""
    import jax

    from jaxrl.envs import ObsNormStats

    found = [leaf for leaf in jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, ObsNormStats))
             if isinstance(leaf, ObsNormStats)]
    if not found:
        return None
    stats = found[0]
    return {
        "formula": "clip((obs - mean) / sqrt(var + epsilon), -clip, clip), applied inside act",
        "mean": np.asarray(stats.mean).tolist(),
        "var": np.asarray(stats.var).tolist(),
        "count": float(np.asarray(stats.count)),
        "clip": stats.clip,
        "epsilon": stats.epsilon,
    }


def _write_export(out: Path, description: dict[str, Any], program: bytes,
                  leaves: list[np.ndarray]) -> None:
    """Writes the three files, each atomically, policy.json last (a directory
    without it is no export, so a crash midway leaves nothing half-valid)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / POLICY_JSON).unlink(missing_ok=True)
    _replace(out / ACT_FILE, lambda f: f.write(program))
    # Leaf names hold brackets and quotes: the archive keys are the leaf indices.
    _replace(out / PARAMS_FILE, lambda f: np.savez(f, **{f"leaf_{i:04d}": a for i, a in enumerate(leaves)}))
    _replace(out / POLICY_JSON, lambda f: f.write((json.dumps(description, indent=2) + "\n").encode()))


def _replace(path: Path, write: Callable[[Any], Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


# ------------------------------------------------------------------ load


class LoadedPolicy:
    """A policy exported by :func:`export_run`: call it on observations.

    A feed-forward policy is ``act(obs) -> actions``. A recurrent one (its
    ``recurrent`` attribute true) is ``act(obs, carry) -> (actions, carry)``:
    start each episode from ``act.initial_carry()`` (one observation) or
    ``act.initial_carry(B)`` (a batch of B), and pass the returned carry to
    the next call.

    Attributes:
      description: policy.json's contents.
      params: the parameter leaves (device arrays) in argument order.
    """

    def __init__(self, description: dict[str, Any], exported: Any, params: list[Any]):
        import jax

        self.description = description
        self.params = params
        self._obs_shape = tuple(description["observation"]["shape"])
        self._obs_dtype = np.dtype(description["observation"]["dtype"])
        self._carry = (description.get("recurrent") or {}).get("carry")
        self._act = jax.jit(exported.call)

    @property
    def recurrent(self) -> bool:
        return self._carry is not None

    def initial_carry(self, batch: int | None = None) -> list[Any]:
        """A recurrent policy's state at an episode's start (zeros): for one
        observation, or with ``batch`` for a batch of that many."""
        import jax.numpy as jnp

        if not self.recurrent:
            raise ValueError("this policy is feed-forward: it carries no state")
        lead = () if batch is None else (batch,)
        return [jnp.zeros(lead + tuple(c["shape"]), c["dtype"]) for c in self._carry]

    def __call__(self, obs: Any, carry: Any = None) -> Any:
        """Deterministic actions for ``obs``: one observation
        (``observation.shape``) or a batch ``[B, *observation.shape]``; a
        recurrent policy also takes and returns its ``carry``."""
        import jax.numpy as jnp

        obs = jnp.asarray(obs, self._obs_dtype)
        single = obs.shape == self._obs_shape
        if not single and obs.shape[1:] != self._obs_shape:
            raise ValueError(
                f"expected an observation of shape {self._obs_shape} or a batch of them, got {obs.shape}"
            )
        batch = obs[None] if single else obs
        if not self.recurrent:
            if carry is not None:
                raise ValueError("this policy is feed-forward: call it without a carry")
            action = self._act(self.params, batch)
            return action[0] if single else action
        if carry is None:
            raise ValueError("this policy is recurrent: pass carry (act.initial_carry() at an episode's start)")
        carry = [jnp.asarray(c)[None] if single else jnp.asarray(c) for c in carry]
        action, carry = self._act(self.params, batch, carry)
        if single:
            return action[0], [c[0] for c in carry]
        return action, carry

    def __repr__(self) -> str:
        d = self.description
        kind = ", recurrent" if self.recurrent else ""
        return f"LoadedPolicy({d['algorithm']} on {d['env_id']}, {d['source']['env_steps']} env steps{kind})"


def load_policy(directory: str | os.PathLike) -> LoadedPolicy:
    """The policy exported into ``directory`` as a jitted ``act(obs) -> action``
    (deterministic, in the env's units; a recurrent policy's is
    ``act(obs, carry) -> (action, carry)``); needs only jax and numpy."""
    import jax

    directory = Path(directory)
    if not _is_export(directory):
        raise ExportDirError(f"{directory} holds no exported jaxrl policy (no valid {POLICY_JSON})")
    description = json.loads((directory / POLICY_JSON).read_text())
    if description.get("format_version") not in (FORMAT_VERSION, RECURRENT_FORMAT_VERSION):
        raise ExportDirError(
            f"{directory / POLICY_JSON} has format_version {description.get('format_version')!r}; "
            f"this jaxrl reads {FORMAT_VERSION} and {RECURRENT_FORMAT_VERSION}"
        )
    exported = jax.export.deserialize(bytearray((directory / ACT_FILE).read_bytes()))
    with np.load(directory / PARAMS_FILE) as archive:
        names = sorted(archive.files, key=lambda name: int(name.rpartition("_")[2]))
        params = [jax.numpy.asarray(archive[name]) for name in names]
    expected = description["parameters"]
    if [list(p.shape) for p in params] != [p["shape"] for p in expected]:
        raise ExportDirError(f"{directory / PARAMS_FILE} does not match the parameters {POLICY_JSON} lists")
    return LoadedPolicy(description, exported, params)
