"""scripts/gpu/steps.sh, the step runner of scripts/gpu_check.sh: each step's log and status are
kept, and FER_GPU_CHECK_BUDGET_S cuts a step's time and skips what cannot start, so a GPU session
that runs out of device time still returns every finished step."""
import json
import subprocess

from runtime.caffe_env import REPO_ROOT

STEPS = REPO_ROOT / "scripts" / "gpu" / "steps.sh"


def run_steps(tmp_path, body, budget=None):
    env = {"PATH": "/usr/bin:/bin"}
    if budget is not None:
        env["FER_GPU_CHECK_BUDGET_S"] = str(budget)
    script = (f'say() {{ echo "$*" >&2; }}; logs={tmp_path}; status=0; source {STEPS}\n'
              f'{body}\necho "status=$status"')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    return done, steps


def test_each_step_keeps_its_log_and_status(tmp_path):
    done, steps = run_steps(tmp_path, "step good 10 echo fine\nstep bad 10 sh -c 'echo broken; exit 4'")
    assert [(s["step"], s["status"]) for s in steps] == [("good", "ok"), ("bad", "failed")]
    assert (tmp_path / "good.log").read_text() == "fine\n" and "broken" in (tmp_path / "bad.log").read_text()
    assert "status=1" in done.stdout and "bad: FAILED" in done.stderr


def test_a_step_that_outlives_its_limit_fails(tmp_path):
    done, steps = run_steps(tmp_path, "step slow 1 sleep 5")
    assert steps == [{"step": "slow", "status": "failed", "seconds": 1}]


def test_the_budget_cuts_a_step_and_skips_the_ones_that_cannot_start(tmp_path):
    # A 31 s budget: the first step gets 31 s (not its 600) and is killed, nothing can follow.
    done, steps = run_steps(tmp_path, "step long 600 sleep 40\nstep next 10 echo never", budget=31)
    assert [(s["step"], s["status"]) for s in steps] == [("long", "failed"), ("next", "skipped")]
    assert 30 <= steps[0]["seconds"] <= 33
    assert "at most 31 s" in done.stderr and "next: SKIPPED" in done.stderr
    assert not (tmp_path / "next.log").exists() and "status=1" in done.stdout


def test_without_a_budget_nothing_is_skipped(tmp_path):
    done, steps = run_steps(tmp_path, "step a 10 true\nstep b 10 true")
    assert [s["status"] for s in steps] == ["ok", "ok"] and "status=0" in done.stdout
