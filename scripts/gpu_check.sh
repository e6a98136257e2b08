#!/usr/bin/env bash
# The GPU check: the project's CUDA Caffe on a real NVIDIA GPU, in one short run.
#
#   here:        scripts/gpu/build_bundle.sh      builds CUDA Caffe with the
#                project's CMake build and packs .gpu-bundle/ (see that script)
#   GPU machine: scripts/gpu_check.sh [LOG_DIR]   from the repo root, with
#                .gpu-bundle/ beside it; needs only the NVIDIA driver and the
#                CUDA 13 runtime libraries (cuBLAS, cuRAND, cuDNN 9) there
#
# It runs, on GPU 0:
#   1. caffe device_query;
#   2. the project's layer tests (tests/test_layers_*.py) and runtime tests
#      with pycaffe in GPU mode (scripts/gpu/gpu_mode_plugin.py);
#   3. scripts/gpu/check_gpu.py: pycaffe forward/backward on the GPU (cuDNN and
#      Caffe engines) against the CPU, in strict FP32 and with TF32 allowed,
#      then `caffe train -gpu 0` of a small FER-sized net with the project's
#      sparseness loss (a Python layer), reporting the time per iteration.
# Logs and check_gpu.json go to LOG_DIR (default $OUT, else /tmp/fer-gpu-check).
# Exits non-zero if any step fails; every step runs regardless.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundle=${FER_GPU_BUNDLE:-$repo/.gpu-bundle/fer-gpu-bundle.tar.xz}
logs=${1:-${OUT:-/tmp/fer-gpu-check}}
root=${FER_GPU_ROOT:-/tmp/fer-gpu}
iters=${FER_GPU_TRAIN_ITERS:-1000}
say() { printf '[gpu-check] %s\n' "$*" >&2; }

[ -f "$bundle" ] || { say "error: $bundle missing: run scripts/gpu/build_bundle.sh first"; exit 1; }
mkdir -p "$logs" "$root"
start=$SECONDS
tar -xJf "$bundle" -C "$root" || exit 1
say "unpacked the bundle in $((SECONDS - start)) s"

# The machine's CUDA 13 math libraries (cuBLAS, cuRAND, cuDNN 9 and what cuDNN
# loads); the bundle carries only libcudart. Where they come as NVIDIA's pip
# packages, take every nvidia/*/lib of ONE installation (PyTorch's first), so
# that cuDNN's sub-libraries match it.
find_libs() {
    find /opt /usr/local /usr/lib -xdev -name "$1" 2>/dev/null | sort | awk '/torch/ {print; next} {rest = rest $0 "\n"} END {printf "%s", rest}'
}
cudnn=$(find_libs libcudnn.so.9 | head -n 1)
case $cudnn in
    */nvidia/*/lib/libcudnn.so.9) cuda_dirs=$(ls -d "${cudnn%/*/lib/libcudnn.so.9}"/*/lib | paste -sd:) ;;
    ?*) cuda_dirs=${cudnn%/*} ;;
    *) cuda_dirs="" ;;
esac
for lib in libcublas.so.13 libcurand.so.10; do
    found=$(find_libs "$lib" | head -n 1)
    [ -n "$found" ] || { say "error: no $lib (CUDA 13) on this machine"; exit 1; }
    case ":$cuda_dirs:" in *":${found%/*}:"*) ;; *) cuda_dirs=$cuda_dirs:${found%/*} ;; esac
done
[ -n "$cudnn" ] || { say "error: no cuDNN 9 (libcudnn.so.9) on this machine"; exit 1; }
say "CUDA libraries from: $cuda_dirs"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$logs/gpu.txt"

export LD_LIBRARY_PATH=$root/lib:$root/caffe/lib:$cuda_dirs
export PYTHONHOME=$root/python/usr PYTHONNOUSERSITE=1 PYTHONUNBUFFERED=1
# dist-packages named explicitly: caffe's embedded interpreter, started without
# a program name, takes the first python3 on PATH for its own, and where that
# is a venv (as on the GPU machine) site.py skips PYTHONHOME's dist-packages.
export PYTHONPATH=$repo:$root/caffe/python:$root/site:$root/python/usr/lib/python3/dist-packages:$repo/scripts/gpu
# Like .venv/bin/caffe: the embedded interpreter gets the project and pycaffe
# in front of whatever PYTHONPATH a caller sets.
cat >"$root/caffe-wrapper" <<WRAP
#!/bin/sh
export PYTHONPATH='$PYTHONPATH'\${PYTHONPATH:+:\$PYTHONPATH}
exec '$root/caffe/bin/caffe' "\$@"
WRAP
chmod +x "$root/caffe-wrapper"
export FER_CAFFE_BIN=$root/caffe-wrapper GLOG_logtostderr=1
python=$root/python/usr/bin/python3.11
status=0

step() {
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    say "== $name (at most $limit s)"
    if timeout "$limit" "$@" >"$logs/$name.log" 2>&1; then
        say "$name: ok ($((SECONDS - t0)) s)"
    else
        say "$name: FAILED ($((SECONDS - t0)) s); last lines:"
        tail -n 40 "$logs/$name.log" >&2
        status=1
    fi
}

step device_query 60 "$FER_CAFFE_BIN" device_query -gpu 0
mapfile -t tests < <(ls "$repo"/tests/test_layers_*.py "$repo"/tests/test_runtime.py 2>/dev/null)
step pytest_gpu "${FER_GPU_PYTEST_LIMIT:-240}" "$python" -m pytest -q -rs -p no:cacheprovider -p gpu_mode_plugin "${tests[@]}"
tail -n 3 "$logs/pytest_gpu.log" >&2
# GPU against CPU in strict FP32 (cuDNN and cuBLAS may use TF32 on Ampere and
# later unless told not to), then as users run it: TF32 allowed, and training.
step check_gpu_fp32 60 env NVIDIA_TF32_OVERRIDE=0 "$python" "$repo/scripts/gpu/check_gpu.py" \
    --caffe-bin "$FER_CAFFE_BIN" --work /tmp/fer-gpu-fp32 --device gpu --tolerance 1e-3 --iters 0
# With TF32 the differences are reported, not judged (the step above judges).
step check_gpu 180 "$python" "$repo/scripts/gpu/check_gpu.py" --caffe-bin "$FER_CAFFE_BIN" \
    --work /tmp/fer-gpu-work --device gpu --tolerance inf --iters "$iters" --json "$logs/check_gpu.json"
cat "$logs/check_gpu_fp32.log" "$logs/check_gpu.json" >&2
cp /tmp/fer-gpu-work/train_gpu.log "$logs/" 2>/dev/null
say "done in $((SECONDS - start)) s, status $status"
exit $status
