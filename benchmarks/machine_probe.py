"""What the machine and a measured process run on: which BLAS and convolution library a
process loaded (threadpoolctl, /proc/<pid>/maps, oneDNN's own version call), the
processor and its flags, and the FMA peak of its cores. Standard library only at import
time, so that the PyTorch worker's environment can load it too."""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The probe and the other workers run through the command line's --worker.
BENCH_CLI = REPO_ROOT / "benchmarks" / "bench_train.py"

UNSET_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
UNSET_REASON = (
    "some machines set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE because older OpenBLAS builds crash "
    "or compute wrong results on their processor; they pin every OpenBLAS in the process to "
    "the named, older kernels (e.g. Haswell's 256-bit ones on an AVX-512 machine), which is "
    "not what a user's machine runs, so they are removed for both frameworks here (the tests "
    "and CI keep them)")

# Processor flags worth naming beside a figure: the vector extensions the kernels may use.
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni",
                  "avx512_bf16", "avx512_fp16", "amx_tile")


# Set by scripts/gpu/bundle_env.sh to where the GPU bundle is unpacked: its python3.11
# (PYTHONHOME), site/ and lib/ are on the paths of everything started from there.
BUNDLE_ROOT_VARIABLE = "FER_BUNDLE_ROOT"


def worker_pythonpath(env):
    """PYTHONPATH of a worker process: the project first (the workers import benchmarks.*,
    also in an environment that is not the project's, such as PyTorch's), then ``env``'s."""
    folders = [str(REPO_ROOT), *env.get("PYTHONPATH", "").split(os.pathsep)]
    return os.pathsep.join(dict.fromkeys(f for f in folders if f))


def foreign_python_env(env):
    """The environment for a worker in another Python than the project's (PyTorch's): without the
    GPU bundle's PYTHONHOME, which would point that interpreter at python3.11's standard library,
    and without the bundle's folders on PYTHONPATH and LD_LIBRARY_PATH, whose numpy and libraries
    would shadow that Python's own. Outside the bundle only PYTHONHOME is dropped."""
    clean = {k: v for k, v in env.items() if k != "PYTHONHOME"}
    bundle = env.get(BUNDLE_ROOT_VARIABLE)
    if bundle:
        for name in ("PYTHONPATH", "LD_LIBRARY_PATH"):
            kept = [d for d in env.get(name, "").split(os.pathsep) if d and not Path(d).is_relative_to(bundle)]
            clean[name] = os.pathsep.join(kept)
    return clean


BLAS_FILE = re.compile(r"lib(scipy_)?openblas|libblis|libmkl_rt|libblas\.so|libdnnl")


def describe_blas(info):
    """One line from threadpoolctl's threadpool_info() records."""
    parts = []
    for lib in info:
        if lib.get("user_api") != "blas":
            continue
        parts.append(f"{lib.get('internal_api')} {lib.get('version')} "
                     f"{lib.get('architecture') or ''} {lib.get('threading_layer') or ''} "
                     f"({lib.get('filepath')})".replace("  ", " "))
    return "; ".join(parts) or "no BLAS reported by threadpoolctl"


def mapped_blas_files(pid):
    """BLAS-like shared libraries in a process's memory map (real paths)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    files = {line.split()[-1] for line in maps.splitlines()
             if "/" in line and BLAS_FILE.search(line.rsplit("/", 1)[-1])}
    return sorted({os.path.realpath(f) for f in files})


def probe_blas(files, env):
    """(threadpoolctl's view of ``files``, describe_convolution of them), loaded into a fresh
    process with ``env`` (kernel selection reads the environment, so the probe gets the same
    one)."""
    proc = subprocess.run([sys.executable, str(BENCH_CLI), "--worker", "probe",
                           "--files", *files], capture_output=True, text=True,
                          env=dict(env, PYTHONPATH=worker_pythonpath(env)))
    if proc.returncode != 0:
        failed = f"probe failed: {proc.stderr.strip()[-300:]} (files: {', '.join(files)})"
        return failed, failed
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["blas"], result["convolution"]


def probe_worker(files):
    import ctypes
    import threadpoolctl
    for file in files:
        ctypes.CDLL(file)
    return {"blas": describe_blas(threadpoolctl.threadpool_info()),
            "convolution": describe_convolution(files)}


# dnnl_cpu_isa_t values of oneDNN 2.x (dnnl_types.h): the widest instructions its JIT
# kernels use on this processor.
ONEDNN_ISA = {0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0x407: "avx2_vnni", 0x27: "avx512_core",
              0x67: "avx512_core_vnni", 0xE7: "avx512_core_bf16", 0x3E7: "avx512_core_amx"}


def describe_convolution(files):
    """What the CPU convolutions of a Caffe process with ``files`` mapped run on: oneDNN
    (version and instruction set, read from the library itself) unless none is loaded or
    CAFFE_CPU_CONVOLUTION=gemm switches the build to Caffe's im2col + GEMM."""
    import ctypes
    onednn = [f for f in files if "libdnnl" in os.path.basename(f)]
    if not onednn:
        return "im2col + GEMM (no oneDNN loaded)"
    if os.environ.get("CAFFE_CPU_CONVOLUTION") == "gemm":
        return "im2col + GEMM (CAFFE_CPU_CONVOLUTION=gemm)"

    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int)]

    library = ctypes.CDLL(onednn[0])
    library.dnnl_version.restype = ctypes.POINTER(Version)
    version = library.dnnl_version().contents
    isa = library.dnnl_get_effective_cpu_isa()
    return (f"oneDNN {version.major}.{version.minor}.{version.patch} "
            f"{ONEDNN_ISA.get(isa, hex(isa))} ({onednn[0]})")


FMA_PEAK_C = r"""
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#ifdef __AVX512F__
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
static float hsum(vec v) { return _mm512_reduce_add_ps(v); }
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
static float hsum(vec v) { float f[8]; _mm256_storeu_ps(f, v); float s = 0;
  for (int i = 0; i < 8; ++i) s += f[i]; return s; }
#endif
#define CHAINS 12  /* more independent FMAs in flight than latency x ports */
int main(int argc, char **argv) {
  long reps = 1000000000L / CHAINS;
  float sink = 0;
  double t0 = omp_get_wtime();
  #pragma omp parallel reduction(+:sink)
  {
    vec acc[CHAINS], a = SET1(0.999999f), b = SET1(1e-7f);
    for (int c = 0; c < CHAINS; ++c) acc[c] = SET1((float)c);
    for (long r = 0; r < reps; ++r)
      for (int c = 0; c < CHAINS; ++c) acc[c] = FMA(acc[c], a, b);
    vec s = acc[0];
    for (int c = 1; c < CHAINS; ++c) s = ADD(s, acc[c]);
    sink += hsum(s);
  }
  double dt = omp_get_wtime() - t0;
  int threads = omp_get_max_threads();
  printf("%f %d %d %g\n", 2.0 * LANES * CHAINS * reps * threads / dt / 1e9, threads, LANES, sink);
  return 0;
}
"""


def measure_fma_peak(threads):
    """(GFLOP/s of independent FMA chains on `threads` cores, vector bits), or (None, None)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "fma.c", Path(tmp) / "fma"
        src.write_text(FMA_PEAK_C)
        build = subprocess.run(["gcc", "-O3", "-march=native", "-fopenmp", str(src), "-o", str(exe)],
                               capture_output=True, text=True)
        if build.returncode != 0:
            print(f"warning: cannot compile the FMA peak program ({build.stderr.strip()[:200]}); "
                  "the peak is not reported", file=sys.stderr)
            return None, None
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        runs = [subprocess.run([str(exe)], capture_output=True, text=True, env=env, check=True)
                .stdout.split() for _ in range(3)]
    best = max(runs, key=lambda r: float(r[0]))
    return float(best[0]), int(best[2]) * 32


def machine_description():
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores", " ".join(f for f in REPORTED_FLAGS if f in flags)
