"""Ctrl-C in the long-running commands: a real SIGINT to a real tiny run gives one line saying
what was kept and the exact command that resumes it, exit status 130, and no traceback (issue 23,
item 5; test_resume.py shows a rerun resuming from the kept snapshots). The first fold says what
Caffe does before its first step (issue 23, item 4)."""
import re
import signal
import subprocess
import sys
import time

from runtime.caffe_env import REPO_ROOT
from tests.prepared_fixture import build_prepared_dataset
from tests.signals import sigint_as_at_a_terminal

RUN = "tiny_toy_softmax"


def _interrupt_when(cmd, ready, timeout=120):
    """Start ``cmd``, send SIGINT once ``ready()`` holds; returns (exit status, stdout, stderr)."""
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO_ROOT, preexec_fn=sigint_as_at_a_terminal)
    deadline = time.time() + timeout
    while not ready() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be interrupted:\n" + process.stderr.read()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def test_ctrl_c_in_crossval_names_what_was_kept_and_the_resuming_command(tmp_path):
    data = build_prepared_dataset(tmp_path / "tiny")
    runs = tmp_path / "runs"
    args = ["--data", str(data), "--net", "toy", "--variant", "softmax", "--max-folds", "1",
            "--iters", "2000", "--batch-size", "16", "--snapshot-every", "50", "--runs-dir", str(runs)]
    fold = runs / RUN / "fold_00"
    status, stdout, stderr = _interrupt_when(
        [sys.executable, str(REPO_ROOT / "tools" / "crossval.py"), *args],
        lambda: any(fold.glob("snapshot_iter_*.solverstate")))
    assert status == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("crossval.py: interrupted (Ctrl-C); kept the finished folds and the "
                           "interrupted fold's newest snapshots in the run folder."), last
    resume = "python tools/crossval.py " + " ".join(args)
    assert last.endswith(f"Resume with: {resume}"), last
    assert any(fold.glob("snapshot_iter_*.caffemodel"))
    # Before the silent first test pass, the fold says what Caffe is doing and where the log is.
    announced = re.search(rf"{RUN} fold_00 \(1/1\): caffe train first tests the untrained net on "
                          rf"(\d+) records of (\S+), then trains; log: (\S+)", stdout)
    assert announced, stdout
    assert int(announced.group(1)) > 0
    assert announced.group(2) == str(data / "fold_00" / "test_lmdb")
    assert announced.group(3) == str(fold / "train.log")


def test_ctrl_c_in_prepare_keeps_nothing_and_says_so(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO_ROOT / "data_prep" / "prepare.py"), "--dataset", "synthetic",
           "--out", str(out), "--synthetic-subjects", "12", "--synthetic-images", "40", "--crops", "9",
           "--size", "64", "--workers", "1", "--quiet"]
    status, _, stderr = _interrupt_when(cmd, lambda: any(tmp_path.glob(".out.partial-*")))
    assert status == 130
    assert stderr.strip().splitlines() == [
        "prepare.py: interrupted (Ctrl-C); kept nothing (the partial dataset is built in a temporary "
        "folder and deleted). Resume with: python tools/prepare.py " + " ".join(cmd[2:])]
    assert list(tmp_path.iterdir()) == []
