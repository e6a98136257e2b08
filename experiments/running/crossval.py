"""Person-independent K-fold cross-validation of one net and variant (or FER2013's official split).

For each fold of the prepared dataset: train (experiments.running.training), test the
final snapshot on the fold's test LMDB (experiments.running.evaluation) and keep the
fold's files in the run folder (experiments.running.run_folder). Finished folds are
never redone; an interrupted fold resumes from its newest valid snapshot, or
restarts cleanly if it has none. ``summarize`` writes the
mean ± std over folds, the pooled confusion matrix and the plots; the protocol
checks are then stored in the run folder for the reports (experiments.analysis.protocol).
"""
from pathlib import Path

import numpy as np

from data_prep.labels import CLASS_ABBREVIATIONS, CLASS_NAMES
from data_prep.prepared import PreparedDataset
from experiments.errors import ExperimentError
from experiments.analysis import metrics
from experiments.analysis.protocol import write_run_checks
from experiments.reporting import plots
from experiments.reporting.common import confusion_text
from experiments.running.caffe_train import read_training_curve
from experiments.running.evaluation import evaluate, net_with_test_source
from experiments.running.options import OptionError, check_batch, check_data
from experiments.running.run_folder import (PREDICTIONS, RESULT, SUMMARY, TRAIN_LOG, crossval_run_name,
                                    prepare_run_dir, start_fold)
from experiments.running.training import FoldData, train_fold
from runtime.files import read_json, write_json_atomic


class CrossvalError(ExperimentError):
    """A prepared dataset that cannot serve a cross-validation run."""


def run_config(dataset, options):
    """What defines the run; a run folder is reused only for an identical config."""
    return {"tool": "crossval", "data": str(dataset.root.resolve()), "dataset": dataset.name,
            "num_classes": dataset.num_classes, "image_size": dataset.image_size,
            **options.config()}


def chosen_splits(dataset, max_folds=None):
    """The splits a run trains: every fold (or the official split), or the first ``max_folds``."""
    splits = dataset.evaluation_splits()
    if not splits:
        raise CrossvalError(f"{dataset.root} has no folds and no official split (its splits: "
                            f"{dataset.splits()}); prepare it with --split folds --folds K")
    if max_folds is not None:
        if isinstance(max_folds, bool) or not isinstance(max_folds, int) or not 1 <= max_folds <= len(splits):
            raise OptionError(f"--max-folds {max_folds}: {dataset.root} was prepared with "
                              f"{len(splits)} fold(s); give a number from 1 to {len(splits)}, or leave "
                              "--max-folds out to run them all")
        splits = splits[:max_folds]
    return splits


def check_run(dataset, options, splits):
    """Refuse ``options`` on ``dataset``'s ``splits`` before a run folder is made (OptionError)."""
    check_data(options, dataset)
    smallest = min(splits, key=lambda split: dataset.record_count(split, "train"))
    check_batch(options, dataset.record_count(smallest, "train"), f"{dataset.root}/{smallest}")


def run_fold(fold_dir, dataset, split, options, gpu=None, label=""):
    """Train and test one fold into ``fold_dir``; returns its result."""
    # With a validation set (FER2013 PublicTest) the test phase during training
    # watches it, and the test set is touched only at the end.
    watched = "val" if dataset.has_validation(split) else "test"
    data = FoldData(train_lmdb=dataset.lmdb(split, "train"), watch_lmdb=dataset.lmdb(split, watched),
                    watch_records=dataset.record_count(split, watched),
                    num_classes=dataset.num_classes, image_size=dataset.image_size)
    net_path, snapshot = train_fold(fold_dir, data, options, gpu=gpu, label=label)
    extra = {}
    if watched == "val":
        val_dir = fold_dir / "validation"
        val_dir.mkdir()
        extra["val_accuracy"] = evaluate(val_dir, net_path, snapshot, dataset.items_path(split, "val"),
                                         dataset.num_classes, gpu=gpu)["accuracy"]
        net_path = net_with_test_source(net_path, dataset.lmdb(split, "test"),
                                        fold_dir / "test_net.prototxt")
    return evaluate(fold_dir, net_path, snapshot, dataset.items_path(split, "test"),
                    dataset.num_classes, gpu=gpu, extra=extra, units=dataset.decision_units())


def run_crossval(data_dir, options, runs_dir, max_folds=None, name=None, gpu=None):
    """Cross-validate ``options`` on the prepared dataset ``data_dir``; returns (run folder, summary).

    Options that do not fit the data raise OptionError before anything is written.
    """
    dataset = PreparedDataset.open(data_dir)
    splits = chosen_splits(dataset, max_folds)
    check_run(dataset, options, splits)
    name = name or crossval_run_name(dataset.name, options.net, options.variant)
    run_dir = prepare_run_dir(Path(runs_dir) / name, run_config(dataset, options))
    for index, split in enumerate(splits):
        fold_dir = run_dir / split
        label = f"{name} {split} ({index + 1}/{len(splits)})"
        if not start_fold(fold_dir, resume=True):
            print(f"{label}: done before, accuracy {read_json(fold_dir / RESULT)['accuracy']:.4f}")
            continue
        result = run_fold(fold_dir, dataset, split, options, gpu=gpu, label=label)
        validation = result.get("val_accuracy")
        print(f"{label}: accuracy {result['accuracy']:.4f} on {result['test_images']} images"
              + (f" (validation {validation:.4f})" if validation is not None else ""))
    summary = summarize(run_dir, splits, dataset.classes)
    write_run_checks(run_dir, progress=True)
    return run_dir, summary


def summarize(run_dir, fold_names, class_names):
    """Mean ± std over folds, pooled confusion, plots; written to summary.json."""
    run_dir = Path(run_dir)
    results = [read_json(run_dir / name / RESULT) for name in fold_names]
    predictions = [p for name in fold_names for p in read_json(run_dir / name / PREDICTIONS)]
    accuracies = np.array([r["accuracy"] for r in results])
    pooled = np.sum([np.array(r["confusion"]) for r in results], axis=0)
    probabilities = np.array([p["probabilities"] for p in predictions])
    labels = np.array([p["label"] for p in predictions])
    summary = {
        "folds": list(fold_names),
        "fold_accuracies": accuracies.tolist(),
        "mean_accuracy": float(accuracies.mean()),
        "std_accuracy": float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0,
        "pooled_accuracy": metrics.accuracy(pooled),
        "pooled": metrics.summary(pooled, probabilities, labels) if len(set(labels)) > 1
        else metrics.summary(pooled),
        "classes": list(class_names),
    }
    if all("unit_accuracy" in r for r in results):
        summary["units"] = unit_summary(results)
    write_json_atomic(run_dir / SUMMARY, summary)
    abbreviations = dict(zip(CLASS_NAMES, CLASS_ABBREVIATIONS))
    plots.plot_confusion(pooled, [abbreviations.get(c, c) for c in class_names], run_dir / "confusion.png",
                         title=f"{run_dir.name}: pooled confusion (%)")
    if len(set(labels)) > 1:
        plots.plot_roc({run_dir.name: (probabilities, labels)}, run_dir / "roc.png")
    logs = {name: read_training_curve(run_dir / name / TRAIN_LOG) for name in fold_names}
    plots.plot_training_curves(logs, run_dir / "training.png", title=run_dir.name)
    return summary


def unit_summary(results):
    """The folds' unit-level figures: mean ± std of the folds and the decisions pooled over all folds
    (the paper's CK+ figures are k / 415 units pooled: docs/recipe.md)."""
    accuracies = np.array([r["unit_accuracy"] for r in results])
    pooled = np.sum([np.array(r["unit_confusion"]) for r in results], axis=0)
    return {"count": int(sum(r["test_units"] for r in results)),
            "fold_accuracies": accuracies.tolist(),
            "mean_accuracy": float(accuracies.mean()),
            "std_accuracy": float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0,
            "pooled_accuracy": metrics.accuracy(pooled), "confusion": pooled.tolist()}


def print_summary(name, run_dir, summary):
    print(f"{name}: mean accuracy {100 * summary['mean_accuracy']:.2f} ± "
          f"{100 * summary['std_accuracy']:.2f} % over {len(summary['folds'])} folds "
          f"(pooled {100 * summary['pooled_accuracy']:.2f} %)")
    units = summary.get("units")
    if units:
        print(f"{name}: one decision per unit (a sequence's frames): pooled {100 * units['pooled_accuracy']:.2f} % "
              f"of {units['count']} units, mean of folds {100 * units['mean_accuracy']:.2f} ± "
              f"{100 * units['std_accuracy']:.2f} %")
    print("pooled confusion (images; rows true, columns predicted):")
    print("\n".join(confusion_text(summary["classes"], summary["pooled"]["confusion"])))
    print(f"results: {run_dir}")
