"""Turn an expression database into the prepared dataset folder the nets read.

    python data_prep/prepare.py --dataset {fer2013,ckplus,ckplus48,oulu,mmi,csv,synthetic}
        --root PATH --out DIR [--folds 10] [--crops N] [--size S] [--strict] ...

Reads the database as its owners distribute it, aligns every face (dlib
landmarks, similarity transform onto the template), cuts --crops crops,
normalises their gray levels, resizes them to --size, splits the items
(person-independent folds or the official split), audits the images' quality
(data_prep/audit.py) and writes one train and one test LMDB per split plus
manifest.json (docs/architecture.md). The output folder is built in a
temporary sibling and renamed into place at the end: an interrupted run leaves
no output folder. The databases and their defaults are listed in
data_prep/registry.py. See docs/data.md.
"""
import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.alignment import GRAY_MODES, LANDMARK_MODELS, crop_offsets
from data_prep.audit import PARTS, AuditError, build_audit, summary_lines
from data_prep.face_template import load_template
from data_prep.framing import load_fer2013_framing
from data_prep.folds import (SPLIT_METHODS, ckplus_standard_folds, fold_splits, official_split,
                             stratified_subject_folds)
from data_prep.items import DatasetLayoutError, Skip, natural_key
from data_prep.labels import class_names
from data_prep.prepared import ITEMS, MANIFEST
from data_prep.pipeline import ALIGN_MODES, FALLBACK_MODES, ImageError, PrepConfig, process_items
from data_prep.readers.ckplus import NEUTRAL_MODES
from data_prep.readers.oulu import CAMERAS, LIGHTS
from data_prep.registry import DATASETS, all_options, datasets_with_option
from data_prep.writer import write_split


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
        prog="prepare.py", description=__doc__.split("\n\n")[0],
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
    split.add_argument("--seed", type=int, default=0, help="seed of the fold assignment and the train "
                       "shuffle (default 0)")
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


def resolve_options(args):
    """Fill per-dataset defaults into ``args`` and reject options that do not apply."""
    entry = DATASETS[args.dataset]
    for name, value in entry.defaults().items():
        if name != "folds" and getattr(args, name, None) is None:
            setattr(args, name, value)
    for name, default in all_options().items():
        if getattr(args, name) is None:
            setattr(args, name, entry.options.get(name, default))
        elif name not in entry.options:
            raise ValueError(f"--{name.replace('_', '-')} applies to --dataset "
                             f"{'/'.join(datasets_with_option(name))} only")
    if args.split == "official":
        if args.folds is not None:
            raise ValueError("--folds does not apply to --split official")
    elif args.folds is None:
        args.folds = entry.folds or 10
    if not entry.subjects and args.split != "official":
        raise ValueError(f"{entry.title} has no subject identities, so no person-independent folds: "
                         "use its official split (--split official, the default)")
    if entry.generate is None and not args.root:
        raise ValueError(f"--root is required for --dataset {args.dataset}")
    if args.workers < 1 or args.chunk_size < 1:
        raise ValueError("--workers and --chunk-size must be >= 1")
    return args


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


@dataclass
class Collected:
    """What the collect step found: the kept items (renumbered 0..n-1), their crops and figures, and
    everything left out. ``name`` turns an item's source into the name the manifest shows."""
    read: object
    items: list
    labels: np.ndarray
    store: object
    figures: np.ndarray
    skipped: list
    fallbacks: list
    duplicates: list
    alignment: Counter
    name: object

    @property
    def subjects(self):
        return [item.subject for item in self.items]

    @property
    def sources(self):
        return [item.source for item in self.items]


def collect(args, config, tmp):
    """Read the database and run every image through the pipeline, crops into ``tmp``/_crops.npy."""
    entry = DATASETS[args.dataset]
    source_root = args.root
    if entry.generate is not None:
        source_root = Path(args.root) if args.root else tmp / "_synthetic_source"
        entry.generate(source_root, args)
    read = entry.read(source_root, args)
    if not read.items:
        reasons = Counter(skip.reason for skip in read.skipped).most_common(3)
        raise ValueError(f"no usable images under {source_root}: {len(read.skipped)} inputs "
                         f"skipped, most often for: {reasons}")
    store = np.lib.format.open_memmap(tmp / "_crops.npy", mode="w+", dtype=np.uint8,
                                      shape=(len(read.items), args.crops, args.size, args.size))
    name = _source_namer(source_root if entry.generate is not None and not args.root else None)
    kept, skipped, fallbacks, duplicates = [], [], [], []
    figures = []
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
        figures.append(result.figures)
    skipped = [Skip(name(skip.source), skip.reason) for skip in read.skipped] + skipped
    if not kept:
        raise ValueError(f"every image was skipped ({len(skipped)}), e.g. {skipped[0].as_dict()}")
    items = [replace(read.items[i], source=name(read.items[i].source)) for i in kept]
    return Collected(read, items, np.array([item.label for item in items]), _KeptView(store, kept),
                     np.array(figures), skipped, fallbacks, duplicates, alignment, name)


def audit(collected, splits):
    """The audit of every split (data_prep/audit.py) on the figures measured while collecting."""
    parts = {split.name: {part: getattr(split, part) for part in PARTS} for split in splits}
    return build_audit(parts, collected.labels, class_names(collected.read.num_classes), collected.figures)


def write(tmp, args, collected, splits, assignment):
    """Write every split's LMDBs and item lists and items.json into ``tmp``; return the split summaries."""
    total_records = sum(len(s.train) + len(s.test) + len(s.val) for s in splits) * args.crops
    subjects, sources = collected.subjects, collected.sources
    summaries = {}
    with tqdm(total=total_records, desc="writing LMDBs", unit="rec", disable=args.quiet) as bar:
        for number, split in enumerate(splits):
            summaries[split.name] = write_split(tmp / split.name, split, number, collected.store,
                                                collected.labels, subjects, sources, args.seed, bar)
    item_list = [{"item": i, "source": item.source, "label": int(item.label), "subject": item.subject,
                  "sequence": collected.name(item.sequence), "usage": item.usage,
                  "fold": assignment[item.subject] if assignment else None}
                 for i, item in enumerate(collected.items)]
    (tmp / ITEMS).write_text(json.dumps(item_list, indent=1) + "\n")
    return summaries


def build_manifest(args, collected, splits, summaries, template, audit_entry, started):
    """manifest.json's content (docs/architecture.md)."""
    names = class_names(collected.read.num_classes)
    return {
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
        "splits": summaries,
        "counts": _counts(collected, splits, summaries, names),
        "template": template.as_dict(),
        "alignment": {"method": args.align, "landmark_model": args.landmark_model,
                      "fallback": args.fallback, "gray": args.gray, "crop_shift": args.crop_shift,
                      "detect_min_side": args.detect_min_side, "detect_max_side": args.detect_max_side},
        # How the database's ready-cut images frame a face (data_prep/framing.py): inference cuts
        # the same frame around a face it detects in a photo. Measured for FER2013 only.
        "framing": (load_fer2013_framing().as_dict()
                    if args.align == "none" and args.dataset == "fer2013" else None),
        "skipped": [skip.as_dict() for skip in collected.skipped],
        "fallbacks": collected.fallbacks,
        "duplicates": collected.duplicates,
        "audit": audit_entry,
        "source": {"root": str(args.root) if args.root else None,
                   **{key: collected.name(value) if isinstance(value, str) else value
                      for key, value in collected.read.info.items()}},
        "options": {key: value for key, value in sorted(vars(args).items())},
        "versions": _versions(),
        "seconds": round(time.time() - started, 1),
    }


def _counts(collected, splits, summaries, names):
    labels, subjects = collected.labels, collected.subjects
    return {
        "listed": len(collected.read.items), "items": len(collected.items), "records_per_split": {
            name: sum(part["records"] for part in summary.values()) for name, summary in summaries.items()},
        "per_class": _class_counts(range(len(collected.items)), labels, names),
        "per_subject": {subject: _class_counts([i for i, s in enumerate(subjects) if s == subject], labels, names)
                        for subject in sorted(set(subjects) - {None}, key=natural_key)},
        "per_split": {split.name: {part: _class_counts(getattr(split, part), labels, names)
                                   for part in ("train", "test", "val") if getattr(split, part)}
                      for split in splits},
        "alignment": dict(sorted(collected.alignment.items())),
        "skipped": len(collected.skipped), "fallbacks": len(collected.fallbacks),
        "duplicates": len(collected.duplicates),
    }


def _class_counts(indices, labels, names):
    counts = Counter(int(labels[i]) for i in indices)
    return {name: counts.get(label, 0) for label, name in enumerate(names)}


def _partial_folder(args):
    """The temporary sibling of --out the dataset is built in (checks first that nothing is overwritten)."""
    out = Path(args.out).absolute()
    if out.exists():
        raise FileExistsError(f"output folder {out} already exists; prepare.py never overwrites: "
                              "choose a new --out or delete the old folder")
    if DATASETS[args.dataset].generate is not None and args.root and Path(args.root).exists():
        raise FileExistsError(f"--root {args.root} exists; for --dataset {args.dataset} --root names a new "
                              "folder to keep the generated images in (or leave it out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return out, tmp


def prepare(args):
    """Prepare the dataset described by ``args`` (argparse namespace); return the manifest.

    Steps: collect (read, align, crop, measure), split, audit (with --strict its warnings stop the run
    here, before any LMDB is written), write, manifest.
    """
    started = time.time()
    template = load_template(args.template)
    config = PrepConfig(template=template, size=args.size, crops=args.crops, crop_shift=args.crop_shift,
                        align=args.align, landmark_model=args.landmark_model, fallback=args.fallback,
                        gray=args.gray, detect_min_side=args.detect_min_side,
                        detect_max_side=args.detect_max_side)
    out, tmp = _partial_folder(args)
    try:
        collected = collect(args, config, tmp)
        splits, assignment = make_splits(args, collected.subjects, collected.labels,
                                         [item.usage for item in collected.items], collected.read.num_classes)
        audit_entry = audit(collected, splits)
        if args.strict and audit_entry["warnings"]:
            raise AuditError(f"the data-quality audit found {len(audit_entry['warnings'])} problem(s) and --strict "
                             "is set, so nothing was written:\n  "
                             + "\n  ".join(w["message"] for w in audit_entry["warnings"]))
        summaries = write(tmp, args, collected, splits, assignment)
        manifest = build_manifest(args, collected, splits, summaries, template, audit_entry, started)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        del collected
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
    for warning in manifest["audit"]["warnings"]:
        print(f"prepare.py: warning: {warning['message']}", file=sys.stderr)
    if not args.quiet:
        counts = manifest["counts"]
        print(f"{args.out}: {counts['items']} images of {len(manifest['classes'])} classes, "
              f"{manifest['crops']} crops each, {len(manifest['splits'])} split(s); "
              f"{counts['skipped']} skipped, {counts['fallbacks']} whole-frame fallbacks, "
              f"{counts['duplicates']} duplicates (see manifest.json)")
        print("\n".join(summary_lines(manifest["audit"], with_warnings=False)))


if __name__ == "__main__":
    main()
