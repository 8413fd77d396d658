#!/usr/bin/env bash
# Every GPU measurement of the GPU-throughput work, in one run of under 6 minutes.
#
#   bash bench/gpu_wheels.sh                  # once, where PyPI is reachable: .whl/
#   OUT=/some/folder bash bench/gpu_session.sh
#
# Run from the repository root on the GPU machine (Python 3.12 with torch,
# numpy, scipy, pyyaml; no Ray, no SQLAlchemy: nothing here imports them).
# It installs .whl/ into /tmp/site, then runs, each part under its own time
# limit and whatever the previous part did:
#   env          the device, versions, `import runners` without db/ray, the data
#   step_time    every method's step, looped/batched Jacobian, eager/CUDA graphs, e, bound
#   determinism  CUDA-graph replays against eager steps; two trainings per method with
#                one seed: identical metrics?
#   nyuv2_step   SegNet (batch 2) and ResNet-50-dilated (batch 8) steps at 288x384
#   packing      jobs per hour with 1, 2, 4, 8 jobs sharing the GPU
# Logs go to $OUT/<part>.log and the key lines to $OUT/summary.txt.
#
# A rehearsal on the CPU (small sizes, same code paths and imports):
#   GPU_SESSION_DEVICE=cpu GPU_SESSION_QUICK=1 bash bench/gpu_session.sh
set -uo pipefail  # not -e: one failing part must not stop the others
export PYTHONUNBUFFERED=1
START=$(date +%s)
BUDGET="${GPU_SESSION_BUDGET:-330}"  # seconds for everything after the install
OUT="${OUT:-/tmp/gpu-session}"
DEVICE="${GPU_SESSION_DEVICE:-cuda}"
QUICK="${GPU_SESSION_QUICK:-0}"
WHEELS="${WHEEL_DIR:-.whl}"
SITE="${SITE_DIR:-/tmp/site}"
mkdir -p "$OUT"
export MTLB_DATA_ROOT="${MTLB_DATA_ROOT:-/tmp/mtlb-data}"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl && export PYTHONPATH="$SITE:$PWD" \
    || { echo "installing $WHEELS failed: the parts below will fail to import runners"; \
         export PYTHONPATH="$SITE:$PWD"; }

. "$(dirname "$0")/gpu_part.sh"

if [ "$QUICK" = 1 ]; then
    SCENES=synthetic-scenes-mini
    STEP_ARGS=(--steps 1 --methods equal,pcgrad,upgrad,dwa,rlw --benchmark "$SCENES")
    DET_ARGS=(--benchmark "$SCENES" --epochs 1 --methods equal,pcgrad)
    CHECK_ARGS=(--benchmark "$SCENES" --methods equal,dwa,pcgrad --steps 4)
    NYU_ARGS=(--size 32x64 --steps 1 --scan-steps 1 --methods pcgrad,upgrad --backbones segnet)
    PACK_ARGS=(--benchmark "$SCENES" --epochs 1 --jobs 1,2)
else
    SCENES=synthetic-scenes
    STEP_ARGS=(--steps 15)
    DET_ARGS=(--methods equal,dwa,pcgrad,upgrad)
    CHECK_ARGS=()
    NYU_ARGS=(--steps 10 --scan-steps 1)
    PACK_ARGS=(--jobs 1,8,2,4)  # 1 and 8 first: the target compares them
fi

part env 40 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    2>&1 || true; echo \"\$(nproc) CPUs\"; python3 bench/gpu_env.py --benchmark $SCENES"
part step_time 85 python3 bench/step_time.py --device "$DEVICE" "${STEP_ARGS[@]}"
part determinism 70 bash -c "python3 bench/graph_check.py --device $DEVICE ${CHECK_ARGS[*]}; \
    python3 bench/determinism.py --device $DEVICE ${DET_ARGS[*]}"
part nyuv2_step 75 python3 bench/nyuv2_step.py --device "$DEVICE" "${NYU_ARGS[@]}"
part packing 95 python3 bench/packing.py --device "$DEVICE" "${PACK_ARGS[@]}"

{
    echo "GPU session on $DEVICE, $(date -u +%FT%TZ), $(($(date +%s) - START)) s in all"
    for name in env step_time determinism nyuv2_step packing; do
        echo
        echo "## $name"
        grep -v '^JSON ' "$OUT/$name.log" | grep -E \
            'device|python|runners from|db/ray|rendered|CPUs|NVIDIA|encoder backward|equal step|x eq|exact gradient|identical|DIFFERENT|differs|capture failed|failed|scan|batch [0-9]|job\(s\)|jobs/h|^ *[0-9]+ +[0-9.]+ |^[a-z][a-z-]*( \*)? +[0-9.]+ |^[a-z-]+ +(eager|whole|split) |^== ' \
            || true
    done
} >"$OUT/summary.txt"
echo "== done in $(($(date +%s) - START)) s; logs in $OUT: $(ls "$OUT" | tr '\n' ' ')"
