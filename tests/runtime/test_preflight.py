"""runtime/preflight.py through the real .venv/bin/caffe wrapper: the design card's
`caffe train -solver prototxt/resnet_l2_solver.prototxt`, run in a temporary
working directory laid out like the repo root, first without data (one message
naming the prepare command, no Caffe trace), then with a tiny prepared FER2013
(the pre-flight passes, creates runs/resnet_l2/ and Caffe runs the nets)."""
import os
import shutil
import subprocess
import sys

import pytest

from runtime.caffe_env import REPO_ROOT
from runtime.preflight import (PreflightError, caffe_command, check_command, check_train,
                               initial_test_note, snapshot_folder, solver_flag)
from data_prep.prepared import prepare_command
from tests.prepared_fixture import build_prepared_dataset

SOLVER = "prototxt/resnet_l2_solver.prototxt"
PREPARE = ("python data_prep/prepare.py --dataset fer2013 --root <your fer2013 copy> "
           "--out data/prepared/fer2013-112 --size 112")


def repo_like(tmp_path):
    """A working directory with the committed resnet_l2 solver and net at their repo paths."""
    (tmp_path / "prototxt").mkdir()
    for name in ("resnet_l2_solver.prototxt", "resnet_l2_train_val.prototxt"):
        shutil.copy(REPO_ROOT / "prototxt" / name, tmp_path / "prototxt" / name)
    return tmp_path


def caffe_train(caffe_bin, solver, cwd):
    return subprocess.run([str(caffe_bin), "train", "-solver", solver], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, GLOG_logtostderr="1"))


def test_design_card_command_without_data_names_the_prepare_command(caffe_bin, tmp_path):
    cwd = repo_like(tmp_path)
    proc = caffe_train(caffe_bin, SOLVER, cwd)
    assert proc.returncode == 1
    assert PREPARE in proc.stderr
    assert "data/prepared/fer2013-112/official/train_lmdb" in proc.stderr
    assert "data/prepared/fer2013-112/official/val_lmdb" in proc.stderr
    # The message is the pre-flight's alone: Caffe never started.
    assert "Check failed" not in proc.stderr and "stack trace" not in proc.stderr
    assert "Solver scaffolding" not in proc.stderr and "Initializing solver" not in proc.stderr
    assert not (cwd / "runs").exists()


def test_design_card_command_with_prepared_data_runs(caffe_bin, tmp_path):
    cwd = repo_like(tmp_path)
    build_prepared_dataset(cwd / "data" / "prepared" / "fer2013-112", subjects=3,
                           images_per_class=1, size=112, crops=1, dataset="fer2013",
                           official=True)
    # The committed solver with max_iter 0, one test batch and no loss display: Caffe builds
    # both nets from the LMDBs, checks the snapshot prefix and runs the final test only.
    quick = (cwd / SOLVER).read_text().replace("max_iter: 12000", "max_iter: 0") \
        .replace("test_iter: 72", "test_iter: 1").replace("display: 20", "display: 0")
    assert "max_iter: 0" in quick and "test_iter: 1\n" in quick and "display: 0" in quick
    (cwd / "prototxt" / "resnet_l2_quick_solver.prototxt").write_text(quick)
    proc = caffe_train(caffe_bin, "prototxt/resnet_l2_quick_solver.prototxt", cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (cwd / "runs" / "resnet_l2").is_dir()
    assert "Cannot write to snapshot prefix" not in proc.stderr
    assert "Optimization Done." in proc.stderr
    assert "Test net output #0: accuracy" in proc.stderr
    # The silent test pass before the first step is announced before Caffe starts (issue 23, item 4).
    note = ("caffe train: before its first training step Caffe tests the net on 50 records "
            "(test_iter 1 x batch_size 50 of data/prepared/fer2013-112/official/val_lmdb)")
    assert note in proc.stderr
    assert proc.stderr.index(note) < proc.stderr.index("Solver scaffolding")
    assert "test_initialization: false" in proc.stderr


def test_the_initial_test_pass_is_announced_only_when_caffe_runs_one(caffe, tmp_path, monkeypatch):
    cwd = repo_like(tmp_path)
    build_prepared_dataset(cwd / "data" / "prepared" / "fer2013-112", subjects=3,
                           images_per_class=1, size=112, crops=1, dataset="fer2013",
                           official=True)
    monkeypatch.chdir(cwd)
    pb = caffe.proto.caffe_pb2
    # The design card's solver: 72 batches of 50 PublicTest records, as on the real FER2013.
    assert initial_test_note(SOLVER, pb).startswith(
        "before its first training step Caffe tests the net on 3600 records (test_iter 72 x batch_size 50 "
        "of data/prepared/fer2013-112/official/val_lmdb)")
    assert check_command(["train", "-solver", SOLVER], pb) == [initial_test_note(SOLVER, pb)]
    assert check_command(["test", "-model", SOLVER], pb) == []
    text = (cwd / SOLVER).read_text()
    for changed in (text + "test_initialization: false\n", text.replace("test_interval: 500", "test_interval: 0")):
        (cwd / "prototxt" / "changed_solver.prototxt").write_text(changed)
        assert initial_test_note("prototxt/changed_solver.prototxt", pb) is None
        assert check_command(["train", "-solver", "prototxt/changed_solver.prototxt"], pb) == []
    with pytest.raises(PreflightError, match="the solver prototxt/missing.prototxt does not exist"):
        check_command(["train", "-solver", "prototxt/missing.prototxt"], pb)


def test_preflight_creates_the_snapshot_folder_of_the_committed_solver(caffe, tmp_path,
                                                                      monkeypatch):
    cwd = repo_like(tmp_path)
    build_prepared_dataset(cwd / "data" / "prepared" / "fer2013-112", subjects=3,
                           images_per_class=1, size=112, crops=1, dataset="fer2013",
                           official=True)
    monkeypatch.chdir(cwd)
    assert check_train(SOLVER, caffe.proto.caffe_pb2) == cwd.joinpath("runs/resnet_l2") \
        .relative_to(cwd)
    assert (cwd / "runs" / "resnet_l2").is_dir()
    shutil.rmtree(cwd / "data" / "prepared" / "fer2013-112" / "official" / "val_lmdb")
    with pytest.raises(PreflightError, match=r"val_lmdb  \(the TEST Data layer 'data'"):
        check_train(SOLVER, caffe.proto.caffe_pb2)


def test_solver_flag_forms_and_prepare_commands():
    assert caffe_command(["train", "-solver", "a"]) == "train"
    assert caffe_command(["-solver", "a", "-logtostderr", "--gpu=0", "train"]) == "train"
    assert caffe_command(["-model", "train", "test"]) == "test"  # a net file named "train"
    assert caffe_command(["--version"]) is None
    assert solver_flag(["-solver", "a.prototxt", "-gpu", "0"]) == "a.prototxt"
    assert solver_flag(["--solver=b.prototxt"]) == "b.prototxt"
    assert solver_flag(["-weights", "w.caffemodel"]) is None
    assert prepare_command("data/prepared/fer2013-112/official/val_lmdb") == PREPARE
    assert prepare_command("data/prepared/mmi-48/fold_00/train_lmdb") == (
        "python data_prep/prepare.py --dataset mmi --root <your mmi copy> "
        "--out data/prepared/mmi-48 --size 48")
    assert prepare_command("/somewhere/my_lmdb") is None


def test_snapshot_folder_follows_caffe(caffe):
    pb = caffe.proto.caffe_pb2
    assert str(snapshot_folder("s.prototxt", pb.SolverParameter(snapshot_prefix="runs/a/b"))) \
        == "runs/a"
    assert str(snapshot_folder("s.prototxt", pb.SolverParameter(snapshot_prefix="runs/c/"))) \
        == "runs/c"
    # No prefix: Caffe snapshots next to the solver file, whose folder exists.
    assert snapshot_folder("s.prototxt", pb.SolverParameter()) is None


def test_other_commands_pass_through(caffe_bin, tmp_path):
    proc = subprocess.run([str(caffe_bin), "--version"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "caffe version" in proc.stdout + proc.stderr
    # Flags may come before the command (gflags): the pre-flight still sees a train.
    proc = subprocess.run([str(caffe_bin), "-solver", "prototxt/missing.prototxt", "train"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "the solver prototxt/missing.prototxt does not exist" in proc.stderr


def test_wrappers_written_before_the_move_still_run_the_preflight(tmp_path):
    # Older .venv/bin/caffe wrappers run `python -m runtime.preflight`: it hands over to the tool.
    proc = subprocess.run([sys.executable, "-m", "runtime.preflight", "train", "-solver", "missing.prototxt"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("caffe train: the solver missing.prototxt does not exist")
