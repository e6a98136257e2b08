"""``caffe train`` in its own process, followed through its log."""
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from experiments.caffe_log import ITER_LOSS
from runtime.caffe_env import caffe_binary, check_caffe_binary


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
