# Sourced by scripts/gpu_check.sh: `step NAME LIMIT_S COMMAND...` runs COMMAND
# with its output in $logs/NAME.log, at most LIMIT_S seconds, and appends
# {"step", "status" (ok/failed/skipped), "seconds"} to $logs/steps.jsonl.
# FER_GPU_CHECK_BUDGET_S=N caps the whole script (bash's SECONDS, counted from
# its start) at N seconds: a step gets at most what is left, and one that would
# start with under 30 s left is skipped, so that a GPU session's device time
# ends with every finished step's log kept. A failed or skipped step sets
# status=1. Expects: logs, status and say().
budget=${FER_GPU_CHECK_BUDGET_S:-0}  # 0: no cap
: >"$logs/steps.jsonl"

step() {
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS state
    if [ "$budget" -gt 0 ]; then
        local left=$((budget - SECONDS))
        if [ "$left" -lt 30 ]; then
            say "$name: SKIPPED (${left} s of the ${budget} s budget left)"
            printf '{"step": "%s", "status": "skipped", "seconds": 0}\n' "$name" >>"$logs/steps.jsonl"
            status=1
            return
        fi
        [ "$left" -lt "$limit" ] && limit=$left
    fi
    say "== $name (at most $limit s)"
    if timeout "$limit" "$@" >"$logs/$name.log" 2>&1; then
        state=ok
        say "$name: ok ($((SECONDS - t0)) s)"
    else
        state=failed
        say "$name: FAILED ($((SECONDS - t0)) s); last lines:"
        tail -n 40 "$logs/$name.log" >&2
        status=1
    fi
    printf '{"step": "%s", "status": "%s", "seconds": %d}\n' "$name" "$state" $((SECONDS - t0)) \
        >>"$logs/steps.jsonl"
}
