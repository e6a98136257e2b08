"""What a run trains, and the training of one fold: nets written by nets/, ``caffe train`` run.

A fold's training snapshots every ``snapshot_every`` iterations and resumes
from its newest valid snapshot after a kill (``caffe train -snapshot``); a
snapshot cut short is set aside and the previous one used. Connection-pruning
variants (``*_cp``) train in two stages in one fold (``train_fold``).
"""
import json
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from experiments.errors import ExperimentError
from experiments.running.caffe_train import run_caffe_train, segment_starts, snapshot_problem
# Re-exported: TrainingOptions lived here before experiments.running.options defined each option once.
from experiments.running.options import OptionError, TrainingOptions  # noqa: F401
from experiments.running.run_folder import (TRAIN_LOG, TRAINING, UNPRUNED_STAGE, final_snapshot,
                                    remove_old_snapshots, set_aside_snapshot, snapshot_iterations,
                                    snapshot_prefix, solverstate_path)
from nets.catalog import PRUNE_RETRAIN_SHARE, check_variant
from nets.solvers import DEFAULT_MAX_ITER, PAPER_SOLVER
from nets.experiment import file_names, render, write_experiment
from runtime.files import read_json, write_json_atomic, write_text_atomic
from runtime.prototxt import read_net


class TrainingError(ExperimentError):
    """A fold folder whose training cannot be resumed as asked."""

# Default snapshot interval: a kill loses at most about 4 minutes at the paper's
# solver (batch 64). CPU, measured on 2 cores (benchmarks/train.csv, patched
# Caffe): face ResNet 4.69 s per iteration -> 50 x 4.69 s = 3.9 min; VGG-16
# 5.88 s at batch 8, about 47 s at 64 -> 5 x 47 s = 3.9 min; cnn48 0.23 s (the
# caffe tool) to 0.47 s (under pycaffe) -> 500 x 0.47 s = 3.9 min; toy net 10 ms
# -> 2000 x 10 ms = 20 s (the solver's own interval). GPU: 6.6 ms per iteration
# on an H200 for a net that takes 468 ms on those cores (docs/docker.md), so
# about 66 ms for the ResNet -> 1000 x 66 ms = 66 s. One entry per net of
# nets.catalog.NETS (tests check it): no net falls back to a guess.
SNAPSHOT_EVERY_CPU = {"toy": 2000, "resnet": 50, "vgg": 5, "cnn48": 500}
SNAPSHOT_EVERY_GPU = 1000
# Snapshots kept while training: the newest may be cut short by a kill, the one
# before it is then complete. A finished training keeps its final one only.
SNAPSHOTS_KEPT = 2
_SOLVER_SNAPSHOT_LINE = re.compile(r"^snapshot: \d+\n", re.MULTILINE)


def default_snapshot_every(net, gpu=None):
    return SNAPSHOT_EVERY_GPU if gpu is not None else SNAPSHOT_EVERY_CPU[net]


@dataclass(frozen=True)
class FoldData:
    """What one training reads: LMDBs and the size of the one its TEST phase watches."""
    train_lmdb: Path
    watch_lmdb: Path
    watch_records: int
    num_classes: int
    image_size: int


def train_fold(fold_dir, data, options, gpu=None, label=""):
    """Train one fold (resuming an interrupted training); returns (train_val path, final snapshot).

    A connection-pruning variant trains in two stages, as Han et al. (the
    paper's [26]) prune: stage 1 (``<fold>/unpruned/``) trains the same net
    with nothing masked (prune_ratio 0, the same L1/L2 penalty), from
    ``options.weights`` if given; stage 2 (the fold itself) starts from
    stage 1's final snapshot, where MaskedInnerProduct fixes the 30 % mask at
    its first forward from those trained weights, and retrains with it. The
    two stages share one schedule (``pruning_stages``), so a c.p. cell trains
    as many iterations as every other cell; each resumes like any training.
    """
    fold_dir = Path(fold_dir)
    if check_variant(options.variant).pruning is None:
        return _train(fold_dir, data, options, options.weights, gpu, label)
    unpruned, pruned = pruning_stages(options)
    _, trained = _train(fold_dir / UNPRUNED_STAGE, data, unpruned, options.weights, gpu,
                        f"{label} stage 1 unpruned".strip(), unpruned=True)
    return _train(fold_dir, data, pruned, trained, gpu, f"{label} stage 2 pruned".strip())


def pruning_stages(options):
    """(stage 1 options, stage 2 options): one schedule of the run's max_iter split by
    nets.catalog.PRUNE_RETRAIN_SHARE; stage 2 continues the step schedule's learning
    rate from where stage 1 ended (base_lr x gamma^(steps taken))."""
    total = options.iters or DEFAULT_MAX_ITER
    if total < 2:
        raise OptionError(f"--iters {total}: connection pruning trains in two stages of one "
                          "schedule; give at least 2 iterations")
    retrain = min(total - 1, max(1, round(total * PRUNE_RETRAIN_SHARE)))
    first = total - retrain
    stepsize = options.stepsize or PAPER_SOLVER["stepsize"]
    base_lr = options.base_lr or PAPER_SOLVER["base_lr"]
    continued = base_lr * PAPER_SOLVER["gamma"] ** (first // stepsize)
    return (replace(options, iters=first),
            replace(options, iters=retrain, base_lr=continued))


def _generated(folder, options):
    """{path: text} of the generated nets and solver already in ``folder``."""
    paths = [Path(folder) / name for name in file_names(options.net, options.variant).values()]
    return {path: path.read_text() for path in paths if path.is_file()}


def _comparable(path, text):
    # The snapshot interval may change between a run and its resumption.
    return _SOLVER_SNAPSHOT_LINE.sub("", text) if path.name.endswith("_solver.prototxt") else text


def _check_same_nets(folder, before):
    """Stop, restoring the old files, if a folder with snapshots gets other nets or solver."""
    if not before or not (snapshot_iterations(folder, complete=False) or (folder / TRAINING).is_file()):
        return
    changed = [path.name for path, text in before.items()
               if _comparable(path, text) != _comparable(path, path.read_text())]
    if changed:
        for path, text in before.items():
            write_text_atomic(path, text)
        raise TrainingError(
            f"{folder} holds snapshots trained with other nets or solver ({', '.join(changed)} "
            "differ from what the project generates now). Nothing was changed; remove "
            f"{folder} to train it again, or resume with the code it was trained with.")


def _without_pruning(prototxt):
    """Rewrite a net's MaskedInnerProduct layers with prune_ratio 0 (pruning stage 1)."""
    net = read_net(prototxt)
    for layer in net.layer:
        if layer.type == "Python" and layer.python_param.layer == "MaskedInnerProduct":
            settings = json.loads(layer.python_param.param_str)
            settings["prune_ratio"] = 0.0
            layer.python_param.param_str = json.dumps(settings, sort_keys=True)
    write_text_atomic(prototxt, render(net, [
        "connection pruning, stage 1 (experiments.running.training): prune_ratio 0, nothing masked"]))


def _resume_point(folder):
    """Iteration of the newest snapshot that can be resumed (corrupt ones set aside), or None."""
    for iteration in snapshot_iterations(folder):
        problem = snapshot_problem(solverstate_path(folder, iteration))
        if problem is None:
            return iteration
        print(f"warning: {folder}: the snapshot of iteration {iteration} cannot be resumed "
              f"({problem}); renamed to *.corrupt, trying the one before", file=sys.stderr)
        set_aside_snapshot(folder, iteration)
    return None


def _train(folder, data, options, weights, gpu, label, unpruned=False):
    """Write the nets and solver into ``folder``, run or resume ``caffe train``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    before = _generated(folder, options)
    snapshot_every = options.snapshot_every or default_snapshot_every(options.net, gpu)
    paths = write_experiment(
        folder, net=options.net, variant=options.variant,
        num_classes=data.num_classes, train_source=data.train_lmdb, test_source=data.watch_lmdb,
        input_size=data.image_size, batch_size=options.batch_size,
        test_records=data.watch_records,
        snapshot_prefix=snapshot_prefix(folder), **options.net_options(),
        **options.solver_overrides(), snapshot=snapshot_every)
    if unpruned:
        _without_pruning(paths["train_val"])
        _without_pruning(paths["deploy"])
    _check_same_nets(folder, before)
    max_iter = paths["max_iter"]
    training_path = folder / TRAINING
    if training_path.is_file() and read_json(training_path)["iterations"] == max_iter:
        return paths["train_val"], final_snapshot(folder, max_iter)

    start = _resume_point(folder)
    started = time.time()
    if start != max_iter:  # else killed after the final snapshot, before training.json
        with tqdm(total=max_iter, initial=start or 0, desc=label, unit="it", leave=True) as bar:
            if start:
                bar.write(f"{label}: resuming from the snapshot of iteration {start}")
            else:
                # Caffe's test pass at iteration 0 (test_initialization) prints nothing for
                # minutes on a large test set: say what the wait is (issue 23, item 4).
                bar.write(f"{label}: caffe train first tests the untrained net on {data.watch_records} "
                          f"records of {data.watch_lmdb}, then trains; log: {folder / TRAIN_LOG}")

            def progress(iteration, loss):
                bar.update(max(0, iteration - bar.n))
                bar.set_postfix(loss=f"{loss:.4f}")
                remove_old_snapshots(folder, SNAPSHOTS_KEPT)

            run_caffe_train(paths["solver"], folder / TRAIN_LOG,
                            weights=None if start else weights,
                            snapshot=solverstate_path(folder, start) if start else None,
                            start_iteration=start or 0, gpu=gpu, progress=progress)
            bar.update(max_iter - bar.n)
    write_json_atomic(training_path, {
        "iterations": max_iter, "snapshot_every": snapshot_every,
        # Every (re)start; the wall time is that of this process's segment only.
        "segments": segment_starts(folder / TRAIN_LOG) if (folder / TRAIN_LOG).is_file() else [],
        "train_seconds": round(time.time() - started, 1),
        "weights": str(weights) if weights else None})
    # Finished: only the final snapshot is needed any more.
    remove_old_snapshots(folder, keep=1)
    return paths["train_val"], final_snapshot(folder, max_iter)
