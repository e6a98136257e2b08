"""Cross-database generalisation (the paper's Table 12): train on one database, test on others.

The net is trained once (``train/``) and its final snapshot is tested on every
test database. A database prepared with folds contributes every image: as the
training database the union of its first fold's train and test LMDBs, as a
test database the union of its folds' test LMDBs. A database with only an
official split (FER2013) trains on its Training part while the test phase
watches PublicTest, and is tested on PrivateTest. A training database without
a validation set has the test phase watch the first test database (the final
snapshot is tested, so nothing is selected on it). Labels are matched by class
name: test images of a class the training database lacks (e.g. neutral when
training on six-class Oulu-CASIA) are left out and counted in the results, and
a model is scored over the test database's classes only (a seven-class model
tested on six-class Oulu-CASIA takes its arg-max over those six; docs/recipe.md).
The run folder follows experiments.running.run_folder: ``config.json``, ``train/``
(nets, solver, train.log, snapshots; resumed after a kill), ``test_<dataset>/``
(predictions.json, result.json), ``data/`` (the merged LMDBs) and
``summary.json``. ``print_confusions`` prints each test's confusion matrix
(the paper's Table 13 is FER2013 -> CK+).
"""
import shutil
from pathlib import Path

import numpy as np

from data_prep.lmdb_io import lmdb_record_count, read_lmdb, write_lmdb
from data_prep.labels import CLASS_ABBREVIATIONS, CLASS_NAMES
from data_prep.prepared import OFFICIAL_SPLIT, PreparedDataset, lmdb_name, parse_key
from experiments.errors import ExperimentError
from experiments.running.evaluation import evaluate, net_with_test_source
from experiments.running.options import OptionError, check_batch, check_data
from experiments.running.run_folder import (RESULT, SUMMARY, TRAINING, crossdb_run_name, prepare_run_dir,
                                    start_fold, trained_snapshot)
from experiments.running.training import FoldData, train_fold
from runtime.files import read_json, write_json_atomic


class CrossdbError(ExperimentError):
    """A prepared dataset that cannot serve a cross-database run."""


def test_splits(dataset):
    """The splits whose test parts form a test database: every fold, else the official split."""
    splits = dataset.fold_splits()
    if splits:
        return splits
    if OFFICIAL_SPLIT in dataset.splits():
        return [OFFICIAL_SPLIT]
    raise CrossdbError(f"{dataset.root} has neither folds nor an official split (its splits: "
                       f"{dataset.splits()}); prepare it with --split folds --folds K")


def merged_training_lmdb(dataset, out_path, seed=0):
    """All records of a prepared dataset (fold_00's train + test), shuffled, as one LMDB."""
    split = dataset.fold_splits()[0]
    records = []
    for part in ("train", "test"):
        records.extend((image, label) for _, image, label in read_lmdb(dataset.lmdb(split, part)))
    order = np.random.default_rng(seed).permutation(len(records))
    write_lmdb(out_path, ((f"{rank:08d}", *records[index]) for rank, index in enumerate(order)))
    return len(records)


def merged_test_lmdb(dataset, train_classes, out_lmdb, out_items, out_left_out):
    """Every test item of every fold (or of the official split), relabelled to the training classes.

    Returns (records written, items kept, items left out per class name).
    """
    class_index = {name: i for i, name in enumerate(train_classes)}
    kept_items, left_out, records = [], {}, []
    seen = set()
    for split in test_splits(dataset):
        relabel = {}
        for entry in dataset.items(split, "test"):
            name = dataset.classes[entry["label"]]
            if entry["item"] in seen:
                raise CrossdbError(f"item {entry['item']} of {dataset.root} is in two folds' "
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


def shared_classes(train_classes, test_classes):
    """Indices, among the training classes, of the classes the test database also has."""
    return [index for index, name in enumerate(train_classes) if name in set(test_classes)]


def training_lmdbs(train_set, data_dir):
    """(train LMDB, LMDB its test phase watches or None) of the training database.

    With folds: every image, merged once into ``data_dir``; None: watch the
    first test database. Official split: Training, watching PublicTest.
    """
    if train_set.fold_splits():
        train_lmdb = data_dir / lmdb_name("train")
        if not (train_lmdb / "data.mdb").is_file():  # write_lmdb writes atomically
            merged_training_lmdb(train_set, train_lmdb)
        return train_lmdb, None
    if OFFICIAL_SPLIT in train_set.splits():
        watch = (train_set.lmdb(OFFICIAL_SPLIT, "val") if train_set.has_validation(OFFICIAL_SPLIT)
                 else None)
        return train_set.lmdb(OFFICIAL_SPLIT, "train"), watch
    raise CrossdbError(f"{train_set.root} has neither folds nor an official split (its "
                       f"splits: {train_set.splits()}); prepare it with --split folds --folds K")


def run_config(train_set, test_sets, options):
    return {"tool": "crossdb", "data": str(train_set.root.resolve()), "dataset": train_set.name,
            "num_classes": train_set.num_classes, "image_size": train_set.image_size,
            "test_data": [str(d.root.resolve()) for d in test_sets], **options.config()}


def check_run(train_set, test_sets, options):
    """Refuse ``options`` on these databases before a run folder is made (OptionError)."""
    check_data(options, train_set, flag="--train-data")
    for test_set in test_sets:
        check_data(options, test_set, flag="--test-data")
        if not set(test_set.classes) & set(train_set.classes):
            raise OptionError(f"--test-data {test_set.root}: none of its classes "
                              f"({', '.join(test_set.classes)}) is one the training database "
                              f"{train_set.root} has ({', '.join(train_set.classes)}), so nothing "
                              "could be tested; choose a test database sharing its expressions")
    folds = train_set.fold_splits()
    # With folds, the training set is every image: fold 0's train and test parts merged.
    records = (sum(train_set.record_count(folds[0], part) for part in ("train", "test")) if folds
               else train_set.record_count(OFFICIAL_SPLIT, "train")
               if OFFICIAL_SPLIT in train_set.splits() else None)
    if records is not None:
        check_batch(options, records, str(train_set.root))


def run_crossdb(train_dir, test_dirs, options, runs_dir, name=None, gpu=None):
    """Train once on ``train_dir``, test on each of ``test_dirs``; returns {test name: result}.

    Options that do not fit the data raise OptionError before anything is written.
    """
    train_set = PreparedDataset.open(train_dir)
    test_sets = [PreparedDataset.open(d) for d in test_dirs]
    check_run(train_set, test_sets, options)
    name = name or crossdb_run_name(train_set.name, options.net, options.variant)
    run_dir = prepare_run_dir(Path(runs_dir) / name, run_config(train_set, test_sets, options))
    data_dir = run_dir / "data"
    data_dir.mkdir(exist_ok=True)
    train_lmdb, watch_lmdb = training_lmdbs(train_set, data_dir)

    merged = []
    for test_set in test_sets:
        test_name = f"test_{test_set.name}"
        lmdb_path, items_path = data_dir / f"{test_name}_lmdb", data_dir / f"{test_name}_items.json"
        left_out_path = data_dir / f"{test_name}_left_out.json"
        if not left_out_path.is_file():
            shutil.rmtree(lmdb_path, ignore_errors=True)
            merged_test_lmdb(test_set, train_set.classes, lmdb_path, items_path, left_out_path)
        merged.append((test_name, test_set.name, lmdb_path, items_path, left_out_path))
    scored = {f"test_{test_set.name}": shared_classes(train_set.classes, test_set.classes)
              for test_set in test_sets}
    units = {f"test_{test_set.name}": test_set.decision_units() for test_set in test_sets}

    fold_dir = run_dir / "train"
    if start_fold(fold_dir, marker=TRAINING, resume=True):
        watched = watch_lmdb or merged[0][2]
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
                     extra={"dataset": dataset, "left_out": read_json(left_out_path)},
                     units=units[test_name], scored_classes=scored[test_name])
        result = read_json(out_dir / RESULT)
        tests[test_name] = result
        print(f"{name} -> {dataset}: accuracy {100 * result['accuracy']:.2f} % "
              f"on {result['test_images']} images (left out: {result['left_out'] or 'none'})")
    write_json_atomic(run_dir / SUMMARY, {"tests": tests, "classes": train_set.classes})
    print(f"results: {run_dir}")
    return tests


def confusion_lines(result, classes):
    """A test's confusion matrix as text: rows true class, columns predicted (the training
    database's ``classes``), % of each row (the paper's Table 13 form), each row's image count."""
    abbreviations = dict(zip(CLASS_NAMES, CLASS_ABBREVIATIONS))
    names = [abbreviations.get(name, name[:6]) for name in classes]
    confusion = np.array(result["confusion"], dtype=np.int64)
    lines = [f"{result['dataset']}: confusion (%, rows true, columns predicted)",
             "      " + "".join(f"{name:>7}" for name in names) + "      n"]
    for name, row in zip(names, confusion):
        total = row.sum()
        if total == 0:  # a training class the test database lacks
            continue
        lines.append(f"  {name:>4}" + "".join(f"{100 * v / total:7.2f}" for v in row)
                     + f"{total:7d}")
    return lines


def print_confusions(tests, classes):
    """Print every test's confusion matrix (Table 13: train FER2013, test CK+)."""
    for result in tests.values():
        print("\n".join(confusion_lines(result, classes)))
