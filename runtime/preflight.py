"""Pre-flight of ``caffe train -solver S``: one clear message instead of a Caffe crash.

    check_command(["train", "-solver", "prototxt/resnet_l2_solver.prototxt"]) -> notes

``.venv/bin/caffe`` (written by scripts/install.sh) runs tools/caffe_preflight.py,
the command line over this check, with its own arguments before the real caffe
whenever they hold the word ``train``. It reads the solver and its nets with
caffe_pb2 and, resolving relative paths against the working directory exactly
as Caffe does:
- creates the snapshot prefix's folder (Caffe stops with "Cannot write to
  snapshot prefix" otherwise);
- checks that every LMDB a Data layer reads exists, else raises PreflightError
  naming which one is missing and the data_prep command that creates it;
- announces the test pass Caffe runs before its first step (the solver's
  ``test_initialization``, true unless set), which is silent for minutes on a
  CPU for the committed solvers (3,600 PublicTest records for FER2013).
Anything it cannot judge (other commands, flags it does not know, unreadable
files) is left to Caffe, which reports those itself.
"""
import importlib.util
import re
from pathlib import Path

from runtime.prototxt import PrototxtError, read_prototxt

LMDB = 1          # caffe_pb2.DataParameter.LMDB
V1_DATA = 5       # caffe_pb2.V1LayerParameter.DATA
TRAIN, TEST = 0, 1


class PreflightError(RuntimeError):
    """The training would fail for a reason this check can name; the message says what to do."""


def load_caffe_pb2():
    """caffe's generated protobuf module, without importing pycaffe itself.

    ``import caffe`` loads libcaffe (most of a second); this check runs before
    every ``caffe train``, so only the generated caffe_pb2.py is loaded.
    """
    spec = importlib.util.find_spec("caffe")
    if spec is None or not spec.submodule_search_locations:
        raise PreflightError("pycaffe is not on the path; run `bash scripts/install.sh`")
    path = Path(list(spec.submodule_search_locations)[0]) / "proto" / "caffe_pb2.py"
    module_spec = importlib.util.spec_from_file_location("caffe.proto.caffe_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


# Flags of the caffe tool (tools/caffe.cpp) and of glog that take a value: in
# ``-flag value`` form the next word is that value, not the command.
VALUE_FLAGS = {"gpu", "solver", "model", "phase", "level", "stage", "snapshot", "weights",
               "iterations", "sigint_effect", "sighup_effect", "v", "log_dir", "minloglevel",
               "stderrthreshold", "vmodule", "flagfile"}


def caffe_command(argv):
    """The command word of a caffe command line (gflags allow flags before it), or None."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = "=" not in arg and arg.lstrip("-") in VALUE_FLAGS
        else:
            return arg
    return None


def solver_flag(argv):
    """The -solver value of a caffe command line (gflags: -solver X, --solver=X), or None."""
    for index, arg in enumerate(argv):
        match = re.fullmatch(r"--?solver(?:=(.*))?", arg)
        if match:
            if match.group(1) is not None:
                return match.group(1)
            return argv[index + 1] if index + 1 < len(argv) else None
    return None


def _parse(path, message, what):
    try:
        return read_prototxt(path, message)
    except PrototxtError as exc:
        raise PreflightError(f"cannot read the {what} {path}: {exc.reason}") from None


def snapshot_folder(solver_path, solver_param):
    """The folder Caffe writes snapshots into (Caffe's UpgradeSnapshotPrefixProperty)."""
    if not solver_param.HasField("snapshot_prefix"):
        return None  # Caffe uses the solver's own path without extension: its folder exists
    prefix = Path(solver_param.snapshot_prefix)
    if solver_param.snapshot_prefix.endswith("/"):
        return prefix
    return prefix.parent


def _nets(solver_path, solver_param, caffe_pb2):
    """[(description, NetParameter, phases)] of the nets Caffe builds for this solver."""
    testing = len(solver_param.test_iter) > 0
    nets = []

    def from_file(path, phases):
        nets.append((str(path), _parse(path, caffe_pb2.NetParameter(), "net"), phases))

    if solver_param.HasField("net"):
        from_file(solver_param.net, (TRAIN, TEST) if testing else (TRAIN,))
    if solver_param.HasField("net_param"):
        nets.append((f"{solver_path} (net_param)", solver_param.net_param,
                     (TRAIN, TEST) if testing else (TRAIN,)))
    if solver_param.HasField("train_net"):
        from_file(solver_param.train_net, (TRAIN,))
    if solver_param.HasField("train_net_param"):
        nets.append((f"{solver_path} (train_net_param)", solver_param.train_net_param, (TRAIN,)))
    for path in solver_param.test_net:
        from_file(path, (TEST,))
    for param in solver_param.test_net_param:
        nets.append((f"{solver_path} (test_net_param)", param, (TEST,)))
    return nets


def _layer_phases(layer):
    phases = {rule.phase for rule in layer.include if rule.HasField("phase")}
    return phases or {TRAIN, TEST}


def lmdb_sources(solver_path, solver_param, caffe_pb2):
    """[(where: "the TRAIN Data layer 'data' of net.prototxt", source)] of every LMDB
    the solver's nets read."""
    found = []
    for description, net_param, phases in _nets(solver_path, solver_param, caffe_pb2):
        for layer in net_param.layer:
            used = _layer_phases(layer) & set(phases)
            if layer.type == "Data" and layer.data_param.backend == LMDB and used:
                phase = "/".join(("TRAIN", "TEST")[p] for p in sorted(used))
                found.append((f"the {phase} Data layer {layer.name!r} of {description}",
                              layer.data_param.source))
        for layer in net_param.layers:  # V1 nets
            if layer.type == V1_DATA and layer.data_param.backend == LMDB:
                found.append((f"the Data layer {layer.name!r} of {description}",
                              layer.data_param.source))
    return found


def check_train(solver_path, caffe_pb2=None, prepare_command=None):
    """Create the snapshot folder; raise PreflightError naming every missing LMDB.

    ``prepare_command`` (LMDB path -> the command that prepares it, or None) is the
    prepared layout's owner's (data_prep.prepared.prepare_command, passed in by
    tools/caffe_preflight.py: runtime imports no other package).
    """
    caffe_pb2 = caffe_pb2 or load_caffe_pb2()
    solver_param = _parse(solver_path, caffe_pb2.SolverParameter(), "solver")
    missing, commands = [], []
    for where, source in lmdb_sources(solver_path, solver_param, caffe_pb2):
        # An LMDB is a folder holding data.mdb; Caffe's reader aborts on anything else.
        if not (Path(source) / "data.mdb").is_file():
            missing.append(f"  {source}  ({where})")
            command = prepare_command(source) if prepare_command else None
            if command and command not in commands:
                commands.append(command)
    if missing:
        if commands:
            how = ("Prepare the data first:\n" + "".join(f"    {c}\n" for c in commands) +
                   "(README.md, \"Preparing data\"; every option: docs/data.md)")
        else:
            how = "Prepare the data first with data_prep/prepare.py (README.md, \"Preparing data\")."
        raise PreflightError(
            f"{solver_path} reads data that does not exist (relative paths are resolved "
            f"against {Path.cwd()}, where caffe runs):\n" + "\n".join(missing) + f"\n{how}")
    folder = snapshot_folder(solver_path, solver_param)
    if folder is not None and str(folder) not in ("", "."):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PreflightError(f"cannot create the snapshot folder {folder} of {solver_path} "
                                 f"(snapshot_prefix {solver_param.snapshot_prefix!r}): {exc}")
    return folder


def initial_test_note(solver_path, caffe_pb2=None):
    """One sentence announcing the test pass Caffe runs before its first training step, or None
    when the solver runs none (no test nets, ``test_interval: 0`` or ``test_initialization: false``).
    """
    caffe_pb2 = caffe_pb2 or load_caffe_pb2()
    solver_param = _parse(solver_path, caffe_pb2.SolverParameter(), "solver")
    if not solver_param.test_iter or not solver_param.test_interval or not solver_param.test_initialization:
        return None
    test_nets = [(description, net) for description, net, phases in _nets(solver_path, solver_param, caffe_pb2)
                 if TEST in phases]
    parts, records = [], 0
    for test_iter, (description, net_param) in zip(solver_param.test_iter, test_nets):
        for layer in net_param.layer:
            if layer.type == "Data" and TEST in _layer_phases(layer):
                batch = layer.data_param.batch_size
                records += test_iter * batch
                parts.append(f"test_iter {test_iter} x batch_size {batch} of {layer.data_param.source}")
    if not parts:
        return None
    return (f"before its first training step Caffe tests the net on {records} records "
            f"({'; '.join(parts)}), with no output until it is done: minutes on a CPU for a large test "
            "set. Set test_initialization: false in the solver to start training at once.")


def check_command(argv, caffe_pb2=None, prepare_command=None):
    """Check a caffe command line before Caffe runs it; returns notes for the user (sentences).

    Only ``train`` with a ``-solver`` is checked. Raises PreflightError when the training would fail
    for a reason this check can name.
    """
    if caffe_command(argv) != "train":
        return []
    solver_path = solver_flag(argv)
    if not solver_path:
        return []  # caffe's own message for a missing -solver flag is clear
    if not Path(solver_path).is_file():
        raise PreflightError(f"the solver {solver_path} does not exist (relative paths are read "
                             f"from {Path.cwd()}; the committed solvers are in prototxt/ of the repo root)")
    caffe_pb2 = caffe_pb2 or load_caffe_pb2()
    check_train(solver_path, caffe_pb2, prepare_command)
    note = initial_test_note(solver_path, caffe_pb2)
    return [note] if note else []


if __name__ == "__main__":
    # .venv/bin/caffe wrappers written before the command moved run `python -m runtime.preflight`.
    from runtime.forward import run_tool_instead
    run_tool_instead("caffe_preflight.py")
