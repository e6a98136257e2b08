"""Training-step speed of the project's Caffe beside PyTorch on the CPU.

One command measures, in one run, forward+backward milliseconds per iteration
and the achieved GFLOP/s of three nets -- the toy net of Section 3.2, the
SphereFace-20-style face ResNet and VGG-16 -- in Caffe and in PyTorch, and the
machine's FMA peak as the ceiling. It prints a table and appends one CSV row
per measurement to benchmarks/train.csv.

    .venv/bin/python benchmarks/bench_train.py --torch-python /path/to/bench-venv/bin/python

PyTorch is a benchmark-only dependency: give the interpreter of a separate
virtual environment that has it (``pip install torch`` from the CPU wheel);
without --torch-python (or $FER_BENCH_TORCH_PYTHON) only Caffe is measured.
``--caffe NAME=PREFIX`` (repeatable) measures other Caffe installs beside the
one .venv imports, e.g. a build without the project's speed patches.

Every measurement runs in a fresh worker process (this file with --worker), so
that the two frameworks' thread pools never share a process, and the workers
of different frameworks alternate across --repeats so that a change in the
machine's load hits both alike. A training step here is: clear the parameter
gradients, forward, backward (no weight update; Caffe's ``caffe time`` measures
the same). FLOPs are counted from each net's own layer shapes: 2 per
multiply-add of the convolution and inner-product layers, forward, backward
to the weights, and backward to the input except for the first layer (whose
input needs no gradient); the elementwise layers are not counted.

The FMA peak is measured by a small C program compiled at run time with gcc
(-march=native, independent FMA chains on every core); the BLAS ceiling is
numpy's float32 matmul of 4096x4096 matrices in the benchmark's environment.

This file imports only the standard library at module level: the PyTorch
worker runs it from an environment that has no caffe and no project on its path.
"""
import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "train.csv"

# Architectures, framework-neutral: both builders below read these.
FACE_RESNET = {"input": (1, 96, 96), "stages": ((64, 1), (128, 2), (256, 4), (512, 1)),
               "fc": (512,), "classes": 7}
VGG16 = {"input": (1, 224, 224),
         "convs": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                   512, 512, 512, "M", 512, 512, 512, "M"),
         "fc": (4096, 4096), "classes": 7}
TOY = {"input": (1, 96, 96), "conv": {"num_output": 1, "kernel": 9, "stride": 2},
       "fc": (32,), "classes": 7}
NETS = {"toy": TOY, "face_resnet": FACE_RESNET, "vgg16": VGG16}
DEFAULT_BATCH = {"toy": 64, "face_resnet": 64, "vgg16": 8}
DEFAULT_ITERS = {"toy": 20, "face_resnet": 3, "vgg16": 3}  # timed iterations per worker

CSV_FIELDS = ("date", "machine", "threads", "load_before", "net", "batch", "framework",
              "build", "ms_per_iter_median", "ms_per_iter_all", "gflop_per_iter", "gflops",
              "fraction_of_fma_peak", "fma_peak_gflops", "blas_gflops")


# --------------------------------------------------------------------------
# Caffe worker
# --------------------------------------------------------------------------

def _caffe_net_spec(caffe, name, batch):
    """NetSpec of net `name` with an Input data layer and a softmax loss."""
    from caffe import layers as L, params as P
    arch = NETS[name]
    ns = caffe.NetSpec()
    ns.data, ns.label = L.Input(ntop=2, input_param={"shape": [
        {"dim": [batch, *arch["input"]]}, {"dim": [batch]}]})
    weight = {"type": "msra"}
    bias = {"type": "constant", "value": 0}

    def conv(bottom, num_output, kernel=3, stride=1, pad=1):
        return L.Convolution(bottom, num_output=num_output, kernel_size=kernel, stride=stride,
                             pad=pad, weight_filler=weight, bias_filler=bias)

    def fc(bottom, num_output):
        return L.InnerProduct(bottom, num_output=num_output, weight_filler=weight,
                              bias_filler=bias)

    top = ns.data
    if name == "face_resnet":
        for s, (channels, units) in enumerate(arch["stages"], start=1):
            top = L.PReLU(conv(top, channels, stride=2), in_place=True)
            setattr(ns, f"conv{s}", top)
            for u in range(1, units + 1):
                branch = L.PReLU(conv(top, channels), in_place=True)
                setattr(ns, f"res{s}_{u}a", branch)
                branch = L.PReLU(conv(branch, channels), in_place=True)
                setattr(ns, f"res{s}_{u}b", branch)
                top = L.Eltwise(top, branch, operation=P.Eltwise.SUM)
                setattr(ns, f"res{s}_{u}", top)
        for i, width in enumerate(arch["fc"], start=1):
            top = fc(top, width)
            setattr(ns, f"fc{i}", top)
    elif name == "vgg16":
        block, index = 1, 1
        for item in arch["convs"]:
            if item == "M":
                top = L.Pooling(top, pool=P.Pooling.MAX, kernel_size=2, stride=2)
                setattr(ns, f"pool{block}", top)
                block, index = block + 1, 1
            else:
                top = L.ReLU(conv(top, item), in_place=True)
                setattr(ns, f"conv{block}_{index}", top)
                index += 1
        for i, width in enumerate(arch["fc"], start=6):
            top = L.ReLU(fc(top, width), in_place=True)
            setattr(ns, f"fc{i}", top)
    elif name == "toy":
        c = arch["conv"]
        ns.conv1 = L.ReLU(conv(top, c["num_output"], kernel=c["kernel"], stride=c["stride"],
                               pad=0), in_place=True)
        top = ns.conv1
        for i, width in enumerate(arch["fc"], start=1):
            top = L.ReLU(fc(top, width), in_place=True)
            setattr(ns, f"fc{i}", top)
    ns.logits = fc(top, arch["classes"])
    ns.loss = L.SoftmaxWithLoss(ns.logits, ns.label)
    return ns


def _caffe_flops(net):
    """FLOPs of one forward+backward, from the conv/FC layers' blob shapes."""
    total = 0
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type not in ("Convolution", "InnerProduct"):
            continue
        weights = layer.blobs[0].data
        top = net.blobs[net.top_names[name][0]]
        fan_in = weights[0].size  # Cin/groups * kh * kw, or the FC input width
        macs = top.count * fan_in
        first = net.bottom_names[name][0] == "data"
        total += 2 * macs * (2 if first else 3)
    return total


def caffe_worker(name, batch, warmup, iters, threads):
    from runtime.caffe_env import import_caffe
    caffe = import_caffe()
    caffe.set_mode_cpu()
    import numpy as np
    spec = _caffe_net_spec(caffe, name, batch)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(str(spec.to_proto()))
        path = f.name
    try:
        net = caffe.Net(path, caffe.TRAIN)
    finally:
        os.unlink(path)
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.standard_normal(net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = rng.integers(0, NETS[name]["classes"], batch)
    times, cpu_times = [], []
    for i in range(warmup + iters):
        start, cpu_start = time.perf_counter(), time.process_time()
        net.clear_param_diffs()
        net.forward()
        net.backward()
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    return {"times": times, "cpu_times": cpu_times, "flops": _caffe_flops(net),
            "build": f"{Path(caffe.__file__).parents[2]} ({_loaded_openblas()})"}


def _loaded_openblas():
    """Which OpenBLAS variant this process runs: numpy may have loaded the system's
    libopenblas.so.0 before pycaffe, and then Caffe shares it (docs/performance.md)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "blas unknown"
    variants = sorted({part for line in maps.splitlines() if "libopenblas" in line
                       for part in line.split("/") if part.startswith("openblas-")})
    return "+".join(variants) or "no openblas"


# --------------------------------------------------------------------------
# PyTorch worker
# --------------------------------------------------------------------------

def _torch_model(torch, name):
    nn = torch.nn
    arch = NETS[name]
    layers = []
    channels = arch["input"][0]
    if name == "face_resnet":
        class Residual(nn.Module):
            def __init__(self, width):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.PReLU(width),
                                          nn.Conv2d(width, width, 3, 1, 1), nn.PReLU(width))

            def forward(self, x):
                return x + self.body(x)

        for width, units in arch["stages"]:
            layers += [nn.Conv2d(channels, width, 3, 2, 1), nn.PReLU(width)]
            layers += [Residual(width) for _ in range(units)]
            channels = width
        size = arch["input"][1] // 2 ** len(arch["stages"])
    elif name == "vgg16":
        size = arch["input"][1]
        for item in arch["convs"]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                size //= 2
            else:
                layers += [nn.Conv2d(channels, item, 3, 1, 1), nn.ReLU(inplace=True)]
                channels = item
    elif name == "toy":
        c = arch["conv"]
        layers += [nn.Conv2d(channels, c["num_output"], c["kernel"], c["stride"]), nn.ReLU()]
        channels = c["num_output"]
        size = (arch["input"][1] - c["kernel"]) // c["stride"] + 1
    layers.append(nn.Flatten())
    width = channels * size * size
    for out in arch["fc"]:
        layers += [nn.Linear(width, out), nn.ReLU(inplace=True) if name != "face_resnet"
                   else nn.Identity()]
        width = out
    layers.append(nn.Linear(width, arch["classes"]))
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def _torch_flops(torch, model, x):
    """Same rule as _caffe_flops, from the output shapes seen by forward hooks."""
    nn = torch.nn
    counted = []

    def hook(module, inputs, output):
        fan_in = module.weight[0].numel()
        counted.append((output.numel() * fan_in, inputs[0] is x))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return sum(2 * macs * (2 if first else 3) for macs, first in counted)


def torch_worker(name, batch, warmup, iters, threads):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = _torch_model(torch, name).train()
    x = torch.randn(batch, *NETS[name]["input"])
    y = torch.randint(0, NETS[name]["classes"], (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()
    times, cpu_times = [], []
    for i in range(warmup + iters):
        start, cpu_start = time.perf_counter(), time.process_time()
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    return {"times": times, "cpu_times": cpu_times, "flops": _torch_flops(torch, model, x),
            "build": f"torch {torch.__version__}"}


# --------------------------------------------------------------------------
# Ceilings
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
    """GFLOP/s of independent FMA chains on `threads` cores, or None without gcc."""
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
    return float(best[0]), int(best[2]) * 32  # GFLOP/s, vector width in bits


def measure_blas_ceiling(threads, size=4096):
    """numpy float32 matmul GFLOP/s (best of 3) in a worker with `threads` BLAS threads."""
    code = ("import numpy as np, time\n"
            f"a = np.random.default_rng(0).standard_normal(({size}, {size}), dtype=np.float32)\n"
            "b = a.T.copy(); a @ b; best = 1e9\n"
            "for _ in range(3):\n"
            "    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)\n"
            f"print(2 * {size}**3 / best / 1e9)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_thread_env(threads), check=True)
    return float(out.stdout.strip())


# --------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------

def _thread_env(threads, extra_pythonpath=None):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    env["GLOG_minloglevel"] = "2"  # Caffe's net-construction log would bury the table
    if extra_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra_pythonpath,
                                                          env.get("PYTHONPATH")]))
    return env


def run_worker(python, framework, name, batch, warmup, iters, threads, caffe_python_dir=None):
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", framework, "--nets", name,
           "--batch", str(batch), "--warmup", str(warmup), "--iters", str(iters),
           "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=_thread_env(threads, caffe_python_dir))
    if proc.returncode != 0:
        raise SystemExit(f"{framework} worker for {name} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_description():
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    return f"{model}, {os.cpu_count()} cores, {isa}"


def parse_caffe_builds(items):
    builds = [("caffe", None)]
    for item in items:
        label, sep, prefix = item.partition("=")
        python_dir = Path(prefix) / "python"
        if not sep or not (python_dir / "caffe" / "__init__.py").is_file():
            raise SystemExit(f"--caffe {item!r}: expected NAME=PREFIX where PREFIX/python/caffe "
                             "is a pycaffe install (e.g. caffe-debian=/opt/caffe-plain)")
        builds.append((label, str(python_dir)))
    return builds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="toy,face_resnet,vgg16",
                        help="comma-separated subset of " + ",".join(NETS))
    parser.add_argument("--batch", type=int, help="batch size for every net "
                        f"(default per net: {DEFAULT_BATCH})")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations per worker")
    parser.add_argument("--iters", type=int,
                        help=f"timed iterations per worker (default per net: {DEFAULT_ITERS})")
    parser.add_argument("--repeats", type=int, default=2,
                        help="workers per framework and net, alternating between frameworks")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--torch-python", default=os.environ.get("FER_BENCH_TORCH_PYTHON"),
                        help="python of an environment with PyTorch (benchmark-only)")
    parser.add_argument("--caffe", action="append", default=[], metavar="NAME=PREFIX",
                        help="also measure the Caffe installed at PREFIX")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="CSV file the rows are appended to")
    parser.add_argument("--no-peak", action="store_true", help="skip the FMA/BLAS ceilings")
    parser.add_argument("--worker", choices=("caffe", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.nets.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETS]
    if unknown:
        parser.error(f"unknown net(s) {unknown}; choose from {list(NETS)}")

    if args.worker:
        work = caffe_worker if args.worker == "caffe" else torch_worker
        name = names[0]
        print(json.dumps(work(name, args.batch or DEFAULT_BATCH[name], args.warmup,
                              args.iters or DEFAULT_ITERS[name], args.threads)))
        return 0

    builds = parse_caffe_builds(args.caffe)
    if args.torch_python and not Path(args.torch_python).is_file():
        parser.error(f"--torch-python {args.torch_python} does not exist")
    if not args.torch_python:
        print("note: no --torch-python (or $FER_BENCH_TORCH_PYTHON): PyTorch is not measured",
              file=sys.stderr)
    machine = machine_description()
    load_before = os.getloadavg()[0]
    print(f"machine: {machine}; threads: {args.threads}; load average: {load_before:.2f}")
    peak = blas = bits = None
    if not args.no_peak:
        peak, bits = measure_fma_peak(args.threads)
        blas = measure_blas_ceiling(args.threads)
        if peak:
            print(f"FMA peak ({bits}-bit, {args.threads} threads): {peak:.1f} GFLOP/s; "
                  f"numpy float32 4096^3 matmul: {blas:.1f} GFLOP/s")

    rows = []
    for name in names:
        batch = args.batch or DEFAULT_BATCH[name]
        runs = [(label, "caffe", sys.executable, pdir) for label, pdir in builds]
        if args.torch_python:
            runs.append(("pytorch", "torch", args.torch_python, None))
        samples = {label: [] for label, *_ in runs}
        info = {}
        for _ in range(args.repeats):
            for label, framework, python, pdir in runs:
                result = run_worker(python, framework, name, batch, args.warmup,
                                    args.iters or DEFAULT_ITERS[name], args.threads, pdir)
                samples[label] += result["times"]
                info[label] = result
        for label, *_ in runs:
            median = statistics.median(samples[label])
            flops = info[label]["flops"]
            rows.append({
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
                "machine": machine, "threads": args.threads,
                "load_before": f"{load_before:.2f}", "net": name, "batch": batch,
                "framework": label, "build": info[label]["build"],
                "ms_per_iter_median": f"{median * 1e3:.1f}",
                "ms_per_iter_all": " ".join(f"{t * 1e3:.0f}" for t in samples[label]),
                "gflop_per_iter": f"{flops / 1e9:.2f}",
                "gflops": f"{flops / median / 1e9:.1f}",
                "fraction_of_fma_peak": f"{flops / median / 1e9 / peak:.2f}" if peak else "",
                "fma_peak_gflops": f"{peak:.1f}" if peak else "",
                "blas_gflops": f"{blas:.1f}" if blas else ""})
        flop_counts = {info[label]["flops"] for label, *_ in runs}
        if len(flop_counts) != 1:
            print(f"warning: {name}: the frameworks count different FLOPs {flop_counts}: "
                  "the architectures differ", file=sys.stderr)

    print_table(rows)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    new_file = not args.results.exists()
    with args.results.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new_file:
            writer.writeheader()
        writer.writerows(rows)
    print(f"appended {len(rows)} rows to {args.results}")
    return 0


def print_table(rows):
    header = ("net", "batch", "framework", "ms/iter", "GFLOP/iter", "GFLOP/s", "of peak",
              "vs pytorch")
    torch_ms = {r["net"]: float(r["ms_per_iter_median"]) for r in rows
                if r["framework"] == "pytorch"}
    lines = [header]
    for r in rows:
        ms = float(r["ms_per_iter_median"])
        ratio = f"{ms / torch_ms[r['net']]:.2f}x" if r["net"] in torch_ms else ""
        lines.append((r["net"], str(r["batch"]), r["framework"], r["ms_per_iter_median"],
                      r["gflop_per_iter"], r["gflops"], r["fraction_of_fma_peak"], ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)))


if __name__ == "__main__":
    sys.exit(main())
