"""Export a trained model to ONNX, to run it with onnxruntime and without Caffe.

    python tools/export_onnx.py --model runs/mmi-48_toy_softmax [--fold fold_00] --out toy.onnx
    python tools/export_onnx.py --model D_deploy.prototxt --weights W.caffemodel --out model.onnx

A model is named as in tools/predict.py. ``--model`` takes a run folder of
tools/crossval.py or tools/crossdb.py, or a fold folder of one: the fold's
deploy net and final snapshot (default fold: the first with a finished
training), and stores the run's config, the class names and the prepared
dataset's manifest in the model (metadata_props, key inference.onnx_metadata.METADATA_KEY) so that a
predictor preprocesses as data_prep did. ``--model D_deploy.prototxt
--weights W.caffemodel`` exports any deploy net of the catalog (prototxt/*_deploy.prototxt) with no metadata.
The exported model is checked with onnx's checker; docs/inference.md lists the
layer mapping.
"""
import argparse
from pathlib import Path

from inference.onnx_export import OnnxExportError, export_onnx, export_run
from tools.renamed_flags import add_renamed_argument
from tools.command import command_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_renamed_argument(parser, "--model", ("--run", "--deploy"), type=Path, required=True,
                         metavar="RUN_FOLDER_OR_DEPLOY",
                         help="a run folder or fold folder of tools/crossval.py / crossdb.py, or a deploy "
                         "prototxt (then --weights is required)")
    parser.add_argument("--weights", type=Path, metavar="CAFFEMODEL",
                        help="the caffemodel of a deploy prototxt given to --model")
    parser.add_argument("--fold", default=None,
                        help="fold of a run folder to export (default: the first with a finished training)")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    args = parser.parse_args(argv)
    deploy = args.model.suffix == ".prototxt"
    if deploy and args.weights is None:
        parser.error(f"--model {args.model}: a deploy prototxt needs --weights CAFFEMODEL")
    if not deploy and args.weights is not None:
        parser.error("--weights goes with --model DEPLOY; a run folder brings its own caffemodel")
    if deploy and args.fold is not None:
        parser.error("--fold goes with a run folder, not with a deploy prototxt")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        with command_errors(__file__, argv):
            if args.weights is None:
                path = export_run(args.model, args.out, fold=args.fold)
            else:
                path = export_onnx(args.model, args.weights, args.out)
    except OnnxExportError as exc:
        raise SystemExit(str(exc)) from None
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return path


if __name__ == "__main__":
    main()
