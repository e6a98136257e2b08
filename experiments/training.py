"""What a run trains, and the training of one fold: nets written by nets/, ``caffe train`` run."""
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from experiments.caffe_train import run_caffe_train
from experiments.run_folder import TRAIN_LOG, TRAINING, final_snapshot, snapshot_prefix
from nets.build import DEFAULT_TEST_BATCH_SIZE
from nets.experiment import write_experiment
from runtime.files import write_json_atomic


@dataclass(frozen=True)
class TrainingOptions:
    """Net, variant and the solver settings a run is defined by (None: the paper's value)."""
    net: str
    variant: str
    iters: Optional[int] = None
    batch_size: Optional[int] = None
    base_lr: Optional[float] = None
    stepsize: Optional[int] = None
    weights: Optional[Path] = None
    seed: Optional[int] = None      # the solver's random_seed (None: nets.solvers' default)
    scale: Optional[str] = None     # the name of the preset these settings come from, if any

    def config(self):
        """The training settings of a run's config.json.

        ``seed`` and ``scale`` appear only when set, so run folders made before
        they existed keep matching their config.
        """
        config = {"net": self.net, "variant": self.variant, "iters": self.iters,
                  "batch_size": self.batch_size, "base_lr": self.base_lr, "stepsize": self.stepsize,
                  "weights": str(Path(self.weights).resolve()) if self.weights else None}
        if self.seed is not None:
            config["seed"] = self.seed
        if self.scale is not None:
            config["scale"] = self.scale
        return config

    def solver_overrides(self):
        overrides = {}
        if self.iters:
            overrides["max_iter"] = self.iters
            # Five test-phase points on the training curves, the last at the end.
            overrides["test_interval"] = max(1, self.iters // 5)
        if self.base_lr:
            overrides["base_lr"] = self.base_lr
        if self.stepsize:
            overrides["stepsize"] = self.stepsize
        if self.seed is not None:
            overrides["random_seed"] = self.seed
        return overrides


@dataclass(frozen=True)
class FoldData:
    """What one training reads: LMDBs and the size of the one its TEST phase watches."""
    train_lmdb: Path
    watch_lmdb: Path
    watch_records: int
    num_classes: int
    image_size: int


def train_fold(fold_dir, data, options, gpu=None, label=""):
    """Write the fold's nets and solver, run ``caffe train``; returns (train_val path, snapshot)."""
    paths = write_experiment(
        fold_dir, net=options.net, variant=options.variant,
        num_classes=data.num_classes, train_source=data.train_lmdb, test_source=data.watch_lmdb,
        input_size=data.image_size, batch_size=options.batch_size,
        test_iter=max(1, math.ceil(data.watch_records / DEFAULT_TEST_BATCH_SIZE)),
        snapshot_prefix=snapshot_prefix(fold_dir), **options.solver_overrides())
    max_iter = paths["max_iter"]
    started = time.time()
    with tqdm(total=max_iter, desc=label, unit="it", leave=True) as bar:
        def progress(iteration, loss):
            bar.update(max(0, iteration - bar.n))
            bar.set_postfix(loss=f"{loss:.4f}")
        run_caffe_train(paths["solver"], Path(fold_dir) / TRAIN_LOG, weights=options.weights, gpu=gpu,
                        progress=progress)
        bar.update(max_iter - bar.n)
    write_json_atomic(Path(fold_dir) / TRAINING,
                      {"iterations": max_iter, "train_seconds": round(time.time() - started, 1)})
    return paths["train_val"], final_snapshot(fold_dir, max_iter)
