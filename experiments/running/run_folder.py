"""Run folders: the one module that knows their layout.

    <runs>/<name>/config.json          what defines the run; a folder is reused only for the same config
    <runs>/<name>/<fold>/              one per fold (``fold_00`` ..., ``official``; crossdb: ``train``,
                                       ``test_<dataset>``)
        <net>_<variant>_{train_val,deploy,solver}.prototxt   the fold's generated nets (nets.file_names)
        train.log                      the caffe tool's output, one segment per (re)start
        snapshot_iter_<N>.{caffemodel,solverstate}   the newest snapshots (prefix SNAPSHOT_PREFIX)
                                       and the final one; a corrupt one is renamed ``*.corrupt``
        unpruned/                      connection-pruning variants only: stage 1, the same files
        training.json                  iterations, wall time, segments of the finished training
        predictions.json               one entry per test image: label, probabilities, prediction
        result.json                    the fold's scores; written last: its presence marks the fold done
    <runs>/<name>/summary.json         over folds; plots confusion.png, roc.png, training.png
    <runs>/<name>/protocol.json, respond_ratio.json   analyses stored when the run finishes, for reports

``result.json`` is written last and atomically: a fold with it is finished and
is never redone. A training fold without it was interrupted: if it holds a
snapshot it resumes from its newest valid one (nets, logs and snapshots are
kept, anything else is removed), else it restarts from scratch.
"""
import shutil
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import ExperimentError
from runtime.files import read_json, write_json_atomic


class RunFolderError(ExperimentError):
    """A run folder that cannot be used as asked; the message says why and what to do."""

CONFIG = "config.json"
SUMMARY = "summary.json"
RESULT = "result.json"
PREDICTIONS = "predictions.json"
TRAINING = "training.json"
PROTOCOL = "protocol.json"
RESPOND_RATIO = "respond_ratio.json"
TRAIN_LOG = "train.log"
SNAPSHOT_PREFIX = "snapshot"
UNPRUNED_STAGE = "unpruned"
CORRUPT_SUFFIX = ".corrupt"
# What an interrupted training fold keeps to resume from.
_RESUME_KEEPS = ("*_train_val.prototxt", "*_deploy.prototxt", "*_solver.prototxt", TRAIN_LOG,
                 TRAINING, f"{SNAPSHOT_PREFIX}_iter_*", UNPRUNED_STAGE)
PLOTS = ("confusion.png", "roc.png", "training.png")


def crossval_run_name(dataset, net, variant):
    return f"{dataset}_{net}_{variant}"


def crossdb_run_name(dataset, net, variant):
    return f"crossdb_{dataset}_{net}_{variant}"


def snapshot_prefix(fold_dir):
    return Path(fold_dir) / SNAPSHOT_PREFIX


def snapshot_path(fold_dir, iteration):
    return Path(fold_dir) / f"{SNAPSHOT_PREFIX}_iter_{iteration}.caffemodel"


def solverstate_path(fold_dir, iteration):
    return Path(fold_dir) / f"{SNAPSHOT_PREFIX}_iter_{iteration}.solverstate"


def snapshot_iterations(fold_dir, complete=True):
    """Iterations of the fold's snapshots, newest first (complete: those with a .solverstate)."""
    suffix = ".solverstate" if complete else ".caffemodel"
    iterations = []
    for path in Path(fold_dir).glob(f"{SNAPSHOT_PREFIX}_iter_*{suffix}"):
        number = path.name[len(SNAPSHOT_PREFIX) + len("_iter_"):-len(suffix)]
        if number.isdigit():
            iterations.append(int(number))
    return sorted(iterations, reverse=True)


def set_aside_snapshot(fold_dir, iteration):
    """Rename a snapshot that cannot be resumed to ``*.corrupt`` (kept for inspection)."""
    for path in (snapshot_path(fold_dir, iteration), solverstate_path(fold_dir, iteration)):
        if path.is_file():
            path.rename(path.with_name(path.name + CORRUPT_SUFFIX))


def remove_old_snapshots(fold_dir, keep=2):
    """Delete all but the ``keep`` newest snapshots that have a .solverstate.

    Caffe writes a snapshot's .caffemodel, then its .solverstate, and starts the
    next one only after both: with two kept, the older is complete even if the
    newer was cut short by a kill.
    """
    complete = snapshot_iterations(fold_dir)
    if len(complete) <= keep:
        return
    oldest_kept = complete[keep - 1]
    for iteration in set(snapshot_iterations(fold_dir, complete=False)) | set(complete):
        if iteration < oldest_kept:
            for path in (snapshot_path(fold_dir, iteration), solverstate_path(fold_dir, iteration)):
                path.unlink(missing_ok=True)


def prepare_run_dir(run_dir, config):
    """Create the run folder, or reuse it if it was made with the same config.

    A run folder made with a different config is never touched: the user
    chooses another name or removes it.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG
    if config_path.is_file():
        old = read_json(config_path)
        # A key missing from an older config.json is an option added since, at its default (None).
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if changed:
            raise RunFolderError(
                f"{run_dir} holds a run with a different configuration ({', '.join(changed)} "
                f"differ). Nothing was changed; give the run another name or remove {run_dir}.")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(config_path, config)
    return run_dir


def read_config(run_dir):
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise RunFolderError(f"{run_dir} is not a run folder (no {CONFIG}); pass folders "
                             "written by tools/crossval.py or tools/crossdb.py")
    return read_json(run_dir / CONFIG)


def read_summary(run_dir):
    """The run's summary.json, or None while the run is not finished."""
    path = Path(run_dir) / SUMMARY
    return read_json(path) if path.is_file() else None


def fold_done(fold_dir, marker=RESULT):
    return (Path(fold_dir) / marker).is_file()


def _has_snapshot(fold_dir):
    return bool(snapshot_iterations(fold_dir, complete=False)
                or snapshot_iterations(Path(fold_dir) / UNPRUNED_STAGE, complete=False))


def start_fold(fold_dir, marker=RESULT, resume=False):
    """Return False if the fold is finished (``marker`` exists); else clear leftovers, return True.

    resume (training folds): a fold holding a snapshot keeps its nets, log,
    snapshots and pruning stage 1 so that the training resumes (the run's
    config.json guarantees the same configuration; experiments.running.training checks
    that the nets are the same); everything else is removed. Without a
    snapshot, or without resume, the fold restarts from scratch.
    """
    fold_dir = Path(fold_dir)
    if fold_done(fold_dir, marker):
        return False
    if resume and fold_dir.is_dir() and _has_snapshot(fold_dir):
        kept = {path for pattern in _RESUME_KEEPS for path in fold_dir.glob(pattern)}
        for path in fold_dir.iterdir():
            if path in kept:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        return True
    if fold_dir.exists():
        shutil.rmtree(fold_dir)
    fold_dir.mkdir(parents=True)
    return True


def final_snapshot(fold_dir, max_iter):
    path = snapshot_path(fold_dir, max_iter)
    if not path.is_file():
        raise RunFolderError(f"caffe train finished without writing {path}; "
                             f"see {Path(fold_dir) / TRAIN_LOG}")
    return path


def trained_snapshot(fold_dir):
    """The final snapshot of a finished training (its iteration count from training.json)."""
    return final_snapshot(fold_dir, read_json(Path(fold_dir) / TRAINING)["iterations"])


def trained_folds(run_dir):
    """Fold folders of a run whose training finished (training.json), sorted: the first is the
    one a model is taken from when none is named (tools/predict.py, tools/export_onnx.py)."""
    return sorted(p.name for p in Path(run_dir).iterdir() if (p / TRAINING).is_file())


class TrainedModelError(ValueError):
    """A folder that does not hold a trained model; the message names the folder and what is missing."""


@dataclass(frozen=True)
class TrainedModel:
    """The model a run folder holds: one fold's deploy net and its final snapshot."""
    run_dir: Path
    fold_dir: Path
    config: dict
    deploy: Path
    weights: Path


def trained_model(folder, fold=None):
    """The TrainedModel of a run folder (``fold``, default the first trained one) or of one of its folds.

    The one answer to "which trained model does this folder hold", for
    inference.predictor and inference.onnx_export alike. Raises TrainedModelError.
    """
    folder = Path(folder)
    if (folder / CONFIG).is_file():
        run_dir = folder
        if fold is None:
            folds = trained_folds(run_dir)
            if not folds:
                raise TrainedModelError(
                    f"error: {run_dir} has no fold with a finished training ({TRAINING} missing in "
                    "every fold); train it with tools/crossval.py (a rerun resumes)")
            fold = folds[0]
        fold_dir = run_dir / fold
    elif (folder.parent / CONFIG).is_file():
        if fold is not None and fold != folder.name:
            raise TrainedModelError(f"error: {folder} is already the fold {folder.name}; "
                                    f"the fold {fold} contradicts it")
        run_dir, fold_dir = folder.parent, folder
    else:
        raise TrainedModelError(f"error: {folder} is neither a run folder (no {CONFIG}) nor a fold "
                                "folder of one; name a folder written by tools/crossval.py or "
                                "tools/crossdb.py")
    config = read_config(run_dir)
    if not fold_dir.is_dir():
        raise TrainedModelError(f"error: {run_dir} has no fold {fold_dir.name} (folds with a finished "
                                f"training: {', '.join(trained_folds(run_dir)) or 'none'})")
    if not (fold_dir / TRAINING).is_file():
        raise TrainedModelError(
            f"error: {fold_dir} has no finished training ({TRAINING} missing): its training did not "
            f"finish; rerun tools/crossval.py (it resumes) or take a trained fold (one of: "
            f"{', '.join(trained_folds(run_dir)) or 'none'})")
    # Imported here: this module is read on the ONNX route too, where nets (and the protobuf
    # modules it builds nets with) are not needed.
    from nets.experiment import file_names
    deploy = fold_dir / file_names(config["net"], config["variant"])["deploy"]
    if not deploy.is_file():
        raise TrainedModelError(f"error: {deploy} is missing; the fold folder {fold_dir} is incomplete: "
                                "rerun tools/crossval.py on it")
    weights = snapshot_path(fold_dir, read_json(fold_dir / TRAINING)["iterations"])
    if not weights.is_file():
        raise TrainedModelError(f"error: {fold_dir} has no caffemodel {weights.name} (the final snapshot "
                                f"{TRAINING} names); the fold was damaged: rerun its training")
    return TrainedModel(run_dir, fold_dir, config, deploy, weights)
