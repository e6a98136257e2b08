"""The command line of scripts/gpu/reproduce_fer2013.sh: Table 3's ResNet softmax and L2 cells on FER2013.

    here:        scripts/gpu/build_bundle.sh     the CUDA Caffe and everything it needs, as .gpu-bundle/
    GPU machine: scripts/gpu/reproduce_fer2013.sh --fer2013 FER2013.tar [--out DIR] [--stages ...]

FER2013.tar (also .tar.xz) holds the image-folder copy (train/<class>/Training_*.png,
test/<class>/{PublicTest,PrivateTest}_*.png; lossless WebP images instead of PNG make it 57 MB:
docs/docker.md, "A GPU session").
--device cpu --scale smoke [--net toy] runs the same stages on this machine with the
project's .venv (how the tests check the script's parts; not a result).
"""
import argparse
import os
import sys
from pathlib import Path

from experiments.running import gpu_reproduction
from experiments.running.gpu_reproduction import (OptionsRefused, Reproduction, ReproductionError,
                                                   ReproductionOptions)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="reproduce_fer2013.sh", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] + "\nstages (each timed into <out>/stages.json):\n"
        + gpu_reproduction.__doc__.split("stages.json:\n\n")[1].split("\n\n")[0])
    parser.add_argument("--fer2013", type=Path, help="tar of the FER2013 image folder (the prepare stage)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/fer-reproduce")),
                        help="results: table_3.*, speed.txt, train_speed.csv, stages.json (default $OUT "
                        "or /tmp/fer-reproduce)")
    parser.add_argument("--work", type=Path,
                        default=Path(os.environ.get("FER_REPRODUCE_WORK", "/tmp/fer-reproduce-work")),
                        help="prepared data, runs, the unpacked bundle (default /tmp/fer-reproduce-work)")
    parser.add_argument("--device", default="gpu", help="gpu (default: the bundle) or cpu (the .venv)")
    parser.add_argument("--scale", default="paper", help="paper (default), cpu or smoke")
    parser.add_argument("--net", default="resnet", help="a net of nets/catalog.py (default resnet)")
    parser.add_argument("--stages", default=",".join(gpu_reproduction.STAGES),
                        help="comma-separated subset of env,prepare,train,report,speed (env always runs)")
    parser.add_argument("--bundle", type=Path,
                        default=Path(os.environ.get("FER_GPU_BUNDLE", gpu_reproduction.DEFAULT_BUNDLE)),
                        help="the bundle (default $FER_GPU_BUNDLE or .gpu-bundle/fer-gpu-bundle.tar.xz)")
    parser.add_argument("--bundle-root", type=Path, default=os.environ.get("FER_GPU_ROOT"),
                        help="where to unpack the bundle (default <work>/bundle)")
    parser.add_argument("--torch-python", default=os.environ.get("FER_BENCH_TORCH_PYTHON"),
                        help="python with torch for the speed stage (default python3 on PATH)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    options = ReproductionOptions(
        out=args.out, work=args.work, fer2013=args.fer2013, device=args.device, scale=args.scale,
        net=args.net, stages=tuple(s for s in args.stages.split(",") if s), bundle=args.bundle,
        bundle_root=args.bundle_root and Path(args.bundle_root), torch_python=args.torch_python)
    try:
        Reproduction(options).run()
    except OptionsRefused as error:
        print(f"reproduce_fer2013: error: {error}", file=sys.stderr)
        return 2
    except ReproductionError as error:
        print(f"reproduce_fer2013: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
