"""Compiles Caffe's gtests of the cuDNN and CUDA layers against the cached CUDA Caffe, for the bundle.

Called by scripts/gpu/build_bundle.sh with Debian's python3 and PYTHONPATH=<repo>:

    python3 scripts/gpu/build_gtests.py --caffe-prefix P --source CAFFE_TARBALL --work DIR

Writes P/bin/caffe-gtests (once per cache key: the prefix's key covers the source and the patches
the tests are compiled from). The recipe and the test list: caffe_build/gtests.py.
"""
import argparse
import shutil
import sys
from pathlib import Path

from caffe_build import gtests


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-prefix", type=Path, required=True, help="the CUDA Caffe install")
    parser.add_argument("--source", type=Path, required=True, help="the Caffe source tarball it was built from")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (removed afterwards)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compiles")
    args = parser.parse_args()
    binary = args.caffe_prefix / "bin" / "caffe-gtests"
    if binary.exists():
        print(f"[gpu-bundle] gtests: cached at {binary}", file=sys.stderr)
        return
    if not gtests.is_cuda_build(args.caffe_prefix):
        parser.error(f"--caffe-prefix {args.caffe_prefix} is a CPU-only Caffe (CPU_ONLY): "
                     "name the CUDA build")
    shutil.rmtree(args.work, ignore_errors=True)
    try:
        root = gtests.patched_source(args.source, args.work / "src", cuda=True)
        gtests.compile_gtests(args.caffe_prefix, root, gtests.CUDA_TEST_SOURCES, binary, jobs=args.jobs)
    except gtests.GtestBuildError as error:
        sys.exit(f"build_gtests.py: error: {error}")
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    print(f"[gpu-bundle] gtests: {binary}", file=sys.stderr)


if __name__ == "__main__":
    main()
