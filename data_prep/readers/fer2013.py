"""FER2013: the official fer2013.csv, or the common image-folder export.

fer2013.csv has the columns emotion (0-6, the project's order), pixels (2304
space-separated gray values of a 48x48 image) and Usage (Training, PublicTest,
PrivateTest). The image-folder export holds train/<class>/Training_*.jpg and
test/<class>/{PublicTest,PrivateTest}_*.jpg; the file-name prefix carries the
original split. FER2013 has no subject identities: items get subject None and
the dataset is used with its official split (Training / PublicTest = val /
PrivateTest = test).
"""
import csv
from pathlib import Path

from data_prep.items import DatasetLayoutError, Item, ReadResult, Skip, image_files, visible_entries
from data_prep.labels import FER2013_EMOTION_CODES, SEVEN_CLASSES, label_from_name

USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
CSV_NAME = "fer2013.csv"
PIXELS_PER_IMAGE = 48 * 48


def read_fer2013(root):
    """Items of FER2013 at ``root``: the csv file, a folder holding it, or the folder export."""
    root = Path(root)
    if root.is_file():
        return read_fer2013_csv(root)
    if (root / CSV_NAME).is_file():
        return read_fer2013_csv(root / CSV_NAME)
    if (root / "train").is_dir() and (root / "test").is_dir():
        return read_fer2013_folders(root)
    found = ", ".join(p.name for p in visible_entries(root)) if root.is_dir() else "nothing (no such folder)"
    raise DatasetLayoutError(
        f"FER2013 root {root}: expected the file {CSV_NAME} (columns emotion,pixels,Usage) or "
        f"the folders train/<class>/ and test/<class>/ of the image export; found: {found or 'an empty folder'}")


def read_fer2013_csv(path):
    path = Path(path)
    items, skipped = [], []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = {"emotion", "pixels", "Usage"} - set(header)
        if missing:
            raise DatasetLayoutError(
                f"{path}: the header must name the columns emotion, pixels and Usage; "
                f"missing {sorted(missing)} in {header}")
        column = {name: header.index(name) for name in ("emotion", "pixels", "Usage")}
        for line_number, row in enumerate(reader, start=2):
            source = f"{path}:line {line_number}"
            if not row:
                continue
            if len(row) != len(header):
                skipped.append(Skip(source, f"{len(row)} fields, the header has {len(header)}"))
                continue
            emotion = row[column["emotion"]].strip()
            usage = row[column["Usage"]].strip()
            if not emotion:
                skipped.append(Skip(source, "missing label (emotion is empty)"))
                continue
            if not emotion.isdigit() or int(emotion) not in FER2013_EMOTION_CODES:
                skipped.append(Skip(source, f"label {emotion!r} out of range: emotion must be 0..6"))
                continue
            if usage not in USAGE_TO_SPLIT:
                skipped.append(Skip(source, f"Usage {usage!r} is not one of {sorted(USAGE_TO_SPLIT)}"))
                continue
            items.append(Item(source=source, label=FER2013_EMOTION_CODES[int(emotion)], subject=None,
                              sequence=source, usage=USAGE_TO_SPLIT[usage],
                              pixels=row[column["pixels"]]))
    return ReadResult(items, skipped, SEVEN_CLASSES, {"format": "fer2013.csv", "file": str(path)})


def read_fer2013_folders(root):
    root = Path(root)
    items, skipped = [], []
    prefix_to_split = {prefix + "_": split for prefix, split in USAGE_TO_SPLIT.items()}
    folder_splits = {"train": {"train"}, "test": {"val", "test"}}
    for top in ("train", "test"):
        for class_dir in visible_entries(root / top):
            if not class_dir.is_dir():
                continue
            label = label_from_name(class_dir.name)
            if label is None or label >= SEVEN_CLASSES:
                raise DatasetLayoutError(
                    f"{class_dir}: unknown class folder {class_dir.name!r}; FER2013 export folders "
                    f"are angry, disgust, fear, happy, sad, surprise, neutral")
            for image in image_files(class_dir):
                split = next((s for p, s in prefix_to_split.items() if image.name.startswith(p)), None)
                if split is None:
                    skipped.append(Skip(str(image), "file name lacks the Training_/PublicTest_/"
                                        "PrivateTest_ prefix that tells its official split"))
                    continue
                if split not in folder_splits[top]:
                    skipped.append(Skip(str(image), f"prefix says {split} but the file is in {top}/"))
                    continue
                items.append(Item(source=str(image), label=label, subject=None,
                                  sequence=str(image), usage=split))
    if not items and not skipped:
        raise DatasetLayoutError(f"FER2013 export {root}: no images in train/<class>/ or test/<class>/")
    return ReadResult(items, skipped, SEVEN_CLASSES, {"format": "fer2013 image folders", "root": str(root)})
