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

This is the command line. The runner is benchmarks/train_runner.py, the
PyTorch mirror of the nets benchmarks/torch_mirror.py, the machine and BLAS
probe benchmarks/machine_probe.py. They import only the standard library at
module level: the PyTorch worker runs this file from an environment that has
neither caffe nor the project's dependencies (the runner puts the project on
the worker's PYTHONPATH).
"""
import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks.train_runner import (DEFAULT_BATCH, DEFAULT_GPU_ITERS, DEFAULT_GPU_WARMUP,
                                     DEFAULT_ITERS, DEFAULT_RESULTS, DEFAULT_WARMUP,
                                     FRAMEWORKS, GPU_MATH, NETS, BenchmarkError,
                                     TrainBenchOptions, append_rows, print_table, run)


def build_parser():
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
                        help=f"timed iterations per process (default {DEFAULT_ITERS} on the CPU, "
                             f"{DEFAULT_GPU_ITERS} with --gpu)")
    parser.add_argument("--warmup", type=int,
                        help=f"untimed iterations per process (default {DEFAULT_WARMUP} on the CPU, "
                             f"{DEFAULT_GPU_WARMUP} with --gpu; `caffe time` adds one of its own)")
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
                        help="with --gpu, each of: fp32 (NVIDIA_TF32_OVERRIDE=0 and CAFFE_ALLOW_TF32=0: "
                             "strict float in both frameworks) and tf32 (tensor-core TF32 allowed)")
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
    return parser


def run_worker_command(args):
    """One measurement in this process (bench_train.py --worker, started by the runner)."""
    if args.worker == "pycaffe":
        from benchmarks.train_runner import pycaffe_worker
        return pycaffe_worker(args.model, args.warmup or 0, args.iters or 1)
    if args.worker == "probe":
        from benchmarks.machine_probe import probe_worker
        return probe_worker(args.files)
    from benchmarks.torch_mirror import torch_worker
    return torch_worker(args.model, args.warmup or 0, args.iters or 1, args.threads, args.gpu,
                        args.math)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker_command(args)))
        return 0

    names = [n.strip() for n in args.nets.split(",") if n.strip()]
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    for given, known, what in ((names, NETS, "net"), (frameworks, FRAMEWORKS, "framework")):
        unknown = [n for n in given if n not in known]
        if unknown:
            parser.error(f"unknown {what}(s) {unknown}; choose from {list(known)}")
    maths = None
    if args.gpu is not None:
        maths = [m.strip() for m in args.gpu_math.split(",") if m.strip()]
        if not maths or set(maths) - set(GPU_MATH):
            parser.error(f"--gpu-math {args.gpu_math!r}: choose from {list(GPU_MATH)}")
        if "pycaffe" in frameworks:
            print("note: --gpu times the caffe tool and PyTorch, not pycaffe", file=sys.stderr)
            frameworks.remove("pycaffe")
    for flag, value in (("--iters", args.iters), ("--batch", args.batch)):
        if value is not None and value < 1:
            parser.error(f"{flag} {value}: give at least 1")
    if "pytorch" in frameworks and not args.torch_python:
        print("note: no --torch-python (or $FER_BENCH_TORCH_PYTHON): PyTorch is not measured",
              file=sys.stderr)
        frameworks.remove("pytorch")
    if args.torch_python and not Path(args.torch_python).is_file():
        parser.error(f"--torch-python {args.torch_python} does not exist")
    options = TrainBenchOptions(
        nets=names, frameworks=frameworks, variant=args.variant, batch=args.batch,
        iters=args.iters, warmup=args.warmup, repeats=args.repeats, threads=args.threads,
        torch_python=args.torch_python, caffe=args.caffe, caffe_env=args.caffe_env,
        gpu=args.gpu, maths=maths, profile=args.profile, measure_peak=not args.no_peak)
    try:
        rows = run(options)
    except BenchmarkError as error:
        print(f"bench_train.py: {error}", file=sys.stderr)
        return 1
    print_table(rows)
    for label in sorted({r["framework"] for r in rows}):
        row = next(r for r in rows if r["framework"] == label)
        print(f"{label}: convolutions on {row['convolution']}; BLAS {row['blas']}")
    if not args.no_save:
        append_rows(args.results, rows)
        print(f"appended {len(rows)} rows to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
