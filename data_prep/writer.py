"""Writing one split of a prepared dataset folder, in the layout data_prep.prepared defines."""
import json

import numpy as np

from data_prep.items import natural_key
from data_prep.lmdb_io import write_lmdb
from data_prep.prepared import items_name, lmdb_name, test_key, train_key


def train_order(items, crops, seed, split_number):
    """(item, crop) pairs of the train LMDB in their deterministic shuffled order."""
    pairs = np.array([(item, crop) for item in items for crop in range(crops)], dtype=np.int64).reshape(-1, 2)
    permutation = np.random.default_rng([seed, split_number]).permutation(len(pairs))
    return pairs[permutation]


def _records_train(store, labels, pairs, bar):
    for position, (item, crop) in enumerate(pairs):
        bar.update(1)
        yield train_key(position, item, crop), store[item, crop], labels[item]


def _records_test(store, labels, items, crops, bar):
    for item in items:
        for crop in range(crops):
            bar.update(1)
            yield test_key(item, crop), store[item, crop], labels[item]


def item_entries(items, crops, labels, subjects, sources):
    return [{"item": int(item), "keys": [test_key(item, crop) for crop in range(crops)],
             "label": int(labels[item]), "subject": subjects[item], "source": sources[item]}
            for item in items]


def write_split(folder, split, split_number, store, labels, subjects, sources, seed, bar):
    """Write ``split``'s LMDBs and item lists into the new folder ``folder``; return its summary."""
    crops = store.shape[1]
    folder.mkdir()
    pairs = train_order(split.train, crops, seed, split_number)
    summary = {"train": {"items": len(split.train),
                         "records": write_lmdb(folder / lmdb_name("train"),
                                               _records_train(store, labels, pairs, bar))}}
    for part in ("test", "val"):
        items = sorted(getattr(split, part))
        if part == "val" and not items:
            continue
        records = write_lmdb(folder / lmdb_name(part), _records_test(store, labels, items, crops, bar))
        (folder / items_name(part)).write_text(
            json.dumps(item_entries(items, crops, labels, subjects, sources), indent=1) + "\n")
        summary[part] = {"items": len(items), "records": records}
    for part in summary:
        # None where the dataset has no subject identities (FER2013)
        members = sorted({subjects[i] for i in getattr(split, part)} - {None}, key=natural_key)
        summary[part]["subjects"] = members or None
    return summary
