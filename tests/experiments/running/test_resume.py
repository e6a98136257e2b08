"""Resuming inside a fold: a real `caffe train` killed with SIGKILL after a snapshot resumes
from it (tools/crossval.py), its loss curve continues, and a snapshot cut short is set aside."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from experiments.running.caffe_train import read_training_curve, segment_starts, snapshot_problem
from experiments.running.run_folder import snapshot_iterations
from runtime.caffe_env import REPO_ROOT
from runtime.files import read_json
from tests.prepared_fixture import build_prepared_dataset
from tools import crossval

ITERS, EVERY, DISPLAY = 600, 100, 20   # DISPLAY: nets.solvers.DEFAULT_DISPLAY
TRAIN = ["--net", "toy", "--variant", "softmax", "--folds", "1", "--iters", str(ITERS),
         "--batch-size", "16", "--snapshot-every", str(EVERY)]
LOSS_LINE = re.compile(r"Iteration (\d+) \(")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return build_prepared_dataset(tmp_path_factory.mktemp("data") / "tiny")


def _logged_iteration(log):
    found = LOSS_LINE.findall(log.read_text(errors="replace")) if log.is_file() else []
    return int(found[-1]) if found else -1


def _train_and_kill(prepared, runs, after_iteration):
    """Start crossval.py, SIGKILL it and its caffe child once the log is past ``after_iteration``."""
    cmd = [sys.executable, str(REPO_ROOT / "tools" / "crossval.py"), "--data", str(prepared),
           "--runs-dir", str(runs), *TRAIN]
    fold = runs / "tiny_toy_softmax" / "fold_00"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 180
    while _logged_iteration(fold / "train.log") <= after_iteration:
        assert proc.poll() is None and time.time() < deadline, "crossval ended before the kill"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (fold / "snapshot_iter_600.caffemodel").is_file(), "killed too late: fold finished"
    return cmd, fold


def _check_finished(fold):
    assert read_json(fold / "training.json")["iterations"] == ITERS
    assert (fold / f"snapshot_iter_{ITERS}.caffemodel").is_file()
    assert (fold / "result.json").is_file()
    curve = read_training_curve(fold / "train.log")
    iterations = [iteration for iteration, _ in curve["train"]]
    # The whole range, each logged iteration once, in order.
    assert iterations[0] == 0 and iterations[-1] == ITERS
    assert all(0 < b - a <= DISPLAY for a, b in zip(iterations, iterations[1:]))
    tests = [iteration for iteration, _ in curve["test"]]
    assert tests == sorted(set(tests)) and tests[-1] == ITERS
    return curve


def test_a_fold_killed_after_a_snapshot_resumes_from_it(prepared, tmp_path):
    cmd, fold = _train_and_kill(prepared, tmp_path, after_iteration=EVERY + DISPLAY)
    killed_at = _logged_iteration(fold / "train.log")
    # The newest snapshot Caffe finished writing (the kill may have cut the one after it).
    resume_from = next(i for i in snapshot_iterations(fold)
                       if snapshot_problem(fold / f"snapshot_iter_{i}.solverstate") is None)
    assert EVERY <= resume_from < ITERS
    assert not (fold / "result.json").is_file()
    (fold / "leftover.tmp").write_text("from the killed run")

    crossval.main(cmd[2:])
    curve = _check_finished(fold)
    assert not (fold / "leftover.tmp").exists()
    assert segment_starts(fold / "train.log") == [0, resume_from]
    text = (fold / "train.log").read_text()
    resumed = text[text.rindex("# start iteration"):]
    assert f"-snapshot {fold / f'snapshot_iter_{resume_from}.solverstate'}" in resumed
    # The resumed part starts at the snapshot's iteration, not at 0, with the trained weights:
    first_resumed = LOSS_LINE.search(resumed)
    assert int(first_resumed.group(1)) == resume_from
    losses = dict(curve["train"])
    assert losses[resume_from] < 0.5 * losses[0]
    # What the killed segment logged after the snapshot (none when the kill landed between
    # the snapshot and the next display, which a fast machine makes likely) was redone and
    # replaced: _check_finished saw every iteration logged once, in order.
    assert killed_at >= resume_from


def test_a_snapshot_cut_short_is_set_aside_and_the_previous_one_used(prepared, tmp_path):
    cmd, fold = _train_and_kill(prepared, tmp_path, after_iteration=2 * EVERY + DISPLAY)
    latest, previous = snapshot_iterations(fold)[:2]
    assert previous < latest

    # A half-written .solverstate or .caffemodel of the previous snapshot (real files) is seen.
    for suffix in (".solverstate", ".caffemodel"):
        copy = tmp_path / "copy"
        copy.mkdir()
        for s in (".solverstate", ".caffemodel"):
            shutil.copy(fold / f"snapshot_iter_{previous}{s}", copy)
        damaged = copy / f"snapshot_iter_{previous}{suffix}"
        data = damaged.read_bytes()
        for cut in (len(data) // 2, len(data) - 1, 20):
            damaged.write_bytes(data[:cut])
            assert snapshot_problem(copy / f"snapshot_iter_{previous}.solverstate"), (suffix, cut)
        shutil.rmtree(copy)

    model = fold / f"snapshot_iter_{latest}.caffemodel"
    model.write_bytes(model.read_bytes()[:model.stat().st_size // 2])
    crossval.main(cmd[2:])
    _check_finished(fold)
    assert segment_starts(fold / "train.log") == [0, previous]
    assert (fold / f"snapshot_iter_{latest}.caffemodel.corrupt").is_file()


def test_snapshots_of_other_nets_are_never_resumed(prepared, tmp_path):
    cmd, fold = _train_and_kill(prepared, tmp_path, after_iteration=EVERY + DISPLAY)
    # As if the project's net definitions had changed since the snapshots were taken.
    train_val = fold / "toy_softmax_train_val.prototxt"
    edited = train_val.read_text().replace("lr_mult: 1.0", "lr_mult: 3.0", 1)
    train_val.write_text(edited)
    snapshots = sorted(path.name for path in fold.glob("snapshot_iter_*"))
    with pytest.raises(SystemExit, match="snapshots trained with other nets or solver"):
        crossval.main(cmd[2:])
    assert train_val.read_text() == edited
    assert sorted(path.name for path in fold.glob("snapshot_iter_*")) == snapshots
