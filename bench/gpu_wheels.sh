#!/usr/bin/env bash
# The wheels `import runners` needs that a bare GPU machine lacks, for bench/gpu_session.sh.
#
#   bash bench/gpu_wheels.sh            # cp312 manylinux x86_64 wheels into .whl/
#   PY_VERSION=3.11 WHEEL_DIR=/tmp/w bash bench/gpu_wheels.sh
#
# The GPU machine has Python with torch, numpy, scipy, pyyaml, pandas (and
# rich, typer, click, psutil, tqdm); runners also imports pydantic (with
# pydantic-core, annotated-types, typing-inspection and a recent
# typing-extensions), torchjd and, through its projector, qpsolvers and
# quadprog.  Versions are those of requirements.lock.  .whl/ is kept out of
# git through the repository's info/exclude.
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION="${PY_VERSION:-3.12}"
DEST="${WHEEL_DIR:-.whl}"
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection typing-extensions torchjd
          qpsolvers quadprog)

pinned() {  # NAME -> NAME==VERSION from requirements.lock (- and _ alike, any case)
    local pattern
    pattern="^$(echo "$1" | sed 's/[-_]/[-_]/g')=="
    grep -i -m1 "$pattern" requirements.lock || { echo "$1: not in requirements.lock" >&2; exit 1; }
}

mkdir -p "$DEST"
for name in "${PACKAGES[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: \
        --python-version "$PY_VERSION" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_5_x86_64 \
        --platform manylinux1_x86_64 \
        -d "$DEST" "$(pinned "$name")"
done
if [ "$DEST" = ".whl" ]; then
    exclude="$(git rev-parse --git-common-dir)/info/exclude"
    mkdir -p "$(dirname "$exclude")"
    grep -qxF "/.whl/" "$exclude" 2>/dev/null || echo "/.whl/" >>"$exclude"
fi
ls -l "$DEST"
du -sh "$DEST"
