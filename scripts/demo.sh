#!/usr/bin/env bash
# The main job: set up, queue the baselines and the bundled example specs,
# train them on a local Ray cluster into a SQLite file, serve the leaderboard.
# Re-running it trains only what is not trained yet.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8501}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

t0=$(now)
bash scripts/setup.sh
. .venv/bin/activate
# Cache byte code (set-up installs without compiling; each Ray worker imports torch).
unset PYTHONDONTWRITEBYTECODE
t1=$(now)
export MTLB_DATABASE_URL=${MTLB_DATABASE_URL:-sqlite:///$PWD/mtlb.sqlite}

# The demo set: the baseline and five classic methods, sized to train in a few
# minutes on a 2-core laptop.  submissions/examples/ holds a spec for every
# registered method; submit more with `mtlb submit FILE...` and `mtlb run`.
DEMO_SPECS=()
# Longest jobs first (the baseline's three networks, then the exact-gradient methods):
# jobs run in queue order, two at a time on 2 cores, and a short job last leaves the
# least time with one core idle.
for name in stl-small-cnn hps-mgda hps-pcgrad hps-equal hps-uncertainty hps-dwa; do
    DEMO_SPECS+=("submissions/examples/$name.yaml")
done
mtlb baselines synthetic-scenes
# Paper values shipped with the package (the NYUv2 SegNet single-task baseline).
mtlb reported import --builtin
mtlb submit "${DEMO_SPECS[@]}"
mtlb run --timings .mtlb-timings
t2=$(now)

mtlb leaderboard --port "$PORT" &
site=$!
trap 'kill $site 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 120); do
    curl -sf "http://localhost:$PORT/_stcore/health" >/dev/null 2>&1 && break
    sleep 0.5
done
t3=$(now)
read -r ray_start training < .mtlb-timings
echo
echo "timings (s): set-up $(elapsed "$t0" "$t1"), Ray start $ray_start, training $training," \
     "site start $(elapsed "$t2" "$t3"), total $(elapsed "$t0" "$t3")"
echo "leaderboard: http://localhost:$PORT/   (Ctrl-C to stop)"
wait "$site"
