"""Atomic LMDB writing and reading of Caffe Datum records.

An LMDB is written into a temporary sibling folder and renamed into place only
when every record is committed, so an interrupted write never leaves a
half-written database under the final name.
"""
import os
import shutil
from pathlib import Path

import lmdb
import numpy as np

from runtime.caffe_env import import_caffe

_MAP_SIZE = 1 << 40  # sparse file: only the pages written take disk space


def image_to_datum(image, label):
    """uint8 image (H, W) or (C, H, W) and int label -> caffe_pb2.Datum."""
    caffe_pb2 = import_caffe().proto.caffe_pb2
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"Datum images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[np.newaxis]
    if image.ndim != 3:
        raise ValueError(f"Datum images must be (H, W) or (C, H, W), got shape {image.shape}")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = image.shape
    datum.data = np.ascontiguousarray(image).tobytes()
    datum.label = int(label)
    return datum


def datum_to_image(datum):
    """caffe_pb2.Datum -> (uint8 array (C, H, W), label)."""
    image = np.frombuffer(datum.data, dtype=np.uint8)
    return image.reshape(datum.channels, datum.height, datum.width), datum.label


def write_lmdb(path, records, commit_every=1000):
    """Write ``(key, image, label)`` records to a new LMDB at ``path``, atomically.

    Keys are str; they are stored in the given order (use zero-padded keys so
    that LMDB's sorted order is the intended one). Returns the record count.
    Raises FileExistsError if ``path`` exists: nothing is ever overwritten.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; remove it or choose another output folder")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    count = 0
    env = lmdb.open(str(tmp), map_size=_MAP_SIZE, subdir=True, meminit=False)
    try:
        txn = env.begin(write=True)
        for key, image, label in records:
            if not txn.put(key.encode("ascii"), image_to_datum(image, label).SerializeToString(),
                           overwrite=False):
                raise KeyError(f"duplicate LMDB key {key!r} while writing {path}; keys must be unique")
            count += 1
            if count % commit_every == 0:
                txn.commit()
                txn = env.begin(write=True)
        txn.commit()
        env.sync()
    except BaseException:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    env.close()
    os.replace(tmp, path)
    return count


def _open_readonly(path):
    path = Path(path)
    if not (path / "data.mdb").is_file():
        raise FileNotFoundError(f"{path} is not an LMDB (no data.mdb)")
    return lmdb.open(str(path), readonly=True, lock=False)


def lmdb_keys(path):
    """The keys of the LMDB at ``path``, in LMDB's (sorted) order."""
    env = _open_readonly(path)
    try:
        with env.begin() as txn:
            return [key.decode("ascii") for key in txn.cursor().iternext(keys=True, values=False)]
    finally:
        env.close()


def lmdb_record_count(path):
    env = _open_readonly(path)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def read_lmdb(path):
    """Yield ``(key, image (C, H, W) uint8, label)`` from the LMDB at ``path``, in key order."""
    caffe_pb2 = import_caffe().proto.caffe_pb2
    env = _open_readonly(path)
    try:
        with env.begin() as txn:
            for key, value in txn.cursor():
                datum = caffe_pb2.Datum()
                datum.ParseFromString(value)
                image, label = datum_to_image(datum)
                yield key.decode("ascii"), image, label
    finally:
        env.close()
