"""Export a trained model to ONNX, to run it with onnxruntime and without Caffe.

    python tools/export_onnx.py --run runs/mmi-48_toy_softmax [--fold fold_00] --out toy.onnx
    python tools/export_onnx.py --deploy D_deploy.prototxt --weights W.caffemodel --out model.onnx

``--run`` takes a run folder of tools/crossval.py or tools/crossdb.py: its
fold's deploy net and final snapshot (default fold: the first with a finished
training), and stores the run's config, the class names and the prepared
dataset's manifest in the model (metadata_props "fer_sparse") so that a
predictor preprocesses as data_prep did. ``--deploy``/``--weights`` export any
deploy net of the catalog (prototxt/*_deploy.prototxt) with no metadata.
The exported model is checked with onnx's checker; docs/inference.md lists the
layer mapping.
"""
import argparse
from pathlib import Path

from inference.onnx_export import OnnxExportError, export_onnx, export_run
from tools.command import command_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="run folder written by tools/crossval.py or crossdb.py")
    parser.add_argument("--fold", default=None,
                        help="fold folder of --run to export (default: the first with a finished training)")
    parser.add_argument("--deploy", type=Path, help="deploy prototxt (instead of --run)")
    parser.add_argument("--weights", type=Path, help="caffemodel for --deploy")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    args = parser.parse_args(argv)
    if (args.run is None) == (args.deploy is None):
        parser.error("pass either --run RUN_FOLDER or --deploy D --weights W")
    if args.deploy is not None and args.weights is None:
        parser.error("--deploy needs --weights")
    if args.run is None and args.fold is not None:
        parser.error("--fold goes with --run")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        with command_errors(__file__, argv):
            if args.run is not None:
                path = export_run(args.run, args.out, fold=args.fold)
            else:
                path = export_onnx(args.deploy, args.weights, args.out)
    except OnnxExportError as exc:
        raise SystemExit(str(exc)) from None
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return path


if __name__ == "__main__":
    main()
