"""The base of experiments' typed errors.

Each module that can refuse or stop a run defines its own error class derived
from ``ExperimentError`` (``RunFolderError`` in running/run_folder.py,
``CaffeTrainError`` in running/caffe_train.py, ...). The message says what is
wrong and what to do, in words rather than flags: tools/ turns the error into
"<tool>: error: <message>" and exit status 1.
"""


class ExperimentError(Exception):
    """A run cannot go on; the message names the file or value and the fix."""
