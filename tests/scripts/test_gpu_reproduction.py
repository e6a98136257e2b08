"""scripts/gpu/reproduce_fer2013.sh (a thin entry point to tools/reproduce_fer2013.py and
experiments/running/gpu_reproduction.py) on the CPU: its argument handling, and its prepare, train,
report and speed stages end to end on a generated FER2013 image export (the GPU run itself needs a GPU machine)."""
import csv
import json
import subprocess
import tarfile

import cv2
import numpy as np
import pytest


from runtime.caffe_env import REPO_ROOT

FER2013_FOLDERS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # label order
SCRIPT = REPO_ROOT / "scripts" / "gpu" / "reproduce_fer2013.sh"


def run(*args, **kwargs):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          **kwargs)


def fer2013_tarball(tmp_path, per_class=4):
    """A FER2013 image-folder export in miniature: each class a bright band at its own rows."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fer2013"
    number = 0
    for label, folder in enumerate(FER2013_FOLDERS):
        for usage, split in (("Training", "train"), ("PublicTest", "test"), ("PrivateTest", "test")):
            for _ in range(per_class):
                image = rng.integers(0, 80, (48, 48)).astype(np.uint8)
                image[label * 6:label * 6 + 5] += 150
                path = root / split / folder / f"{usage}_{number}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), image)
                number += 1
    tarball = tmp_path / "fer2013.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(root, arcname="fer2013")
    return tarball


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "--device must be gpu or cpu"),
    (["--scale", "huge"], "--scale must be paper, cpu or smoke"),
    (["--stages", "prepare,fly"], "unknown stage fly"),
    (["--device", "cpu"], "--fer2013 TARBALL is required"),
    (["--device", "cpu", "--fer2013", "/nonexistent.tar"], "does not exist"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_arguments_are_refused_with_a_reason(args, message):
    result = run(*args)
    assert result.returncode == 2 and message in result.stderr


def test_help_names_every_stage():
    out = run("--help").stdout
    for stage in ("env", "prepare", "train", "report", "speed"):
        assert f"{stage} " in out


@pytest.mark.slow
def test_the_stages_run_end_to_end_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    result = run("--device", "cpu", "--scale", "smoke", "--net", "toy", "--fer2013",
                 str(fer2013_tarball(tmp_path)), "--out", str(out), "--work", str(tmp_path / "work"))
    assert result.returncode == 0, result.stderr[-3000:]
    stages = json.loads((out / "stages.json").read_text())
    assert set(stages) == {"env", "prepare", "train", "report", "speed", "total"}
    manifest = json.loads((tmp_path / "work" / "prepared" / "manifest.json").read_text())
    assert manifest["dataset"] == "fer2013" and manifest["image_size"] == 48
    table = json.loads((out / "table_3.json").read_text())
    assert {cell["column"] for cell in table["cells"]} == {"softmax", "l2"}
    assert all(cell["finished"] for cell in table["cells"])
    assert "McNemar" in (out / "table_3.md").read_text()
    # The speed stage timed the same net (on the CPU here; the GPU run passes --gpu 0).
    speed = (out / "speed.txt").read_text()
    assert "toy" in speed and "caffe tool" in speed, speed
    rows = list(csv.DictReader((out / "train_speed.csv").open()))
    assert {(r["net"], r["framework"]) for r in rows} >= {("toy", "caffe tool")}
    assert all(float(r["ms_per_iter_median"]) > 0 for r in rows)
    # A second run reuses the prepared data and the finished runs.
    again = run("--device", "cpu", "--scale", "smoke", "--net", "toy", "--stages", "train,report",
                "--out", str(out), "--work", str(tmp_path / "work"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "prepare" not in json.loads((out / "stages.json").read_text())


def test_a_failed_stage_is_recorded_in_stages_json(tmp_path):
    # The report stage without a trained table fails; stages.json says which stage and when.
    out = tmp_path / "out"
    done = run("--device", "cpu", "--stages", "report", "--out", str(out), "--work", str(tmp_path / "work"))
    assert done.returncode == 1 and "has no table_3" in done.stderr, done.stderr
    stages = json.loads((out / "stages.json").read_text())
    assert stages["failed"]["stage"] == "report" and "env" in stages and "total" not in stages


def test_the_bundle_is_cut_into_parts_the_device_tool_carries_and_joined_back(tmp_path):
    # The device tool carries 64 MiB a call: pack_bundle cuts the archive into smaller parts,
    # bundle_env.sh joins them (in name order) before unpacking.
    import random
    import runpy
    pack = runpy.run_path(str(REPO_ROOT / "scripts" / "gpu" / "pack_bundle.py"))
    archive = tmp_path / "fer-gpu-bundle.tar.xz"
    payload = random.Random(0).randbytes(2500)
    archive.write_bytes(payload)
    (tmp_path / "fer-gpu-bundle.tar.xz.part-07").write_bytes(b"stale")
    parts = pack["split_archive"](archive, 1000)
    assert [p.name for p in parts] == [f"fer-gpu-bundle.tar.xz.part-0{i}" for i in range(3)]
    assert all(p.stat().st_size <= 1000 for p in parts)
    landmarks = tmp_path / pack["LANDMARKS_NAME"]
    landmarks.write_bytes(payload[:1500])
    pack["split_archive"](landmarks, 1000)
    archive.unlink()
    landmarks.unlink()
    joined = subprocess.run(
        ["bash", "-c", 'say() { echo "$*"; }; bundle=$1; repo=x logs=$2/logs root=$2/root; '
         f'source {REPO_ROOT / "scripts" / "gpu" / "bundle_env.sh"}', "_", str(archive), str(tmp_path)],
        capture_output=True, text=True)
    assert "joined 3 parts" in joined.stdout and "joined 2 parts" in joined.stdout, joined.stdout + joined.stderr
    assert archive.read_bytes() == payload and landmarks.read_bytes() == payload[:1500]


def test_a_bundle_part_and_the_repository_fit_in_one_device_call():
    # The device tool carries at most 64 MiB a call, the repository's files (tracked and
    # untracked-not-ignored) included: a part of PART_MIB must leave room for them.
    import runpy
    pack = runpy.run_path(str(REPO_ROOT / "scripts" / "gpu" / "pack_bundle.py"))
    names = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, text=True, check=True).stdout.split("\0")
    tree = sum((REPO_ROOT / n).stat().st_size for n in names if n and (REPO_ROOT / n).is_file())
    assert pack["PART_MIB"] * 2 ** 20 + tree <= pack["DEVICE_CARRY_MIB"] * 2 ** 20, (
        f"the repository's {tree / 2 ** 20:.1f} MiB and a {pack['PART_MIB']} MiB part exceed the "
        f"device tool's {pack['DEVICE_CARRY_MIB']} MiB a call: lower PART_MIB in scripts/gpu/pack_bundle.py")
