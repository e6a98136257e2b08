"""Reading Caffe's text-format files (nets, solvers): the one prototxt reader of the project.

Every module that reads a ``.prototxt`` goes through ``read_net``,
``read_solver`` or ``read_prototxt``; a missing or malformed file raises
PrototxtError, which names the file and protobuf's own complaint (line and
column). Writing is nets.experiment's job.

The messages are caffe_pb2's: pycaffe's (``import_caffe().proto.caffe_pb2``)
by default, or the module a caller passes (runtime.preflight loads the
generated caffe_pb2.py alone, without libcaffe, to stay fast).
"""
from pathlib import Path

from google.protobuf import text_format

from runtime.caffe_env import import_caffe


class PrototxtError(ValueError):
    """A prototxt that cannot be read or parsed; ``path`` and ``reason`` say which and why."""

    def __init__(self, path, reason):
        self.path, self.reason = Path(path), reason
        super().__init__(f"error: {path} is not a readable Caffe prototxt ({reason})")


def read_prototxt(path, message):
    """Parse the text file ``path`` into ``message`` (an empty caffe_pb2 message); return it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PrototxtError(path, exc.strerror or str(exc)) from None
    except UnicodeDecodeError as exc:
        raise PrototxtError(path, f"not text: {exc}") from None
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise PrototxtError(path, str(exc)) from None


def read_net(path, caffe_pb2=None):
    """The NetParameter of the net prototxt ``path``."""
    caffe_pb2 = caffe_pb2 or import_caffe().proto.caffe_pb2
    return read_prototxt(path, caffe_pb2.NetParameter())


def read_solver(path, caffe_pb2=None):
    """The SolverParameter of the solver prototxt ``path``."""
    caffe_pb2 = caffe_pb2 or import_caffe().proto.caffe_pb2
    return read_prototxt(path, caffe_pb2.SolverParameter())
