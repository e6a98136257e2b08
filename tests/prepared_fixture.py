"""A tiny prepared dataset written by data_prep's own split writer (data_prep.writer), so the tools'
tests read exactly the layout data_prep writes, without the alignment pipeline: K subjects, 6 classes,
each class a bright band at its own rows, 2 crops per image."""
import json

import numpy as np

from data_prep.folds import Split
from data_prep.prepared import ITEMS, MANIFEST, OFFICIAL_SPLIT, fold_name
from data_prep.writer import write_split

CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
SEVEN_CLASSES = CLASSES + ("neutral",)


class _NoBar:
    def update(self, _):
        pass


def build_prepared_dataset(out, folds=3, subjects=6, images_per_class=2, size=48, crops=2, seed=0,
                           dataset="tiny", official=False, classes=CLASSES):
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    band = size // len(classes)
    store, labels, item_subjects, sequences = [], [], [], []
    for subject in range(subjects):
        for label in range(len(classes)):
            for _ in range(images_per_class):
                image_crops = rng.integers(0, 90, (crops, size, size))
                image_crops[:, label * band:label * band + band - 1, :] += 140
                store.append(image_crops.astype(np.uint8))
                labels.append(label)
                item_subjects.append(f"S{subject:03d}")
                # A subject's images of one class are one recorded sequence (one decision unit).
                sequences.append(f"S{subject:03d}_{label:03d}")
    store = np.stack(store)
    sources = [f"image{i}.png" for i in range(len(labels))]
    subject_number = [int(s[1:]) for s in item_subjects]

    if official:
        # FER2013's layout: Training / PublicTest (val) / PrivateTest (test), no subjects.
        usage = [("train", "val", "test")[n % 3] for n in subject_number]
        chosen = {part: [i for i, u in enumerate(usage) if u == part] for part in ("train", "val", "test")}
        partitions = [(OFFICIAL_SPLIT, Split(OFFICIAL_SPLIT, **chosen))]
    else:
        partitions = []
        for fold in range(folds):
            test = [i for i, n in enumerate(subject_number) if n % folds == fold]
            train = [i for i, n in enumerate(subject_number) if n % folds != fold]
            partitions.append((fold_name(fold), Split(fold_name(fold), train, test)))
    splits = {name: write_split(out / name, split, number, store, labels, item_subjects, sources, seed,
                                _NoBar())
              for number, (name, split) in enumerate(partitions)}
    (out / ITEMS).write_text(json.dumps([
        {"item": item, "source": source, "label": label, "subject": subject, "sequence": sequence}
        for item, (source, label, subject, sequence)
        in enumerate(zip(sources, labels, item_subjects, sequences))]))
    (out / MANIFEST).write_text(json.dumps({
        "dataset": dataset, "classes": list(classes), "num_classes": len(classes),
        "image_size": size, "channels": 1, "crops": crops, "seed": seed, "splits": splits}))
    return out
