#!/usr/bin/env bash
# The accelerator benchmark in one go, sized for under 8 minutes on one GPU:
#
#   bash benchmarks/accelerator.sh [--quick] [OUT_DIR]     # default OUT_DIR: benchmarks/results/accelerator
#
# 1. PPO on CartPole-v1: 2048 envs x 1 seed and x 16 seeds, training steps/s
#    and the classic configuration's first compile in fresh processes
#    (ppo_throughput.py), with rejax's PPO in the same run when REJAX_PYTHON
#    names a python of its own environment (benchmarks/setup_rejax.sh, with
#    jax for the GPU there too);
# 2. on-device IMPALA (policy lag 4, V-trace), 4 seeds vmapped: steps/s and
#    the returns reached (impala_ablation.py);
# 3. DDPG and D4PG training steps/s at 1, 16 and 256 envs (ddpg_d4pg.py
#    --skip-learning), against rejax's TD3 when REJAX_PYTHON is set.
#
# Each part has its own time limit, so one that overruns leaves the others'
# results; every part writes its JSON and its printed table to OUT_DIR, and
# `summary.txt` there lists which parts finished. --quick runs every part at
# its smallest size (a check that the script works, on any backend).
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
if [[ "${1:-}" == "--quick" ]]; then quick=1; shift; fi
OUT="${1:-benchmarks/results/accelerator}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
: > "$OUT/summary.txt"

"$PY" -c 'import jax; print("jax", jax.__version__, "backend", jax.default_backend(), jax.devices())' \
    | tee -a "$OUT/summary.txt"

rejax=()
if [[ -n "${REJAX_PYTHON:-}" ]]; then
    rejax=(--rejax-python "$REJAX_PYTHON")
else
    echo "REJAX_PYTHON is not set: no rejax rows this run" | tee -a "$OUT/summary.txt"
fi

# part NAME SECONDS COMMAND...: runs COMMAND under a time limit, keeps its output.
part() {
    local name=$1 limit=$2; shift 2
    local started=$SECONDS
    timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local status=${PIPESTATUS[0]}
    echo "$name: exit $status after $((SECONDS - started)) s (limit $limit s)" | tee -a "$OUT/summary.txt"
}

if (( quick )); then
    part ppo_throughput 300 "$PY" benchmarks/ppo_throughput.py --quick --envs CartPole-v1 --num-envs 64 \
        --seed-counts 1 2 --no-rollout --no-plot "${rejax[@]}" --out "$OUT"
    part impala 120 "$PY" benchmarks/impala_ablation.py --quick --out "$OUT"
    part ddpg_d4pg 180 "$PY" benchmarks/ddpg_d4pg.py --quick --skip-learning --no-plot "${rejax[@]}" --out "$OUT"
else
    part ppo_throughput 240 "$PY" benchmarks/ppo_throughput.py --envs CartPole-v1 --num-envs 2048 \
        --seed-counts 1 16 --repeats 2 --max-cell-s 30 --compile-trials 2 --no-rollout --no-plot \
        "${rejax[@]}" --out "$OUT"
    part impala 100 "$PY" benchmarks/impala_ablation.py --lags 4 --steps 2000000 --seeds 4 --out "$OUT"
    part ddpg_d4pg 100 "$PY" benchmarks/ddpg_d4pg.py --skip-learning --num-envs 1 16 256 --no-plot \
        "${rejax[@]}" --out "$OUT"
fi
echo "results in $OUT" | tee -a "$OUT/summary.txt"
