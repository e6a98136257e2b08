"""The prepared-dataset folder: the one module that knows its layout (docs/architecture.md).

    <root>/manifest.json               what was prepared (classes, size, crops, splits with counts, ...)
    <root>/items.json                  every prepared item; an item's number is its index here
    <root>/<split>/train_lmdb          every crop of every train item, in a seeded shuffled order;
                                       keys "{position:08d}_{item:07d}_{crop:02d}" (LMDB's sorted
                                       order is the shuffled order Caffe's Data layer reads)
    <root>/<split>/test_lmdb           keys "{item:07d}_{crop:02d}" (an item's crops together)
    <root>/<split>/val_lmdb            as test_lmdb, where the dataset has a validation set
    <root>/<split>/{test,val}_items.json  [{"item", "keys", "label", "subject", "source"}, ...]

A decision unit is the set of items that gets one decision at test time: the
items sharing a ``sequence`` and a ``label`` in items.json (a CK+ sequence's
peak frames, one CK+ neutral unit's onset frames, an Oulu-CASIA or MMI
sequence's peak frames; an image alone where the database has no sequences).
``PreparedDataset.decision_units`` maps items to their units.

``<split>`` is ``fold_00`` ... for K-fold person-independent CV, or ``official``
(FER2013's Training / PublicTest / PrivateTest). data_prep.writer writes splits
through the names defined here; every reader goes through ``PreparedDataset``.
"""
import re
from dataclasses import dataclass
from pathlib import Path

from runtime.files import read_json

MANIFEST = "manifest.json"
ITEMS = "items.json"
OFFICIAL_SPLIT = "official"
FOLD_PREFIX = "fold_"
PARTS = ("train", "test", "val")


def fold_name(index):
    return f"{FOLD_PREFIX}{index:02d}"


def lmdb_name(part):
    return f"{part}_lmdb"


def items_name(part):
    return f"{part}_items.json"


def train_key(position, item, crop):
    return f"{position:08d}_{item:07d}_{crop:02d}"


def test_key(item, crop):
    return f"{item:07d}_{crop:02d}"


def parse_key(key):
    """(item, crop) of a train or test LMDB key."""
    fields = key.split("_")
    if len(fields) not in (2, 3) or not all(field.isdigit() for field in fields):
        raise ValueError(f"{key!r} is not a prepared-dataset LMDB key "
                         "('{item:07d}_{crop:02d}' or '{position:08d}_{item:07d}_{crop:02d}')")
    return int(fields[-2]), int(fields[-1])


def lmdb_location(source):
    """(root, split, part) of an LMDB path laid out as ``<root>/<split>/<part>_lmdb``, else None.

    Reads nothing: it tells where a missing LMDB belongs (runtime.preflight's advice).
    """
    source = Path(source)
    part = next((part for part in PARTS if source.name == lmdb_name(part)), None)
    if part is None or len(source.parts) < 3:
        return None
    split = source.parent.name
    if split != OFFICIAL_SPLIT and not re.fullmatch(rf"{FOLD_PREFIX}\d+", split):
        return None
    return source.parent.parent, split, part


def root_name(dataset, size=None):
    """The folder name the docs and the committed solvers give a prepared dataset: ``<dataset>-<size>``."""
    return dataset if size is None else f"{dataset}-{size}"


def parse_root_name(name):
    """(dataset, size or None) of a folder named by root_name, else None."""
    match = re.fullmatch(r"([a-z0-9]+?)(?:-(\d+))?", name)
    if not match:
        return None
    return match.group(1), (int(match.group(2)) if match.group(2) else None)


def prepare_command(source):
    """The prepare command that creates the LMDB ``source`` of the prepared layout, else None."""
    location = lmdb_location(source)
    named = location and parse_root_name(location[0].name)
    if not named:
        return None
    dataset, size = named
    return (f"python data_prep/prepare.py --dataset {dataset} --root <your {dataset} copy> "
            f"--out {location[0]}" + (f" --size {size}" if size else ""))


class PrepareError(ValueError):
    """prepare_dataset's output or input folder forbids the run (an existing output, a missing file);
    nothing was written. Defined here, with the layout, so that command lines can name it without
    importing the preparation pipeline (the Caffe-free ONNX route has no lmdb)."""


class PreparedDatasetError(ValueError):
    """A folder that is not a complete prepared dataset; the message says what to do."""


@dataclass(frozen=True)
class PreparedDataset:
    root: Path
    manifest: dict

    @classmethod
    def open(cls, root):
        """The prepared dataset at ``root``, checked to be complete."""
        root = Path(root)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise PreparedDatasetError(
                f"{root} is not a prepared dataset (no {MANIFEST}). Prepare it first with "
                f"`python data_prep/prepare.py --dataset ... --root ... --out {root}`.")
        manifest = read_json(manifest_path)
        for key in ("dataset", "classes", "num_classes", "image_size", "crops", "splits"):
            if key not in manifest:
                raise PreparedDatasetError(f"{manifest_path} has no {key!r}; it was not written "
                                           "by data_prep/prepare.py: prepare the dataset again.")
        dataset = cls(root, manifest)
        for split in manifest["splits"]:
            for part in dataset.parts(split):
                if not (dataset.lmdb(split, part) / "data.mdb").is_file():
                    raise PreparedDatasetError(
                        f"{dataset.lmdb(split, part)} is missing or not an LMDB; the prepared "
                        f"dataset {root} is incomplete: prepare it again.")
        return dataset

    @property
    def name(self):
        return self.manifest["dataset"]

    @property
    def classes(self):
        return list(self.manifest["classes"])

    @property
    def num_classes(self):
        return int(self.manifest["num_classes"])

    @property
    def image_size(self):
        return int(self.manifest["image_size"])

    def splits(self):
        return list(self.manifest["splits"])

    def fold_splits(self):
        return [name for name in self.manifest["splits"] if name.startswith(FOLD_PREFIX)]

    def evaluation_splits(self):
        """The splits a cross-validation runs over: the folds, else FER2013's official split."""
        folds = self.fold_splits()
        if folds:
            return folds
        return [OFFICIAL_SPLIT] if OFFICIAL_SPLIT in self.manifest["splits"] else []

    def parts(self, split):
        return [part for part in PARTS if part in self._split(split)]

    def has_validation(self, split):
        return "val" in self._split(split)

    def record_count(self, split, part):
        return int(self._split(split)[part]["records"])

    def item_count(self, split, part):
        return int(self._split(split)[part]["items"])

    def split_dir(self, split):
        return self.root / split

    def lmdb(self, split, part):
        return self.root / split / lmdb_name(part)

    def items_path(self, split, part):
        return self.root / split / items_name(part)

    def items(self, split, part):
        """The ``{part}_items.json`` entries of ``split`` (test and val parts)."""
        return read_json(self.items_path(split, part))

    def part_entries(self, split, part):
        """The item entries of one part: ``{part}_items.json``, or for a train part (which has
        none) built from items.json and the part's LMDB keys."""
        if part != "train":
            return self.items(split, part)
        catalogue = self.all_items()
        crops = {}
        # Imported here: this module is also the layout's owner for the Caffe-free ONNX route
        # (inference, `pip install ".[onnx]"`), which has no lmdb.
        from data_prep.lmdb_io import lmdb_keys
        for key in lmdb_keys(self.lmdb(split, part)):
            item, crop = parse_key(key)
            crops.setdefault(item, []).append(crop)
        return [{"item": item, "keys": [test_key(item, crop) for crop in sorted(crops[item])],
                 "label": catalogue[item]["label"], "subject": catalogue[item]["subject"],
                 "source": catalogue[item]["source"]} for item in sorted(crops)]

    def all_items(self):
        """{item number: its items.json entry} for every prepared item."""
        return {int(entry["item"]): entry for entry in read_json(self.root / ITEMS)}

    def decision_units(self):
        """{item number: unit name} for every prepared item: "<sequence>|<label>" (module docstring)."""
        return {item: f"{entry['sequence']}|{entry['label']}" for item, entry in self.all_items().items()}

    def _split(self, split):
        try:
            return self.manifest["splits"][split]
        except KeyError:
            raise PreparedDatasetError(f"{self.root} has no split {split!r} (its splits: "
                                       f"{self.splits()})") from None
