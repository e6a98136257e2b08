"""scripts/gpu/session.sh (tools/gpu_session.py, experiments/running/gpu_session.py) on the CPU: the
reproduction outlives the call that starts it, a later call collects it, and each call leaves one
archive of what finished (logs, stages, table; no weights) for the device tool to bring back."""
import json
import subprocess
import tarfile

import pytest

from runtime.caffe_env import REPO_ROOT
from tests.scripts.test_gpu_reproduction import fer2013_tarball

SCRIPT = REPO_ROOT / "scripts" / "gpu" / "session.sh"


def session(*args, timeout=900):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu", "--collect"], "--device must be gpu or cpu"),
    (["--device", "cpu"], "--fer2013 None: give the tar of the FER2013 image folder"),
    (["--device", "cpu", "--fer2013", "/nonexistent.tar"], "--fer2013 /nonexistent.tar"),
    (["--collect", "--wait-s", "-1"], "must be 0 or more seconds"),
])
def test_bad_options_are_refused_before_anything_starts(args, message, tmp_path):
    done = session(*args, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_the_reproduction_runs_on_after_the_call_and_is_collected_later(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    common = ["--device", "cpu", "--net", "toy", "--work", str(work), "--out", str(out)]
    first = session("--fer2013", str(fer2013_tarball(tmp_path)), "--wait-s", "0", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "check: skipped" in first.stdout and "reproduction: started" in first.stdout
    assert "still running" in first.stdout, first.stdout  # the call returned; the run goes on
    with tarfile.open(out / "gpu_session.tar.gz") as tar:
        assert "reproduce.log" in tar.getnames()

    again = session("--fer2013", str(fer2013_tarball(tmp_path / "again")), *common)
    assert again.returncode == 2 and "already running" in again.stderr, again.stderr

    collected = session("--collect", "--wait-s", "800", *common)
    assert collected.returncode == 0, collected.stderr[-3000:]
    assert "reproduction: ended" in collected.stdout
    summary = json.loads(collected.stdout.split("summary: ", 1)[1].splitlines()[0])
    assert summary["reproduction_running"] is False
    assert set(summary["reproduction_stages"]) >= {"env", "prepare", "train", "report", "total"}
    with tarfile.open(out / "gpu_session.tar.gz") as tar:
        names = tar.getnames()
    assert {"reproduce.log", "reproduce-out/stages.json", "reproduce-out/table_3.md"} <= set(names), names
    assert any(n.startswith("reproduce/runs/") and n.endswith(".log") for n in names), names
    assert not any(n.endswith((".caffemodel", ".solverstate", ".mdb")) for n in names), names


def test_a_file_too_large_to_bring_back_is_named_not_dropped_silently(tmp_path):
    from experiments.running import gpu_session
    work = tmp_path / "work"
    options = gpu_session.SessionOptions(out=tmp_path / "out", work=work, device="cpu", collect_only=True,
                                         wait_s=0)
    session = gpu_session.Session(options)
    (work / "check").mkdir(parents=True)
    (work / "check" / "steps.jsonl").write_text('{"step": "device_query", "status": "ok", "seconds": 1}\n')
    (work / "check" / "huge.log").write_bytes(b"x" * (gpu_session.KEPT_MAX_BYTES + 1))
    (work / "check" / "weights.caffemodel").write_bytes(b"w")
    archive = session.pack()
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["check/steps.jsonl"]
    assert session.kept_files()[1] == ["check/huge.log"]
    assert session.summary()["check_steps"] == [{"step": "device_query", "status": "ok", "seconds": 1}]


def test_a_check_budget_of_zero_skips_the_check(tmp_path, capsys):
    # gpu_check.sh reads FER_GPU_CHECK_BUDGET_S=0 as "no cap": the session must not pass it on.
    from experiments.running import gpu_session
    options = gpu_session.SessionOptions(out=tmp_path / "out", work=tmp_path / "work", device="gpu",
                                         collect_only=True, check_budget_s=0)
    assert gpu_session.Session(options).run_check() is None
    assert "check: skipped (--check-budget-s 0)" in capsys.readouterr().out
    assert not (tmp_path / "work" / "check").exists()
