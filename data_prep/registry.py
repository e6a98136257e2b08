"""The databases data_prep reads: one entry per database, everything else derived from it.

prepare.py's --dataset choices, its help and per-dataset defaults, the reader
it dispatches to and the names reports print all come from DATASETS. Adding a
database = writing its reader (data_prep/readers/) and one entry here.

Crops: the paper's augmented counts give 16 per Oulu-CASIA image (23,040 /
1,440) and 25 per MMI image (15,375 / 615); CK+'s 22,410 are 415 decision
units x 3 frames x 18 crops (docs/recipe.md), so 18 with three frames per
neutral unit (--ckplus-neutral-frames; 1 frame and 16 crops were the default
before 2026-12-04). FER2013 is not aligned in the paper (its 48x48 faces come
pre-cropped) and keeps its known duplicate images so that its official counts
stay 28,709/3,589/3,589.
"""
from types import SimpleNamespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from data_prep.labels import class_names
from data_prep.readers.ckplus import NEUTRAL_DEFAULT, NEUTRAL_FRAMES_DEFAULT, read_ckplus, read_ckplus48
from data_prep.readers.fer2013 import read_fer2013
from data_prep.readers.index_csv import mmi_check_text, read_csv_dataset, read_mmi
from data_prep.readers.oulu import read_oulu
from data_prep.synthetic import LANDMARKS_FILE, write_dataset


@dataclass(frozen=True)
class Dataset:
    """One database.

    read      (root, options) -> ReadResult; ``options`` holds the entry's options (argparse names)
    split     default split method (data_prep.folds.SPLIT_METHODS)
    folds     default K for fold splits, None for an official split
    classes   the class names a default read yields (options such as --keep-contempt may add one)
    subjects  whether the images carry subject identities (person-independent folds need them)
    options   database options that apply to this database, with their defaults
    generate  (folder, options) -> writes the database first (synthetic); None: it is read from --root
    """
    name: str
    title: str
    help: str
    read: Callable
    split: str
    folds: Optional[int]
    crops: int
    classes: tuple
    size: int = 112
    align: str = "landmarks"
    duplicates: str = "skip"
    subjects: bool = True
    options: dict = field(default_factory=dict)
    generate: Optional[Callable] = None

    def defaults(self):
        """The prepare.py options this database sets when they are left unset."""
        return {"split": self.split, "folds": self.folds, "crops": self.crops, "size": self.size,
                "align": self.align, "duplicates": self.duplicates}

    def describe_defaults(self):
        """e.g. "10 folds, 16 crops, size 112" for the help text."""
        parts = [f"{self.folds} folds" if self.folds else f"{self.split} split",
                 f"{self.crops} crop{'s' if self.crops > 1 else ''}", f"size {self.size}"]
        if self.align == "none":
            parts.append("not aligned")
        if self.duplicates == "keep":
            parts.append("duplicates kept")
        return ", ".join(parts)


def _read_ckplus(root, options):
    return read_ckplus(root, options.keep_contempt, options.ckplus_neutral, options.peak_frames,
                       options.ckplus_neutral_frames)


def _read_ckplus48(root, options):
    return read_ckplus48(root, options.keep_contempt)


def _read_oulu(root, options):
    return read_oulu(root, options.oulu_camera, options.oulu_light, options.peak_frames)


def _read_mmi(root, options):
    # The index is checked against the paper's selection (205 sequences x 3 peak
    # frames); --strict makes a mismatch an error, otherwise it is printed.
    result = read_mmi(root, options.index, options.landmarks_csv, strict=bool(getattr(options, "strict", False)))
    report = result.info.get("index_check")
    if report and not report["matches"] and not getattr(options, "quiet", True):
        print(mmi_check_text(options.index or Path(root) / "mmi_index.csv", report))
    return result


def _read_csv(root, options):
    return read_csv_dataset(root, options.index, options.landmarks_csv, options.keep_contempt)


def _read_fer2013(root, options):
    return read_fer2013(root)


def _generate_synthetic(folder, options):
    write_dataset(folder, options.synthetic_subjects, options.synthetic_expressions, options.synthetic_images,
                  options.synthetic_size, options.seed, progress=not getattr(options, "quiet", True))


def _read_synthetic(root, options):
    result = read_csv_dataset(root, landmarks_csv=Path(root) / LANDMARKS_FILE)
    result.num_classes = options.synthetic_expressions
    result.info.update(generator="data_prep/synthetic.py", subjects=options.synthetic_subjects,
                       expressions=options.synthetic_expressions, images_per_expression=options.synthetic_images,
                       image_size=options.synthetic_size, seed=options.seed, kept_at=options.root)
    return result


_CKPLUS_OPTIONS = {"keep_contempt": False, "ckplus_neutral": NEUTRAL_DEFAULT,
                   "ckplus_neutral_frames": NEUTRAL_FRAMES_DEFAULT, "peak_frames": 3}
_ENTRIES = (
    Dataset("fer2013", "FER2013", "fer2013.csv (emotion,pixels,Usage) or the image-folder export "
            "train/<class>/Training_* and test/<class>/{PublicTest,PrivateTest}_*",
            _read_fer2013, split="official", folds=None, crops=1, classes=class_names(7), align="none",
            duplicates="keep", subjects=False),
    Dataset("ckplus", "CK+", "CK+ as distributed: cohn-kanade-images/Sxxx/nnn/ and Emotion/",
            _read_ckplus, split="folds", folds=10, crops=18, classes=class_names(7), options=_CKPLUS_OPTIONS),
    Dataset("ckplus48", "CK+ (48x48)", "the CK+48 export: <class>/Sxxx_nnn_*.png face crops",
            _read_ckplus48, split="folds", folds=10, crops=16, classes=class_names(6),
            options={"keep_contempt": False}),
    Dataset("oulu", "Oulu-CASIA", "Oulu-CASIA VIS/NIR: <camera>/<light>/Pxxx/<Expression>/",
            _read_oulu, split="folds", folds=10, crops=16, classes=class_names(6),
            options={"peak_frames": 3, "oulu_camera": "NIR", "oulu_light": "Strong"}),
    Dataset("mmi", "MMI", "MMI frames listed in an index CSV (--index, default <root>/mmi_index.csv)",
            _read_mmi, split="folds", folds=10, crops=25, classes=class_names(6),
            options={"index": None, "landmarks_csv": None}),
    Dataset("csv", "CSV dataset", "any database listed in a CSV path,label,subject (--index, default "
            "<root>/labels.csv)", _read_csv, split="folds", folds=10, crops=1, classes=class_names(7),
            options={"keep_contempt": False, "index": None, "landmarks_csv": None}),
    Dataset("synthetic", "synthetic", "procedurally drawn faces (data_prep/synthetic.py), generated on the fly",
            _read_synthetic, split="folds", folds=5, crops=4, classes=class_names(6), size=48,
            options={"synthetic_subjects": 10, "synthetic_expressions": 6, "synthetic_images": 8,
                     "synthetic_size": 96},
            generate=_generate_synthetic),
)
DATASETS = {entry.name: entry for entry in _ENTRIES}


def datasets_with_option(option):
    """Names of the databases that read ``option`` (argparse name), registry order."""
    return tuple(name for name, entry in DATASETS.items() if option in entry.options)


def all_options():
    """{option: default} over every database (an option has one default everywhere)."""
    merged = {}
    for entry in DATASETS.values():
        for option, default in entry.options.items():
            if merged.setdefault(option, default) != default:
                raise ValueError(f"data_prep/registry.py: option {option} has two defaults")
    return merged


def default_options(name, **overrides):
    """A namespace with database ``name``'s options at their defaults (for readers called outside prepare.py)."""
    entry = DATASETS[name]
    values = {option: None for option in all_options()}
    values.update(entry.options, seed=0, root=None, quiet=True)
    values.update(overrides)
    return SimpleNamespace(**values)


def title(name):
    """The name a report prints for database ``name`` (the name itself if unknown)."""
    entry = DATASETS.get(name)
    return entry.title if entry else name
