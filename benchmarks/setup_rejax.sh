#!/usr/bin/env bash
# Creates a separate virtual environment for rejax (the PPO speed baseline).
#
#   JAX_VERSION=0.9.2 bash benchmarks/setup_rejax.sh [VENV_DIR]   # default /tmp/rejax-venv
#   python benchmarks/ppo_throughput.py --rejax-python /tmp/rejax-venv/bin/python
#
# rejax 0.1.3 unpacks the old 5-tuple gymnax step API
# (`obs, state, reward, done, info = env.step(...)`), so it needs gymnax < 1.0,
# while jaxrl needs gymnax >= 1.0: the two cannot share an environment.
# Set JAX_VERSION to jaxrl's jax (JAX_VERSION=0.9.2 for the published numbers)
# so that both run on the same XLA; without it pip resolves jax freely (here
# to 0.10.2, whose XLA is not the one jaxrl runs on).
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
