"""Turn an expression database into the prepared dataset folder the nets read.

    prepare_dataset(PrepareOptions(dataset="ckplus", root=..., out=...)) -> manifest

The command line is tools/prepare.py; ``python data_prep/prepare.py ...``, the
command the docs show, runs it (runtime/forward.py). Reads the database as its
owners distribute it, aligns every face (dlib landmarks, similarity transform
onto the template), cuts ``crops`` crops,
normalises their gray levels, resizes them to ``size``, splits the items
(person-independent folds or the official split), audits the images' quality
(data_prep/audit.py) and writes one train and one test LMDB per split plus
manifest.json (docs/architecture.md). The output folder is built in a
temporary sibling and renamed into place at the end: an interrupted run leaves
no output folder. The databases and their defaults are listed in
data_prep/registry.py. See docs/data.md.
"""

import json
import os
import platform
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.alignment import crop_offsets
from data_prep.audit import PARTS, AuditError, build_audit
from data_prep.face_template import load_template
from data_prep.framing import load_fer2013_framing
from data_prep.folds import ckplus_standard_folds, fold_splits, official_split, stratified_subject_folds
from data_prep.items import Skip, natural_key
from data_prep.labels import class_names
from data_prep.prepared import ITEMS, MANIFEST, PrepareError  # noqa: F401 (PrepareError: part of this API)
from data_prep.pipeline import PrepConfig, process_items
from data_prep.registry import DATASETS, all_options, datasets_with_option
from data_prep.writer import write_split


def _all_cores():
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class PrepareOptions:
    """What to prepare and how; tools/prepare.py's flags are these fields (``--crop-shift`` is
    ``crop_shift``). None means the database's default (data_prep/registry.py), filled in by
    ``resolve_options``."""
    dataset: str
    out: object
    root: object = None
    index: object = None
    landmarks_csv: object = None
    split: str = None
    folds: int = None
    seed: int = 0
    size: int = None
    crops: int = None
    crop_shift: float = 0.08
    align: str = None
    landmark_model: int = 68
    template: object = None
    fallback: str = "frame"
    gray: str = "std"
    detect_min_side: int = 160
    detect_max_side: int = 320
    duplicates: str = None
    keep_contempt: bool = None
    ckplus_neutral: str = None
    ckplus_neutral_frames: int = None
    peak_frames: int = None
    oulu_camera: str = None
    oulu_light: str = None
    synthetic_subjects: int = None
    synthetic_expressions: int = None
    synthetic_images: int = None
    synthetic_size: int = None
    strict: bool = False
    workers: int = field(default_factory=_all_cores)
    chunk_size: int = 8
    quiet: bool = False


def resolve_options(options):
    """``options`` with the database's defaults filled in; ValueError on options that do not apply
    (the messages use the command line's flag names, which are the fields' names)."""
    if options.dataset not in DATASETS:
        raise PrepareError(f"unknown dataset {options.dataset!r}; the databases: {', '.join(DATASETS)}")
    entry = DATASETS[options.dataset]
    filled = {}
    for name, value in entry.defaults().items():
        if name != "folds" and getattr(options, name, None) is None:
            filled[name] = value
    for name, default in all_options().items():
        if getattr(options, name) is None:
            filled[name] = entry.options.get(name, default)
        elif name not in entry.options:
            raise ValueError(f"--{name.replace('_', '-')} applies to --dataset "
                             f"{'/'.join(datasets_with_option(name))} only")
    options = replace(options, **filled)
    if options.split == "official":
        if options.folds is not None:
            raise ValueError("--folds does not apply to --split official")
    elif options.folds is None:
        options = replace(options, folds=entry.folds or 10)
    if not entry.subjects and options.split != "official":
        raise ValueError(f"{entry.title} has no subject identities, so no person-independent folds: "
                         "use its official split (--split official, the default)")
    if entry.generate is None and not options.root:
        raise ValueError(f"--root is required for --dataset {options.dataset}")
    if options.workers < 1 or options.chunk_size < 1:
        raise ValueError("--workers and --chunk-size must be >= 1")
    return options


def make_splits(options, subjects, labels, usages, num_classes):
    if options.split == "official":
        return official_split(usages), None
    if any(subject is None for subject in subjects):
        raise ValueError(f"--split {options.split} needs a subject for every image")
    if options.split == "ckplus-standard":
        assignment = ckplus_standard_folds(subjects, options.folds)
    else:
        assignment = stratified_subject_folds(subjects, labels, options.folds, options.seed, num_classes)
    return fold_splits(subjects, assignment, options.folds), assignment


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


def collect(options, config, tmp):
    """Read the database and run every image through the pipeline, crops into ``tmp``/_crops.npy."""
    entry = DATASETS[options.dataset]
    source_root = options.root
    if entry.generate is not None:
        source_root = Path(options.root) if options.root else tmp / "_synthetic_source"
        entry.generate(source_root, options)
    read = entry.read(source_root, options)
    if not read.items:
        reasons = Counter(skip.reason for skip in read.skipped).most_common(3)
        raise ValueError(f"no usable images under {source_root}: {len(read.skipped)} inputs "
                         f"skipped, most often for: {reasons}")
    store = np.lib.format.open_memmap(tmp / "_crops.npy", mode="w+", dtype=np.uint8,
                                      shape=(len(read.items), options.crops, options.size, options.size))
    name = _source_namer(source_root if entry.generate is not None and not options.root else None)
    kept, skipped, fallbacks, duplicates = [], [], [], []
    figures = []
    alignment = Counter()
    first_with_digest = {}
    for result in process_items(read.items, config, options.workers, options.chunk_size, progress=not options.quiet):
        item = read.items[result.index]
        if result.skip_reason is not None:
            skipped.append(Skip(name(item.source), result.skip_reason))
            continue
        original = first_with_digest.setdefault(result.digest, result.index)
        if original != result.index:
            other = read.items[original]
            note = "" if other.label == item.label else f" (with a different label, {other.label} vs {item.label})"
            duplicates.append({"source": name(item.source), "duplicate_of": name(other.source),
                               "action": options.duplicates + (" " + note.strip() if note else "")})
            if options.duplicates == "skip":
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


def write(tmp, options, collected, splits, assignment):
    """Write every split's LMDBs and item lists and items.json into ``tmp``; return the split summaries."""
    total_records = sum(len(s.train) + len(s.test) + len(s.val) for s in splits) * options.crops
    subjects, sources = collected.subjects, collected.sources
    summaries = {}
    with tqdm(total=total_records, desc="writing LMDBs", unit="rec", disable=options.quiet) as bar:
        for number, split in enumerate(splits):
            summaries[split.name] = write_split(tmp / split.name, split, number, collected.store,
                                                collected.labels, subjects, sources, options.seed, bar)
    item_list = [{"item": i, "source": item.source, "label": int(item.label), "subject": item.subject,
                  "sequence": collected.name(item.sequence), "usage": item.usage,
                  "fold": assignment[item.subject] if assignment else None}
                 for i, item in enumerate(collected.items)]
    (tmp / ITEMS).write_text(json.dumps(item_list, indent=1) + "\n")
    return summaries


def build_manifest(options, collected, splits, summaries, template, audit_entry, started):
    """manifest.json's content (docs/architecture.md)."""
    names = class_names(collected.read.num_classes)
    return {
        "dataset": options.dataset,
        "classes": names,
        "num_classes": len(names),
        "image_size": options.size,
        "channels": 1,
        "crops": options.crops,
        "crop_offsets": crop_offsets(options.crops, options.crop_shift).round(6).tolist(),
        "seed": options.seed,
        "split_method": options.split,
        "folds": None if options.split == "official" else options.folds,
        "splits": summaries,
        "counts": _counts(collected, splits, summaries, names),
        "template": template.as_dict(),
        "alignment": {"method": options.align, "landmark_model": options.landmark_model,
                      "fallback": options.fallback, "gray": options.gray, "crop_shift": options.crop_shift,
                      "detect_min_side": options.detect_min_side, "detect_max_side": options.detect_max_side},
        # How the database's ready-cut images frame a face (data_prep/framing.py): inference cuts
        # the same frame around a face it detects in a photo. Measured for FER2013 only.
        "framing": (load_fer2013_framing().as_dict()
                    if options.align == "none" and options.dataset == "fer2013" else None),
        "skipped": [skip.as_dict() for skip in collected.skipped],
        "fallbacks": collected.fallbacks,
        "duplicates": collected.duplicates,
        "audit": audit_entry,
        "source": {"root": str(options.root) if options.root else None,
                   **{key: collected.name(value) if isinstance(value, str) else value
                      for key, value in collected.read.info.items()}},
        "options": {key: str(value) if isinstance(value, Path) else value
                    for key, value in sorted(asdict(options).items())},
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


def _partial_folder(options):
    """The temporary sibling of --out the dataset is built in (checks first that nothing is overwritten)."""
    out = Path(options.out).absolute()
    if out.exists():
        raise FileExistsError(f"output folder {out} already exists; prepare.py never overwrites: "
                              "choose a new --out or delete the old folder")
    if DATASETS[options.dataset].generate is not None and options.root and Path(options.root).exists():
        raise FileExistsError(f"--root {options.root} exists; for --dataset {options.dataset} --root names a new "
                              "folder to keep the generated images in (or leave it out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return out, tmp


def prepare(options):
    """Prepare the dataset described by resolved ``options`` (``resolve_options``); return the manifest.

    Steps: collect (read, align, crop, measure), split, audit (with --strict its warnings stop the run
    here, before any LMDB is written), write, manifest.
    """
    started = time.time()
    template = load_template(options.template)
    config = PrepConfig(template=template, size=options.size, crops=options.crops, crop_shift=options.crop_shift,
                        align=options.align, landmark_model=options.landmark_model, fallback=options.fallback,
                        gray=options.gray, detect_min_side=options.detect_min_side,
                        detect_max_side=options.detect_max_side)
    out, tmp = _partial_folder(options)
    try:
        collected = collect(options, config, tmp)
        splits, assignment = make_splits(options, collected.subjects, collected.labels,
                                         [item.usage for item in collected.items], collected.read.num_classes)
        audit_entry = audit(collected, splits)
        if options.strict and audit_entry["warnings"]:
            raise AuditError(f"the data-quality audit found {len(audit_entry['warnings'])} problem(s) and --strict "
                             "is set, so nothing was written:\n  "
                             + "\n  ".join(w["message"] for w in audit_entry["warnings"]))
        summaries = write(tmp, options, collected, splits, assignment)
        manifest = build_manifest(options, collected, splits, summaries, template, audit_entry, started)
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


def prepare_dataset(options):
    """Check ``options`` (a PrepareOptions), fill in the database's defaults and prepare; return the
    manifest. Raises ValueError subclasses (PrepareError, DatasetLayoutError, ImageError, AuditError)
    whose message names the file or option and the fix; nothing is left behind on any error."""
    options = resolve_options(options)
    try:
        return prepare(options)
    except (FileExistsError, FileNotFoundError) as error:
        raise PrepareError(str(error)) from error


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


if __name__ == "__main__":
    # The documented `python data_prep/prepare.py ...`: the command line is tools/prepare.py.
    from runtime.forward import run_tool_instead
    run_tool_instead("prepare.py")
