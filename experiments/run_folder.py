"""Run folders: the one module that knows their layout.

    <runs>/<name>/config.json          what defines the run; a folder is reused only for the same config
    <runs>/<name>/<fold>/              one per fold (``fold_00`` ..., ``official``; crossdb: ``train``,
                                       ``test_<dataset>``)
        <net>_<variant>_{train_val,deploy,solver}.prototxt   the fold's generated nets (nets.file_names)
        train.log                      the caffe tool's output
        snapshot_iter_<N>.caffemodel   snapshots (prefix SNAPSHOT_PREFIX)
        training.json                  iterations and wall time of the finished training
        predictions.json               one entry per test image: label, probabilities, prediction
        result.json                    the fold's scores; written last: its presence marks the fold done
    <runs>/<name>/summary.json         over folds; plots confusion.png, roc.png, training.png

``result.json`` is written last and atomically: a fold with it is finished and
is never redone; a fold without it was interrupted and restarts from scratch.
"""
import shutil
from pathlib import Path

from runtime.files import read_json, write_json_atomic

CONFIG = "config.json"
SUMMARY = "summary.json"
RESULT = "result.json"
PREDICTIONS = "predictions.json"
TRAINING = "training.json"
TRAIN_LOG = "train.log"
SNAPSHOT_PREFIX = "snapshot"
PLOTS = ("confusion.png", "roc.png", "training.png")


def crossval_run_name(dataset, net, variant):
    return f"{dataset}_{net}_{variant}"


def crossdb_run_name(dataset, net, variant):
    return f"crossdb_{dataset}_{net}_{variant}"


def snapshot_prefix(fold_dir):
    return Path(fold_dir) / SNAPSHOT_PREFIX


def snapshot_path(fold_dir, iteration):
    return Path(fold_dir) / f"{SNAPSHOT_PREFIX}_iter_{iteration}.caffemodel"


def prepare_run_dir(run_dir, config):
    """Create the run folder, or reuse it if it was made with the same config.

    A run folder made with a different config is never touched: the user
    chooses another name or removes it.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG
    if config_path.is_file():
        old = read_json(config_path)
        if old != config:
            changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise SystemExit(
                f"error: {run_dir} holds a run with a different configuration ({', '.join(changed)} "
                f"differ). Nothing was changed; pass another --name or remove {run_dir}.")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(config_path, config)
    return run_dir


def read_config(run_dir):
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise SystemExit(f"error: {run_dir} is not a run folder (no {CONFIG}); pass folders "
                         "written by tools/crossval.py or tools/crossdb.py")
    return read_json(run_dir / CONFIG)


def read_summary(run_dir):
    """The run's summary.json, or None while the run is not finished."""
    path = Path(run_dir) / SUMMARY
    return read_json(path) if path.is_file() else None


def fold_done(fold_dir, marker=RESULT):
    return (Path(fold_dir) / marker).is_file()


def start_fold(fold_dir, marker=RESULT):
    """Return False if the fold is finished (``marker`` exists); else clear leftovers, return True."""
    fold_dir = Path(fold_dir)
    if fold_done(fold_dir, marker):
        return False
    if fold_dir.exists():
        shutil.rmtree(fold_dir)
    fold_dir.mkdir(parents=True)
    return True


def final_snapshot(fold_dir, max_iter):
    path = snapshot_path(fold_dir, max_iter)
    if not path.is_file():
        raise SystemExit(f"error: caffe train finished without writing {path}; "
                         f"see {Path(fold_dir) / TRAIN_LOG}")
    return path


def trained_snapshot(fold_dir):
    """The final snapshot of a finished training (its iteration count from training.json)."""
    return final_snapshot(fold_dir, read_json(Path(fold_dir) / TRAINING)["iterations"])
