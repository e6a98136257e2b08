#!/usr/bin/env bash
# Builds the CUDA version of the project's Caffe on THIS machine (it needs
# nvcc, no GPU) through the top-level CMakeLists.txt, and packs it with
# everything it loads that a bare GPU machine may lack into one archive that
# scripts/gpu_check.sh unpacks and tests there.
#
#   scripts/gpu/build_bundle.sh [BUNDLE_DIR]      (default: <repo>/.gpu-bundle)
#
# The archive holds: the Caffe install (CUDA, cuDNN, pycaffe, Python layer),
# the shared libraries it links that are not part of glibc/libstdc++ (Boost,
# glog, protobuf, HDF5, OpenBLAS, ...), Debian's python3.11 with the modules
# pycaffe, the project's layers and pytest import, and the project's .venv
# site-packages. cuBLAS, cuRAND and cuDNN are NOT packed: the GPU machine's
# CUDA 13 runtime libraries are used (gpu_check.sh finds them).
#
# Environment:
#   FER_GPU_ARCH        compute capabilities to build (default 90: H100/H200)
#   FER_GPU_BUILD_DIR   build and install folder (default /tmp/caffe-cuda)
#   FER_CUDA_LIBS_DIR   folder with include/ and lib/ of cuBLAS, cuRAND and
#                       cuDNN when the CUDA toolkit has no cuBLAS (as here);
#                       default: made from NVIDIA's PyPI wheels, pinned below
#   FER_GPU_BUILD_JOBS  parallel compile jobs (default: number of cores)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bundle_dir=${1:-$repo/.gpu-bundle}
arch=${FER_GPU_ARCH:-90}
work=${FER_GPU_BUILD_DIR:-/tmp/caffe-cuda}
prefix=$work/install
python=/usr/bin/python3
say() { printf '[gpu-bundle] %s\n' "$*" >&2; }

# CUDA 13 versions of the libraries the toolkit on this machine lacks.
wheels=("nvidia-cublas==13.0.2.14" "nvidia-curand==10.4.0.35" "nvidia-cudnn-cu13==9.13.1.26")

cuda_home=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
say "nvcc: $(nvcc --version | tail -1) in $cuda_home"

cuda_libs_dir() {
    if [ -f "$cuda_home/include/cublas_v2.h" ] && [ -f "$cuda_home/include/cudnn.h" ]; then
        return 0
    fi
    local dir=${FER_CUDA_LIBS_DIR:-$work/cuda-libs}
    if [ ! -f "$dir/include/cudnn_version.h" ]; then
        say "the toolkit has no cuBLAS/cuDNN: unpacking NVIDIA's wheels into $dir"
        local dl="$work/wheels"
        mkdir -p "$dl" "$dir/include" "$dir/lib"
        "$repo/.venv/bin/python" -m pip download -q --no-deps --only-binary=:all: \
            --platform manylinux_2_27_x86_64 -d "$dl" "${wheels[@]}"
        local unpacked="$dl/unpacked"
        rm -rf "$unpacked"
        for w in "$dl"/*.whl; do "$python" -m zipfile -e "$w" "$unpacked"; done
        cp -a "$unpacked"/nvidia/*/include/. "$dir/include/"
        cp -a "$unpacked"/nvidia/*/lib/. "$dir/lib/"
        rm -rf "$unpacked"
        for so in "$dir"/lib/*.so.*; do ln -sf "$(basename "$so")" "${so%%.so.*}.so"; done
    fi
    # Caffe's CMake finds them through these; nvcc and g++ through CPATH/LIBRARY_PATH.
    export CMAKE_INCLUDE_PATH=$dir/include CMAKE_LIBRARY_PATH=$dir/lib
    export CPATH=$dir/include${CPATH:+:$CPATH} LIBRARY_PATH=$dir/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
    # pack_bundle.py runs the build here (CPU mode) while tracing its imports.
    export LD_LIBRARY_PATH=$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
}

build_caffe() {
    if [ -f "$prefix/.fer-build-complete" ]; then
        say "Caffe (CUDA) already built in $prefix"
        return
    fi
    local tarball
    tarball=$("$repo/scripts/fetch_caffe_source.sh" "$work/src")
    rm -rf "$work/build" "$prefix"
    say "building Caffe with CUDA for sm_$arch into $prefix (log: $work/build/caffe/src/caffe-stamp/)"
    local start=$SECONDS
    cmake -S "$repo" -B "$work/build" -DCAFFE_SOURCE_TARBALL="$tarball" \
        -DCAFFE_INSTALL_PREFIX="$prefix" -DCAFFE_PYTHON_EXECUTABLE="$python" \
        -DCAFFE_USE_CUDA=ON -DCAFFE_USE_CUDNN=ON -DCAFFE_CUDA_ARCH="$arch" \
        -DCAFFE_CUDA_SLIM_IO=ON ${FER_GPU_BUILD_JOBS:+-DCAFFE_BUILD_JOBS=$FER_GPU_BUILD_JOBS} \
        >"$work/configure.log"
    cmake --build "$work/build"
    date -u +%FT%TZ >"$prefix/.fer-build-complete"
    say "built in $(( (SECONDS - start) / 60 )) min"
}

cuda_libs_dir
build_caffe
if [ "${FER_GPU_BUILD_ONLY:-0}" = 1 ]; then
    exit 0
fi
"$python" "$repo/scripts/gpu/pack_bundle.py" --caffe-prefix "$prefix" --repo "$repo" \
    --venv "$repo/.venv" --out "$bundle_dir"
