"""Merging prepared datasets' LMDBs into new ones (cross-database runs, experiments.running.crossdb).

The records keep the prepared layout's keys (data_prep.prepared): a merged
training LMDB is keyed ``train_key(position, item, crop)`` in a seeded shuffled
order, as data_prep.writer keys a split's train LMDB; a merged test LMDB is
keyed ``test_key(item, crop)`` with every item's crops together, and comes with
its item list (``{part}_items.json`` entries, labels mapped to the training
classes). Which splits and parts to merge is the caller's choice.
"""
import numpy as np

from data_prep.lmdb_io import read_lmdb, write_lmdb
from data_prep.prepared import parse_key, test_key, train_key
from runtime.files import write_json_atomic


class MergeError(ValueError):
    """Prepared parts that cannot be merged (an item in two of them); the message names the dataset."""


def merge_training_records(dataset, parts, out_lmdb, seed=0):
    """Every record of ``parts`` ([(split, part)]) of ``dataset``, shuffled (seeded), as one new
    LMDB ``out_lmdb`` keyed as a train LMDB; returns the record count."""
    records = []
    for split, part in parts:
        records.extend((*parse_key(key), image, label)
                       for key, image, label in read_lmdb(dataset.lmdb(split, part)))
    order = np.random.default_rng(seed).permutation(len(records))

    def shuffled():
        for position, index in enumerate(order):
            item, crop, image, label = records[index]
            yield train_key(position, item, crop), image, label

    return write_lmdb(out_lmdb, shuffled())


def merge_test_records(dataset, parts, classes, out_lmdb, out_items, out_left_out):
    """The items of ``parts`` ([(split, part)]) of ``dataset``, relabelled by class name to
    ``classes``, as one new test-keyed LMDB ``out_lmdb`` with its item list ``out_items``.

    Items of a class that ``classes`` lacks are left out and counted per class
    name in ``out_left_out``, written last: its presence marks the merge complete.
    Returns (records written, items kept, {class name: items left out}).
    """
    class_index = {name: i for i, name in enumerate(classes)}
    kept_items, left_out, records = [], {}, []
    seen = set()
    for split, part in parts:
        relabel = {}
        for entry in dataset.part_entries(split, part):
            name = dataset.classes[entry["label"]]
            if entry["item"] in seen:
                raise MergeError(f"error: item {entry['item']} of {dataset.root} is in two of the "
                                 f"merged parts ({parts}); prepare the dataset again")
            seen.add(entry["item"])
            if name not in class_index:
                left_out[name] = left_out.get(name, 0) + 1
                continue
            relabel[entry["item"]] = class_index[name]
            kept_items.append(dict(entry, label=class_index[name]))
        for key, image, _ in read_lmdb(dataset.lmdb(split, part)):
            item, crop = parse_key(key)
            if item in relabel:
                records.append((test_key(item, crop), image, relabel[item]))
    records.sort(key=lambda record: record[0])
    count = write_lmdb(out_lmdb, iter(records))
    write_json_atomic(out_items, kept_items)
    write_json_atomic(out_left_out, left_out)
    return count, len(kept_items), left_out
