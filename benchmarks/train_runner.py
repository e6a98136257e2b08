"""The training-step benchmark itself (benchmarks/bench_train.py is its command line):
the project's nets as timing nets, `caffe time` and pycaffe runs, the PyTorch runs through
benchmarks/torch_mirror.py, and the rows of benchmarks/train.csv."""
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
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.machine_probe import (BENCH_CLI, REPO_ROOT, UNSET_ENV, UNSET_REASON,
                                      describe_blas, describe_convolution, machine_description,
                                      mapped_blas_files, measure_fma_peak, probe_blas,
                                      foreign_python_env, worker_pythonpath)
from benchmarks.torch_mirror import layer_graph

DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "train.csv"

NETS = ("toy", "cnn48", "resnet", "vgg")
DEFAULT_BATCH = {"toy": 64, "cnn48": 64, "resnet": 64, "vgg": 8}
# Timed iterations per process on the CPU (a ResNet step takes seconds there) ...
DEFAULT_ITERS = {"toy": 50, "cnn48": 20, "resnet": 2, "vgg": 2}
DEFAULT_WARMUP = 1
# ... and on a GPU, where a step takes milliseconds and the first ones also choose the
# cuDNN algorithms (Caffe's `caffe time` runs one untimed pass of its own first).
DEFAULT_GPU_ITERS = 100
DEFAULT_GPU_WARMUP = 10
FRAMEWORKS = ("caffe-tool", "pycaffe", "pytorch")

# --gpu-math: the environment of both frameworks' processes. fp32: strict float, switched
# off in the project's Caffe (CAFFE_ALLOW_TF32=0, patch cuda/0006) and in cuDNN and cuBLAS
# themselves (NVIDIA_TF32_OVERRIDE=0, which they honour whatever a program asks); tf32:
# both frameworks' defaults for convolutions, with PyTorch's worker also allowing TF32 for
# its GEMMs (--math), as Caffe's patch does.
GPU_MATH = {"fp32": {"NVIDIA_TF32_OVERRIDE": "0", "CAFFE_ALLOW_TF32": "0"}, "tf32": {}}

CSV_FIELDS = ("date", "machine", "cpu_flags", "threads", "load_before", "load_after", "net",
              "input", "batch", "variant", "framework", "device", "math", "build", "blas",
              "convolution", "env_unset", "ms_per_iter_median", "ms_per_iter_all",
              "gflop_per_iter", "gflops", "fraction_of_fma_peak", "fma_peak_gflops")


class BenchmarkError(RuntimeError):
    """A Caffe build, a worker or an option the benchmark cannot use; the message says which."""


@dataclass
class TrainBenchOptions:
    """What one benchmark run measures (bench_train.py's flags, checked)."""
    nets: list
    frameworks: list
    variant: str = "softmax"
    batch: int = None           # None: DEFAULT_BATCH per net
    iters: int = None           # None: DEFAULT_ITERS per net, DEFAULT_GPU_ITERS on a GPU
    warmup: int = None          # None: DEFAULT_WARMUP, DEFAULT_GPU_WARMUP on a GPU
    repeats: int = 2
    threads: int = os.cpu_count()
    torch_python: str = None    # None: PyTorch is not measured
    caffe: list = field(default_factory=list)
    caffe_env: list = field(default_factory=list)
    gpu: int = None
    maths: list = None          # with gpu: a subset of GPU_MATH
    profile: bool = False
    measure_peak: bool = True


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
        raise BenchmarkError(f"caffe time on {model} failed (exit {proc.returncode}):\n{text[-2000:]}")
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
    """Runs ``python bench_train.py --worker ...`` (also in PyTorch's environment, which gets
    the project on its PYTHONPATH) and returns the JSON it prints last."""
    cmd = [str(python), str(BENCH_CLI), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=dict(env, PYTHONPATH=worker_pythonpath(env)))
    if proc.returncode != 0:
        raise BenchmarkError(f"worker {' '.join(args[:2])} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
            raise BenchmarkError(f"--caffe {item!r}: expected NAME=PREFIX where PREFIX holds "
                             "bin/caffe and python/caffe (a Caffe install prefix)")
        builds.append((label, prefix / "bin" / "caffe", str(prefix / "python"), {}))
        prefixes[label] = prefix
    onednn_builds = [build for build in builds if links_onednn(prefixes[build[0]])]
    for twin in twins:
        suffix, sep, setting = twin.partition(":")
        variable, equals, value = setting.partition("=")
        if not (sep and equals and suffix and variable):
            raise BenchmarkError(f"--caffe-env {twin!r}: expected SUFFIX:VARIABLE=VALUE, e.g. "
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



def timed_iterations(options, net):
    """Timed iterations per process: --iters, else the net's CPU default or, on a GPU,
    DEFAULT_GPU_ITERS (a GPU step is milliseconds: two would time the launch noise)."""
    if options.iters is not None:
        return options.iters
    return DEFAULT_ITERS[net] if options.gpu is None else DEFAULT_GPU_ITERS


def warmup_iterations(options):
    """Untimed iterations per worker process (`caffe time` runs one of its own)."""
    if options.warmup is not None:
        return options.warmup
    return DEFAULT_WARMUP if options.gpu is None else DEFAULT_GPU_WARMUP


def run(options):
    """Measures ``options``; returns the rows (CSV_FIELDS) and prints the machine, the
    environment and, with options.profile, each caffe-tool run's per-layer times."""
    builds = parse_caffe_builds(options.caffe, options.caffe_env)
    names, frameworks, maths = options.nets, options.frameworks, options.maths or [None]

    machine, flags = machine_description()
    unset = [f"{k}={os.environ[k]}" for k in UNSET_ENV if k in os.environ]
    print(f"machine: {machine}; flags: {flags}; threads: {options.threads}")
    print(f"environment: {'removed ' + ', '.join(unset) if unset else 'neither set'} "
          f"({', '.join(UNSET_ENV)}): {UNSET_REASON}")
    env_unset = " ".join(unset) or "none set"
    peak = bits = None
    if options.measure_peak and options.gpu is None:  # a CPU peak says nothing of a GPU run
        peak, bits = measure_fma_peak(options.threads)
        if peak:
            print(f"FMA peak ({bits}-bit, {options.threads} threads): {peak:.1f} GFLOP/s")

    warmup = warmup_iterations(options)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            batch = options.batch or DEFAULT_BATCH[name]
            iters = timed_iterations(options, name)
            net_param, roles = caffe_timing_net(name, batch, options.variant)
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
            for _ in range(options.repeats):
                for label, kind, caffe_bin, pydir, extra_env, math in runs:
                    env = dict(measurement_env(options.threads, pydir), **extra_env)
                    if kind == "caffe-tool":
                        ms, layers, blas, convolution = run_caffe_tool(caffe_bin, model, iters,
                                                                       env, options.gpu)
                        samples[label].append(ms / 1e3)
                        info[label] = {"blas": blas, "convolution": convolution,
                                       "build": str(caffe_bin), "flops": None}
                        if options.profile:
                            print_profile(label, name, layers, ms)
                    else:
                        python = sys.executable if kind == "pycaffe" else options.torch_python
                        worker = "pycaffe" if kind == "pycaffe" else "torch"
                        if kind == "pytorch":
                            env = foreign_python_env(env)
                        result = run_worker(python, [
                            "--worker", worker, "--model", str(model if kind == "pycaffe" else graph),
                            "--warmup", str(warmup), "--iters", str(iters),
                            "--threads", str(options.threads),
                            *([] if options.gpu is None else ["--gpu", str(options.gpu),
                                                           "--math", math])], env)
                        samples[label] += result["times"]
                        info[label] = result
            load_after = os.getloadavg()[0]
            flops = net_flops(name, batch, options.variant)
            for label, result in info.items():
                if result["flops"] is not None and result["flops"] != flops:
                    print(f"warning: {name}: {label} counts {result['flops']} FLOPs, Caffe's "
                          f"net {flops}: the architectures differ", file=sys.stderr)
            for label, kind, *_, math in runs:
                median = statistics.median(samples[label])
                # caffe time counts whole milliseconds: a too-short run reads 0
                gflops = flops / median / 1e9 if flops and median else None
                rows.append({
                    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
                    "machine": machine, "cpu_flags": flags, "threads": options.threads,
                    "load_before": f"{load_before:.2f}", "load_after": f"{load_after:.2f}",
                    "net": name, "input": "x".join(map(str, roles.input_shape)), "batch": batch,
                    "variant": options.variant, "framework": label,
                    "device": "cpu" if options.gpu is None else f"cuda:{options.gpu}",
                    "math": math or "fp32", "build": info[label]["build"],
                    "blas": info[label]["blas"], "convolution": info[label]["convolution"],
                    "env_unset": env_unset,
                    "ms_per_iter_median": f"{median * 1e3:.2f}",
                    "ms_per_iter_all": " ".join(f"{t * 1e3:.1f}" for t in samples[label]),
                    "gflop_per_iter": f"{flops / 1e9:.3f}" if flops else "",
                    "gflops": f"{gflops:.1f}" if gflops else "",
                    "fraction_of_fma_peak": f"{gflops / peak:.3f}" if gflops and peak else "",
                    "fma_peak_gflops": f"{peak:.1f}" if peak else ""})

    return rows


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
