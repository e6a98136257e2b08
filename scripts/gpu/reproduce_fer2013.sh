#!/usr/bin/env bash
# Table 3's ResNet softmax and L2 cells on FER2013 at the paper's solver, from
# scratch, on one GPU, in one prepared run:
#
#   here:        scripts/gpu/build_bundle.sh       CUDA Caffe through the project's CMake
#                                                  build, packed as .gpu-bundle/
#   GPU machine: scripts/gpu/reproduce_fer2013.sh --fer2013 FER2013.tar [--out DIR]
#
# FER2013.tar holds the image-folder copy (train/<class>/Training_*.png,
# test/<class>/{PublicTest,PrivateTest}_*.png; see docs/results.md for how to
# make it). Stages, each timed (stages.json in --out):
#   1. env      unpack the bundle, find the machine's CUDA 13 libraries (scripts/gpu/bundle_env.sh)
#   2. prepare  FER2013 at the net's input, 112x112 for the ResNet (data_prep/prepare.py, every core)
#   3. train    tools/reproduce.py --table 3 --nets "$net" --variants softmax l2 --scale paper,
#               both cells side by side on GPU 0 (--gpus 0,0: two caffe train processes)
#   4. report   the table (Markdown/CSV/JSON, statistics, protocol checks) copied into --out
#   5. speed    a training step of the same net, `caffe time -gpu 0` (the bundle's CUDA Caffe)
#               beside PyTorch (cuDNN) at the training input, batch 64, FP32 and TF32 each
#               (benchmarks/bench_train.py --gpu 0): train_speed.csv and speed.txt in --out.
#               PyTorch comes from $FER_BENCH_TORCH_PYTHON, else python3 on PATH; without
#               a torch that sees the GPU only Caffe is timed
#
# --device cpu --scale smoke [--net toy] runs the same stages on this machine with
# the project's .venv (how the tests check the script's parts; not a result).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
say() { printf '[reproduce-fer2013] %s\n' "$*" >&2; }
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

fer_tar="" out=${OUT:-/tmp/fer-reproduce} device=gpu scale=paper net=resnet stages="env,prepare,train,report,speed"
work=${FER_REPRODUCE_WORK:-/tmp/fer-reproduce-work}
while [ $# -gt 0 ]; do
    case $1 in
        --fer2013) fer_tar=${2:?--fer2013 needs a tarball}; shift 2 ;;
        --out) out=${2:?--out needs a folder}; shift 2 ;;
        --work) work=${2:?--work needs a folder}; shift 2 ;;
        --device) device=${2:?--device needs gpu or cpu}; shift 2 ;;
        --scale) scale=${2:?--scale needs paper, cpu or smoke}; shift 2 ;;
        --net) net=${2:?--net needs a net name}; shift 2 ;;
        --stages) stages=${2:?--stages needs a comma-separated list}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) say "error: unknown argument $1 (see --help)"; exit 2 ;;
    esac
done
case $device in gpu|cpu) ;; *) say "error: --device must be gpu or cpu, not $device"; exit 2 ;; esac
case $scale in paper|cpu|smoke) ;; *) say "error: --scale must be paper, cpu or smoke, not $scale"; exit 2 ;; esac
for stage in ${stages//,/ }; do
    case $stage in env|prepare|train|report|speed) ;; *) say "error: unknown stage $stage"; exit 2 ;; esac
done
wants() { case ",$stages," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
if wants prepare; then
    [ -n "$fer_tar" ] || { say "error: --fer2013 TARBALL is required for the prepare stage"; exit 2; }
    [ -f "$fer_tar" ] || { say "error: $fer_tar does not exist (a tar of the FER2013 image folder)"; exit 2; }
fi
mkdir -p "$out" "$work"
logs=$out
timings=()
timed() {
    local name=$1 t0=$SECONDS
    shift
    say "== $name"
    "$@"
    timings+=("\"$name\": $((SECONDS - t0))")
    say "$name: $((SECONDS - t0)) s"
}

setup_env() {
    if [ "$device" = gpu ]; then
        bundle=${FER_GPU_BUNDLE:-$repo/.gpu-bundle/fer-gpu-bundle.tar.xz}
        root=${FER_GPU_ROOT:-$work/bundle}
        # shellcheck source=scripts/gpu/bundle_env.sh
        source "$repo/scripts/gpu/bundle_env.sh"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
    else
        python=$repo/.venv/bin/python
        [ -x "$python" ] || { say "error: $python missing: run bash scripts/install.sh"; exit 1; }
    fi
}

prepare() {
    local raw=$work/fer2013
    if [ ! -f "$work/prepared/manifest.json" ]; then
        rm -rf "$raw" "$work/prepared"
        mkdir -p "$raw"
        tar -xf "$fer_tar" -C "$raw"
        # The tarball may hold the folder itself or its contents.
        local top
        top=$(find "$raw" -mindepth 1 -maxdepth 2 -type d -name train -printf '%h\n' | head -n 1)
        [ -n "$top" ] || { say "error: $fer_tar has no train/ folder (FER2013 image-folder layout)"; exit 1; }
        local size
        size=$("$python" -c "from nets.catalog import NETS; print(NETS['$net'].input_size)")
        "$python" "$repo/data_prep/prepare.py" --dataset fer2013 --root "$top" --size "$size" \
            --workers "$(nproc)" --out "$work/prepared" --quiet
    fi
}

train() {
    local parallel=(--gpus 0,0)
    [ "$device" = gpu ] || parallel=(--jobs 2)
    "$python" "$repo/tools/reproduce.py" --table 3 --nets "$net" --variants softmax l2 --scale "$scale" \
        --data "fer2013=$work/prepared" --runs-dir "$work/runs" --out "$work/table" "${parallel[@]}"
}

report() {
    cp "$work"/table/table_3.* "$out"/
    ls "$work"/table/*.png >/dev/null 2>&1 && cp "$work"/table/*.png "$out"/
    say "table: $out/table_3.md"
}

speed() {
    local device_args=(--gpu 0 --gpu-math fp32,tf32) torch_args=()
    [ "$device" = gpu ] || device_args=(--iters 2 --no-peak)
    # PyTorch's interpreter runs without the bundle's PYTHONHOME/PYTHONPATH (they name the
    # bundle's Python 3.11); the worker imports only the standard library and torch.
    local torch_python=${FER_BENCH_TORCH_PYTHON:-$(command -v python3 || true)}
    local check='import torch, sys; sys.exit(0 if torch.cuda.is_available() or sys.argv[1] == "cpu" else 1)'
    if [ -n "$torch_python" ] && env -u PYTHONHOME -u PYTHONPATH "$torch_python" -c "$check" "$device" 2>/dev/null; then
        cat >"$work/torch-python" <<WRAP
#!/bin/sh
exec env -u PYTHONHOME -u PYTHONPATH '$torch_python' "\$@"
WRAP
        chmod +x "$work/torch-python"
        torch_args=(--torch-python "$work/torch-python")
    else
        say "speed: no python with torch (and a GPU) at '${torch_python}': timing Caffe only"
    fi
    "$python" "$repo/benchmarks/bench_train.py" --nets "$net" --repeats 1 --frameworks caffe-tool,pytorch \
        "${device_args[@]}" "${torch_args[@]}" --results "$out/train_speed.csv" | tee "$out/speed.txt"
}

total=$SECONDS
for stage in env prepare train report speed; do
    if [ "$stage" = env ]; then timed env setup_env; continue; fi
    wants "$stage" && timed "$stage" "$stage"
done
timings+=("\"total\": $((SECONDS - total))")
(IFS=,; printf '{%s}\n' "${timings[*]}") >"$out/stages.json"
say "done: $(cat "$out/stages.json")"
