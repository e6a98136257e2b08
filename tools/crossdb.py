"""Cross-database generalisation (the paper's Table 12): train on one database,
test on others.

    python tools/crossdb.py --train-data data/prepared/oulu \
        --test-data data/prepared/ckplus data/prepared/mmi --net resnet --variant l2_center \
        [--iters N] [--weights W] [--gpu ID] [--runs-dir runs] [--name NAME]

The net is trained once (``train/``) and its final snapshot is tested on
every test database. The training set is every image of the training database (the union of its
first fold's train and test LMDBs); each test set is every image of a test
database (the union of its folds' test LMDBs). Labels are matched by class
name: test images of a class the training database lacks (e.g. neutral when
training on six-class Oulu-CASIA) are left out and counted in the results.
The run folder follows tools/crossval.py's conventions: ``config.json``,
``train/`` (nets, solver, train.log, snapshot), ``test_<dataset>/``
(predictions.json, result.json) and ``summary.json``.
"""
import argparse
import shutil
from pathlib import Path

import numpy as np

from data_prep.lmdb_io import read_lmdb, write_lmdb
from tools.crossval import add_training_arguments, evaluate, train_fold, training_config
from tools.predict import net_with_test_source
from tools.runs import (final_snapshot, load_manifest, prepare_run_dir, read_json, start_fold,
                        write_json_atomic)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-data", required=True, type=Path, help="prepared training dataset")
    parser.add_argument("--test-data", required=True, type=Path, nargs="+",
                        help="prepared test datasets")
    add_training_arguments(parser)
    parser.add_argument("--name", default=None,
                        help="run folder name (default: crossdb_<train dataset>_<net>_<variant>)")
    return parser.parse_args(argv)


def _fold_splits(manifest, data_dir):
    splits = [name for name in manifest["splits"] if name.startswith("fold_")]
    if not splits:
        raise SystemExit(f"error: {data_dir} has no folds; prepare it with --folds K")
    return splits


def merged_training_lmdb(data_dir, manifest, out_path, seed=0):
    """All records of a prepared dataset (fold_00's train + test), shuffled, as one LMDB."""
    split = _fold_splits(manifest, data_dir)[0]
    records = []
    for part in ("train_lmdb", "test_lmdb"):
        records.extend((image, label) for _, image, label in read_lmdb(data_dir / split / part))
    order = np.random.default_rng(seed).permutation(len(records))
    write_lmdb(out_path, ((f"{rank:08d}", *records[index]) for rank, index in enumerate(order)))
    return len(records)


def merged_test_lmdb(data_dir, manifest, train_classes, out_lmdb, out_items, out_left_out):
    """Every test item of every fold, relabelled to the training classes.

    Returns (records written, items kept, items left out per class name).
    """
    class_index = {name: i for i, name in enumerate(train_classes)}
    kept_items, left_out, records = [], {}, []
    seen = set()
    for split in _fold_splits(manifest, data_dir):
        relabel = {}
        for entry in read_json(data_dir / split / "test_items.json"):
            name = manifest["classes"][entry["label"]]
            if entry["item"] in seen:
                raise SystemExit(f"error: item {entry['item']} of {data_dir} is in two folds' test sets")
            seen.add(entry["item"])
            if name not in class_index:
                left_out[name] = left_out.get(name, 0) + 1
                continue
            relabel[entry["item"]] = class_index[name]
            kept_items.append(dict(entry, label=class_index[name]))
        for key, image, _ in read_lmdb(data_dir / split / "test_lmdb"):
            item = int(key.split("_")[0])
            if item in relabel:
                records.append((key, image, relabel[item]))
    records.sort(key=lambda record: record[0])
    count = write_lmdb(out_lmdb, iter(records))
    write_json_atomic(out_items, kept_items)
    # Written last: its presence marks the merged test set as complete.
    write_json_atomic(out_left_out, left_out)
    return count, len(kept_items), left_out


def main(argv=None):
    args = parse_args(argv)
    train_manifest = load_manifest(args.train_data)
    test_manifests = [load_manifest(d) for d in args.test_data]
    for data_dir, manifest in zip(args.test_data, test_manifests):
        if manifest["image_size"] != train_manifest["image_size"]:
            raise SystemExit(f"error: {data_dir} has {manifest['image_size']}-pixel images but "
                             f"{args.train_data} has {train_manifest['image_size']}; prepare both "
                             "with the same --size")
    config = {
        "tool": "crossdb", "data": str(args.train_data.resolve()),
        "dataset": train_manifest["dataset"],
        "num_classes": train_manifest["num_classes"], "image_size": train_manifest["image_size"],
        "test_data": [str(d.resolve()) for d in args.test_data],
        **training_config(args),
    }
    name = args.name or f"crossdb_{train_manifest['dataset']}_{args.net}_{args.variant}"
    run_dir = prepare_run_dir(args.runs_dir / name, config)
    data_dir = run_dir / "data"
    data_dir.mkdir(exist_ok=True)
    if not (data_dir / "train_lmdb" / "data.mdb").is_file():
        merged_training_lmdb(args.train_data, train_manifest, data_dir / "train_lmdb")

    test_sets = []
    for test_dir, manifest in zip(args.test_data, test_manifests):
        test_name = f"test_{manifest['dataset']}"
        lmdb_path, items_path = data_dir / f"{test_name}_lmdb", data_dir / f"{test_name}_items.json"
        left_out_path = data_dir / f"{test_name}_left_out.json"
        if not left_out_path.is_file():
            shutil.rmtree(lmdb_path, ignore_errors=True)
            merged_test_lmdb(test_dir, manifest, train_manifest["classes"], lmdb_path, items_path,
                             left_out_path)
        test_sets.append((test_name, manifest["dataset"], lmdb_path, items_path, left_out_path))

    train_dir = run_dir / "train"
    if start_fold(train_dir, marker="training.json"):
        # The test phase during training watches the first test database.
        train_fold(train_dir, data_dir / "train_lmdb", test_sets[0][2], config,
                   weights=args.weights, gpu=args.gpu, label=f"{name} training")
    training = read_json(train_dir / "training.json")
    net_path = next(train_dir.glob("*_train_val.prototxt"))
    snapshot = final_snapshot(train_dir, training["iterations"])

    tests = {}
    for test_name, dataset, lmdb_path, items_path, left_out_path in test_sets:
        out_dir = run_dir / test_name
        if start_fold(out_dir):
            test_net = net_with_test_source(net_path, lmdb_path, out_dir / "test_net.prototxt")
            evaluate(out_dir, test_net, snapshot, items_path, config["num_classes"], gpu=args.gpu,
                     extra={"dataset": dataset, "left_out": read_json(left_out_path)})
        result = read_json(out_dir / "result.json")
        tests[test_name] = result
        print(f"{name} -> {dataset}: accuracy {100 * result['accuracy']:.2f} % "
              f"on {result['test_images']} images (left out: {result['left_out'] or 'none'})")
    write_json_atomic(run_dir / "summary.json", {"tests": tests})
    print(f"results: {run_dir}")
    return tests


if __name__ == "__main__":
    main()
