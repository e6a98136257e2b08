"""Run folders: one per experiment, one sub-folder per fold, results as JSON files.

A run folder holds ``config.json`` (what was asked), and per fold the
generated nets and solver, ``train.log`` (the caffe tool's output), the final
snapshot, ``predictions.json`` and ``result.json``. ``result.json`` is written
last and atomically: a fold with it is finished and is never redone; a fold
without it was interrupted and restarts from scratch.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from runtime.caffe_env import caffe_binary, check_caffe_binary
from tools.caffe_log import ITER_LOSS


def write_json_atomic(path, data):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def load_manifest(data_dir):
    """The manifest of a prepared dataset, with a clear error if it is not one."""
    data_dir = Path(data_dir)
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.is_file():
        raise SystemExit(
            f"error: {data_dir} is not a prepared dataset (no manifest.json). Prepare it first with "
            f"`python data_prep/prepare.py --dataset ... --root ... --out {data_dir}`.")
    manifest = read_json(manifest_path)
    for name in manifest["splits"]:
        for part in ("train_lmdb", "test_lmdb"):
            if not (data_dir / name / part / "data.mdb").is_file():
                raise SystemExit(f"error: {data_dir / name / part} is missing or not an LMDB; "
                                 f"the prepared dataset {data_dir} is incomplete: prepare it again.")
    return manifest


def prepare_run_dir(run_dir, config):
    """Create the run folder, or reuse it if it was made with the same config.

    A run folder made with a different config is never touched: the user
    chooses another name or removes it.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
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


def start_fold(fold_dir, marker="result.json"):
    """Return False if the fold is finished (``marker`` exists); else clear leftovers, return True."""
    fold_dir = Path(fold_dir)
    if (fold_dir / marker).is_file():
        return False
    if fold_dir.exists():
        shutil.rmtree(fold_dir)
    fold_dir.mkdir(parents=True)
    return True


def run_caffe_train(solver_path, log_path, weights=None, gpu=None, progress=None):
    """Run ``caffe train`` in its own process, its output kept in ``log_path``.

    ``progress(iteration, loss)`` is called as the log grows. A NaN loss or a
    non-zero exit raises SystemExit naming the log.
    """
    caffe = caffe_binary()
    check_caffe_binary(caffe)
    cmd = [str(caffe), "train", "-solver", str(solver_path)]
    if weights:
        cmd += ["-weights", str(weights)]
    if gpu is not None:
        cmd += ["-gpu", str(gpu)]
    # The log is the training record: full INFO output whatever this process uses.
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0", PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        log.write("# " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _follow(proc, log_path, progress)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        tail = Path(log_path).read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"error: caffe train failed (exit {proc.returncode}); log: {log_path}\n"
                         + "\n".join(tail))


def _follow(proc, log_path, progress):
    position = 0
    while True:
        done = proc.poll() is not None
        with open(log_path, "rb") as f:
            f.seek(position)
            chunk = f.read()
        # Only whole lines; a partial last line is read again next time.
        cut = chunk.rfind(b"\n") + 1
        position += cut
        for match in ITER_LOSS.finditer(chunk[:cut].decode(errors="replace")):
            iteration, loss = int(match.group(1)), float(match.group(2))
            if not np.isfinite(loss):
                proc.kill()
                proc.wait()
                raise SystemExit(
                    f"error: training loss became {loss} at iteration {iteration}; log: {log_path}. "
                    "Lower the learning rate (--base-lr) or check the data.")
            if progress:
                progress(iteration, loss)
        if done:
            return
        time.sleep(0.5)


def final_snapshot(fold_dir, max_iter):
    path = Path(fold_dir) / f"snapshot_iter_{max_iter}.caffemodel"
    if not path.is_file():
        raise SystemExit(f"error: caffe train finished without writing {path}; see {fold_dir}/train.log")
    return path


def print_err(*args):
    print(*args, file=sys.stderr, flush=True)
