#!/usr/bin/env bash
# The GPU check: the project's CUDA Caffe on a real NVIDIA GPU, in one short run.
#
#   here:        scripts/gpu/build_bundle.sh      builds CUDA Caffe with the
#                project's CMake build and packs .gpu-bundle/ (see that script)
#   GPU machine: scripts/gpu_check.sh [LOG_DIR]   from the repo root, with
#                .gpu-bundle/ beside it; needs only the NVIDIA driver and the
#                CUDA 13 runtime libraries (cuBLAS, cuRAND, cuDNN 9) there
#
# It runs, on GPU 0, in this order (the most telling first, so that a session
# whose device time runs out keeps what matters; FER_GPU_CHECK_BUDGET_S=N caps
# the whole script at N seconds: each step gets what is left, and a step that
# cannot start with 30 s left is skipped and marked so):
#   1. caffe device_query;
#   2. scripts/gpu/check_gpu.py in strict FP32 (CAFFE_ALLOW_TF32=0): pycaffe
#      forward/backward on the GPU (cuDNN and Caffe engines) against the CPU
#      within 1e-3, and `caffe train -gpu 0` of a small FER-sized net with the
#      project's sparseness loss (a Python layer);
#   3. Caffe's own gtests of the cuDNN and CUDA layers (caffe/bin/caffe-gtests,
#      caffe_build/gtests.py), in strict FP32: their gradient checks are sized
#      for FP32 arithmetic;
#   4. benchmarks/bench_train.py --gpu 0 --profile: `caffe time` per layer of the
#      face ResNet at 112, batch 64, as patched, FP32 and TF32, beside PyTorch
#      (docs/performance.md);
#   5. the same profile BVLC-like: cuDNN's ranking within 8 MB a stream, FP32;
#   6. check_gpu.py as users run it, TF32 allowed: its loss curve must follow
#      the strict one of step 2;
#   7. the project's layer tests (tests/caffe_layers/test_*.py) and runtime tests
#      with pycaffe in GPU mode (scripts/gpu/gpu_mode_plugin.py).
# Logs, check_gpu*.json, train.csv and steps.jsonl (one line a step: name,
# status ok/failed/skipped, seconds) go to LOG_DIR (default $OUT, else
# /tmp/fer-gpu-check). Exits non-zero if any step fails or is skipped.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundle=${FER_GPU_BUNDLE:-$repo/.gpu-bundle/fer-gpu-bundle.tar.xz}
logs=${1:-${OUT:-/tmp/fer-gpu-check}}
root=${FER_GPU_ROOT:-/tmp/fer-gpu}
iters=${FER_GPU_TRAIN_ITERS:-1000}
say() { printf '[gpu-check] %s\n' "$*" >&2; }

# shellcheck source=scripts/gpu/bundle_env.sh
source "$repo/scripts/gpu/bundle_env.sh" || exit 1
status=0

# shellcheck source=scripts/gpu/steps.sh
source "$repo/scripts/gpu/steps.sh"

strict=(env CAFFE_ALLOW_TF32=0 NVIDIA_TF32_OVERRIDE=0)
step device_query 60 "$FER_CAFFE_BIN" device_query -gpu 0
# GPU against CPU in strict FP32 (the project's Caffe runs FP32 convolutions and
# GEMMs on TF32 tensor cores unless CAFFE_ALLOW_TF32=0; cuDNN and cuBLAS honour
# NVIDIA_TF32_OVERRIDE=0 themselves), with the strict training curve as reference.
step check_gpu_fp32 180 "${strict[@]}" "$python" "$repo/scripts/gpu/check_gpu.py" \
    --caffe-bin "$FER_CAFFE_BIN" --work /tmp/fer-gpu-fp32 --device gpu --tolerance 1e-3 \
    --iters "$iters" --json "$logs/check_gpu_fp32.json"
gtest_filter=$("$python" -c 'from caffe_build.gtests import CUDA_GTEST_FILTER; print(CUDA_GTEST_FILTER)')
step gtests_cuda 300 "${strict[@]}" "$root/caffe/bin/caffe-gtests" --gtest_filter="$gtest_filter"
grep -E '^\[  (PASSED|FAILED)  \]' "$logs/gtests_cuda.log" >&2 2>/dev/null

# Per-layer `caffe time -gpu 0` of the face ResNet at 112, batch 64, beside
# PyTorch when FER_BENCH_TORCH_PYTHON names a python with torch (default: the
# machine's python3 where it imports torch; docs/performance.md): first as the
# patches run by default, then as BVLC Caffe chose its algorithms (cuDNN's
# ranking within 8 MB a stream, strict FP32; patches cuda/0006-0007 switched
# back). Rows go to $logs/train.csv; the per-layer tables to the step logs.
if [ -z "${FER_BENCH_TORCH_PYTHON:-}" ] && command -v python3 >/dev/null \
        && env -u PYTHONHOME -u PYTHONPATH LD_LIBRARY_PATH="$cuda_dirs" python3 -c "import torch" 2>/dev/null; then
    FER_BENCH_TORCH_PYTHON=$(command -v python3)
fi
torch=(${FER_BENCH_TORCH_PYTHON:+--torch-python "$FER_BENCH_TORCH_PYTHON"})
profile=("$python" "$repo/benchmarks/bench_train.py" --nets resnet --batch 64 --gpu 0
         --repeats 1 --profile --results "$logs/train.csv")
step profile_resnet 400 "${profile[@]}" --frameworks caffe-tool,pytorch --gpu-math fp32,tf32 "${torch[@]}"
step profile_resnet_bvlc_like 300 env CAFFE_CUDNN_ALGO_SEARCH=heuristic CAFFE_CUDNN_WORKSPACE_MB=24 \
    "${profile[@]}" --frameworks caffe-tool --gpu-math fp32

# As users run it, TF32 allowed: the differences to the CPU are reported, not
# judged (step 2 judges); the training curve must follow the strict one.
step check_gpu 180 "$python" "$repo/scripts/gpu/check_gpu.py" --caffe-bin "$FER_CAFFE_BIN" \
    --work /tmp/fer-gpu-work --device gpu --tolerance inf --iters "$iters" --json "$logs/check_gpu.json" \
    --curve-reference "$logs/check_gpu_fp32.json"
cat "$logs/check_gpu_fp32.json" "$logs/check_gpu.json" >&2 2>/dev/null
cp /tmp/fer-gpu-work/train_gpu.log "$logs/" 2>/dev/null

mapfile -t tests < <(ls "$repo"/tests/caffe_layers/test_*.py "$repo"/tests/runtime/test_caffe_env.py 2>/dev/null)
step pytest_gpu "${FER_GPU_PYTEST_LIMIT:-240}" "$python" -m pytest -q -rs -p no:cacheprovider -p gpu_mode_plugin "${tests[@]}"
tail -n 3 "$logs/pytest_gpu.log" >&2
say "done in $((SECONDS - start)) s, status $status"
exit $status
