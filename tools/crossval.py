"""Person-independent K-fold cross-validation of one net and variant.

    python tools/crossval.py --data data/prepared/ckplus --net resnet --variant l2_center \
        [--folds 10] [--iters N] [--weights W] [--gpu ID] [--runs-dir runs] [--name NAME]

For each fold of the prepared dataset: write that fold's nets and solver into
``<runs-dir>/<name>/fold_XX/``, run ``caffe train`` in its own process (log in
``train.log``), test the final snapshot on the fold's test LMDB (an image's
prediction is the mean softmax over its crops) and write ``predictions.json``
and ``result.json``. Finished folds are never redone; an interrupted fold
restarts cleanly. At the end, prints and writes (``summary.json``) the mean ±
std of the fold accuracies and the pooled confusion matrix, and draws
``confusion.png``, ``roc.png`` and ``training.png``.
"""
import argparse
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.labels import CLASS_ABBREVIATIONS, CLASS_NAMES
from nets.experiment import NETS, VARIANTS, write_experiment
from runtime.caffe_env import REPO_ROOT
from tools import metrics, plots
from tools.caffe_log import parse_caffe_log
from tools.predict import net_with_test_source, predict_items, predict_records
from tools.runs import (final_snapshot, load_manifest, prepare_run_dir, read_json, run_caffe_train,
                        start_fold, write_json_atomic)


def add_training_arguments(parser):
    """Net, variant and the training options crossval.py and crossdb.py share."""
    parser.add_argument("--net", required=True, choices=sorted(NETS), help="network")
    parser.add_argument("--variant", required=True, choices=sorted(VARIANTS),
                        help="loss / regulariser variant (see docs/nets.md)")
    parser.add_argument("--iters", type=int, default=None,
                        help="training iterations (default: the solver's max_iter)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="training batch size (default: the paper's 64)")
    parser.add_argument("--base-lr", type=float, default=None,
                        help="base learning rate (default: the paper's 0.01)")
    parser.add_argument("--stepsize", type=int, default=None,
                        help="iterations between learning-rate steps (default: the paper's 4000)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="pretrained .caffemodel to fine-tune from (caffe train -weights)")
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU)")
    parser.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs",
                        help="where run folders go (default: <repo>/runs)")


def training_config(args):
    """The training settings of a run's config.json."""
    return {"net": args.net, "variant": args.variant, "iters": args.iters,
            "batch_size": args.batch_size, "base_lr": args.base_lr, "stepsize": args.stepsize,
            "weights": str(args.weights.resolve()) if args.weights else None}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path,
                        help="prepared dataset folder (written by data_prep/prepare.py)")
    parser.add_argument("--folds", type=int, default=None,
                        help="run the first N folds (default: every fold of the prepared dataset)")
    add_training_arguments(parser)
    parser.add_argument("--name", default=None,
                        help="run folder name (default: <dataset>_<net>_<variant>)")
    return parser.parse_args(argv)


def run_config(args, manifest):
    """What defines the run; a run folder is reused only for an identical config."""
    return {
        "tool": "crossval",
        "data": str(args.data.resolve()),
        "dataset": manifest["dataset"],
        "num_classes": manifest["num_classes"],
        "image_size": manifest["image_size"],
        **training_config(args),
    }

def solver_overrides(config):
    overrides = {}
    if config["iters"]:
        overrides["max_iter"] = config["iters"]
        # Five test-phase points on the training curves, the last at the end.
        overrides["test_interval"] = max(1, config["iters"] // 5)
    if config["base_lr"]:
        overrides["base_lr"] = config["base_lr"]
    if config["stepsize"]:
        overrides["stepsize"] = config["stepsize"]
    return overrides


def train_fold(fold_dir, train_lmdb, test_lmdb, config, weights=None, gpu=None, label=""):
    """Write the fold's nets and solver, run ``caffe train``; returns (train_val path, snapshot)."""
    paths = write_experiment(
        fold_dir, net=config["net"], variant=config["variant"],
        num_classes=config["num_classes"], train_source=train_lmdb, test_source=test_lmdb,
        input_size=config["image_size"], batch_size=config["batch_size"],
        snapshot_prefix=fold_dir / "snapshot", **solver_overrides(config))
    max_iter = paths["max_iter"]
    started = time.time()
    with tqdm(total=max_iter, desc=label, unit="it", leave=True) as bar:
        def progress(iteration, loss):
            bar.update(max(0, iteration - bar.n))
            bar.set_postfix(loss=f"{loss:.4f}")
        run_caffe_train(paths["solver"], fold_dir / "train.log", weights=weights, gpu=gpu,
                        progress=progress)
        bar.update(max_iter - bar.n)
    write_json_atomic(fold_dir / "training.json",
                      {"iterations": max_iter, "train_seconds": round(time.time() - started, 1)})
    return paths["train_val"], final_snapshot(fold_dir, max_iter)


def evaluate(out_dir, net_path, snapshot, test_items_path, num_classes, gpu=None, extra=None):
    """Test ``snapshot`` on the TEST LMDB of ``net_path``; writes predictions.json, result.json.

    An image's prediction is the arg-max of the mean softmax over its crops.
    """
    keys, probabilities, labels = predict_records(net_path, snapshot, gpu=gpu)
    per_item = predict_items(keys, probabilities, labels)
    test_items = {entry["item"]: entry for entry in read_json(test_items_path)}
    predictions = []
    for item, (mean_probs, label) in sorted(per_item.items()):
        entry = test_items.get(item)
        if entry is None or entry["label"] != label:
            raise SystemExit(f"error: test item {item} of {net_path}'s test LMDB does not match "
                             f"{test_items_path}")
        predictions.append({"item": item, "label": label, "subject": entry["subject"],
                            "source": entry["source"], "probabilities": mean_probs.tolist(),
                            "prediction": int(np.argmax(mean_probs))})
    if len(predictions) != len(test_items):
        raise SystemExit(f"error: the test LMDB holds {len(predictions)} images but "
                         f"{test_items_path} lists {len(test_items)}; the prepared dataset is "
                         "inconsistent: prepare it again")
    write_json_atomic(Path(out_dir) / "predictions.json", predictions)
    cm = metrics.confusion_matrix([p["label"] for p in predictions],
                                  [p["prediction"] for p in predictions], num_classes)
    result = metrics.summary(cm)
    result.update({"test_images": len(predictions), "test_records": len(keys),
                   "snapshot": Path(snapshot).name, **(extra or {})})
    write_json_atomic(Path(out_dir) / "result.json", result)
    return result


def summarize(run_dir, fold_names, class_names):
    """Mean ± std over folds, pooled confusion, plots; written to summary.json."""
    results = [read_json(run_dir / name / "result.json") for name in fold_names]
    predictions = [p for name in fold_names for p in read_json(run_dir / name / "predictions.json")]
    accuracies = np.array([r["accuracy"] for r in results])
    pooled = np.sum([np.array(r["confusion"]) for r in results], axis=0)
    probabilities = np.array([p["probabilities"] for p in predictions])
    labels = np.array([p["label"] for p in predictions])
    summary = {
        "folds": list(fold_names),
        "fold_accuracies": accuracies.tolist(),
        "mean_accuracy": float(accuracies.mean()),
        "std_accuracy": float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0,
        "pooled": metrics.summary(pooled, probabilities, labels) if len(set(labels)) > 1
        else metrics.summary(pooled),
        "classes": list(class_names),
    }
    write_json_atomic(run_dir / "summary.json", summary)
    abbreviations = dict(zip(CLASS_NAMES, CLASS_ABBREVIATIONS))
    plots.plot_confusion(pooled, [abbreviations.get(c, c) for c in class_names], run_dir / "confusion.png",
                         title=f"{run_dir.name}: pooled confusion (%)")
    if len(set(labels)) > 1:
        plots.plot_roc({run_dir.name: (probabilities, labels)}, run_dir / "roc.png")
    logs = {name: parse_caffe_log((run_dir / name / "train.log").read_text(errors="replace"))
            for name in fold_names}
    plots.plot_training_curves(logs, run_dir / "training.png", title=run_dir.name)
    return summary


def main(argv=None):
    args = parse_args(argv)
    manifest = load_manifest(args.data)
    splits = [name for name in manifest["splits"] if name.startswith("fold_")]
    if not splits and "official" in manifest["splits"]:
        splits = ["official"]     # FER2013: train on Training, test on PrivateTest
    if not splits:
        raise SystemExit(f"error: {args.data} has no folds and no official split (its splits: "
                         f"{list(manifest['splits'])}); prepare it with --split folds --folds K")
    if args.folds is not None:
        if not 1 <= args.folds <= len(splits):
            raise SystemExit(f"error: --folds {args.folds}: {args.data} was prepared with "
                             f"{len(splits)} fold(s)")
        splits = splits[:args.folds]
    config = run_config(args, manifest)
    name = args.name or f"{manifest['dataset']}_{args.net}_{args.variant}"
    run_dir = prepare_run_dir(args.runs_dir / name, config)

    for index, split in enumerate(splits):
        fold_dir = run_dir / split
        label = f"{name} {split} ({index + 1}/{len(splits)})"
        if not start_fold(fold_dir):
            print(f"{label}: done before, accuracy {read_json(fold_dir / 'result.json')['accuracy']:.4f}")
            continue
        split_dir = args.data / split
        has_val = (split_dir / "val_lmdb" / "data.mdb").is_file()
        # With a validation set (FER2013 PublicTest) the test phase during
        # training watches it, and the test set is touched only at the end.
        net_path, snapshot = train_fold(
            fold_dir, split_dir / "train_lmdb", split_dir / ("val_lmdb" if has_val else "test_lmdb"),
            config, weights=args.weights, gpu=args.gpu, label=label)
        extra = {}
        if has_val:
            val_dir = fold_dir / "validation"
            val_dir.mkdir()
            extra["val_accuracy"] = evaluate(val_dir, net_path, snapshot, split_dir / "val_items.json",
                                             config["num_classes"], gpu=args.gpu)["accuracy"]
            net_path = net_with_test_source(net_path, split_dir / "test_lmdb",
                                            fold_dir / "test_net.prototxt")
        result = evaluate(fold_dir, net_path, snapshot, split_dir / "test_items.json",
                          config["num_classes"], gpu=args.gpu, extra=extra)
        print(f"{label}: accuracy {result['accuracy']:.4f} on {result['test_images']} images"
              + (f" (validation {extra['val_accuracy']:.4f})" if extra else ""))

    summary = summarize(run_dir, splits, manifest["classes"])
    print(f"{name}: mean accuracy {100 * summary['mean_accuracy']:.2f} ± "
          f"{100 * summary['std_accuracy']:.2f} % over {len(splits)} folds")
    print("pooled confusion (rows true, columns predicted):")
    for class_name, row in zip(manifest["classes"], summary["pooled"]["confusion"]):
        print(f"  {class_name[:10]:>10} " + " ".join(f"{v:5d}" for v in row))
    print(f"results: {run_dir}")
    return summary


if __name__ == "__main__":
    main()
