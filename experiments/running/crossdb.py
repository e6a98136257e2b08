"""Cross-database generalisation (the paper's Table 12): train on one database, test on others.

The net is trained once (``train/``) and its final snapshot is tested on every
test database. A database prepared with folds contributes every image: as the
training database the union of its first fold's train and test LMDBs, as a
test database the union of its folds' test LMDBs. A database with only an
official split (FER2013) trains on its Training part while the test phase
watches PublicTest; as a test database it contributes all its images (Training,
PublicTest and PrivateTest: 35,887 for FER2013, a set a model trained on another
database never saw, and the only one consistent with the paper's figures,
docs/recipe.md), or its PrivateTest alone with ``official_test="private"``. A training database without
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

from data_prep.labels import CLASS_ABBREVIATIONS, CLASS_NAMES
from data_prep.lmdb_io import lmdb_record_count
from data_prep.merge import merge_test_records, merge_training_records
from data_prep.prepared import OFFICIAL_SPLIT, PreparedDataset, lmdb_name
from experiments.analysis.protocol import write_run_checks
from experiments.errors import ExperimentError
from experiments.running.evaluation import evaluate, net_with_test_source
from experiments.running.options import OptionError, check_batch, check_data
from experiments.running.run_folder import (RESULT, SUMMARY, TRAINING, crossdb_run_name, prepare_run_dir,
                                    start_fold, trained_snapshot)
from experiments.running.training import FoldData, train_fold
from runtime.files import read_json, write_json_atomic


class CrossdbError(ExperimentError):
    """A prepared dataset that cannot serve a cross-database run."""


# How a database with an official split (FER2013) is tested: every image, or its test part.
OFFICIAL_TEST_SETS = ("all", "private")
OFFICIAL_TEST_DEFAULT = "all"


def test_parts(dataset, official_test=OFFICIAL_TEST_DEFAULT):
    """[(split, part)] whose images form a test database: every fold's test part, else the
    official split's parts (all three, or "test" = PrivateTest alone)."""
    if official_test not in OFFICIAL_TEST_SETS:
        raise CrossdbError(f"official_test must be one of {OFFICIAL_TEST_SETS}, got {official_test!r}")
    splits = dataset.fold_splits()
    if splits:
        return [(split, "test") for split in splits]
    if OFFICIAL_SPLIT in dataset.splits():
        parts = dataset.parts(OFFICIAL_SPLIT) if official_test == "all" else ["test"]
        return [(OFFICIAL_SPLIT, part) for part in parts]
    raise CrossdbError(f"{dataset.root} has neither folds nor an official split (its splits: "
                       f"{dataset.splits()}); prepare it with --split folds --folds K")


def merged_training_lmdb(dataset, out_path, seed=0):
    """All records of a prepared dataset (fold_00's train + test), shuffled, as one LMDB."""
    split = dataset.fold_splits()[0]
    return merge_training_records(dataset, [(split, "train"), (split, "test")], out_path, seed)


def merged_test_lmdb(dataset, train_classes, out_lmdb, out_items, out_left_out,
                     official_test=OFFICIAL_TEST_DEFAULT):
    """Every test item (``test_parts``), relabelled to the training classes, keyed as test records.

    Returns (records written, items kept, items left out per class name).
    """
    return merge_test_records(dataset, test_parts(dataset, official_test), train_classes,
                              out_lmdb, out_items, out_left_out)


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


def run_config(train_set, test_sets, options, official_test=OFFICIAL_TEST_DEFAULT):
    config = {"tool": "crossdb", "data": str(train_set.root.resolve()), "dataset": train_set.name,
              "num_classes": train_set.num_classes, "image_size": train_set.image_size,
              "test_data": [str(d.root.resolve()) for d in test_sets], **options.config()}
    if any(not d.fold_splits() for d in test_sets):
        # Recorded only where it applies: runs from before it existed tested PrivateTest alone.
        config["official_test"] = official_test
    return config


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


def run_crossdb(train_dir, test_dirs, options, runs_dir, name=None, gpu=None,
                official_test=OFFICIAL_TEST_DEFAULT):
    """Train once on ``train_dir``, test on each of ``test_dirs``; returns {test name: result}.

    ``official_test``: what a test database with an official split contributes ("all" its
    images, or "private": its test part; ``test_parts``).

    Options that do not fit the data raise OptionError before anything is written.
    """
    train_set = PreparedDataset.open(train_dir)
    test_sets = [PreparedDataset.open(d) for d in test_dirs]
    check_run(train_set, test_sets, options)
    name = name or crossdb_run_name(train_set.name, options.net, options.variant)
    run_dir = prepare_run_dir(Path(runs_dir) / name, run_config(train_set, test_sets, options, official_test))
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
            merged_test_lmdb(test_set, train_set.classes, lmdb_path, items_path, left_out_path,
                             official_test)
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
    write_run_checks(run_dir, progress=True)
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
