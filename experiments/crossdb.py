"""Cross-database generalisation (the paper's Table 12): train on one database, test on others.

The net is trained once (``train/``) and its final snapshot is tested on every
test database. The training set is every image of the training database (the
union of its first fold's train and test LMDBs); each test set is every image
of a test database (the union of its folds' test LMDBs). Labels are matched by
class name: test images of a class the training database lacks (e.g. neutral
when training on six-class Oulu-CASIA) are left out and counted in the results.
The run folder follows experiments.run_folder: ``config.json``, ``train/``
(nets, solver, train.log, snapshot), ``test_<dataset>/`` (predictions.json,
result.json), ``data/`` (the merged LMDBs) and ``summary.json``.
"""
import shutil
from pathlib import Path

import numpy as np

from data_prep.lmdb_io import lmdb_record_count, read_lmdb, write_lmdb
from data_prep.prepared import PreparedDataset, lmdb_name, parse_key
from experiments.evaluation import evaluate, net_with_test_source
from experiments.run_folder import (RESULT, SUMMARY, TRAINING, crossdb_run_name, prepare_run_dir,
                                    start_fold, trained_snapshot)
from experiments.training import FoldData, train_fold
from runtime.files import read_json, write_json_atomic


def _fold_splits(dataset):
    splits = dataset.fold_splits()
    if not splits:
        raise SystemExit(f"error: {dataset.root} has no folds; prepare it with --folds K")
    return splits


def merged_training_lmdb(dataset, out_path, seed=0):
    """All records of a prepared dataset (fold_00's train + test), shuffled, as one LMDB."""
    split = _fold_splits(dataset)[0]
    records = []
    for part in ("train", "test"):
        records.extend((image, label) for _, image, label in read_lmdb(dataset.lmdb(split, part)))
    order = np.random.default_rng(seed).permutation(len(records))
    write_lmdb(out_path, ((f"{rank:08d}", *records[index]) for rank, index in enumerate(order)))
    return len(records)


def merged_test_lmdb(dataset, train_classes, out_lmdb, out_items, out_left_out):
    """Every test item of every fold, relabelled to the training classes.

    Returns (records written, items kept, items left out per class name).
    """
    class_index = {name: i for i, name in enumerate(train_classes)}
    kept_items, left_out, records = [], {}, []
    seen = set()
    for split in _fold_splits(dataset):
        relabel = {}
        for entry in dataset.items(split, "test"):
            name = dataset.classes[entry["label"]]
            if entry["item"] in seen:
                raise SystemExit(f"error: item {entry['item']} of {dataset.root} is in two folds' "
                                 "test sets")
            seen.add(entry["item"])
            if name not in class_index:
                left_out[name] = left_out.get(name, 0) + 1
                continue
            relabel[entry["item"]] = class_index[name]
            kept_items.append(dict(entry, label=class_index[name]))
        for key, image, _ in read_lmdb(dataset.lmdb(split, "test")):
            item = parse_key(key)[0]
            if item in relabel:
                records.append((key, image, relabel[item]))
    records.sort(key=lambda record: record[0])
    count = write_lmdb(out_lmdb, iter(records))
    write_json_atomic(out_items, kept_items)
    # Written last: its presence marks the merged test set as complete.
    write_json_atomic(out_left_out, left_out)
    return count, len(kept_items), left_out


def run_config(train_set, test_sets, options):
    return {"tool": "crossdb", "data": str(train_set.root.resolve()), "dataset": train_set.name,
            "num_classes": train_set.num_classes, "image_size": train_set.image_size,
            "test_data": [str(d.root.resolve()) for d in test_sets], **options.config()}


def run_crossdb(train_dir, test_dirs, options, runs_dir, name=None, gpu=None):
    """Train once on ``train_dir``, test on each of ``test_dirs``; returns {test name: result}."""
    train_set = PreparedDataset.open(train_dir)
    test_sets = [PreparedDataset.open(d) for d in test_dirs]
    for test_set in test_sets:
        if test_set.image_size != train_set.image_size:
            raise SystemExit(f"error: {test_set.root} has {test_set.image_size}-pixel images but "
                             f"{train_set.root} has {train_set.image_size}; prepare both "
                             "with the same --size")
    name = name or crossdb_run_name(train_set.name, options.net, options.variant)
    run_dir = prepare_run_dir(Path(runs_dir) / name, run_config(train_set, test_sets, options))
    data_dir = run_dir / "data"
    data_dir.mkdir(exist_ok=True)
    train_lmdb = data_dir / lmdb_name("train")
    if not (train_lmdb / "data.mdb").is_file():
        merged_training_lmdb(train_set, train_lmdb)

    merged = []
    for test_set in test_sets:
        test_name = f"test_{test_set.name}"
        lmdb_path, items_path = data_dir / f"{test_name}_lmdb", data_dir / f"{test_name}_items.json"
        left_out_path = data_dir / f"{test_name}_left_out.json"
        if not left_out_path.is_file():
            shutil.rmtree(lmdb_path, ignore_errors=True)
            merged_test_lmdb(test_set, train_set.classes, lmdb_path, items_path, left_out_path)
        merged.append((test_name, test_set.name, lmdb_path, items_path, left_out_path))

    fold_dir = run_dir / "train"
    if start_fold(fold_dir, marker=TRAINING):
        # The test phase during training watches the first test database.
        watched = merged[0][2]
        train_fold(fold_dir, FoldData(train_lmdb=train_lmdb, watch_lmdb=watched,
                                      watch_records=lmdb_record_count(watched),
                                      num_classes=train_set.num_classes,
                                      image_size=train_set.image_size),
                   options, gpu=gpu, label=f"{name} training")
    net_path = next(fold_dir.glob("*_train_val.prototxt"))
    snapshot = trained_snapshot(fold_dir)

    tests = {}
    for test_name, dataset, lmdb_path, items_path, left_out_path in merged:
        out_dir = run_dir / test_name
        if start_fold(out_dir):
            test_net = net_with_test_source(net_path, lmdb_path, out_dir / "test_net.prototxt")
            evaluate(out_dir, test_net, snapshot, items_path, train_set.num_classes, gpu=gpu,
                     extra={"dataset": dataset, "left_out": read_json(left_out_path)})
        result = read_json(out_dir / RESULT)
        tests[test_name] = result
        print(f"{name} -> {dataset}: accuracy {100 * result['accuracy']:.2f} % "
              f"on {result['test_images']} images (left out: {result['left_out'] or 'none'})")
    write_json_atomic(run_dir / SUMMARY, {"tests": tests})
    print(f"results: {run_dir}")
    return tests
