#!/usr/bin/env bash
# Creates a separate virtual environment for rejax (the PPO speed baseline).
#
#   bash benchmarks/setup_rejax.sh [VENV_DIR]        # default /tmp/rejax-venv
#   python benchmarks/ppo_throughput.py --rejax-python /tmp/rejax-venv/bin/python
#
# rejax 0.1.3 unpacks the old 5-tuple gymnax step API
# (`obs, state, reward, done, info = env.step(...)`), so it needs gymnax < 1.0,
# while jaxrl needs gymnax >= 1.0: the two cannot share an environment.
# Set JAX_VERSION (e.g. JAX_VERSION=0.10.2) to pin the same jax/jaxlib as
# jaxrl's environment, so that both run on the same XLA; by default pip
# resolves jax freely (on this machine it resolved to jax 0.10.2, the same as
# jaxrl's).
set -euo pipefail

VENV="${1:-/tmp/rejax-venv}"
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
pkgs=("rejax==0.1.3" "gymnax==0.0.9")
if [[ -n "${JAX_VERSION:-}" ]]; then
  pkgs+=("jax==${JAX_VERSION}" "jaxlib==${JAX_VERSION}")
fi
"$VENV/bin/pip" install --quiet "${pkgs[@]}"

# Smoke check: rejax imports and one PPO iteration on CartPole-v1 runs.
"$VENV/bin/python" - <<'PY'
import jax
from rejax import PPO
algo = PPO.create(env="CartPole-v1", num_envs=4, num_steps=128, num_epochs=4,
                  num_minibatches=4, skip_initial_evaluation=True)
ts = jax.jit(algo.train_iteration)(algo.init_state(jax.random.PRNGKey(0)))
assert int(ts.global_step) == 4 * 128, ts.global_step
print("rejax OK: jax", jax.__version__)
PY
echo "rejax environment ready: $VENV/bin/python"
