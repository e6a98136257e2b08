"""One GPU session, as the device tool lends it: the GPU check, then Table 3's reproduction, within the
session's device time, with whatever finished packed into one file that comes back.

The logic of scripts/gpu/session.sh (its command line is tools/gpu_session.py). A session is a few
calls to a machine that stays warm only briefly between them, brings back at most 8 files of 16 MiB,
and has about 15 minutes in all (docs/docker.md, "A GPU session"):

    start    scripts/gpu_check.sh with a time budget (its steps most telling first: the strict FP32
             comparison, Caffe's cuDNN gtests, the per-layer profile beside PyTorch, ...), then
             scripts/gpu/reproduce_fer2013.sh (prepare, train, report) started in its own process
             session, so that it runs on after this call returns; then waits as collect does
    collect  waits until the reproduction ends or --wait-s passes, then packs the check's logs, the
             reproduction's log, stages.json, table and the runs' logs (not their weights) into
             <out>/gpu_session.tar.gz and prints a summary

--device cpu runs the same on this machine without the GPU check (the reproduction at --scale smoke
with the .venv): how the tests check the parts. Only the standard library is imported: on the GPU
machine this runs under that machine's own python3.
"""
import json
import os
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.caffe_env import REPO_ROOT

GPU_CHECK = REPO_ROOT / "scripts" / "gpu_check.sh"
REPRODUCE = REPO_ROOT / "scripts" / "gpu" / "reproduce_fer2013.sh"
ARCHIVE_NAME = "gpu_session.tar.gz"
# Run-folder files worth bringing back: logs, learning curves, summaries (weights and LMDBs stay).
KEPT_SUFFIXES = (".log", ".json", ".jsonl", ".csv", ".md", ".txt", ".png")
KEPT_MAX_BYTES = 8 * 2 ** 20
# The device tool brings back files of at most 16 MiB.
ARCHIVE_MAX_BYTES = 16 * 2 ** 20
POLL_S = 10


class SessionError(Exception):
    """A refused option or a failed start; the message names the flag or the step."""


@dataclass(frozen=True)
class SessionOptions:
    out: Path
    work: Path
    fer2013: Path | None = None
    device: str = "gpu"
    check_budget_s: int = 240
    wait_s: int = 300
    collect_only: bool = False
    scale: str = "paper"
    net: str = "resnet"


def check_options(options):
    if options.device not in ("gpu", "cpu"):
        raise SessionError(f"--device must be gpu or cpu, not {options.device}")
    if options.check_budget_s < 0 or options.wait_s < 0:
        raise SessionError("--check-budget-s and --wait-s must be 0 or more seconds")
    if not options.collect_only:
        if options.fer2013 is None or not options.fer2013.is_file():
            raise SessionError(f"--fer2013 {options.fer2013}: give the tar of the FER2013 image folder "
                               "(PNG or lossless WebP images; docs/docker.md, 'A GPU session')")


def _say(message):
    print(f"[gpu-session] {message}", flush=True)


class Session:
    def __init__(self, options):
        check_options(options)
        self.options = options
        self.check_dir = options.work / "check"
        self.reproduce_out = options.work / "reproduce-out"
        self.reproduce_log = options.work / "reproduce.log"
        self.pid_file = options.work / "reproduce.pid"
        self.bundle_root = options.work / "bundle"

    def run_check(self):
        """scripts/gpu_check.sh within the budget; its exit status (0: every step passed)."""
        if self.options.device == "cpu":
            _say("check: skipped (--device cpu: the GPU check needs the GPU machine)")
            return None
        if self.options.check_budget_s == 0:
            _say("check: skipped (--check-budget-s 0)")
            return None
        self.check_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, FER_GPU_CHECK_BUDGET_S=str(self.options.check_budget_s),
                   FER_GPU_ROOT=str(self.bundle_root))
        _say(f"check: scripts/gpu_check.sh, at most {self.options.check_budget_s} s")
        done = subprocess.run(["bash", str(GPU_CHECK), str(self.check_dir)], env=env)
        _say(f"check: exit status {done.returncode}")
        return done.returncode

    def start_reproduction(self):
        """Starts the reproduction in a process session of its own (it outlives this call)."""
        options = self.options
        command = ["bash", str(REPRODUCE), "--fer2013", str(options.fer2013), "--device", options.device,
                   "--scale", options.scale if options.device == "gpu" else "smoke", "--net", options.net,
                   "--stages", "prepare,train,report", "--out", str(self.reproduce_out),
                   "--work", str(options.work / "reproduce")]
        if options.device == "gpu":
            # The bundle gpu_check.sh unpacked: unpacked again over itself, the same files.
            command += ["--bundle-root", str(self.bundle_root)]
        with open(self.reproduce_log, "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        _say(f"reproduction: started (pid {process.pid}, log {self.reproduce_log})")
        return process

    def running_pid(self):
        """The reproduction's pid while it runs, else None."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        # A finished process nobody has reaped yet (this call's own child, or an orphan under a
        # parent that does not reap) still answers kill(0): its state in /proc is Z.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1]
        except FileNotFoundError:  # reaped meanwhile
            return None
        return None if state.startswith("Z") else pid

    def wait(self):
        """Waits until the reproduction ends or wait_s passes; True if it has ended."""
        deadline = time.monotonic() + self.options.wait_s
        last_note = time.monotonic()
        while self.running_pid() is not None:
            if time.monotonic() >= deadline:
                _say(f"reproduction: still running after {self.options.wait_s} s (collect again later)")
                return False
            if time.monotonic() - last_note >= 60:
                lines = self.reproduce_log.read_text(errors="replace").splitlines()
                _say(f"reproduction: running; last line: {lines[-1] if lines else '(none yet)'}")
                last_note = time.monotonic()
            time.sleep(POLL_S)
        _say("reproduction: ended")
        return True

    def kept_files(self):
        """(kept, too_large): (path, name in the archive) of everything worth bringing back, and the
        names of the files of those kinds left out for their size."""
        work = self.options.work
        roots = [self.check_dir, self.reproduce_out, work / "reproduce" / "runs", work / "reproduce" / "table"]
        kept = [(self.reproduce_log, "reproduce.log")] if self.reproduce_log.exists() else []
        too_large = []
        for root in roots:
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.suffix in KEPT_SUFFIXES:
                    name = str(path.relative_to(work))
                    if path.stat().st_size <= KEPT_MAX_BYTES:
                        kept.append((path, name))
                    else:
                        too_large.append(name)
        return kept, too_large

    def pack(self):
        """<out>/gpu_session.tar.gz of kept_files(), written whole; says what was left out."""
        self.options.out.mkdir(parents=True, exist_ok=True)
        archive = self.options.out / ARCHIVE_NAME
        partial = archive.with_name(archive.name + ".partial")
        kept, too_large = self.kept_files()
        with tarfile.open(partial, "w:gz") as tar:
            for path, name in kept:
                tar.add(path, arcname=name)
        if too_large:
            _say(f"left out {len(too_large)} file(s) over {KEPT_MAX_BYTES // 2 ** 20} MiB: {', '.join(too_large)}")
        partial.replace(archive)
        size = archive.stat().st_size
        if size > ARCHIVE_MAX_BYTES:
            _say(f"warning: {archive} is {size / 2 ** 20:.1f} MiB, over the 16 MiB the device tool brings back")
        _say(f"packed {archive} ({size / 2 ** 10:.0f} KiB)")
        return archive

    def summary(self):
        """What the check's steps and the reproduction's stages say, as one dict (also printed)."""
        steps_file = self.check_dir / "steps.jsonl"
        steps = [json.loads(line) for line in steps_file.read_text().splitlines()] if steps_file.exists() else []
        stages_file = self.reproduce_out / "stages.json"
        stages = json.loads(stages_file.read_text()) if stages_file.exists() else None
        result = {"check_steps": steps, "reproduction_running": self.running_pid() is not None,
                  "reproduction_stages": stages}
        _say(f"summary: {json.dumps(result)}")
        return result

    def run(self):
        self.options.work.mkdir(parents=True, exist_ok=True)
        if not self.options.collect_only:
            if self.running_pid() is not None:
                raise SessionError(f"a reproduction is already running (pid file {self.pid_file}): "
                                   "use --collect, or stop it first")
            self.run_check()
            self.start_reproduction()
        self.wait()
        self.pack()
        return self.summary()
