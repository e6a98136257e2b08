#!/usr/bin/env bash
# Builds the CUDA version of the project's Caffe on THIS machine (it needs
# nvcc, no GPU) through the top-level CMakeLists.txt, and packs it with
# everything it loads that a bare GPU machine may lack into one archive that
# scripts/gpu_check.sh unpacks and tests there.
#
#   scripts/gpu/build_bundle.sh [BUNDLE_DIR]      (default: <repo>/.gpu-bundle)
#
# The archive holds: the Caffe install (CUDA, cuDNN, pycaffe, Python layer,
# caffe-gtests: Caffe's own tests of the cuDNN and CUDA layers),
# the shared libraries it links that are not part of glibc/libstdc++ (Boost,
# glog, protobuf, HDF5, OpenBLAS, ...), Debian's python3.11, and WHOLE every
# third-party package the project's Python imports (pack_bundle.py finds them:
# numpy, scipy, matplotlib with its mpl-data, skimage, cv2, dlib with its
# landmark models, onnx, onnxruntime, imagehash, pywt, tqdm, ...). cuBLAS, cuRAND and cuDNN are NOT packed: the GPU machine's
# CUDA 13 runtime libraries are used (gpu_check.sh finds them).
#
# Environment:
#   FER_GPU_ARCH        compute capabilities to build (default 90: H100/H200)
#   FER_CACHE_DIR       cache root, shared with scripts/install.sh (default
#                       ${XDG_CACHE_HOME:-~/.cache}/fer-sparse). The CUDA Caffe
#                       is installed in caffe-cuda-<key> there, the key hashing
#                       CMakeLists.txt, caffe_build/patches/*.patch and
#                       caffe_build/patches/cuda/*.patch, the arch, the flags,
#                       nvcc's version and the CUDA library versions; a second
#                       run with the same key reuses it.
#   FER_GPU_BUILD_DIR   scratch folder for the build and the CUDA library wheels
#                       (default /tmp/caffe-cuda)
#   FER_CUDA_LIBS_DIR   folder with include/ and lib/ of cuBLAS, cuRAND and
#                       cuDNN when the CUDA toolkit has no cuBLAS (as here);
#                       default: made from NVIDIA's PyPI wheels, pinned below
#   FER_GPU_BUILD_JOBS  parallel compile jobs (default: number of cores)
#   FER_GPU_BUNDLE_XZ_LEVEL  xz preset of the archive (default 6)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bundle_dir=${1:-$repo/.gpu-bundle}
arch=${FER_GPU_ARCH:-90}
work=${FER_GPU_BUILD_DIR:-/tmp/caffe-cuda}
cache=${FER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fer-sparse}
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

# The cache key covers everything that changes the built CUDA Caffe.
cuda_cache_key() {
    {
        sha256sum "$repo/CMakeLists.txt" "$repo"/caffe_build/patches/*.patch \
            "$repo"/caffe_build/patches/cuda/*.patch | awk '{print $1}'
        echo "arch=$arch cuda=ON cudnn=ON slim_io=ON"
        nvcc --version | tail -1
        echo "libs=${wheels[*]}"
        if [ -n "${FER_CUDA_LIBS_DIR:-}" ]; then
            cat "$FER_CUDA_LIBS_DIR/include/cudnn_version.h" "$FER_CUDA_LIBS_DIR/include/cublas_api.h" \
                2>/dev/null | grep -E '^#define (CUDNN|CUBLAS)_VER_(MAJOR|MINOR|PATCH)'
        fi
        "$python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -c1-16
}

build_caffe() {
    mkdir -p "$cache"
    prefix=$cache/caffe-cuda-$(cuda_cache_key)
    if [ -f "$prefix/.fer-build-complete" ]; then
        say "Caffe (CUDA): cached at $prefix"
        return
    fi
    local tarball
    tarball=$("$repo/scripts/fetch_caffe_source.sh" "$cache/src")
    # One build folder per key: builds of different checkouts do not collide.
    local build=$work/build-${prefix##*-}
    mkdir -p "$work"
    rm -rf "$build" "$prefix"
    say "building Caffe with CUDA for sm_$arch into $prefix (log: $build/caffe/src/caffe-stamp/)"
    local start=$SECONDS
    cmake -S "$repo" -B "$build" -DCAFFE_SOURCE_TARBALL="$tarball" \
        -DCAFFE_INSTALL_PREFIX="$prefix" -DCAFFE_PYTHON_EXECUTABLE="$python" \
        -DCAFFE_USE_CUDA=ON -DCAFFE_USE_CUDNN=ON -DCAFFE_CUDA_ARCH="$arch" \
        -DCAFFE_CUDA_SLIM_IO=ON ${FER_GPU_BUILD_JOBS:+-DCAFFE_BUILD_JOBS=$FER_GPU_BUILD_JOBS} \
        >"$build.configure.log"
    cmake --build "$build"
    # Written last: a prefix without it is an interrupted build.
    date -u +%FT%TZ >"$prefix/.fer-build-complete"
    rm -rf "$build"
    say "built in $(( (SECONDS - start) / 60 )) min"
}

# OpenCV for the bundle: the headless wheel carries the few libraries it needs,
# where Debian's cv2 links GTK, FFmpeg, GDAL and VTK (pack_bundle.py).
opencv_wheel="opencv-python-headless==4.10.0.84"
opencv_dir() {
    local dir=$work/opencv-${opencv_wheel##*==}
    if [ ! -f "$dir/cv2/__init__.py" ]; then
        say "unpacking $opencv_wheel into $dir"
        rm -rf "$dir" "$work/opencv-wheel"
        "$repo/.venv/bin/python" -m pip download -q --no-deps --only-binary=:all: \
            --platform manylinux2014_x86_64 -d "$work/opencv-wheel" "$opencv_wheel"
        "$python" -m zipfile -e "$work"/opencv-wheel/*.whl "$dir.partial"
        mv "$dir.partial" "$dir"
    fi
    echo "$dir"
}

# Caffe's gtests of the cuDNN and CUDA layers, compiled against that install
# (scripts/gpu/build_gtests.py, about a minute on 2 cores) for scripts/gpu_check.sh.
build_gtests() {
    PYTHONPATH=$repo "$python" "$repo/scripts/gpu/build_gtests.py" --caffe-prefix "$prefix" \
        --source "$("$repo/scripts/fetch_caffe_source.sh" "$cache/src")" --work "$work/gtests" \
        --jobs "${FER_GPU_BUILD_JOBS:-$(nproc)}"
}

cuda_libs_dir
build_caffe
build_gtests
if [ "${FER_GPU_BUILD_ONLY:-0}" = 1 ]; then
    exit 0
fi
"$python" "$repo/scripts/gpu/pack_bundle.py" --caffe-prefix "$prefix" --repo "$repo" \
    --venv "$repo/.venv" --opencv-dir "$(opencv_dir)" --xz-level "${FER_GPU_BUNDLE_XZ_LEVEL:-6}" \
    --out "$bundle_dir"
