"""Connection pruning (Table 5's c.p. variants) in two stages of one fold, with real `caffe train`
runs: the stage-2 mask is the 30 % smallest |w| of stage 1's trained weights, pruned weights end
at 0, and a kill in stage 2 resumes there without redoing stage 1."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from caffe_layers.functional import magnitude_mask
from experiments.running.caffe_train import segment_starts
from nets.build import roles
from nets.catalog import PRUNE_RATIO
from runtime.caffe_env import REPO_ROOT, import_caffe
from runtime.files import read_json
from tests.prepared_fixture import build_prepared_dataset
from tools import crossval

# The toy trains at about 1,500 iterations/s here: stage 2 is long enough that a kill after its first
# snapshot lands well before its last (a window of 400 iterations, about 0.25 s).
ITERS, EVERY = 1500, 100
STAGE1, STAGE2 = 1000, 500          # one schedule: two thirds unpruned, the last third pruned


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return build_prepared_dataset(tmp_path_factory.mktemp("data") / "tiny")


def _weights(caffemodel, layer_name):
    caffe_pb2 = import_caffe().proto.caffe_pb2
    model = caffe_pb2.NetParameter()
    model.ParseFromString(caffemodel.read_bytes())
    layer = next(layer for layer in model.layer if layer.name == layer_name)
    return np.array(layer.blobs[0].data).reshape(tuple(layer.blobs[0].shape.dim))


def _command(prepared, runs, variant):
    return [sys.executable, str(REPO_ROOT / "tools" / "crossval.py"), "--data", str(prepared),
            "--runs-dir", str(runs), "--net", "toy", "--variant", variant, "--folds", "1",
            "--iters", str(ITERS), "--batch-size", "16", "--snapshot-every", str(EVERY)]


def _check_mask(fold, layer_name):
    stage1 = _weights(fold / "unpruned" / f"snapshot_iter_{STAGE1}.caffemodel", layer_name)
    stage2 = _weights(fold / f"snapshot_iter_{STAGE2}.caffemodel", layer_name)
    # Stage 1 pruned nothing; stage 2 pruned exactly the 30 % smallest of stage 1's final weights.
    assert np.count_nonzero(stage1 == 0) == 0
    expected_pruned = ~magnitude_mask(stage1, PRUNE_RATIO)
    assert np.array_equal(stage2 == 0, expected_pruned)
    assert expected_pruned.sum() == round(PRUNE_RATIO * stage1.size)
    # ... and the kept weights were retrained from stage 1's values.
    assert not np.array_equal(stage2[~expected_pruned], stage1[~expected_pruned])
    assert read_json(fold / "training.json")["weights"] == str(
        fold / "unpruned" / f"snapshot_iter_{STAGE1}.caffemodel")
    # The two stages share the run's one schedule (issue 22, item 5).
    assert read_json(fold / "unpruned" / "training.json")["iterations"] == STAGE1
    assert read_json(fold / "training.json")["iterations"] == STAGE2
    assert STAGE1 + STAGE2 == ITERS


def test_a_kill_in_stage_2_resumes_there_and_the_mask_comes_from_stage_1(prepared, tmp_path):
    cmd = _command(prepared, tmp_path, "w_l2_cp")
    fold = tmp_path / "tiny_toy_w_l2_cp" / "fold_00"
    stage2_log = fold / "train.log"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    # Stage 2's first snapshot (the solver state is written after the weights); a moment more lets
    # the file be complete. Waiting for log lines instead raced: caffe's log reaches the file in
    # buffered pieces, sometimes only after the last snapshot.
    while not (fold / f"snapshot_iter_{EVERY}.solverstate").is_file():
        assert proc.poll() is None and time.time() < deadline, "crossval ended before the kill"
        time.sleep(0.005)
    time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (fold / f"snapshot_iter_{STAGE2}.caffemodel").is_file(), "killed too late"
    stage1 = fold / "unpruned"
    before = {name: (stage1 / name).stat().st_mtime_ns
              for name in ("training.json", "train.log", f"snapshot_iter_{STAGE1}.caffemodel")}

    crossval.main(cmd[2:])
    assert {name: (stage1 / name).stat().st_mtime_ns for name in before} == before
    assert segment_starts(stage1 / "train.log") == [0]
    starts = segment_starts(stage2_log)
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= EVERY
    assert (fold / "result.json").is_file()
    _check_mask(fold, roles("toy", num_classes=6, input_size=48).classifier_layer)


def test_the_stages_continue_one_learning_rate_schedule():
    from experiments.running.options import TrainingOptions
    from experiments.running.training import pruning_stages
    first, second = pruning_stages(TrainingOptions(net="resnet", variant="w_l2_cp"))
    assert (first.iters, second.iters) == (8000, 4000)          # the paper's 12,000 in one schedule
    assert first.base_lr is None and second.base_lr == pytest.approx(1e-4)   # two steps taken
    first, second = pruning_stages(TrainingOptions(net="toy", variant="w_l2_cp", iters=30, stepsize=10,
                                                   base_lr=0.1))
    assert (first.iters, second.iters, second.base_lr) == (20, 10, pytest.approx(0.001))


def test_pruning_v_with_l1_masks_fc1_from_its_trained_weights(prepared, tmp_path):
    crossval.main(_command(prepared, tmp_path, "v_l1_cp")[2:])
    fold = tmp_path / "tiny_toy_v_l1_cp" / "fold_00"
    assert "prune_ratio\\\": 0.0" in (fold / "unpruned" / "toy_v_l1_cp_train_val.prototxt").read_text()
    _check_mask(fold, roles("toy", num_classes=6, input_size=48).fc1_layer)
