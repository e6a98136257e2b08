"""Packs a Caffe install with what it loads into one archive for a bare GPU machine.

Called by scripts/gpu/build_bundle.sh (read it first). Run with Debian's
/usr/bin/python3 (only the standard library is used):

    python3 scripts/gpu/pack_bundle.py --caffe-prefix P --repo R --venv V --out DIR

1. Traces which third-party Python packages the GPU check imports, by running
   it here (pytest collection of the tests gpu_check.sh runs, and
   scripts/gpu/check_gpu.py --dry-run: a CUDA build cannot train without a
   GPU) with a sitecustomize that records every imported module and mapped
   library.
2. Copies into a staging folder: the Caffe install (bin/caffe, lib/, python/),
   Debian's python3.11 with its standard library, the traced packages (whole
   subpackages, so that lazily imported siblings come along), pytest from the
   venv, and every shared library those link that is not part of glibc,
   libstdc++ or the CUDA libraries the GPU machine provides.
3. Checks the staging folder is self-contained (each library resolves inside
   it or to the allowed system/CUDA set; the CPU smoke run passes from it), and
   writes DIR/fer-gpu-bundle.tar.xz.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

BUNDLE_NAME = "fer-gpu-bundle.tar.xz"
PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data",
               "config-3.11-x86_64-linux-gnu", "__pycache__", "site-packages", "dist-packages"}
# The GPU machine's own: glibc and the C++ runtime (newer there), and the CUDA
# libraries, which must match its driver.
SYSTEM_LIBS = re.compile(r"^(ld-linux-x86-64\.so\.2|lib(c|m|pthread|dl|rt|resolv|util)\.so\.\d+"
                         r"|libstdc\+\+\.so\.6|libgcc_s\.so\.1|linux-vdso\.so\.1)$")
CUDA_LIBS = re.compile(r"^lib(cuda|cublas|cublasLt|curand|cudnn\w*|nvrtc\w*|nvJitLink)\.so")
# Packages the tests and the check run through pytest: taken whole from the venv.
PYTEST_PACKAGES = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "py.py")
BUNDLE_BUDGET = 56 * 2 ** 20  # the device tool carries 64 MiB with the repo


def say(message):
    print(f"[pack-bundle] {message}", file=sys.stderr, flush=True)


def run_traced(command, env, trace_dir):
    env = dict(env, FER_TRACE_DIR=str(trace_dir))
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"traced command failed ({' '.join(map(str, command))}):\n"
                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def gpu_check_tests(repo):
    """The test files scripts/gpu_check.sh runs on the GPU."""
    tests = sorted((repo / "tests").glob("caffe_layers/test_*.py")) + [repo / "tests/runtime/test_caffe_env.py"]
    return [str(t) for t in tests if t.exists()]


def trace_imports(repo, caffe_prefix, venv_site, env):
    """Files of every module and library the check's Python processes loaded."""
    trace_dir = Path(tempfile.mkdtemp(prefix="fer-trace-"))
    work = Path(tempfile.mkdtemp(prefix="fer-trace-work-"))
    env = dict(env, PYTHONPATH=os.pathsep.join([
        str(repo / "scripts/gpu/trace"), str(repo), str(caffe_prefix / "python"), str(venv_site),
        str(repo / "scripts/gpu")]), FER_CAFFE_BIN=str(caffe_prefix / "bin/caffe"))
    say("tracing imports: pytest collection")
    run_traced([str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                "gpu_mode_plugin", "--collect-only", *gpu_check_tests(repo)], env, trace_dir)
    say("tracing imports: scripts/gpu/check_gpu.py --dry-run")
    run_traced([str(PYTHON), str(repo / "scripts/gpu/check_gpu.py"), "--caffe-bin",
                str(caffe_prefix / "bin/caffe"), "--work", str(work), "--dry-run"],
               env, trace_dir)
    files = set()
    for record in trace_dir.glob("*.txt"):
        files |= set(record.read_text().split("\n"))
    shutil.rmtree(trace_dir)
    shutil.rmtree(work)
    return {Path(f) for f in files if f}


def package_parts(files, site_dirs):
    """What to copy for the traced files under each site folder, as (site, path, recursive).

    six.py -> the module; numpy/__init__.py -> numpy's own files (not its
    subfolders); numpy/core/x.so -> all of numpy/core, so that modules a test
    imports lazily from an already imported subpackage come along.
    """
    parts = set()
    for file in files:
        for site in site_dirs:
            try:
                relative = file.relative_to(site)
            except ValueError:
                continue
            if len(relative.parts) == 1:
                parts.add((site, relative, False))
            elif len(relative.parts) == 2:
                parts.add((site, relative.parent, False))
            else:
                parts.add((site, Path(*relative.parts[:2]), True))
    return parts


def copy_part(source, destination, recursive):
    if source.is_file():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
    elif recursive:
        shutil.copytree(source, destination, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))
    else:
        destination.mkdir(parents=True, exist_ok=True)
        for entry in source.iterdir():
            if entry.is_file():
                shutil.copy2(entry, destination / entry.name)


def copy_python(stage, files, venv_site):
    py_root = stage / "python/usr"
    (py_root / "bin").mkdir(parents=True)
    shutil.copy2(PYTHON, py_root / "bin/python3.11")
    stdlib_ignore = shutil.ignore_patterns(*STDLIB_SKIP, "*.pyc")
    shutil.copytree(STDLIB, py_root / "lib/python3.11", ignore=stdlib_ignore, symlinks=False)
    dist = Path("/usr/lib/python3/dist-packages")
    targets = {dist: py_root / "lib/python3/dist-packages", venv_site: stage / "site"}
    for site, part, recursive in sorted(package_parts(files, list(targets))):
        copy_part(site / part, targets[site] / part, recursive)
    for name in PYTEST_PACKAGES:
        if (venv_site / name).exists():
            copy_part(venv_site / name, stage / "site" / name, True)
    # Data matplotlib reads at import time, which Debian keeps outside its folder.
    mpl = py_root / "lib/python3/dist-packages/matplotlib"
    mpl_data = Path("/usr/share/matplotlib/mpl-data")
    if mpl.exists() and mpl_data.exists() and not (mpl / "mpl-data").exists():
        shutil.copytree(mpl_data, mpl / "mpl-data")


def copy_caffe(stage, caffe_prefix):
    (stage / "caffe/bin").mkdir(parents=True)
    shutil.copy2(caffe_prefix / "bin/caffe", stage / "caffe/bin/caffe")
    shutil.copytree(caffe_prefix / "lib", stage / "caffe/lib", symlinks=True,
                    ignore=shutil.ignore_patterns("*.a"))
    shutil.copytree(caffe_prefix / "python", stage / "caffe/python", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))


def elf_files(stage):
    for path in stage.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    yield path


def ldd(path, env):
    proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        match = re.match(r"\s*(\S+) => (not found|(\S+) \(0x)", line)
        if match:
            yield match.group(1), match.group(3)


def copy_libraries(stage, env):
    """Copies every non-system, non-CUDA library the bundle's ELF files link into lib/."""
    lib = stage / "lib"
    lib.mkdir(exist_ok=True)
    env = dict(env, LD_LIBRARY_PATH=os.pathsep.join(
        [str(lib), str(stage / "caffe/lib"), env.get("LD_LIBRARY_PATH", "")]))
    pending = list(elf_files(stage))
    seen = set()
    while pending:
        for soname, resolved in ldd(pending.pop(), env):
            if soname in seen or SYSTEM_LIBS.match(soname) or CUDA_LIBS.match(soname):
                continue
            seen.add(soname)
            if resolved is None:
                sys.exit(f"{soname} is not found here; cannot bundle it")
            if Path(resolved).resolve().is_relative_to(stage.resolve()):
                continue
            shutil.copy2(Path(resolved).resolve(), lib / soname)
            pending.append(lib / soname)
    return len(seen)


def check_self_contained(stage, env):
    """Every library of every ELF file resolves in the bundle or to the allowed set."""
    env = dict(env, LD_LIBRARY_PATH=os.pathsep.join(
        [str(stage / "lib"), str(stage / "caffe/lib"), env.get("LD_LIBRARY_PATH", "")]))
    problems = []
    for path in elf_files(stage):
        for soname, resolved in ldd(path, env):
            inside = resolved and Path(resolved).resolve().is_relative_to(stage.resolve())
            if not (inside or SYSTEM_LIBS.match(soname) or CUDA_LIBS.match(soname)):
                problems.append(f"{path.relative_to(stage)}: {soname} -> {resolved}")
    if problems:
        sys.exit("bundle is not self-contained:\n" + "\n".join(problems[:40]))


def smoke_test(stage, repo, env):
    """The CPU check from the staging folder, with nothing from Debian's Python on the path."""
    work = Path(tempfile.mkdtemp(prefix="fer-smoke-"))
    env = dict(env, PYTHONHOME=str(stage / "python/usr"), PYTHONNOUSERSITE="1",
               PYTHONPATH=os.pathsep.join([str(repo), str(stage / "caffe/python"),
                                           str(stage / "site"), str(repo / "scripts/gpu")]),
               LD_LIBRARY_PATH=os.pathsep.join([str(stage / "lib"), str(stage / "caffe/lib"),
                                                env.get("LD_LIBRARY_PATH", "")]))
    python = stage / "python/usr/bin/python3.11"
    probe = ("import sys, caffe, numpy, pytest, caffe_layers.sparseness;"
             "bad = [p for p in sys.path if p.startswith('/usr/lib')];"
             "assert not bad, bad; print(sys.version.split()[0], numpy.__version__)")
    for command in ([str(python), "-c", probe],
                    [str(stage / "caffe/bin/caffe"), "--version"],
                    [str(python), str(repo / "scripts/gpu/check_gpu.py"), "--caffe-bin",
                     str(stage / "caffe/bin/caffe"), "--work", str(work), "--dry-run"]):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            sys.exit(f"smoke test from the bundle failed: {command}\n{proc.stderr[-4000:]}")
    shutil.rmtree(work)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caffe-prefix", required=True, type=Path)
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--venv", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    venv_site = next((args.venv / "lib").glob("python3*/site-packages"))
    env = dict(os.environ)
    files = trace_imports(args.repo, args.caffe_prefix, venv_site, env)
    stage = Path(tempfile.mkdtemp(prefix="fer-gpu-bundle-"))
    copy_caffe(stage, args.caffe_prefix)
    copy_python(stage, files, venv_site)
    count = copy_libraries(stage, env)
    say(f"{count} shared libraries resolved")
    check_self_contained(stage, env)
    smoke_test(stage, args.repo, env)
    args.out.mkdir(parents=True, exist_ok=True)
    archive = args.out / BUNDLE_NAME
    partial = archive.with_suffix(".partial")
    with tarfile.open(partial, "w:xz", preset=9) as tar:
        for entry in sorted(stage.iterdir()):
            tar.add(entry, arcname=entry.name)
    partial.replace(archive)
    shutil.rmtree(stage)
    size = archive.stat().st_size
    say(f"wrote {archive} ({size / 2 ** 20:.1f} MiB)")
    if size > BUNDLE_BUDGET:
        sys.exit(f"{archive} is {size / 2 ** 20:.1f} MiB, over the {BUNDLE_BUDGET / 2 ** 20:.0f} "
                 "MiB the device tool can carry beside the repo")


if __name__ == "__main__":
    main()
