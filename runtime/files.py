"""The project's one way to write a file that readers may see while it is written.

A file is written next to its final name and renamed into place, so a reader
(or a run resumed after a kill) sees either the old file or the whole new one.
"""
import json
import os
from pathlib import Path


def write_text_atomic(path, text):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_json_atomic(path, data):
    return write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)
