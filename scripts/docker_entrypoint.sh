#!/usr/bin/env bash
# The Docker image's entrypoint. The project's data/ and runs/ are links to the
# mounts /data and /runs (docs/docker.md); without them a training run would
# fail deep inside Caffe on a missing LMDB or snapshot folder. So: when one is
# missing, say what to mount and stop, except for commands that only print
# (--help, --version) and shells. FER_SKIP_MOUNT_CHECK=1 runs anything.
#   usage: docker_entrypoint.sh COMMAND [ARGS...]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -gt 0 ] || set -- caffe --version

problems=()
data_target=$(readlink "$repo/data" || echo "$repo/data")
runs_target=$(readlink "$repo/runs" || echo "$repo/runs")
if [ ! -d "$repo/data/" ]; then
    problems+=("$data_target is not mounted: mount the repo's data folder (datasets and data/prepared/...), e.g. -v \"\$PWD/data:$data_target:ro\"")
fi
if [ ! -d "$repo/runs/" ]; then
    problems+=("$runs_target is not mounted: mount a folder for the run outputs, e.g. -v \"\$PWD/runs:$runs_target\"")
elif [ ! -w "$repo/runs/" ]; then
    problems+=("$runs_target is not writable by uid $(id -u): mount a folder this user can write, or run with --user \"\$(id -u):\$(id -g)\" as its owner")
fi

if [ ${#problems[@]} -eq 0 ] || [ "${FER_SKIP_MOUNT_CHECK:-0}" = 1 ]; then
    exec "$@"
fi

only_prints=0
case "$(basename "$1")" in
    bash | sh) only_prints=1 ;;
esac
for arg in "$@"; do
    case "$arg" in
        -h | --help | -help | --version | -version) only_prints=1 ;;
    esac
done

for problem in "${problems[@]}"; do
    printf 'fer-sparse: %s\n' "$problem" >&2
done
if [ "$only_prints" = 1 ]; then
    exec "$@"
fi
printf 'fer-sparse: not running "%s" (docs/docker.md, "Run"; FER_SKIP_MOUNT_CHECK=1 runs it anyway)\n' "$*" >&2
exit 2
