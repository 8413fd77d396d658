#!/usr/bin/env bash
# The GPU checks of method zoo II and the many-task benchmark, in one run of under 8 minutes.
#
#   bash bench/gpu_wheels.sh           # once, where PyPI is reachable: .whl/
#   OUT=/some/folder bash bench/gpu_zoo.sh
#
# Run from the repository root on the GPU machine (Python with torch, numpy, scipy,
# pyyaml; .whl/ brings pydantic, torchjd, qpsolvers: see bench/gpu_wheels.sh).  Parts:
#   examples     every synthetic example spec trained at mini size on the GPU
#   graphs       CUDA-graph replays against eager steps for the methods with a graph plan
#   step_time    the new methods' step time relative to equal, eager and CUDA graphs
#   many_tasks   the cost of T = 4, 16, 40 tasks (bench/many_tasks.py --quick)
# Logs go to $OUT/<part>.log.  A rehearsal on the CPU: GPU_ZOO_DEVICE=cpu.
set -uo pipefail  # not -e: one failing part must not stop the others
export PYTHONUNBUFFERED=1
START=$(date +%s)
BUDGET="${GPU_ZOO_BUDGET:-450}"
OUT="${OUT:-/tmp/gpu-zoo}"
DEVICE="${GPU_ZOO_DEVICE:-cuda}"
SITE="${SITE_DIR:-/tmp/site}"
mkdir -p "$OUT"
export MTLB_DATA_ROOT="${MTLB_DATA_ROOT:-/tmp/mtlb-data}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || echo "installing .whl/ failed"
export PYTHONPATH="$SITE:$PWD:$PWD/bench"

. "$(dirname "$0")/gpu_part.sh"

NEW=scale-invariant,stch,imtl-full,fairgrad,excess-mtl,moco,sdmgrad,modo
part examples 170 python3 bench/examples_smoke.py --device "$DEVICE"
part graphs 50 python3 bench/graph_check.py --device "$DEVICE" --methods equal,scale-invariant,fairgrad,stch,upgrad
part step_time 80 python3 bench/step_time.py --device "$DEVICE" --steps 10 \
    --configs looped,graphs --methods "equal,imtl,upgrad,$NEW"
part many_tasks 150 python3 bench/many_tasks.py --device "$DEVICE" --quick
