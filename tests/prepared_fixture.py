"""A tiny prepared dataset in the layout of docs/architecture.md, built directly
(without data_prep/prepare.py) so that the tools' tests do not depend on the
alignment pipeline: K subjects, 6 classes, each class a bright band at its own
rows, 2 crops per image."""
import json

import numpy as np

from data_prep.lmdb_io import write_lmdb

CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")


def build_prepared_dataset(out, folds=3, subjects=6, images_per_class=2, size=24, crops=2, seed=0,
                           dataset="tiny", official=False):
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    band = size // len(CLASSES)
    items = []
    for subject in range(subjects):
        for label in range(len(CLASSES)):
            for _ in range(images_per_class):
                crops_ = rng.integers(0, 90, (crops, size, size))
                crops_[:, label * band:label * band + band - 1, :] += 140
                items.append({"item": len(items), "label": label, "subject": f"S{subject:03d}",
                              "crops": crops_.astype(np.uint8)})
    def write_items(path, chosen):
        path.write_text(json.dumps([
            {"item": it["item"], "keys": [f"{it['item']:07d}_{c:02d}" for c in range(crops)],
             "label": it["label"], "subject": it["subject"], "source": f"image{it['item']}.png"}
            for it in chosen]))

    def write_split(split, train, tests):
        split.mkdir()
        records = [(it["crops"][c], it["label"]) for it in train for c in range(crops)]
        order = rng.permutation(len(records))
        write_lmdb(split / "train_lmdb",
                   ((f"{rank:08d}", *records[i]) for rank, i in enumerate(order)))
        for part, chosen in tests.items():
            write_lmdb(split / f"{part}_lmdb", ((f"{it['item']:07d}_{c:02d}", it["crops"][c], it["label"])
                                                for it in chosen for c in range(crops)))
            write_items(split / f"{part}_items.json", chosen)
        return {"train_records": len(records)}

    splits = {}
    if official:
        # FER2013's layout: Training / PublicTest (val) / PrivateTest (test).
        usage = {it["item"]: ("train", "val", "test")[int(it["subject"][1:]) % 3] for it in items}
        splits["official"] = write_split(out / "official", [it for it in items if usage[it["item"]] == "train"], {
            part: [it for it in items if usage[it["item"]] == part] for part in ("val", "test")})
    else:
        for fold in range(folds):
            test = [it for it in items if int(it["subject"][1:]) % folds == fold]
            train = [it for it in items if int(it["subject"][1:]) % folds != fold]
            splits[f"fold_{fold:02d}"] = write_split(out / f"fold_{fold:02d}", train, {"test": test})
    (out / "manifest.json").write_text(json.dumps({
        "dataset": dataset, "classes": list(CLASSES), "num_classes": len(CLASSES),
        "image_size": size, "channels": 1, "crops": crops, "seed": seed, "splits": splits}))
    return out
