#!/usr/bin/env bash
# Builds the CPU image of the real Dockerfile and runs the project inside it,
# without a Docker engine or a container registry: rootless-style OCI tools
# from Debian (podman, buildah) and a Debian 12 base bootstrapped here from
# Debian's mirror. Run as root (CI does, from .ci/run). Stages:
#   1. tools: podman, buildah, debootstrap (apt-get installs the missing ones);
#      disk space for the vfs storage, checked before anything is built;
#   2. base: debootstrap --variant=minbase bookworm, imported as the image's
#      CPU_IMAGE and SOURCE_IMAGE (Debian 12, as the official debian:12-slim);
#   3. build inputs: the wheelhouse caffe_build/wheels (pip wheel -r
#      requirements.txt with Debian 12's python3.11, the image's interpreter)
#      and the Caffe tarball from the host's cache when it has one;
#   4. podman build --build-arg DEVICE=cpu (stage times printed);
#   5. inside the image (buildah run, since podman run cannot set
#      RLIMIT_NOFILE on these machines): the entrypoint without mounts,
#      caffe --version, tools/crossval.py --help, the main job as the non-root
#      user with data/ and runs/ mounted, and the layer and runtime tests;
#   6. everything it built removed (also on failure or Ctrl-C).
# Environment:
#   FER_DOCKER_CHECK_DIR     work folder's parent (default /var/tmp)
#   FER_DOCKER_CHECK_MIN_GB  free space required there (default 15; a run peaks at about 7)
#   FER_DOCKER_CHECK_KEEP=1  keep the storage and image (prints how to use them)
#   FER_CACHE_DIR            scripts/install.sh's cache (its tarball is reused)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
parent=${FER_DOCKER_CHECK_DIR:-/var/tmp}
min_gb=${FER_DOCKER_CHECK_MIN_GB:-15}
cache=${FER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fer-sparse}
tarball_name="caffe_1.0.0+git20180821.99bd997.orig.tar.gz"
image=localhost/fer-sparse-check:cpu
base=localhost/fer-check-debian:12-slim
run_uid=1000
started=$(date +%s)
stage_started=$started
timings=()

say() { printf '[docker-check %s] %s\n' "$(date -u +%T)" "$*" >&2; }
fail() { say "error: $*"; exit 1; }
stage_done() {
    local now
    now=$(date +%s)
    timings+=("$(printf '%-44s %5d s' "$1" $((now - stage_started)))")
    say "stage done: $1 ($((now - stage_started)) s)"
    stage_started=$now
}
print_timings() {
    say "stage times:"
    for line in "${timings[@]}"; do printf '    %s\n' "$line" >&2; done
    printf '    %-44s %5d s\n' "total" $(($(date +%s) - started)) >&2
}

# ---------------------------------------------------------------- 1. tools and disk
[ "$(id -u)" -eq 0 ] || fail "run as root: debootstrap and the chroot isolation of buildah need it"
missing=()
for tool in podman buildah debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} from Debian"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        podman buildah debootstrap >&2
fi
mkdir -p "$parent"
free_gb=$(df --output=avail -B1G "$parent" | tail -1 | tr -d ' ')
if [ "$free_gb" -lt "$min_gb" ]; then
    fail "$parent has $free_gb GB free; the check needs $min_gb GB (podman's vfs storage copies \
every layer in full). Free space, or set FER_DOCKER_CHECK_DIR to a folder on a larger disk."
fi
work=$(mktemp -d "$parent/fer-docker-check.XXXXXX")
oci=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
containers=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ "${FER_DOCKER_CHECK_KEEP:-0}" = 1 ]; then
        say "kept $work (FER_DOCKER_CHECK_KEEP=1): buildah ${oci[*]} from $image; remove with rm -rf --one-file-system $work"
    else
        for container in "${containers[@]}"; do
            buildah "${oci[@]}" rm "$container" >/dev/null 2>&1 || true
        done
        podman "${oci[@]}" rmi --all --force >/dev/null 2>&1 || true
        # Nothing below $work may still be mounted (a bind mount would lead
        # rm into the repo); --one-file-system is the second guard.
        findmnt -rn -o TARGET | grep -F "$work" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
        rm -rf --one-file-system "$work"
        say "removed $work (storage, image, containers, base)"
    fi
    [ ${#timings[@]} -eq 0 ] || print_timings
    if [ "$status" -eq 0 ]; then say "OK: the CPU image builds and runs"; else say "FAILED (exit $status)"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say "work folder $work ($free_gb GB free, $(nproc) cores)"
stage_done "tools and disk check"

# ---------------------------------------------------------------- 2. the Debian 12 base
# The mirror the machine already uses (as scripts/fetch_caffe_source.sh does).
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian}/debian-security
rootfs="$work/rootfs"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap from $mirror failed (log above)"; }
# The suites of the official debian:12-slim image, so the image gets Debian
# 12's updates as the machines it is compared with do.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman "${oci[@]}" import - "$base" >/dev/null
rm -rf --one-file-system "$rootfs"
stage_done "base: debootstrap bookworm + import"

# ---------------------------------------------------------------- 3. build inputs
# The wheelhouse is built by the interpreter the image's .venv uses (Debian
# 12's /usr/bin/python3), so its wheels are the ones pip there picks; a
# package with only an sdist on PyPI becomes a wheel here, built once.
image_python="3.11"
host_python=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
if [ "$host_python" != "$image_python" ] || [ "$(uname -m)" != x86_64 ]; then
    fail "the wheelhouse needs Debian 12's /usr/bin/python3 ($image_python, x86_64); this host has '${host_python:-none}' on $(uname -m)"
fi
/usr/bin/python3 -m pip --version >/dev/null 2>&1 \
    || fail "/usr/bin/python3 has no pip: apt-get install python3-pip (caffe_build/debian-packages.txt lists it)"
mkdir -p "$repo/caffe_build/wheels"
/usr/bin/python3 -m pip wheel -q --disable-pip-version-check -r "$repo/requirements.txt" \
    -w "$repo/caffe_build/wheels" >&2
say "wheelhouse: $(find "$repo/caffe_build/wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$repo/caffe_build/wheels" | cut -f1)"
if [ ! -f "$repo/caffe_build/source/$tarball_name" ] && [ -f "$cache/src/$tarball_name" ]; then
    mkdir -p "$repo/caffe_build/source"
    cp "$cache/src/$tarball_name" "$repo/caffe_build/source/"
    say "Caffe source: the host's cached tarball ($cache/src)"
elif [ -f "$repo/caffe_build/source/$tarball_name" ]; then
    say "Caffe source: caffe_build/source/$tarball_name"
else
    say "Caffe source: no local tarball, the image's source stage fetches it"
fi
stage_done "build inputs: wheelhouse + Caffe tarball"

# ---------------------------------------------------------------- 4. podman build
# Each line of the build gets the seconds since its start; a line per stage
# ("[n/m] STEP 1/k: FROM ... AS name") starts that stage's clock.
build_log="$work/build.log"
build_started=$(date +%s)
set +e
podman "${oci[@]}" build --isolation chroot --layers=false --pull=never \
    --build-arg DEVICE=cpu --build-arg CPU_IMAGE="$base" --build-arg SOURCE_IMAGE="$base" \
    --build-arg BUILD_JOBS="$(nproc)" --build-arg FER_UID="$run_uid" --build-arg FER_GID="$run_uid" \
    -t "$image" -f "$repo/Dockerfile" "$repo" 2>&1 \
    | while IFS= read -r line; do
          printf -v now '%(%s)T' -1
          printf '%5ds %s\n' $((now - build_started)) "$line"
      done \
    | tee "$build_log" >&2
build_status=${PIPESTATUS[0]}
set -e
# Stage durations: from one stage's first step to the next one's.
awk -v total=$(($(date +%s) - build_started)) '
    / STEP 1\/[0-9]+: FROM / { t = $1 + 0; name = $NF; if (n) dur[n] = t - start[n]; n++; start[n] = t; names[n] = name }
    END { if (n) dur[n] = total - start[n]; for (i = 1; i <= n; i++) printf "    build stage %-20s %5d s\n", names[i], dur[i] }
' "$build_log" >&2
[ "$build_status" -eq 0 ] || fail "podman build failed (exit $build_status; log above)"
stage_done "podman build (DEVICE=cpu)"
du_gb=$(du -sx -B1G "$work/storage" | cut -f1)
say "storage after the build: $du_gb GB"

# ---------------------------------------------------------------- 5. inside the image
mounts="$work/mounts"
mkdir -p "$mounts/data" "$mounts/runs"
chown "$run_uid:$run_uid" "$mounts/runs"
entry=/opt/fer-sparse/scripts/docker_entrypoint.sh
container=$(buildah "${oci[@]}" from --pull=never "$image")
containers+=("$container")
in_image() { buildah "${oci[@]}" run --isolation chroot "$@"; }

# Without mounts (first: a run with -v leaves its mount points behind).
set +e
in_image "$container" -- "$entry" caffe train -solver prototxt/resnet_l2_solver.prototxt \
    >"$work/nomount.out" 2>&1
nomount_status=$?
set -e
cat "$work/nomount.out" >&2
if [ "$nomount_status" -eq 0 ] || ! grep -q '/data is not mounted' "$work/nomount.out" \
        || ! grep -q '/runs is not mounted' "$work/nomount.out"; then
    fail "without mounts the entrypoint must refuse a training run and name /data and /runs (exit $nomount_status)"
fi
in_image "$container" -- "$entry" caffe --version >&2
in_image "$container" -- "$entry" python tools/crossval.py --help >"$work/help.out"
grep -q -- '--variant' "$work/help.out" || fail "tools/crossval.py --help printed no --variant option"
stage_done "no mounts: refused with a message; --version, --help run"

# The main job as the non-root user, data/ and runs/ mounted as docs/docker.md shows.
in_image --user fer -v "$mounts/data:/data:ro" -v "$mounts/runs:/runs" "$container" -- \
    "$entry" python tools/main_job.py >&2
report=$(find "$mounts/runs" -name 'report.md' | head -1)
[ -n "$report" ] || fail "the main job wrote no report.md into the mounted runs/"
owner=$(stat -c %u "$report")
[ "$owner" = "$run_uid" ] || fail "$report is owned by uid $owner, not by the image's user fer ($run_uid)"
say "main job report: ${report#"$mounts/"} (owner uid $owner)"
stage_done "main job as user fer, data/ + runs/ mounted"

in_image -v "$mounts/data:/data:ro" -v "$mounts/runs:/runs" "$container" -- \
    "$entry" bash -c 'python -m pytest -q -p no:cacheprovider tests/caffe_layers/test_*.py tests/runtime/test_caffe_env.py' >&2
stage_done "tests: layers + runtime (tiny caffe train runs)"
