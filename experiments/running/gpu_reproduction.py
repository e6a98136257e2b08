"""Table 3's ResNet softmax and L2 cells on FER2013, from scratch, on one GPU, in one prepared run.

The logic of scripts/gpu/reproduce_fer2013.sh (its command line is tools/reproduce_fer2013.py).
Stages, each timed into <out>/stages.json:

    env      GPU: unpack the bundle and find the machine's CUDA 13 libraries (scripts/gpu/bundle_env.sh,
             shared with scripts/gpu_check.sh); CPU: the project's .venv
    prepare  FER2013 at the net's input size (data_prep/prepare.py, every core)
    train    tools/reproduce.py --table 3 --variants softmax l2, both cells side by side
             (--gpus 0,0 on the GPU, --jobs 2 on the CPU)
    report   the table (Markdown/CSV/JSON, statistics, protocol checks, plots) copied into <out>
    speed    benchmarks/bench_train.py: a training step of the same net, Caffe beside PyTorch

Only the standard library is imported here: on the GPU machine this runs under that machine's own
python3, and every stage runs in the bundle's Python as a child process.
"""
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.caffe_env import REPO_ROOT
from runtime.files import write_json_atomic

STAGES = ("env", "prepare", "train", "report", "speed")
DEVICES = ("gpu", "cpu")
SCALES = ("paper", "cpu", "smoke")
DEFAULT_BUNDLE = REPO_ROOT / ".gpu-bundle" / "fer-gpu-bundle.tar.xz"
# What scripts/gpu/bundle_env.sh sets for the bundle's Caffe and Python.
BUNDLE_VARIABLES = ("FER_CAFFE_BIN", "FER_BUNDLE_ROOT", "LD_LIBRARY_PATH", "PYTHONHOME", "PYTHONNOUSERSITE",
                    "PYTHONPATH", "PYTHONUNBUFFERED", "MATPLOTLIBRC", "MPLBACKEND", "GLOG_logtostderr")


class ReproductionError(Exception):
    """A failed stage; the message names it."""


class OptionsRefused(ReproductionError):
    """An option refused before any stage starts; the message names the flag, the rule and the fix."""


@dataclass(frozen=True)
class ReproductionOptions:
    out: Path
    work: Path
    fer2013: Path | None = None
    device: str = "gpu"
    scale: str = "paper"
    net: str = "resnet"
    stages: tuple = STAGES
    bundle: Path = DEFAULT_BUNDLE
    bundle_root: Path | None = None  # where the bundle is unpacked (default <work>/bundle)
    torch_python: str | None = None  # python with torch for the speed stage (default python3 on PATH)


def check_options(options):
    """Refuses bad options before any stage starts (OptionsRefused)."""
    if options.device not in DEVICES:
        raise OptionsRefused(f"--device must be gpu or cpu, not {options.device}")
    if options.scale not in SCALES:
        raise OptionsRefused(f"--scale must be paper, cpu or smoke, not {options.scale}")
    unknown = [s for s in options.stages if s not in STAGES]
    if unknown:
        raise OptionsRefused(f"unknown stage {unknown[0]} (stages: {','.join(STAGES)})")
    if "prepare" in options.stages:
        if options.fer2013 is None:
            raise OptionsRefused("--fer2013 TARBALL is required for the prepare stage "
                                    "(a tar of the FER2013 image folder)")
        if not options.fer2013.is_file():
            raise OptionsRefused(f"{options.fer2013} does not exist (a tar of the FER2013 image folder)")
    if options.device == "gpu" and "env" in options.stages and not options.bundle.is_file():
        raise OptionsRefused(f"{options.bundle} missing: run scripts/gpu/build_bundle.sh first")


def _say(message):
    print(f"[reproduce-fer2013] {message}", flush=True)


def _run(command, env, **kwargs):
    command = [str(part) for part in command]
    proc = subprocess.run(command, env=env, **kwargs)
    if proc.returncode != 0:
        detail = (proc.stderr or "")[-3000:] if kwargs.get("capture_output") else ""
        raise ReproductionError(f"{' '.join(command[:2])} ... failed with exit status {proc.returncode}"
                                + (f":\n{detail}" if detail else ""))
    return proc


class Reproduction:
    """Runs the chosen stages in order; the env stage sets the Python and environment the others use."""

    def __init__(self, options):
        check_options(options)
        self.options = options
        self.env = dict(os.environ)
        self.python = REPO_ROOT / ".venv" / "bin" / "python"

    def env_stage(self):
        options = self.options
        if options.device == "cpu":
            if not self.python.exists():
                raise ReproductionError(f"{self.python} missing: run bash scripts/install.sh")
            return
        root = options.bundle_root or options.work / "bundle"
        script = ('say() { printf "[reproduce-fer2013] %s\\n" "$*" >&2; }; '
                  'source "$repo/scripts/gpu/bundle_env.sh" >&2 && printf "%s" "$python" && env -0 >"$root/.env"')
        env = dict(self.env, repo=str(REPO_ROOT), bundle=str(options.bundle), logs=str(options.out),
                   root=str(root))
        proc = _run(["bash", "-c", script], env, stdout=subprocess.PIPE, text=True)
        values = dict(entry.split("=", 1) for entry in (root / ".env").read_text().split("\0") if "=" in entry)
        self.env.update({name: values[name] for name in BUNDLE_VARIABLES if name in values})
        self.python = Path(proc.stdout.strip())

    def input_size(self):
        code = f"from nets.catalog import NETS; print(NETS[{self.options.net!r}].input_size)"
        proc = _run([self.python, "-c", code], self.env, capture_output=True, text=True, cwd=REPO_ROOT)
        return int(proc.stdout.strip())

    def prepare_stage(self):
        work = self.options.work
        if (work / "prepared" / "manifest.json").exists():
            _say(f"prepare: reusing {work / 'prepared'}")
            return
        raw = work / "fer2013"
        shutil.rmtree(raw, ignore_errors=True)
        shutil.rmtree(work / "prepared", ignore_errors=True)
        raw.mkdir(parents=True)
        # tar(1): Debian's Python 3.11.2 has no extraction filters against unsafe member paths.
        _run(["tar", "-xf", self.options.fer2013, "-C", raw], self.env)
        # The tarball may hold the folder itself or its contents.
        tops = sorted(p.parent for p in raw.glob("*/train") if p.is_dir()) + \
            ([raw] if (raw / "train").is_dir() else [])
        if not tops:
            raise ReproductionError(f"{self.options.fer2013} has no train/ folder (FER2013 image-folder layout)")
        _run([self.python, REPO_ROOT / "data_prep/prepare.py", "--dataset", "fer2013", "--root", tops[0],
              "--size", self.input_size(), "--workers", os.cpu_count() or 1, "--out", work / "prepared",
              "--quiet"], self.env)

    def train_stage(self):
        work = self.options.work
        parallel = ["--gpus", "0,0"] if self.options.device == "gpu" else ["--jobs", "2"]
        _run([self.python, REPO_ROOT / "tools/reproduce.py", "--table", "3", "--nets", self.options.net,
              "--variants", "softmax", "l2", "--scale", self.options.scale,
              "--data", f"fer2013={work / 'prepared'}", "--runs-dir", work / "runs", "--out", work / "table",
              *parallel], self.env)

    def report_stage(self):
        table = self.options.work / "table"
        files = sorted(table.glob("table_3.*")) + sorted(table.glob("*.png"))
        if not files:
            raise ReproductionError(f"{table} has no table_3.*: run the train stage first")
        for file in files:
            shutil.copy2(file, self.options.out / file.name)
        _say(f"table: {self.options.out / 'table_3.md'}")

    def _torch_python(self):
        """A python with torch (and, for --device gpu, a GPU), or None. bench_train.py starts it
        without the bundle's PYTHONHOME and folders (FER_BUNDLE_ROOT names them)."""
        candidate = self.options.torch_python or shutil.which("python3")
        if not candidate:
            return None
        clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
        check = ("import torch, sys; sys.exit(0 if torch.cuda.is_available() or sys.argv[1] == 'cpu' else 1)")
        if subprocess.run([candidate, "-c", check, self.options.device], env=clean,
                          capture_output=True).returncode != 0:
            return None
        return candidate

    def speed_stage(self):
        device_args = ["--gpu", "0", "--gpu-math", "fp32,tf32"] if self.options.device == "gpu" \
            else ["--iters", "2", "--no-peak"]
        torch_python = self._torch_python()
        torch_args = ["--torch-python", torch_python] if torch_python else []
        if not torch_python:
            _say("speed: no python with torch (and a GPU): timing Caffe only")
        proc = _run([self.python, REPO_ROOT / "benchmarks/bench_train.py", "--nets", self.options.net,
                     "--repeats", "1", "--frameworks", "caffe-tool,pytorch", *device_args, *torch_args,
                     "--results", self.options.out / "train_speed.csv"], self.env, capture_output=True, text=True)
        print(proc.stdout, end="")
        (self.options.out / "speed.txt").write_text(proc.stdout)

    def run(self):
        """Runs the stages (env always) and writes stages.json with each one's seconds; a stage that
        fails is recorded there as {"failed": stage, "after_s": seconds} before its error is raised."""
        self.options.out.mkdir(parents=True, exist_ok=True)
        self.options.work.mkdir(parents=True, exist_ok=True)
        timings = {}
        start = time.monotonic()
        for stage in STAGES:
            if stage != "env" and stage not in self.options.stages:
                continue
            _say(f"== {stage}")
            begun = time.monotonic()
            try:
                getattr(self, f"{stage}_stage")()
            except ReproductionError:
                timings["failed"] = {"stage": stage, "after_s": round(time.monotonic() - begun)}
                write_json_atomic(self.options.out / "stages.json", timings)
                raise
            timings[stage] = round(time.monotonic() - begun)
            _say(f"{stage}: {timings[stage]} s")
        timings["total"] = round(time.monotonic() - start)
        write_json_atomic(self.options.out / "stages.json", timings)
        _say(f"done: {json.dumps(timings)}")
        return timings
