"""SGEMM speed of candidate BLAS libraries on the GEMMs Caffe runs for the project's nets.

    .venv/bin/python benchmarks/bench_blas.py --net resnet \\
        --library debian=/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 \\
        --library scipy=/path/to/scipy_openblas32/lib/libscipy_openblas.so:scipy_ \\
        --library blis=/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4

For every Convolution and InnerProduct layer of the net (nets.build, as
benchmarks/bench_train.py times it) it times the three GEMMs of a training
step as Caffe (with patch 0101's batched im2col) issues them: forward
W[M,K] x col[K,N], weight gradient top[M,N] x col[K,N]^T, data gradient
W[K,M]^T x top[M,N] (the first layer has none), with N = output pixels x the
images of one im2col chunk (at most 2^23 elements, patch 0101's limit). Each
library runs in its own process through ctypes (``PATH[:SYMBOL_PREFIX]``;
the scipy-openblas32 wheel's symbols carry ``scipy_``), with
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE removed (machine_probe.UNSET_REASON), and
reports the GEMM milliseconds of one training step, the GFLOP/s and the
kernel family threadpoolctl sees. Results are checked against numpy.

This file imports only the standard library and numpy at module level: the
library workers run it without the project on the path.
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHUNK_ELEMENTS = 1 << 23  # patch 0101: the im2col matrix and GEMM result of one chunk
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def caffe_gemms(net, batch):
    """[(layer, M, N, K, transA, transB)] of one training step of ``net`` at ``batch``."""
    import tempfile
    from benchmarks.train_runner import caffe_timing_net
    from runtime.caffe_env import import_caffe
    caffe = import_caffe()
    net_param, _ = caffe_timing_net(net, 1)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as f:
        f.write(str(net_param))
        f.flush()
        built = caffe.Net(f.name, caffe.TRAIN)
    gemms, first = [], True
    for name, layer in zip(built._layer_names, built.layers):
        if layer.type not in ("Convolution", "InnerProduct"):
            continue
        weights = layer.blobs[0].data
        m, k = weights.shape[0], weights[0].size
        top = built.blobs[built.top_names[name][0]].data
        if layer.type == "Convolution":
            pixels = int(np.prod(top.shape[2:]))
            images = max(1, min(batch, CHUNK_ELEMENTS // ((k + m) * pixels)))
            n, repeat = pixels * images, -(-batch // images)
        else:
            n, repeat = batch, 1
        gemms.append((name, m, n, k, NO_TRANS, NO_TRANS, repeat))  # forward
        gemms.append((name, m, k, n, NO_TRANS, TRANS, repeat))     # weight gradient
        if not first:
            gemms.append((name, k, n, m, TRANS, NO_TRANS, repeat))  # data gradient
        first = False
    return gemms


def library_worker(path, prefix, gemms, min_seconds):
    lib = ctypes.CDLL(path)
    sgemm = getattr(lib, prefix + "cblas_sgemm")
    c_int, c_float, ptr = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    sgemm.argtypes = [c_int] * 6 + [c_float, ptr, c_int, ptr, c_int, c_float, ptr, c_int]
    rng = np.random.default_rng(0)
    total_s, total_flop, rows = 0.0, 0, []
    for name, m, n, k, ta, tb, repeat in gemms:
        a = rng.standard_normal((k, m) if ta == TRANS else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb == TRANS else (k, n), dtype=np.float32)
        c = np.zeros((m, n), np.float32)

        def call():
            sgemm(ROW_MAJOR, ta, tb, m, n, k, 1.0, a.ctypes.data, a.shape[1], b.ctypes.data,
                  b.shape[1], 0.0, c.ctypes.data, n)
        call()
        expected = (a.T if ta == TRANS else a) @ (b.T if tb == TRANS else b)
        if not np.allclose(c, expected, rtol=1e-3, atol=1e-3 * np.sqrt(k)):
            raise SystemExit(f"{path}: wrong SGEMM result for {name} {m}x{n}x{k}")
        calls, start = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - start < min_seconds:
            call()
            calls += 1
        seconds = (time.perf_counter() - start) / calls
        total_s += seconds * repeat
        total_flop += 2 * m * n * k * repeat
        rows.append((name, m, n, k, ta == TRANS, tb == TRANS, 2 * m * n * k / seconds / 1e9))
    try:
        import threadpoolctl
        info = [lib for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"]
        kernel = "; ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} "
                           f"{i.get('threading_layer')}" for i in info
                           if Path(i["filepath"]).resolve() == Path(path).resolve())
    except ImportError:
        kernel = "threadpoolctl missing"
    return {"ms": total_s * 1e3, "gflops": total_flop / total_s / 1e9, "rows": rows,
            "kernel": kernel or "not identified by threadpoolctl"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", default="resnet", help="net of nets/ whose GEMMs are timed")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--library", action="append", default=[], metavar="NAME=PATH[:PREFIX]",
                        help="a BLAS library to time (repeatable)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--min-seconds", type=float, default=0.3, help="timing per GEMM")
    parser.add_argument("--per-gemm", action="store_true", help="print every GEMM's GFLOP/s")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--gemms", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        gemms = json.loads(Path(args.gemms).read_text())
        print(json.dumps(library_worker(*args.worker, gemms, args.min_seconds)))
        return 0

    if not args.library:
        parser.error("give at least one --library NAME=PATH[:PREFIX]")
    from benchmarks.machine_probe import UNSET_ENV, machine_description
    import tempfile
    gemms = caffe_gemms(args.net, args.batch)
    machine, flags = machine_description()
    print(f"{args.net} batch {args.batch}: {len(gemms)} GEMMs per training step; {machine}; "
          f"{flags}; {args.threads} threads; load {os.getloadavg()[0]:.2f}")
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[var] = str(args.threads)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        f.write(json.dumps(gemms))
        f.flush()
        for item in args.library:
            label, sep, spec = item.partition("=")
            path, _, prefix = spec.partition(":")
            if not sep or not Path(path).is_file():
                parser.error(f"--library {item!r}: expected NAME=PATH[:PREFIX] of a shared library")
            proc = subprocess.run([sys.executable, __file__, "--worker", path, prefix, "--gemms",
                                   f.name, "--min-seconds", str(args.min_seconds)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"{label}: worker failed:\n{proc.stderr[-2000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{label:<10} {result['ms']:9.1f} ms of GEMM per step  "
                  f"{result['gflops']:7.1f} GFLOP/s  {result['kernel']}  load "
                  f"{os.getloadavg()[0]:.2f}")
            if args.per_gemm:
                for name, m, n, k, ta, tb, gflops in result["rows"]:
                    print(f"    {name:<12} {m:>6}x{n:<7}x{k:<6}{'T' if ta else ' '}"
                          f"{'T' if tb else ' '} {gflops:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
