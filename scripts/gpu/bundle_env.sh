# Sourced by scripts/gpu_check.sh and scripts/gpu/reproduce_fer2013.sh on the GPU
# machine: unpacks the bundle that scripts/gpu/build_bundle.sh packed, finds the
# machine's CUDA 13 libraries and sets up the environment the bundle's Caffe and
# Python need. Expects: repo, bundle, logs, root and say(); sets FER_CAFFE_BIN,
# python, LD_LIBRARY_PATH, PYTHONHOME, PYTHONPATH.
join_parts() {
    # Sent in parts (each under the device tool's 64 MiB a call): join them, in name order.
    if [ ! -f "$1" ] && compgen -G "$1.part-*" >/dev/null; then
        cat "$1".part-* >"$1.joining" && mv "$1.joining" "$1" || return 1
        say "joined $(ls "$1".part-* | wc -l) parts into $1"
    fi
}
landmarks=${bundle%/*}/fer-gpu-landmarks.tar.xz
join_parts "$bundle" && join_parts "$landmarks" || exit 1
[ -f "$bundle" ] || { say "error: $bundle missing: run scripts/gpu/build_bundle.sh first"; exit 1; }
mkdir -p "$logs" "$root"
start=$SECONDS
tar -xJf "$bundle" -C "$root" || exit 1
# dlib's 68-point landmark model, in an archive of its own (pack_bundle.py): only face
# alignment needs it, so a session that aligns no faces may leave it behind.
if [ -f "$landmarks" ]; then
    tar -xJf "$landmarks" -C "$root" || exit 1
else
    say "no $landmarks: face alignment (prepare of an aligned database, predict.py on photos) is unavailable"
fi
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
# site/ named explicitly: caffe's embedded interpreter, started without a
# program name, takes the first python3 on PATH for its own, and where that is
# a venv (as on the GPU machine) site.py skips PYTHONHOME's folders.
export PYTHONPATH=$repo:$root/caffe/python:$root/site:$repo/scripts/gpu
# Debian's matplotlib looks for its rc file in /etc only; the bundle carries it.
export MATPLOTLIBRC=$root/site/matplotlib/mpl-data/matplotlibrc MPLBACKEND=Agg
# Like .venv/bin/caffe: the embedded interpreter gets the project and pycaffe
# in front of whatever PYTHONPATH a caller sets.
cat >"$root/caffe-wrapper" <<WRAP
#!/bin/sh
export PYTHONPATH='$PYTHONPATH'\${PYTHONPATH:+:\$PYTHONPATH}
exec '$root/caffe/bin/caffe' "\$@"
WRAP
chmod +x "$root/caffe-wrapper"
# Named so that a worker in another Python (PyTorch's, benchmarks/machine_probe.py)
# is started without the bundle's PYTHONHOME and folders.
export FER_CAFFE_BIN=$root/caffe-wrapper GLOG_logtostderr=1 FER_BUNDLE_ROOT=$root
python=$root/python/usr/bin/python3.11
