"""Expressions of every face in photos and videos, with a model trained by this project.

    python tools/predict.py --model runs/synthetic_toy_l2 [--fold fold_00] photos/ clip.mp4 [--every 5]
    python tools/predict.py --model D_deploy.prototxt --weights W.caffemodel --manifest M/manifest.json face.jpg
    python tools/predict.py --onnx toy.onnx photos/ --format csv --out faces.csv --annotate drawn/

Finds every face with dlib and crops it exactly as data_prep/prepare.py
prepared the model's training images (template, size, crops and gray
normalisation from the prepared dataset's manifest); a face's probabilities
are the mean softmax over its crops, as the cross-validation scores test
images. Writes one JSON Lines record (or CSV row) per face, and one per
image/frame without a classified face, per face too small and per unreadable
input (fields: inference/records.py); the summary and the names of unreadable
inputs go to stderr. Exits 1 when not a single image or video frame could be
read (nothing was classified). --onnx runs an exported model with onnxruntime
and needs no Caffe. A model is named as in tools/export_onnx.py: --model
RUN_FOLDER_OR_DEPLOY, --weights with a deploy net. See docs/inference.md.
"""
import argparse
import os
import sys
from pathlib import Path

from inference.batch import predict_inputs
from inference.media import expand_inputs
from inference.preprocessing import FALLBACKS, ManifestError
from inference.predictor import ModelError, Predictor
from inference.records import FORMATS, RecordWriter
from runtime.caffe_env import CaffeNotAvailable
from tools.command import LIBRARY_ERRORS, command_errors


# Unreadable inputs named one per line on stderr before the summary; the records hold them all.
UNREADABLE_SHOWN = 20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", nargs="+", metavar="RUN_FOLDER_OR_DEPLOY", type=Path,
                       help="a run folder or fold folder of tools/crossval.py / crossdb.py, or a deploy "
                       "prototxt (then --weights and --manifest are required)")
    model.add_argument("--onnx", type=Path, help="an ONNX model written by tools/export_onnx.py (no Caffe needed)")
    parser.add_argument("inputs", nargs="*", type=Path, metavar="INPUT",
                        help="image files, folders (searched recursively) and video files")
    parser.add_argument("--weights", type=Path, metavar="CAFFEMODEL",
                        help="the caffemodel of a deploy prototxt given to --model")
    parser.add_argument("--fold", help="fold of a run folder (default: the first with a finished training)")
    parser.add_argument("--manifest", type=Path, help="manifest.json of the prepared dataset the model was "
                        "trained on (default: the run's dataset, or the ONNX model's metadata)")
    parser.add_argument("--every", type=int, default=1, help="videos: predict every N-th frame (default 1)")
    parser.add_argument("--format", choices=FORMATS, default="jsonl", help="jsonl (default) or csv")
    parser.add_argument("--out", type=Path, help="file to write (default: stdout)")
    parser.add_argument("--annotate", type=Path, metavar="DIR",
                        help="write a copy of each image/frame with boxes and labels drawn into DIR")
    parser.add_argument("--landmarks-csv", type=Path, help="known five landmarks per image (data_prep's "
                        "landmarks CSV: path + left_eye_x ... mouth_right_y); listed images skip detection, "
                        "as in prepare.py")
    parser.add_argument("--min-face", type=int, default=20,
                        help="faces narrower than this many pixels are reported, not classified (default 20)")
    parser.add_argument("--detect-max-side", type=int, default=None,
                        help="detect faces in images downscaled to this shorter side (default: the manifest's, "
                        "as prepare.py detected; raise it to find small faces in large photos)")
    parser.add_argument("--fallback", choices=FALLBACKS, default="report",
                        help="no face found: report it (default) or, as prepare.py's --fallback frame, "
                        "classify the whole image as the face")
    parser.add_argument("--whole-image", action="store_true",
                        help="for a model prepared with --align none (FER2013): the inputs are ready-cut "
                        "faces, classify each whole image (default: detect every face and cut it with the "
                        "database's framing, as its training images were framed)")
    parser.add_argument("--batch-size", type=int, default=256, help="crops per forward pass (default 256)")
    parser.add_argument("--workers", type=int, default=1, help="processes that detect and crop the faces "
                        "(default 1; each loads dlib's models, worth it for many images)")
    parser.add_argument("--gpu", type=int, default=None, help="Caffe GPU id (default: CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    args = parser.parse_args(argv)
    if args.model is not None:
        # --model's values run on into the inputs (argparse cannot tell them apart)
        model, rest = args.model[0], args.model[1:]
        if model.suffix == ".prototxt" and args.weights is None and rest and rest[0].suffix == ".caffemodel":
            print("warning: --model DEPLOY CAFFEMODEL is now --model DEPLOY --weights CAFFEMODEL; "
                  "the old form will go", file=sys.stderr)
            args.weights, rest = rest[0], rest[1:]
        args.model, args.inputs = model, rest + args.inputs
        if model.suffix == ".prototxt" and args.weights is None:
            parser.error(f"--model {model}: a deploy prototxt needs --weights CAFFEMODEL")
    elif args.weights is not None:
        parser.error("--weights goes with --model DEPLOY, not with --onnx")
    if not args.inputs:
        parser.error("give at least one INPUT (image, folder or video)")
    if args.every < 1 or args.batch_size < 1 or args.workers < 1:
        parser.error("--every, --batch-size and --workers must be >= 1")
    return args


def load_predictor(args):
    if args.onnx is not None:
        if args.gpu is not None or args.fold is not None:
            raise ModelError("error: --gpu and --fold go with --model (Caffe), not with --onnx")
        return Predictor(args.onnx, manifest=args.manifest, min_face=args.min_face, fallback=args.fallback,
                         batch_crops=args.batch_size, detect_max_side=args.detect_max_side,
                         whole_image=args.whole_image)
    return Predictor(args.model, weights=args.weights, manifest=args.manifest, fold=args.fold, gpu=args.gpu,
                     min_face=args.min_face, fallback=args.fallback, batch_crops=args.batch_size,
                     detect_max_side=args.detect_max_side, whole_image=args.whole_image)


def main(argv=None):
    args = parse_args(argv)
    try:
        predictor = load_predictor(args)
        landmarks = None
        if args.landmarks_csv is not None:
            from data_prep.readers.index_csv import read_landmarks_csv
            landmarks = read_landmarks_csv(args.landmarks_csv)
    except CaffeNotAvailable as exc:
        raise SystemExit(f"predict.py: {exc}; or, without Caffe, run a model exported by "
                         "tools/export_onnx.py with --onnx") from None
    except (ModelError, ManifestError, ValueError, *LIBRARY_ERRORS) as exc:  # each says what to do
        raise SystemExit(f"predict.py: {exc}") from None
    inputs = expand_inputs(args.inputs)
    writer = RecordWriter(args.format, predictor.class_names, path=args.out)
    unreadable = []

    def write(record):
        writer.write(record)
        if record["status"] == "unreadable":
            unreadable.append(f"{record['input']}: {record['reason']}")

    try:
        with command_errors(__file__, argv, kept="the annotated images written so far (the --out file "
                            "is only written complete)"):
            counts = predict_inputs(predictor, inputs, write, every=args.every, landmarks=landmarks,
                                    annotate_dir=args.annotate, group_size=16, progress=not args.quiet,
                                    workers=args.workers)
    except BrokenPipeError:  # stdout piped into a reader that stopped early (head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except BaseException:
        writer.close(keep=False)
        raise
    writer.close()
    if not args.quiet:
        for line in unreadable[:UNREADABLE_SHOWN]:
            print(f"predict.py: unreadable: {line}", file=sys.stderr)
        if len(unreadable) > UNREADABLE_SHOWN:
            print(f"predict.py: ... and {len(unreadable) - UNREADABLE_SHOWN} more unreadable inputs "
                  "(status \"unreadable\" in the records)", file=sys.stderr)
        print(f"predict.py: {predictor.description}: {counts.summary()}"
              + (f"; written to {args.out}" if args.out else ""), file=sys.stderr)
    if counts.images + counts.frames == 0:
        raise SystemExit(f"predict.py: error: nothing was classified: none of the {counts.inputs} inputs "
                         "could be read as an image or a video (the reasons are in the records)")
    return counts


if __name__ == "__main__":
    main()
