"""The prepare command: an expression database into the prepared dataset folder the nets read.

    python tools/prepare.py --dataset {fer2013,ckplus,ckplus48,oulu,mmi,csv,synthetic}
        --root PATH --out DIR [--folds 10] [--crops N] [--size S] [--strict] ...

``python data_prep/prepare.py ...`` runs this same command. The pipeline, its
options (``PrepareOptions``, one field per flag) and its errors are
data_prep/prepare.py's; this module parses the flags, prints and sets the exit
status. Ctrl-C leaves nothing behind (the dataset is built in a temporary
sibling of --out) and says so. See docs/data.md.
"""
import argparse
import os
import sys
from dataclasses import fields

from data_prep.alignment import GRAY_MODES, LANDMARK_MODELS
from data_prep.audit import summary_lines
from data_prep.folds import SPLIT_METHODS
from data_prep.pipeline import ALIGN_MODES, FALLBACK_MODES
from data_prep.prepare import PrepareOptions, prepare_dataset
from data_prep.prepare import __doc__ as PREPARE_DOC
from data_prep.readers.ckplus import NEUTRAL_MODES
from data_prep.readers.oulu import CAMERAS, LIGHTS
from data_prep.registry import DATASETS
from tools.command import command_errors
from tools.renamed_flags import add_renamed_argument


def _per_dataset(describe):
    """"name1/name2 value, name3 value" grouping the databases that share a value (None: left out)."""
    groups = {}
    for name, entry in DATASETS.items():
        if describe(entry) is not None:
            groups.setdefault(describe(entry), []).append(name)
    return ", ".join(f"{'/'.join(names)} {value}" for value, names in groups.items())


def build_parser():
    official = [name for name, entry in DATASETS.items() if entry.split == "official"]
    parser = argparse.ArgumentParser(
        description=PREPARE_DOC.split("\n\n")[0],
        epilog="Per-dataset defaults - " + "; ".join(f"{name}: {entry.describe_defaults()}"
                                                      for name, entry in DATASETS.items())
               + ". Errors exit with status 1 and a message naming the file and what to do. See docs/data.md.")
    data = parser.add_argument_group("input and output")
    data.add_argument("--dataset", required=True, choices=tuple(DATASETS), help="database layout to read: "
                      + "; ".join(f"{name} = {entry.help}" for name, entry in DATASETS.items()))
    data.add_argument("--root", help="the database folder (file for fer2013.csv / index CSVs); for "
                      "synthetic: a new folder to keep the generated images in (default: not kept)")
    data.add_argument("--out", required=True, help="output folder to create (refused if it exists)")
    data.add_argument("--index", help="mmi/csv: the index CSV (default <root>/mmi_index.csv or <root>/labels.csv)")
    data.add_argument("--landmarks-csv", help="mmi/csv: known five landmarks per image; those images skip detection")
    split = parser.add_argument_group("splits")
    split.add_argument("--split", choices=SPLIT_METHODS, help="folds = person-independent stratified K folds; "
                       "ckplus-standard = subject IDs ascending, dealt to folds in steps of K; official = the "
                       f"database's own train/val/test. Default: official for {'/'.join(official)}, else folds")
    split.add_argument("--folds", type=int, help="number of folds K (default "
                       + _per_dataset(lambda entry: entry.folds) + ")")
    # --split-seed: not the solver's seed (tools/crossval.py --solver-seed); one name per meaning.
    add_renamed_argument(split, "--split-seed", ("--seed",), dest="seed", type=int, default=0,
                         help="seed of the fold assignment and the train shuffle (default 0)")
    image = parser.add_argument_group("alignment and images")
    image.add_argument("--size", type=int, help="side S of the stored S x S crops "
                       "(default 112, the face ResNet's input; 224 for VGG, 48 for the toy net; "
                       "the paper states 227, see docs/nets.md)")
    image.add_argument("--crops", type=int, help="crops per image (default per dataset: "
                       + _per_dataset(lambda entry: entry.crops) + ")")
    image.add_argument("--crop-shift", type=float, default=0.08, help="largest crop offset, as a fraction "
                       "of the face box side (default 0.08)")
    image.add_argument("--align", choices=ALIGN_MODES, help="landmarks = detect and align (default); none = "
                       "map the whole image onto the face box (default for "
                       + "/".join(n for n, e in DATASETS.items() if e.align == "none") + ")")
    image.add_argument("--landmark-model", type=int, choices=LANDMARK_MODELS, default=68,
                       help="dlib shape predictor: 68 measures the mouth (the paper's triangle; default); "
                       "5 = eye corners and nose base only, aligned on eyes and nose")
    image.add_argument("--template", help="template JSON (default data_prep/default_template.json; "
                       "make one from CK+ with data_prep/compute_template.py)")
    image.add_argument("--fallback", choices=FALLBACK_MODES, default="frame", help="when no face is found: "
                       "frame = use the whole image as the face and count it (default); skip = skip the image")
    image.add_argument("--gray", choices=GRAY_MODES, default="std", help="gray-level normalisation per crop: "
                       "std = zero mean, unit variance stored as 127.5+42.5z (default); hist = histogram "
                       "equalisation; none")
    image.add_argument("--detect-min-side", type=int, default=160, help="upsample images whose shorter side "
                       "is below this for face detection (default 160)")
    image.add_argument("--detect-max-side", type=int, default=320, help="detect faces at reduced size in "
                       "images whose shorter side exceeds this (default 320)")
    image.add_argument("--duplicates", choices=("skip", "keep"), help="images with identical pixels: skip "
                       "all but the first (default) or keep them (default for "
                       + "/".join(n for n, e in DATASETS.items() if e.duplicates == "keep") + "); listed either way")
    db = parser.add_argument_group("database options")
    db.add_argument("--keep-contempt", action="store_true", default=None,
                    help="ckplus/ckplus48/csv: keep contempt as label 7 (dropped by default, as in the paper)")
    db.add_argument("--ckplus-neutral", choices=NEUTRAL_MODES, help="ckplus: neutral images = the first frame "
                    "of each subject's first labelled sequence (subject, the default: the paper's 106), of "
                    "each labelled sequence (sequence: 309), or none")
    db.add_argument("--ckplus-neutral-frames", type=int, help="ckplus: frames in each neutral unit, the "
                    "first of its sequence (default 3: the paper's 415 units x 3 frames; 1: one neutral image "
                    "per unit, 1,033 images)")
    db.add_argument("--peak-frames", type=int, help="ckplus/oulu: last frames of a sequence used (default 3)")
    db.add_argument("--oulu-camera", choices=sorted(CAMERAS), help="oulu: NIR (default) or VIS")
    db.add_argument("--oulu-light", choices=LIGHTS, help="oulu: Strong (default), Weak or Dark")
    db.add_argument("--synthetic-subjects", type=int, help="synthetic: subjects (default 10)")
    db.add_argument("--synthetic-expressions", type=int, choices=(6, 7),
                    help="synthetic: 6 classes An..Su (default) or 7 with neutral")
    db.add_argument("--synthetic-images", type=int, help="synthetic: images per subject and expression (default 8)")
    db.add_argument("--synthetic-size", type=int, help="synthetic: side of the drawn images (default 96)")
    run = parser.add_argument_group("running")
    run.add_argument("--strict", action="store_true", help="treat the data-quality audit's warnings (and, for "
                     "mmi, an index that does not follow the paper's selection) as errors: stop before anything "
                     "is written (see docs/data.md)")
    run.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                     help="processes for detection and alignment (default: all cores)")
    run.add_argument("--chunk-size", type=int, default=8, help="images per task sent to a worker (default 8)")
    run.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    options = PrepareOptions(**{f.name: getattr(args, f.name) for f in fields(PrepareOptions)})
    # Every refusal of the pipeline is a ValueError whose message names the file or flag and the fix.
    with command_errors("prepare.py", argv, errors=(ValueError,),
                        kept="nothing (the partial dataset is built in a temporary folder and deleted)"):
        manifest = prepare_dataset(options)
    for warning in manifest["audit"]["warnings"]:
        print(f"prepare.py: warning: {warning['message']}", file=sys.stderr)
    if not args.quiet:
        counts = manifest["counts"]
        print(f"{args.out}: {counts['items']} images of {len(manifest['classes'])} classes, "
              f"{manifest['crops']} crops each, {len(manifest['splits'])} split(s); "
              f"{counts['skipped']} skipped, {counts['fallbacks']} whole-frame fallbacks, "
              f"{counts['duplicates']} duplicates (see manifest.json)")
        print("\n".join(summary_lines(manifest["audit"], with_warnings=False)))
    return manifest


if __name__ == "__main__":
    main()
