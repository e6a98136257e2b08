"""Training-step speed of the project's nets in Caffe (the tool and pycaffe) beside PyTorch.

One command measures, in one run, the milliseconds of a training step
(forward + backward, no weight update) and the achieved GFLOP/s of the nets
the project trains -- toy, cnn48, resnet (at its training input, 112) and
vgg (224) -- built by nets.build exactly as the experiments build them (the
TRAIN phase of the train/val net, variant --variant), with Input layers in
place of the LMDB Data layer. Caffe runs two ways, as users run it:

  caffe-tool  ``caffe time`` on the written net file (the training path:
              ``caffe train`` is the same binary and libraries);
  pycaffe     ``caffe.Net`` forward/backward in a Python process, where numpy
              has loaded its own BLAS before Caffe.

PyTorch runs the same layer graph (read from the same NetParameter: Caffe's
Power, Concat, Convolution, PReLU, max Pooling with Caffe's ceil rounding,
Eltwise sum, InnerProduct, SoftmaxWithLoss); both sides count their FLOPs
from their own layer shapes and a mismatch is reported.

    .venv/bin/python benchmarks/bench_train.py --torch-python /tmp/bench-venv/bin/python

PyTorch is a benchmark-only dependency: give the interpreter of a separate
virtual environment that has torch and threadpoolctl (docs/performance.md);
without --torch-python (or $FER_BENCH_TORCH_PYTHON) only Caffe is measured.
``--caffe NAME=PREFIX`` (repeatable) measures other Caffe installs beside
.venv's (e.g. one built with CAFFE_BLAS=scipy-openblas32).

Every measurement runs in a fresh process, frameworks alternating across
--repeats so that a change in the machine's load hits all alike. Each row
states which BLAS the measured process actually loaded: the library file, its
version and the kernel family it picked at run time (threadpoolctl in the
Python processes; for the caffe tool, the libraries in its /proc/<pid>/maps
loaded into a probe process with the same environment), and PyTorch's CPU
capability and oneDNN version. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are
removed from every measured process (UNSET_REASON says why).

FLOPs: 2 per multiply-add of the convolution and inner-product layers,
forward, backward to the weights, and backward to the input except for the
first such layer (its input needs no gradient); elementwise layers are not
counted. The FMA peak is measured by a small C program compiled at run time
(gcc -march=native, independent FMA chains on every core).

This file imports only the standard library at module level: the PyTorch
worker runs it from an environment that has neither caffe nor the project.
"""
import argparse
import csv
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "train.csv"

NETS = ("toy", "cnn48", "resnet", "vgg")
DEFAULT_BATCH = {"toy": 64, "cnn48": 64, "resnet": 64, "vgg": 8}
DEFAULT_ITERS = {"toy": 50, "cnn48": 20, "resnet": 2, "vgg": 2}  # timed iterations per process
FRAMEWORKS = ("caffe-tool", "pycaffe", "pytorch")

UNSET_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# --gpu-math: the environment of both frameworks' processes. NVIDIA_TF32_OVERRIDE=0 makes
# cuDNN and cuBLAS compute in strict float whatever a program asks (Caffe sets no math mode,
# so cuDNN 8+ would use TF32 for its convolutions on Ampere and newer); PyTorch's worker
# also sets its own TF32 switches from --math.
GPU_MATH = {"fp32": {"NVIDIA_TF32_OVERRIDE": "0"}, "tf32": {}}
UNSET_REASON = (
    "some machines set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE because older OpenBLAS builds crash "
    "or compute wrong results on their processor; they pin every OpenBLAS in the process to "
    "the named, older kernels (e.g. Haswell's 256-bit ones on an AVX-512 machine), which is "
    "not what a user's machine runs, so they are removed for both frameworks here (the tests "
    "and CI keep them)")

CSV_FIELDS = ("date", "machine", "cpu_flags", "threads", "load_before", "load_after", "net",
              "input", "batch", "variant", "framework", "device", "math", "build", "blas", "convolution", "env_unset",
              "ms_per_iter_median", "ms_per_iter_all", "gflop_per_iter", "gflops",
              "fraction_of_fma_peak", "fma_peak_gflops")
# Processor flags worth naming beside a figure: the vector extensions the kernels may use.
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni",
                  "avx512_bf16", "avx512_fp16", "amx_tile")


# --------------------------------------------------------------------------
# The nets, from nets/ (needs caffe and the project: the orchestrator's side)
# --------------------------------------------------------------------------

def caffe_timing_net(net, batch, variant="softmax"):
    """(NetParameter, NetRoles): the TRAIN phase of ``net``'s train/val net as the
    experiments build it (nets.build.experiment_nets), its LMDB Data layer replaced by
    an Input layer with the same tops: data (batch, 1, S, S) and label (batch,)."""
    from nets import blocks
    from nets.build import experiment_nets, phase_net
    from runtime.caffe_env import import_caffe
    built = experiment_nets(net, variant, batch_size=batch, train_source="unused",
                            test_source="unused")
    train = phase_net(built.train_val, blocks.TRAIN)
    data = train.layer[0]
    if data.type != "Data":
        raise ValueError(f"{net}: expected the train net to start with its Data layer, "
                         f"found {data.type} {data.name!r}")
    side = built.roles.input_size
    result = import_caffe().proto.caffe_pb2.NetParameter(name=f"{train.name}_timing")
    layer = result.layer.add(name=data.name, type="Input", top=list(data.top))
    layer.input_param.shape.add(dim=[batch, 1, side, side])
    layer.input_param.shape.add(dim=[batch])
    result.layer.extend(train.layer[1:])
    return result, built.roles


def layer_graph(net_param):
    """The net as plain data (type, name, bottoms, tops, parameters) for the PyTorch
    worker; refuses a layer it has no PyTorch equivalent for."""
    graph = []
    for layer in net_param.layer:
        kind = layer.type
        entry = {"type": kind, "name": layer.name, "bottom": list(layer.bottom),
                 "top": list(layer.top)}
        if kind == "Input":
            entry["shapes"] = [list(shape.dim) for shape in layer.input_param.shape]
        elif kind == "Convolution":
            p = layer.convolution_param
            entry.update(num_output=p.num_output, kernel=p.kernel_size[0],
                         stride=p.stride[0] if p.stride else 1, pad=p.pad[0] if p.pad else 0,
                         group=p.group, bias=p.bias_term)
            if len(p.kernel_size) > 1 or p.dilation:
                raise ValueError(f"layer {layer.name}: non-square or dilated convolution")
        elif kind == "InnerProduct":
            p = layer.inner_product_param
            if p.axis != 1 or p.transpose:
                raise ValueError(f"layer {layer.name}: InnerProduct axis/transpose not supported")
            entry.update(num_output=p.num_output, bias=p.bias_term)
        elif kind == "Pooling":
            p = layer.pooling_param
            if p.pool != p.MAX or p.global_pooling:
                raise ValueError(f"layer {layer.name}: only max pooling is translated")
            entry.update(kernel=p.kernel_size, stride=p.stride, pad=p.pad)
        elif kind == "Power":
            p = layer.power_param
            entry.update(power=p.power, scale=p.scale, shift=p.shift)
        elif kind == "Concat":
            entry["axis"] = layer.concat_param.axis
        elif kind == "Slice":
            entry.update(axis=layer.slice_param.axis,
                         points=list(layer.slice_param.slice_point))
        elif kind == "Eltwise":
            p = layer.eltwise_param
            if p.operation != p.SUM or p.coeff:
                raise ValueError(f"layer {layer.name}: only a plain Eltwise SUM is translated")
        elif kind == "Reshape":
            entry["dims"] = list(layer.reshape_param.shape.dim)
        elif kind == "PReLU":
            entry["channel_shared"] = layer.prelu_param.channel_shared
        elif kind == "ReLU":
            if layer.relu_param.negative_slope:
                raise ValueError(f"layer {layer.name}: leaky ReLU is not translated")
        elif kind not in ("SoftmaxWithLoss", "Silence"):
            raise ValueError(f"layer {layer.name}: no PyTorch equivalent for Caffe's {kind}")
        graph.append(entry)
    return graph


# --------------------------------------------------------------------------
# Which BLAS a process loaded
# --------------------------------------------------------------------------

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
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "probe",
                           "--files", *files], capture_output=True, text=True, env=env)
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


# --------------------------------------------------------------------------
# Caffe: the tool and pycaffe
# --------------------------------------------------------------------------

def caffe_flops(net):
    """FLOPs of one forward+backward, from the conv/FC layers' blob shapes."""
    total, first = 0, True
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type not in ("Convolution", "InnerProduct"):
            continue
        fan_in = layer.blobs[0].data[0].size  # Cin/groups * kh * kw, or the FC input width
        macs = net.blobs[net.top_names[name][0]].count * fan_in
        total += 2 * macs * (2 if first else 3)
        first = False
    return total


def net_flops(name, batch, variant):
    """caffe_flops of ``name``'s timing net at ``batch``, from a batch-1 net (FLOPs grow
    linearly with the batch)."""
    from runtime.caffe_env import import_caffe
    caffe = import_caffe()
    net_param, _ = caffe_timing_net(name, 1, variant)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as f:
        f.write(str(net_param))
        f.flush()
        return caffe_flops(caffe.Net(f.name, caffe.TRAIN)) * batch


def pycaffe_worker(model, warmup, iters):
    import numpy as np
    from runtime.caffe_env import caffe_prefix, import_caffe
    caffe = import_caffe()
    caffe.set_mode_cpu()
    net = caffe.Net(model, caffe.TRAIN)
    rng = np.random.default_rng(0)
    data, label = net.blobs["data"], net.blobs["label"]
    data.data[...] = rng.uniform(0, 255, data.data.shape)  # raw gray values, as the LMDB holds
    label.data[...] = rng.integers(0, net.blobs[net.bottom_names["loss"][0]].channels,
                                   label.data.shape)
    times = []
    for i in range(warmup + iters):
        start = time.perf_counter()
        net.clear_param_diffs()
        net.forward()
        net.backward()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    try:
        import threadpoolctl
        blas = describe_blas(threadpoolctl.threadpool_info())
    except ImportError:
        blas = "threadpoolctl missing: " + ", ".join(mapped_blas_files("self"))
    return {"times": times, "flops": None, "blas": blas,
            "convolution": describe_convolution(mapped_blas_files("self")),
            "build": str(caffe_prefix())}


CAFFE_TIME_TOTAL = re.compile(r"Average Forward-Backward: ([0-9.]+) ms")
CAFFE_TIME_LAYER = re.compile(r"\]\s+(\S+)\s+(forward|backward): ([0-9.e+-]+) ms")


def parse_caffe_time(log):
    """(ms per forward+backward, {layer: [forward ms, backward ms]}) from `caffe time`'s log.

    Caffe's total is whole milliseconds over all iterations divided by their
    number (its timer's resolution): give a fast net enough iterations."""
    total = CAFFE_TIME_TOTAL.findall(log)
    if not total:
        raise ValueError("no 'Average Forward-Backward' line in caffe time's output")
    layers = {}
    for name, direction, ms in CAFFE_TIME_LAYER.findall(log):
        layers.setdefault(name, [0.0, 0.0])[direction == "backward"] = float(ms)
    return float(total[-1]), layers


def run_caffe_tool(caffe_bin, model, iters, env, gpu=None):
    """`caffe time` on ``model`` (on GPU ``gpu`` if given): (ms per iteration, per-layer ms,
    BLAS description, convolution description)."""
    env = dict(env, GLOG_minloglevel="0", GLOG_logtostderr="1")
    device = [] if gpu is None else ["-gpu", str(gpu)]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([str(caffe_bin), "time", "-model", str(model),
                                 "-iterations", str(iters), *device], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        files = []
        while proc.poll() is None and not files:  # the libraries are mapped at start
            time.sleep(0.01)
            files = mapped_blas_files(proc.pid)
        proc.wait()
        log.seek(0)
        text = log.read()
    if proc.returncode != 0:
        raise SystemExit(f"caffe time on {model} failed (exit {proc.returncode}):\n{text[-2000:]}")
    ms, layers = parse_caffe_time(text)
    if gpu is not None:
        # Caffe's GPU log names the device; cuDNN's use shows in the layers it sets up. The
        # maths (fp32 or tf32) is the row's own column.
        device_name = re.search(r"GPU device name: (.+)", text)
        engine = "cuDNN" if "cudnn" in text.lower() else "Caffe's CUDA kernels"
        return ms, layers, device_name.group(1).strip() if device_name else f"GPU {gpu}", engine
    if not files:
        return ms, layers, "no BLAS library seen in /proc/<pid>/maps", "unknown"
    return (ms, layers, *probe_blas(files, env))


# --------------------------------------------------------------------------
# PyTorch worker (runs in the benchmark-only environment: standard library + torch)
# --------------------------------------------------------------------------

def torch_model(torch, graph):
    nn, F = torch.nn, torch.nn.functional
    modules = nn.ModuleDict()
    for layer in graph:
        kind, name = layer["type"], layer["name"]
        if kind == "Convolution":
            modules[name] = nn.LazyConv2d(layer["num_output"], layer["kernel"], layer["stride"],
                                          layer["pad"], groups=layer["group"], bias=layer["bias"])
        elif kind == "InnerProduct":
            modules[name] = nn.LazyLinear(layer["num_output"], bias=layer["bias"])

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = modules

        def forward(self, data, label):
            blobs = {"data": data, "label": label}
            for layer in graph:
                kind, name = layer["type"], layer["name"]
                x = [blobs[b] for b in layer["bottom"]]
                if kind in ("Input", "Silence"):
                    continue
                if kind == "Convolution":
                    y = self.layers[name](x[0])
                elif kind == "InnerProduct":
                    y = self.layers[name](torch.flatten(x[0], 1))
                elif kind == "ReLU":
                    y = F.relu(x[0])
                elif kind == "PReLU":
                    if name not in self.prelu:  # Caffe's default slope 0.25
                        slopes = 1 if layer["channel_shared"] else x[0].shape[1]
                        self.prelu[name] = nn.Parameter(torch.full((slopes,), 0.25,
                                                                   device=x[0].device))
                    y = F.prelu(x[0], self.prelu[name])
                elif kind == "Pooling":
                    y = F.max_pool2d(x[0], layer["kernel"], layer["stride"], layer["pad"],
                                     ceil_mode=True)  # Caffe rounds the output size up
                elif kind == "Power":
                    y = x[0] * layer["scale"] + layer["shift"]
                    if layer["power"] != 1:
                        y = y ** layer["power"]
                elif kind == "Concat":
                    y = torch.cat(x, layer["axis"])
                elif kind == "Eltwise":
                    y = x[0]
                    for other in x[1:]:
                        y = y + other
                elif kind == "Reshape":
                    dims = [x[0].shape[i] if d == 0 else d for i, d in enumerate(layer["dims"])]
                    y = x[0].reshape(dims)
                elif kind == "Slice":
                    edges = [0, *layer["points"], x[0].shape[layer["axis"]]]
                    y = [x[0].narrow(layer["axis"], a, b - a) for a, b in zip(edges, edges[1:])]
                elif kind == "SoftmaxWithLoss":
                    y = F.cross_entropy(torch.flatten(x[0], 1), x[1].long())
                else:
                    raise ValueError(f"unknown layer type {kind}")
                for top, value in zip(layer["top"], y if isinstance(y, list) else [y]):
                    blobs[top] = value
            return y

    model = Graph()
    model.prelu = nn.ParameterDict()
    return model


def torch_worker(graph_file, warmup, iters, threads, gpu=None, math="fp32"):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device("cpu" if gpu is None else f"cuda:{gpu}")
    if gpu is not None:
        # fp32: strict float everywhere; tf32: cuDNN's and cuBLAS's TF32 tensor-core maths.
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = math == "tf32"
        torch.backends.cudnn.benchmark = True  # the fastest algorithm per shape, as cuDNN users run
    graph = json.loads(Path(graph_file).read_text())
    shapes = next(layer["shapes"] for layer in graph if layer["type"] == "Input")
    data = torch.rand(*shapes[0], device=device) * 255
    classes = next(layer["num_output"] for layer in reversed(graph)
                   if layer["type"] == "InnerProduct")
    label = torch.randint(0, classes, tuple(shapes[1]), device=device)
    model = torch_model(torch, graph).to(device).train()
    counted = []

    def count(module, inputs, output):
        counted.append(output.numel() * module.weight[0].numel())

    with torch.no_grad():
        model(data, label)  # sizes the lazy layers and the PReLU slopes
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight)
            module.register_forward_hook(count)
    times = []
    for i in range(warmup + iters):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        model(data, label).backward()
        if gpu is not None:
            torch.cuda.synchronize(device)  # the GPU's work, not its queueing
        if i >= warmup:
            times.append(time.perf_counter() - start)
    per_iter = counted[:len(counted) // (warmup + iters)]
    flops = sum(2 * macs * (2 if i == 0 else 3) for i, macs in enumerate(per_iter))
    if gpu is not None:
        return {"times": times, "flops": flops, "build": f"torch {torch.__version__}",
                "blas": f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}",
                "convolution": f"cuDNN {torch.backends.cudnn.version()} ({math})"}
    config = torch.__config__.show()
    onednn = re.search(r"(?:oneDNN|MKL-DNN) v[0-9.]+", config)
    blas = (f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, convolutions on "
            f"{onednn.group(0).replace('MKL-DNN', 'oneDNN') if onednn else 'oneDNN (version ?)'}, "
            f"GEMM on {'MKL' if 'BLAS_INFO=mkl' in config else 'its BLAS'}")
    try:
        import threadpoolctl
        blas += "; also loaded: " + describe_blas(threadpoolctl.threadpool_info())
    except ImportError:
        pass
    convolution = (onednn.group(0).replace("MKL-DNN", "oneDNN") if onednn else "oneDNN") + \
        f" ({torch.backends.cpu.get_cpu_capability()})"
    return {"times": times, "flops": flops, "blas": blas, "convolution": convolution,
            "build": f"torch {torch.__version__}"}


# --------------------------------------------------------------------------
# Ceiling
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------

def measurement_env(threads, pythonpath=None):
    """The environment of every measured process: threads pinned, UNSET_ENV removed."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV}
    env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), GLOG_minloglevel="2")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    return env


def run_worker(python, args, env):
    cmd = [str(python), str(Path(__file__).resolve()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker {' '.join(args[:2])} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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


def parse_caffe_builds(items, twins=()):
    """[(label, caffe tool, pycaffe folder or None, extra environment)]: .venv's Caffe, then
    each NAME=PREFIX; then, for each SUFFIX:VAR=VALUE of ``twins``, every build with oneDNN
    again as LABEL+SUFFIX with VAR=VALUE set (e.g. gemm:CAFFE_CPU_CONVOLUTION=gemm, its
    convolutions on im2col + GEMM, or avx2:DNNL_MAX_CPU_ISA=AVX2, oneDNN's AVX2 kernels)."""
    from runtime.caffe_env import caffe_binary, caffe_prefix, links_onednn
    builds = [("caffe", caffe_binary(), None, {})]
    prefixes = {"caffe": caffe_prefix()}
    for item in items:
        label, sep, prefix = item.partition("=")
        prefix = Path(prefix)
        if not sep or not (prefix / "python" / "caffe" / "__init__.py").is_file() \
                or not (prefix / "bin" / "caffe").is_file():
            raise SystemExit(f"--caffe {item!r}: expected NAME=PREFIX where PREFIX holds "
                             "bin/caffe and python/caffe (a Caffe install prefix)")
        builds.append((label, prefix / "bin" / "caffe", str(prefix / "python"), {}))
        prefixes[label] = prefix
    onednn_builds = [build for build in builds if links_onednn(prefixes[build[0]])]
    for twin in twins:
        suffix, sep, setting = twin.partition(":")
        variable, equals, value = setting.partition("=")
        if not (sep and equals and suffix and variable):
            raise SystemExit(f"--caffe-env {twin!r}: expected SUFFIX:VARIABLE=VALUE, e.g. "
                             "gemm:CAFFE_CPU_CONVOLUTION=gemm")
        builds += [(f"{label}+{suffix}", tool, pydir, {variable: value})
                   for label, tool, pydir, _ in onednn_builds]
    return builds


def append_rows(path, rows):
    """Append ``rows`` to the CSV at ``path``; an older header gains the new columns."""
    from runtime.files import write_text_atomic
    old_rows, fields = [], list(CSV_FIELDS)
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            old_rows = list(reader)
            fields += [name for name in reader.fieldnames or () if name not in fields]
    with tempfile.SpooledTemporaryFile(mode="w+", newline="") as buffer:
        writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(old_rows + rows)
        buffer.seek(0)
        write_text_atomic(path, buffer.read())


def print_profile(label, net, layers, total_ms):
    """The per-layer forward/backward of one `caffe time` run, largest first."""
    summed = sum(f + b for f, b in layers.values())
    print(f"\n{net} / {label}: `caffe time` per layer (ms; sum {summed:.3f} of "
          f"{total_ms:.3f} per iteration)")
    for name, (fwd, bwd) in sorted(layers.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {name:<28} forward {fwd:9.4f}  backward {bwd:9.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default=",".join(NETS), help="comma-separated subset of "
                        + ",".join(NETS))
    parser.add_argument("--variant", default="softmax",
                        help="nets.catalog variant of the measured nets (default softmax: the "
                             "same maths on both sides; others have Python layers in Caffe only)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help="comma-separated subset of " + ",".join(FRAMEWORKS))
    parser.add_argument("--batch", type=int, help=f"batch for every net (default {DEFAULT_BATCH})")
    parser.add_argument("--iters", type=int,
                        help=f"timed iterations per process (default {DEFAULT_ITERS})")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations per process")
    parser.add_argument("--repeats", type=int, default=2,
                        help="processes per framework and net, alternating between frameworks")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--torch-python", default=os.environ.get("FER_BENCH_TORCH_PYTHON"),
                        help="python of an environment with PyTorch (benchmark-only)")
    parser.add_argument("--caffe", action="append", default=[], metavar="NAME=PREFIX",
                        help="also measure the Caffe installed at PREFIX")
    parser.add_argument("--caffe-env", action="append", default=[],
                        metavar="SUFFIX:VARIABLE=VALUE",
                        help="also measure every Caffe built with oneDNN with VARIABLE=VALUE, as "
                             "LABEL+SUFFIX: gemm:CAFFE_CPU_CONVOLUTION=gemm (im2col + GEMM), "
                             "avx2:DNNL_MAX_CPU_ISA=AVX2 (oneDNN's AVX2 kernels)")
    parser.add_argument("--gpu", type=int, metavar="ID",
                        help="time on CUDA device ID instead of the CPU: `caffe time -gpu ID` "
                             "(a CUDA build of Caffe) beside PyTorch on cuda:ID; no pycaffe")
    parser.add_argument("--gpu-math", default="fp32,tf32",
                        help="with --gpu, each of: fp32 (NVIDIA_TF32_OVERRIDE=0 for both "
                             "frameworks: strict float) and tf32 (tensor-core TF32 allowed)")
    parser.add_argument("--profile", action="store_true",
                        help="print `caffe time`'s per-layer times of every caffe-tool run")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="CSV file the rows are appended to")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--no-peak", action="store_true", help="skip the FMA peak")
    parser.add_argument("--worker", choices=("pycaffe", "torch", "probe"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--math", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        iters = args.iters or 1
        if args.worker == "pycaffe":
            result = pycaffe_worker(args.model, args.warmup, iters)
        elif args.worker == "probe":
            result = probe_worker(args.files)
        else:
            result = torch_worker(args.model, args.warmup, iters, args.threads, args.gpu,
                                  args.math)
        print(json.dumps(result))
        return 0

    names = [n.strip() for n in args.nets.split(",") if n.strip()]
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    for given, known, what in ((names, NETS, "net"), (frameworks, FRAMEWORKS, "framework")):
        unknown = [n for n in given if n not in known]
        if unknown:
            parser.error(f"unknown {what}(s) {unknown}; choose from {list(known)}")
    maths = [None]
    if args.gpu is not None:
        maths = [m.strip() for m in args.gpu_math.split(",") if m.strip()]
        if not maths or set(maths) - set(GPU_MATH):
            parser.error(f"--gpu-math {args.gpu_math!r}: choose from {list(GPU_MATH)}")
        if "pycaffe" in frameworks:
            print("note: --gpu times the caffe tool and PyTorch, not pycaffe", file=sys.stderr)
            frameworks.remove("pycaffe")
        args.no_peak = True  # the CPU's FMA peak says nothing about a GPU run
    if "pytorch" in frameworks and not args.torch_python:
        print("note: no --torch-python (or $FER_BENCH_TORCH_PYTHON): PyTorch is not measured",
              file=sys.stderr)
        frameworks.remove("pytorch")
    if args.torch_python and not Path(args.torch_python).is_file():
        parser.error(f"--torch-python {args.torch_python} does not exist")
    builds = parse_caffe_builds(args.caffe, args.caffe_env)

    machine, flags = machine_description()
    unset = [f"{k}={os.environ[k]}" for k in UNSET_ENV if k in os.environ]
    print(f"machine: {machine}; flags: {flags}; threads: {args.threads}")
    print(f"environment: {'removed ' + ', '.join(unset) if unset else 'neither set'} "
          f"({', '.join(UNSET_ENV)}): {UNSET_REASON}")
    env_unset = " ".join(unset) or "none set"
    peak = bits = None
    if not args.no_peak:
        peak, bits = measure_fma_peak(args.threads)
        if peak:
            print(f"FMA peak ({bits}-bit, {args.threads} threads): {peak:.1f} GFLOP/s")

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            batch = args.batch or DEFAULT_BATCH[name]
            iters = args.iters or DEFAULT_ITERS[name]
            net_param, roles = caffe_timing_net(name, batch, args.variant)
            model = Path(folder) / f"{name}.prototxt"
            model.write_text(str(net_param))
            graph = Path(folder) / f"{name}.json"
            graph.write_text(json.dumps(layer_graph(net_param)))
            runs = []
            for math in maths:
                suffix, math_env = ("", {}) if math is None else (f" {math}", GPU_MATH[math])
                for label, caffe_bin, pydir, extra_env in builds:
                    if "caffe-tool" in frameworks:
                        runs.append((f"{label} tool{suffix}", "caffe-tool", caffe_bin, pydir,
                                     dict(extra_env, **math_env), math))
                    if "pycaffe" in frameworks:
                        runs.append((f"{label} pycaffe{suffix}", "pycaffe", caffe_bin, pydir,
                                     extra_env, math))
                if "pytorch" in frameworks:
                    runs.append((f"pytorch{suffix}", "pytorch", None, None, math_env, math))
            samples = {run[0]: [] for run in runs}
            info = {}
            load_before = os.getloadavg()[0]
            for _ in range(args.repeats):
                for label, kind, caffe_bin, pydir, extra_env, math in runs:
                    env = dict(measurement_env(args.threads, pydir), **extra_env)
                    if kind == "caffe-tool":
                        ms, layers, blas, convolution = run_caffe_tool(caffe_bin, model, iters,
                                                                       env, args.gpu)
                        samples[label].append(ms / 1e3)
                        info[label] = {"blas": blas, "convolution": convolution,
                                       "build": str(caffe_bin), "flops": None}
                        if args.profile:
                            print_profile(label, name, layers, ms)
                    else:
                        python = sys.executable if kind == "pycaffe" else args.torch_python
                        worker = "pycaffe" if kind == "pycaffe" else "torch"
                        result = run_worker(python, [
                            "--worker", worker, "--model", str(model if kind == "pycaffe" else graph),
                            "--warmup", str(args.warmup), "--iters", str(iters),
                            "--threads", str(args.threads),
                            *([] if args.gpu is None else ["--gpu", str(args.gpu),
                                                           "--math", math])], env)
                        samples[label] += result["times"]
                        info[label] = result
            load_after = os.getloadavg()[0]
            flops = net_flops(name, batch, args.variant)
            for label, result in info.items():
                if result["flops"] is not None and result["flops"] != flops:
                    print(f"warning: {name}: {label} counts {result['flops']} FLOPs, Caffe's "
                          f"net {flops}: the architectures differ", file=sys.stderr)
            for label, kind, *_, math in runs:
                median = statistics.median(samples[label])
                gflops = flops / median / 1e9 if flops else None
                rows.append({
                    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
                    "machine": machine, "cpu_flags": flags, "threads": args.threads,
                    "load_before": f"{load_before:.2f}", "load_after": f"{load_after:.2f}",
                    "net": name, "input": "x".join(map(str, roles.input_shape)), "batch": batch,
                    "variant": args.variant, "framework": label,
                    "device": "cpu" if args.gpu is None else f"cuda:{args.gpu}",
                    "math": math or "fp32", "build": info[label]["build"],
                    "blas": info[label]["blas"], "convolution": info[label]["convolution"],
                    "env_unset": env_unset,
                    "ms_per_iter_median": f"{median * 1e3:.2f}",
                    "ms_per_iter_all": " ".join(f"{t * 1e3:.1f}" for t in samples[label]),
                    "gflop_per_iter": f"{flops / 1e9:.3f}" if flops else "",
                    "gflops": f"{gflops:.1f}" if gflops else "",
                    "fraction_of_fma_peak": f"{gflops / peak:.3f}" if gflops and peak else "",
                    "fma_peak_gflops": f"{peak:.1f}" if peak else ""})

    print_table(rows)
    for label in sorted({r["framework"] for r in rows}):
        row = next(r for r in rows if r["framework"] == label)
        print(f"{label}: convolutions on {row['convolution']}; BLAS {row['blas']}")
    if not args.no_save:
        append_rows(args.results, rows)
        print(f"appended {len(rows)} rows to {args.results}")
    return 0


def print_table(rows):
    header = ("net", "input", "batch", "framework", "ms/iter", "GFLOP/iter", "GFLOP/s",
              "of peak", "vs pytorch", "load")
    # Each row against PyTorch on the same net and maths (fp32, or tf32 on a GPU).
    torch_ms = {(r["net"], r["math"]): float(r["ms_per_iter_median"]) for r in rows
                if r["framework"].split()[0] == "pytorch"}
    lines = [header]
    for r in rows:
        ms = float(r["ms_per_iter_median"])
        reference = torch_ms.get((r["net"], r["math"]))
        ratio = f"{ms / reference:.2f}x" if reference else ""
        lines.append((r["net"], r["input"], str(r["batch"]), r["framework"],
                      r["ms_per_iter_median"], r["gflop_per_iter"], r["gflops"],
                      r["fraction_of_fma_peak"], ratio, f"{r['load_before']}/{r['load_after']}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))


if __name__ == "__main__":
    sys.exit(main())
