#!/usr/bin/env bash
# Installs everything the project needs, idempotently (a second run takes
# seconds):
#   1. the Debian packages in caffe_build/debian-packages.txt;
#   2. Caffe, built by the top-level CMakeLists.txt into a cache outside the
#      clone keyed by (CMakeLists.txt, patches, flags), unless it is there
#      already or FER_CAFFE_PREFIX names an existing install;
#   3. .venv/ from Debian's /usr/bin/python3 (--system-site-packages) with
#      requirements.txt, the project installed editable with --no-deps (its
#      fer-* commands in .venv/bin), a .pth that makes caffe and the project importable,
#      and .venv/bin/caffe, a wrapper that gives the caffe tool's embedded
#      interpreter the PYTHONPATH it needs.
# Where everything is gets recorded in .venv/fer-env.sh.
#
# Environment:
#   FER_CACHE_DIR      cache root (default ${XDG_CACHE_HOME:-~/.cache}/fer-sparse)
#   FER_CAFFE_PREFIX   use this Caffe install (bin/caffe, python/caffe) instead of building
#   FER_CAFFE_SOURCE_DIR  build from this git checkout of BVLC/caffe at 99bd997
#   FER_CAFFE_CXX_FLAGS   extra compiler flags for Caffe (part of the cache key)
#   FER_CAFFE_BLAS     Caffe's BLAS (part of the cache key; docs/performance.md):
#                      openblas-openmp (default: Debian's OpenBLAS, OpenMP variant) or
#                      scipy-openblas32 (a current OpenBLAS, pip-installed into the prefix)
#   FER_CAFFE_CPU_CONVOLUTION  Caffe's CPU convolutions (part of the cache key):
#                      onednn (default: oneDNN's kernels, Debian's libdnnl-dev) or gemm
#                      (Caffe's im2col + GEMM on the BLAS above)
#   FER_SKIP_APT=1     do not call apt-get (packages already there)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=/usr/bin/python3
venv="$repo/.venv"
cache=${FER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fer-sparse}
cxx_flags=${FER_CAFFE_CXX_FLAGS:-}
blas=${FER_CAFFE_BLAS:-openblas-openmp}
cpu_convolution=${FER_CAFFE_CPU_CONVOLUTION:-onednn}
# The scipy-openblas32 wheel (PyPI) the CAFFE_BLAS=scipy-openblas32 build links.
scipy_openblas32=scipy-openblas32==0.3.34.481.3
say() { printf '[install] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_debian_packages() {
    mapfile -t pkgs < <(grep -v '^\s*#' "$repo/caffe_build/debian-packages.txt" | grep -v '^\s*$')
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "Debian packages: all ${#pkgs[@]} present"
        return
    fi
    if [ "${FER_SKIP_APT:-0}" = 1 ]; then
        say "error: FER_SKIP_APT=1 but these packages are missing: ${missing[*]}"
        exit 1
    fi
    say "Debian packages: installing ${#missing[@]} (${missing[*]})"
    as_root apt-get update -q
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The cache key covers everything that changes the built Caffe.
caffe_cache_key() {
    {
        sha256sum "$repo/CMakeLists.txt" "$repo"/caffe_build/patches/*.patch | awk '{print $1}'
        echo "cxx_flags=$cxx_flags"
        echo "blas=$blas"
        echo "cpu_convolution=$cpu_convolution"
        if [ "$blas" = scipy-openblas32 ]; then echo "$scipy_openblas32"; fi
        sha256sum "$repo"/caffe_build/blas/* | awk '{print $1}'
        echo "source_dir=${FER_CAFFE_SOURCE_DIR:+git-99bd997}"
        "$python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -c1-16
}

build_caffe() {
    local prefix=$1
    local build="$cache/build-$(basename "$prefix")"
    local source_arg
    if [ -n "${FER_CAFFE_SOURCE_DIR:-}" ]; then
        source_arg="-DCAFFE_SOURCE_DIR=$FER_CAFFE_SOURCE_DIR"
        caffe_source=$FER_CAFFE_SOURCE_DIR
    else
        caffe_source=$("$repo/scripts/fetch_caffe_source.sh" "$cache/src")
        source_arg="-DCAFFE_SOURCE_TARBALL=$caffe_source"
    fi
    rm -rf "$build" "$prefix"
    local blas_args=(-DCAFFE_BLAS="$blas" -DCAFFE_CPU_CONVOLUTION="$cpu_convolution")
    if [ "$blas" = scipy-openblas32 ]; then
        # Inside the prefix: Caffe's RUNPATH points here, so it lives and goes with the build.
        "$python" -m pip install -q --disable-pip-version-check --no-deps \
            --target "$prefix/blas" "$scipy_openblas32"
        blas_args+=(-DCAFFE_SCIPY_OPENBLAS_DIR="$prefix/blas/scipy_openblas32")
    fi
    say "building Caffe into $prefix (about 4 minutes on 2 cores; log: $build/caffe/src/caffe-stamp/)"
    cmake -S "$repo" -B "$build" "$source_arg" -DCAFFE_INSTALL_PREFIX="$prefix" \
        -DCAFFE_CXX_FLAGS="$cxx_flags" -DCAFFE_PYTHON_EXECUTABLE="$python" "${blas_args[@]}" \
        >"$cache/cmake-configure.log" 2>&1 \
        || { cat "$cache/cmake-configure.log" >&2; exit 1; }
    cmake --build "$build"
    # The source it was built from (tests compile Caffe's own gtests of the
    # patched layers against it). The marker is written last: a prefix
    # without it is an interrupted build.
    echo "$caffe_source" >"$prefix/.fer-source"
    date -u +%FT%TZ >"$prefix/.fer-build-complete"
    rm -rf "$build"
}

find_or_build_caffe() {
    if [ -n "${FER_CAFFE_PREFIX:-}" ]; then
        [ -x "$FER_CAFFE_PREFIX/bin/caffe" ] && [ -d "$FER_CAFFE_PREFIX/python/caffe" ] || {
            say "error: FER_CAFFE_PREFIX=$FER_CAFFE_PREFIX has no bin/caffe and python/caffe"
            exit 1
        }
        say "Caffe: using FER_CAFFE_PREFIX=$FER_CAFFE_PREFIX"
        caffe_prefix=$FER_CAFFE_PREFIX
        return
    fi
    mkdir -p "$cache"
    caffe_prefix="$cache/caffe-$(caffe_cache_key)"
    if [ -f "$caffe_prefix/.fer-build-complete" ]; then
        say "Caffe: cached at $caffe_prefix"
    else
        build_caffe "$caffe_prefix"
    fi
}

make_venv() {
    if [ ! -x "$venv/bin/python" ] || [ "$(readlink -f "$venv/bin/python")" != "$(readlink -f "$python")" ]; then
        say "creating $venv from $python"
        rm -rf "$venv"
        "$python" -m venv --system-site-packages "$venv"
    fi
    local stamp="$venv/.requirements.sha256"
    local want
    want=$(sha256sum "$repo/requirements.txt" | cut -c1-64)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "pip: installing requirements.txt into $venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$repo/requirements.txt"
        echo "$want" >"$stamp"
    else
        say "pip: requirements.txt already installed"
    fi
    install_project
}

# The project itself, editable, for its console commands (.venv/bin/fer-crossval, ...;
# pyproject.toml's [project.scripts]) that work with or without an activated venv.
# --no-deps: its dependencies are requirements.txt's and Debian's (numpy, protobuf,
# scipy, ... through --system-site-packages), which pip must not replace with PyPI
# builds. --no-build-isolation: built by the venv's setuptools, offline and in a
# second, rather than by a freshly downloaded one.
install_project() {
    local stamp="$venv/.project.sha256"
    local want
    want=$(sha256sum "$repo/pyproject.toml" | cut -c1-64)
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$venv/bin/fer-crossval" ]; then
        say "pip: the project's commands already installed"
        return
    fi
    say "pip: installing the project (editable, --no-deps) and its fer-* commands into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
        --no-build-isolation -e "$repo"
    echo "$want" >"$stamp"
}

link_environment() {
    local site
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # The project and pycaffe on every .venv python's path, no sys.path edits in code.
    printf '%s\n%s\n' "$repo" "$caffe_prefix/python" >"$site/fer_sparse.pth"
    cat >"$venv/fer-env.sh" <<ENV
# Written by scripts/install.sh: where the project's pieces are.
FER_REPO='$repo'
FER_CAFFE_PREFIX='$caffe_prefix'
FER_CAFFE_BIN='$caffe_prefix/bin/caffe'
FER_VENV='$venv'
FER_VENV_SITE='$site'
ENV
    # caffe's embedded interpreter is Debian's python, which ignores an activated
    # venv: hand it the project, pycaffe and the venv's packages explicitly.
    # `caffe train` first goes through runtime/preflight.py: it creates the
    # snapshot folder and names the data_prep command for a missing LMDB.
    cat >"$venv/bin/caffe" <<WRAP
#!/bin/sh
# Written by scripts/install.sh: runs the project's Caffe with Python layers importable.
export PYTHONPATH='$repo:$caffe_prefix/python:$site'\${PYTHONPATH:+:\$PYTHONPATH}
case " \$* " in *" train "*) '$venv/bin/python' '$repo/tools/caffe_preflight.py' "\$@" || exit \$? ;; esac
exec '$caffe_prefix/bin/caffe' "\$@"
WRAP
    chmod +x "$venv/bin/caffe"
}

check_environment() {
    "$venv/bin/caffe" --version >/dev/null 2>&1 || {
        say "error: $venv/bin/caffe does not run; remove $caffe_prefix and rerun scripts/install.sh"
        exit 1
    }
    "$venv/bin/python" -c 'import caffe, caffe_layers' || {
        say "error: .venv/bin/python cannot import caffe; remove $caffe_prefix and rerun scripts/install.sh"
        exit 1
    }
}

install_debian_packages
find_or_build_caffe
make_venv
link_environment
check_environment
say "ready: source .venv/bin/activate   (caffe: $caffe_prefix)"
