"""``caffe train`` in its own process, followed through its log; its snapshots checked.

A training may run in several segments (a killed training resumes from a
snapshot): each segment is appended to the same log after a header line
``# start iteration N: <command>``, and ``read_training_curve`` merges the
segments into one curve, the records a later segment redid replacing the
earlier ones.
"""
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from experiments.errors import ExperimentError
from experiments.running.caffe_log import ITER_LOSS, parse_caffe_log
from runtime.caffe_env import caffe_binary, check_caffe_binary, import_caffe


class CaffeTrainError(ExperimentError):
    """``caffe train`` failed or diverged; the message names the log."""

SEGMENT_HEADER = re.compile(r"^# start iteration (\d+): ", re.MULTILINE)


def run_caffe_train(solver_path, log_path, weights=None, snapshot=None, start_iteration=0,
                    gpu=None, progress=None):
    """Run ``caffe train`` in its own process, its output appended to ``log_path``.

    ``snapshot``: a .solverstate to resume from (``caffe train -snapshot``; Caffe
    refuses it together with ``weights``), taken at ``start_iteration``.
    ``progress(iteration, loss)`` is called as the log grows. A NaN loss or a
    non-zero exit raises SystemExit naming the log.
    """
    if weights and snapshot:
        raise ValueError("caffe train takes either weights (fine-tune) or a snapshot (resume)")
    caffe = caffe_binary()
    check_caffe_binary(caffe)
    cmd = [str(caffe), "train", "-solver", str(solver_path)]
    if weights:
        cmd += ["-weights", str(weights)]
    if snapshot:
        cmd += ["-snapshot", str(snapshot)]
    if gpu is not None:
        cmd += ["-gpu", str(gpu)]
    # The log is the training record: full INFO output whatever this process uses.
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0", PYTHONUNBUFFERED="1")
    log_path = Path(log_path)
    # A killed segment may have left half a line: the header starts on a line of its own.
    start = log_path.stat().st_size if log_path.is_file() else 0
    if start and not log_path.read_bytes().endswith(b"\n"):
        start = -1
    with open(log_path, "a") as log:
        log.write(("\n" if start < 0 else "") + f"# start iteration {start_iteration}: "
                  + " ".join(cmd) + "\n")
        log.flush()
        position = log.tell()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _follow(proc, log_path, position, progress)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise CaffeTrainError(f"caffe train failed (exit {proc.returncode}); log: {log_path}\n"
                              + "\n".join(tail))


def _follow(proc, log_path, position, progress):
    while True:
        done = proc.poll() is not None
        with open(log_path, "rb") as f:
            f.seek(position)
            chunk = f.read()
        # Only whole lines; a partial last line is read again next time.
        cut = chunk.rfind(b"\n") + 1
        position += cut
        for match in ITER_LOSS.finditer(chunk[:cut].decode(errors="replace")):
            iteration, loss = int(match.group(1)), float(match.group(2))
            if not np.isfinite(loss):
                proc.kill()
                proc.wait()
                raise CaffeTrainError(
                    f"training loss became {loss} at iteration {iteration}; log: {log_path}. "
                    "Lower the learning rate (--base-lr) or check the data.")
            if progress:
                progress(iteration, loss)
        if done:
            return
        time.sleep(0.5)


def log_segments(text):
    """[(start iteration, text)] of a training log; text before any header starts at 0."""
    headers = list(SEGMENT_HEADER.finditer(text))
    segments = []
    if not headers or headers[0].start() > 0:
        segments.append((0, text[:headers[0].start()] if headers else text))
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        segments.append((int(header.group(1)), text[header.start():end]))
    return [(start, body) for start, body in segments if body.strip()]


def read_training_curve(log_path):
    """The whole training curve of a log, segments merged (parse_caffe_log's format).

    A segment resumed at iteration N replaces whatever earlier segments logged
    from N on (the killed segment's iterations after its last snapshot were
    done again), so iterations stay strictly increasing.
    """
    merged = {"train": [], "lr": [], "test": []}
    for start, body in log_segments(Path(log_path).read_text(errors="replace")):
        parsed = parse_caffe_log(body)
        for key in merged:
            merged[key] = [record for record in merged[key] if record[0] < start] + parsed[key]
    return merged


def segment_starts(log_path):
    """Start iteration of every segment of a training log (0 first, then each resume)."""
    return [start for start, _ in log_segments(Path(log_path).read_text(errors="replace"))]


def _blob_shape(blob):
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return tuple(d for d in (blob.num, blob.channels, blob.height, blob.width))


def _blob_problem(blob, where):
    shape = _blob_shape(blob)
    values = len(blob.data) or len(blob.double_data)
    if values != int(np.prod(shape)):
        return f"{where} holds {values} values for shape {shape}"
    return None


def snapshot_problem(solverstate):
    """Why a Caffe snapshot (.solverstate + its .caffemodel) cannot be resumed; None if it can.

    Both files are parsed with caffe_pb2. Caffe writes the .caffemodel first,
    then the .solverstate, whose last field is current_step: a file cut short
    either fails to parse or lacks fields or values. The model's parameter
    blobs and the solver's history blobs must match one to one (SGD keeps one
    history blob per parameter blob; Adam-type solvers a multiple).
    """
    caffe_pb2 = import_caffe().proto.caffe_pb2
    solverstate = Path(solverstate)
    caffemodel = solverstate.with_suffix(".caffemodel")
    if not caffemodel.is_file():
        return f"{caffemodel.name} is missing"
    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(solverstate.read_bytes())
    except DecodeError as error:
        return f"{solverstate.name} does not parse ({error})"
    if not state.HasField("current_step") or not state.HasField("learned_net"):
        return f"{solverstate.name} is cut short (no current_step or learned_net)"
    expected = int(solverstate.stem.rsplit("_", 1)[-1])
    if state.iter != expected:
        return f"{solverstate.name} holds iteration {state.iter}"
    model = caffe_pb2.NetParameter()
    try:
        model.ParseFromString(caffemodel.read_bytes())
    except DecodeError as error:
        return f"{caffemodel.name} does not parse ({error})"
    shapes = []
    for layer in model.layer:
        for index, blob in enumerate(layer.blobs):
            problem = _blob_problem(blob, f"{caffemodel.name} layer {layer.name!r} blob {index}")
            if problem:
                return problem
            shapes.append(_blob_shape(blob))
    for index, blob in enumerate(state.history):
        problem = _blob_problem(blob, f"{solverstate.name} history blob {index}")
        if problem:
            return problem
    history = [_blob_shape(blob) for blob in state.history]
    if not shapes or len(history) % len(shapes) or any(
            shape != shapes[index % len(shapes)] for index, shape in enumerate(history)):
        return (f"{caffemodel.name} has {len(shapes)} parameter blobs, {solverstate.name} "
                f"{len(history)} history blobs that do not match them (one of them is cut short)")
    return None

