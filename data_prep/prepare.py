"""Turn an expression database into the prepared dataset folder the nets read.

    python data_prep/prepare.py --dataset {fer2013,ckplus,ckplus48,oulu,mmi,csv,synthetic}
        --root PATH --out DIR [--folds 10] [--crops N] [--size S] ...

Reads the database as its owners distribute it, aligns every face (dlib
landmarks, similarity transform onto the template), cuts --crops crops,
normalises their gray levels, resizes them to --size, splits the items
(person-independent folds or the official split) and writes one train and
one test LMDB per split plus manifest.json (docs/architecture.md). The
output folder is built in a temporary sibling and renamed into place at the
end: an interrupted run leaves no output folder. See docs/data.md.
"""
import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.alignment import GRAY_MODES, LANDMARK_MODELS, crop_offsets
from data_prep.face_template import load_template
from data_prep.folds import (SPLIT_METHODS, ckplus_standard_folds, fold_splits, official_split,
                             stratified_subject_folds)
from data_prep.items import DatasetLayoutError, Skip, natural_key
from data_prep.labels import class_names
from data_prep.pipeline import ALIGN_MODES, FALLBACK_MODES, ImageError, PrepConfig, process_items
from data_prep.readers.ckplus import NEUTRAL_MODES, read_ckplus, read_ckplus48
from data_prep.readers.fer2013 import read_fer2013
from data_prep.readers.index_csv import read_csv_dataset, read_mmi
from data_prep.readers.oulu import CAMERAS, LIGHTS, read_oulu
from data_prep.synthetic import LANDMARKS_FILE, write_dataset
from data_prep.writer import write_split

DATASETS = ("fer2013", "ckplus", "ckplus48", "oulu", "mmi", "csv", "synthetic")
# Per-dataset defaults of the options left unset. Crops: the paper's augmented
# counts give 16 per Oulu-CASIA image (23,040 / 1,440) and 25 per MMI image
# (15,375 / 615); CK+'s figures do not divide evenly, 16 is used. FER2013 is
# not aligned in the paper (its 48x48 faces come pre-cropped) and keeps its
# known duplicate images so that its official counts stay 28,709/3,589/3,589.
DATASET_DEFAULTS = {
    "fer2013": {"split": "official", "crops": 1, "size": 112, "align": "none", "duplicates": "keep"},
    "ckplus": {"split": "folds", "folds": 10, "crops": 16, "size": 112},
    "ckplus48": {"split": "folds", "folds": 10, "crops": 16, "size": 112},
    "oulu": {"split": "folds", "folds": 10, "crops": 16, "size": 112},
    "mmi": {"split": "folds", "folds": 10, "crops": 25, "size": 112},
    "csv": {"split": "folds", "folds": 10, "crops": 1, "size": 112},
    "synthetic": {"split": "folds", "folds": 5, "crops": 4, "size": 48},
}
COMMON_DEFAULTS = {"align": "landmarks", "duplicates": "skip"}
# Options that only some datasets read: (option, datasets, default).
DATASET_OPTIONS = (
    ("keep_contempt", ("ckplus", "ckplus48", "csv"), False),
    ("ckplus_neutral", ("ckplus",), "sequence"),
    ("peak_frames", ("ckplus", "oulu"), 3),
    ("oulu_camera", ("oulu",), "NIR"),
    ("oulu_light", ("oulu",), "Strong"),
    ("index", ("mmi", "csv"), None),
    ("landmarks_csv", ("mmi", "csv"), None),
    ("synthetic_subjects", ("synthetic",), 10),
    ("synthetic_expressions", ("synthetic",), 6),
    ("synthetic_images", ("synthetic",), 8),
    ("synthetic_size", ("synthetic",), 96),
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="prepare.py", description=__doc__.split("\n\n")[0],
        epilog="Per-dataset defaults - fer2013: official split, 1 crop, size 112, not aligned, duplicates "
               "kept; ckplus, ckplus48, oulu: 10 folds, 16 crops, size 112; mmi: 10 folds, 25 crops, "
               "size 112; csv: 10 folds, 1 crop, size 112; synthetic: 5 folds, 4 crops, size 48. "
               "Errors exit with status 1 and a message naming the file and what to do. See docs/data.md.")
    data = parser.add_argument_group("input and output")
    data.add_argument("--dataset", required=True, choices=DATASETS, help="database layout to read")
    data.add_argument("--root", help="the database folder (file for fer2013.csv / index CSVs); for "
                      "synthetic: a new folder to keep the generated images in (default: not kept)")
    data.add_argument("--out", required=True, help="output folder to create (refused if it exists)")
    data.add_argument("--index", help="mmi/csv: the index CSV (default <root>/mmi_index.csv or <root>/labels.csv)")
    data.add_argument("--landmarks-csv", help="mmi/csv: known five landmarks per image; those images skip detection")
    split = parser.add_argument_group("splits")
    split.add_argument("--split", choices=SPLIT_METHODS, help="folds = person-independent stratified K folds; "
                       "ckplus-standard = subject IDs ascending, dealt to folds in steps of K; official = the "
                       "database's own train/val/test (FER2013). Default: official for fer2013, else folds")
    split.add_argument("--folds", type=int, help="number of folds K (default 10; synthetic 5)")
    split.add_argument("--seed", type=int, default=0, help="seed of the fold assignment and the train "
                       "shuffle (default 0)")
    image = parser.add_argument_group("alignment and images")
    image.add_argument("--size", type=int, help="side S of the stored S x S crops "
                       "(default 112, the face ResNet's input; 224 for VGG, 48 for the toy net; "
                       "the paper states 227, see docs/nets.md)")
    image.add_argument("--crops", type=int, help="crops per image (default per dataset: "
                       "oulu/ckplus/ckplus48 16, mmi 25, synthetic 4, fer2013/csv 1)")
    image.add_argument("--crop-shift", type=float, default=0.08, help="largest crop offset, as a fraction "
                       "of the face box side (default 0.08)")
    image.add_argument("--align", choices=ALIGN_MODES, help="landmarks = detect and align (default); none = "
                       "map the whole image onto the face box (default for fer2013)")
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
                       "all but the first (default) or keep them (default for fer2013); listed either way")
    db = parser.add_argument_group("database options")
    db.add_argument("--keep-contempt", action="store_true", default=None,
                    help="ckplus/ckplus48/csv: keep contempt as label 7 (dropped by default, as in the paper)")
    db.add_argument("--ckplus-neutral", choices=NEUTRAL_MODES, help="ckplus: neutral images = the first frame "
                    "of each labelled sequence (default), of each subject's first sequence, or none")
    db.add_argument("--peak-frames", type=int, help="ckplus/oulu: last frames of a sequence used (default 3)")
    db.add_argument("--oulu-camera", choices=sorted(CAMERAS), help="oulu: NIR (default) or VIS")
    db.add_argument("--oulu-light", choices=LIGHTS, help="oulu: Strong (default), Weak or Dark")
    db.add_argument("--synthetic-subjects", type=int, help="synthetic: subjects (default 10)")
    db.add_argument("--synthetic-expressions", type=int, choices=(6, 7),
                    help="synthetic: 6 classes An..Su (default) or 7 with neutral")
    db.add_argument("--synthetic-images", type=int, help="synthetic: images per subject and expression (default 8)")
    db.add_argument("--synthetic-size", type=int, help="synthetic: side of the drawn images (default 96)")
    run = parser.add_argument_group("running")
    run.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                     help="processes for detection and alignment (default: all cores)")
    run.add_argument("--chunk-size", type=int, default=8, help="images per task sent to a worker (default 8)")
    run.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    return parser


def resolve_options(args):
    """Fill per-dataset defaults into ``args`` and reject options that do not apply."""
    defaults = {**COMMON_DEFAULTS, **DATASET_DEFAULTS[args.dataset]}
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    for name, datasets, default in DATASET_OPTIONS:
        if getattr(args, name) is None:
            setattr(args, name, default)
        elif args.dataset not in datasets:
            raise ValueError(f"--{name.replace('_', '-')} applies to --dataset {'/'.join(datasets)} only")
    if args.split == "official":
        if args.folds is not None:
            raise ValueError("--folds does not apply to --split official")
    elif args.folds is None:
        args.folds = 10
    if args.dataset == "fer2013" and args.split != "official":
        raise ValueError("FER2013 has no subject identities, so no person-independent folds: "
                         "use its official split (--split official, the default)")
    if args.dataset != "synthetic" and not args.root:
        raise ValueError(f"--root is required for --dataset {args.dataset}")
    if args.workers < 1 or args.chunk_size < 1:
        raise ValueError("--workers and --chunk-size must be >= 1")
    return args


def read_dataset(args, synthetic_root=None):
    """The reader's ReadResult for ``args.dataset``."""
    if args.dataset == "fer2013":
        return read_fer2013(args.root)
    if args.dataset == "ckplus":
        return read_ckplus(args.root, args.keep_contempt, args.ckplus_neutral, args.peak_frames)
    if args.dataset == "ckplus48":
        return read_ckplus48(args.root, args.keep_contempt)
    if args.dataset == "oulu":
        return read_oulu(args.root, args.oulu_camera, args.oulu_light, args.peak_frames)
    if args.dataset == "mmi":
        return read_mmi(args.root, args.index, args.landmarks_csv)
    if args.dataset == "csv":
        return read_csv_dataset(args.root, args.index, args.landmarks_csv, args.keep_contempt)
    result = read_csv_dataset(synthetic_root, landmarks_csv=Path(synthetic_root) / LANDMARKS_FILE)
    result.num_classes = args.synthetic_expressions
    result.info.update(generator="data_prep/synthetic.py", subjects=args.synthetic_subjects,
                       expressions=args.synthetic_expressions, images_per_expression=args.synthetic_images,
                       image_size=args.synthetic_size, seed=args.seed, kept_at=args.root)
    return result


def make_splits(args, subjects, labels, usages, num_classes):
    if args.split == "official":
        return official_split(usages), None
    if any(subject is None for subject in subjects):
        raise ValueError(f"--split {args.split} needs a subject for every image")
    if args.split == "ckplus-standard":
        assignment = ckplus_standard_folds(subjects, args.folds)
    else:
        assignment = stratified_subject_folds(subjects, labels, args.folds, args.seed, num_classes)
    return fold_splits(subjects, assignment, args.folds), assignment


def _class_counts(indices, labels, names):
    counts = Counter(int(labels[i]) for i in indices)
    return {name: counts.get(label, 0) for label, name in enumerate(names)}


def _collect(read, config, args, store, name):
    """Run the pipeline into ``store``; return kept indices, skips, fallbacks, duplicates, alignment counts.

    ``name`` turns an item's source into the name the manifest shows.
    """
    kept, skipped, fallbacks, duplicates = [], [], [], []
    alignment = Counter()
    first_with_digest = {}
    for result in process_items(read.items, config, args.workers, args.chunk_size, progress=not args.quiet):
        item = read.items[result.index]
        if result.skip_reason is not None:
            skipped.append(Skip(name(item.source), result.skip_reason))
            continue
        original = first_with_digest.setdefault(result.digest, result.index)
        if original != result.index:
            other = read.items[original]
            note = "" if other.label == item.label else f" (with a different label, {other.label} vs {item.label})"
            duplicates.append({"source": name(item.source), "duplicate_of": name(other.source),
                               "action": args.duplicates + (" " + note.strip() if note else "")})
            if args.duplicates == "skip":
                skipped.append(Skip(name(item.source), f"duplicate of {name(other.source)}{note}"))
                continue
        store[result.index] = result.crops
        alignment[result.alignment] += 1
        if result.alignment == "frame":
            fallbacks.append({"source": name(item.source), "kind": result.alignment})
        kept.append(result.index)
    return kept, skipped, fallbacks, duplicates, alignment


def prepare(args):
    """Prepare the dataset described by ``args`` (argparse namespace); return the manifest."""
    started = time.time()
    out = Path(args.out).absolute()
    if out.exists():
        raise FileExistsError(f"output folder {out} already exists; prepare.py never overwrites: "
                              "choose a new --out or delete the old folder")
    if args.dataset == "synthetic" and args.root and Path(args.root).exists():
        raise FileExistsError(f"--root {args.root} exists; for --dataset synthetic --root names a new folder "
                              "to keep the generated images in (or leave it out)")
    template = load_template(args.template)
    config = PrepConfig(template=template, size=args.size, crops=args.crops, crop_shift=args.crop_shift,
                        align=args.align, landmark_model=args.landmark_model, fallback=args.fallback,
                        gray=args.gray, detect_min_side=args.detect_min_side,
                        detect_max_side=args.detect_max_side)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        synthetic_root = None
        if args.dataset == "synthetic":
            synthetic_root = Path(args.root) if args.root else tmp / "_synthetic_source"
            write_dataset(synthetic_root, args.synthetic_subjects, args.synthetic_expressions,
                          args.synthetic_images, args.synthetic_size, args.seed, progress=not args.quiet)
        read = read_dataset(args, synthetic_root)
        if not read.items:
            reasons = Counter(skip.reason for skip in read.skipped).most_common(3)
            raise ValueError(f"no usable images under {args.root or synthetic_root}: {len(read.skipped)} inputs "
                             f"skipped, most often for: {reasons}")
        store = np.lib.format.open_memmap(tmp / "_crops.npy", mode="w+", dtype=np.uint8,
                                          shape=(len(read.items), args.crops, args.size, args.size))
        name = _source_namer(synthetic_root if args.dataset == "synthetic" and not args.root else None)
        kept, skipped, fallbacks, duplicates, alignment = _collect(read, config, args, store, name)
        skipped = [Skip(name(skip.source), skip.reason) for skip in read.skipped] + skipped
        if not kept:
            raise ValueError(f"every image was skipped ({len(skipped)}), e.g. {skipped[0].as_dict()}")
        items = [replace(read.items[i], source=name(read.items[i].source)) for i in kept]
        labels = np.array([item.label for item in items])
        subjects = [item.subject for item in items]
        sources = [item.source for item in items]
        names = class_names(read.num_classes)
        splits, assignment = make_splits(args, subjects, labels, [item.usage for item in items],
                                         read.num_classes)
        kept_store = _KeptView(store, kept)
        total_records = sum(len(s.train) + len(s.test) + len(s.val) for s in splits) * args.crops
        split_summaries = {}
        with tqdm(total=total_records, desc="writing LMDBs", unit="rec", disable=args.quiet) as bar:
            for number, split in enumerate(splits):
                split_summaries[split.name] = write_split(tmp / split.name, split, number, kept_store, labels,
                                                          subjects, sources, args.seed, bar)
        item_list = [{"item": i, "source": item.source, "label": int(item.label), "subject": item.subject,
                      "sequence": name(item.sequence), "usage": item.usage,
                      "fold": assignment[item.subject] if assignment else None}
                     for i, item in enumerate(items)]
        (tmp / "items.json").write_text(json.dumps(item_list, indent=1) + "\n")
        manifest = {
            "dataset": args.dataset,
            "classes": names,
            "num_classes": len(names),
            "image_size": args.size,
            "channels": 1,
            "crops": args.crops,
            "crop_offsets": crop_offsets(args.crops, args.crop_shift).round(6).tolist(),
            "seed": args.seed,
            "split_method": args.split,
            "folds": None if args.split == "official" else args.folds,
            "splits": split_summaries,
            "counts": {
                "listed": len(read.items), "items": len(items), "records_per_split": {
                    name: sum(part["records"] for part in summary.values())
                    for name, summary in split_summaries.items()},
                "per_class": _class_counts(range(len(items)), labels, names),
                "per_subject": {subject: _class_counts([i for i, s in enumerate(subjects) if s == subject],
                                                       labels, names)
                                for subject in sorted(set(subjects) - {None}, key=natural_key)},
                "per_split": {split.name: {part: _class_counts(getattr(split, part), labels, names)
                                           for part in ("train", "test", "val") if getattr(split, part)}
                              for split in splits},
                "alignment": dict(sorted(alignment.items())),
                "skipped": len(skipped), "fallbacks": len(fallbacks), "duplicates": len(duplicates),
            },
            "template": template.as_dict(),
            "alignment": {"method": args.align, "landmark_model": args.landmark_model,
                          "fallback": args.fallback, "gray": args.gray, "crop_shift": args.crop_shift,
                          "detect_min_side": args.detect_min_side, "detect_max_side": args.detect_max_side},
            "skipped": [skip.as_dict() for skip in skipped],
            "fallbacks": fallbacks,
            "duplicates": duplicates,
            "source": {"root": str(args.root) if args.root else None,
                       **{key: name(value) if isinstance(value, str) else value for key, value in read.info.items()}},
            "options": {key: value for key, value in sorted(vars(args).items())},
            "versions": _versions(),
            "seconds": round(time.time() - started, 1),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        del store, kept_store
        (tmp / "_crops.npy").unlink()
        shutil.rmtree(tmp / "_synthetic_source", ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        raise FileExistsError(f"output folder {out} appeared while preparing; the result stays in {tmp}")
    os.rename(tmp, out)
    return manifest


def _source_namer(temporary_root):
    """Sources under a temporary (deleted) synthetic folder are shown as "synthetic:<relative path>"."""
    if temporary_root is None:
        return lambda source: source
    prefix = str(Path(temporary_root).resolve()) + os.sep
    return lambda source: "synthetic:" + source[len(prefix):] if source.startswith(prefix) else source


class _KeptView:
    """store[kept[i]] as if the kept items were numbered 0..n-1."""

    def __init__(self, store, kept):
        self._store, self._kept = store, kept
        self.shape = (len(kept),) + store.shape[1:]

    def __getitem__(self, index):
        item, crop = index
        return self._store[self._kept[item], crop]


def _versions():
    import cv2
    import dlib
    import lmdb
    return {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__,
            "dlib": dlib.__version__, "lmdb": lmdb.__version__}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        resolve_options(args)
        manifest = prepare(args)
    except (DatasetLayoutError, FileExistsError, FileNotFoundError, ValueError, ImageError) as exc:
        sys.exit(f"prepare.py: error: {exc}")
    if not args.quiet:
        counts = manifest["counts"]
        print(f"{args.out}: {counts['items']} images of {len(manifest['classes'])} classes, "
              f"{manifest['crops']} crops each, {len(manifest['splits'])} split(s); "
              f"{counts['skipped']} skipped, {counts['fallbacks']} whole-frame fallbacks, "
              f"{counts['duplicates']} duplicates (see manifest.json)")


if __name__ == "__main__":
    main()
