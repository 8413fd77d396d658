# `part`, sourced by the GPU session scripts (bench/gpu_session.sh, bench/gpu_zoo.sh):
# each part of a session runs under its own time limit and whatever the previous part
# did, its output logged to $OUT/<part>.log.  Needs START, BUDGET and OUT set.
part() {  # NAME SECONDS COMMAND...: run COMMAND under min(SECONDS, time left), log it
    local name=$1 limit=$2 left rc began
    shift 2
    left=$((START + BUDGET - $(date +%s)))
    ((left < limit)) && limit=$left
    if ((limit < 15)); then
        echo "== $name: skipped, ${left}s left of the session's ${BUDGET}s" | tee "$OUT/$name.log"
        return
    fi
    echo "== $name (at most ${limit}s): $*" | tee "$OUT/$name.log"
    began=$(date +%s)
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $(($(date +%s) - began))s$( ((rc == 124)) && echo ' (time limit)')" \
        | tee -a "$OUT/$name.log"
}
