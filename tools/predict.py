"""Scores of a trained net on a test LMDB, and per-image predictions.

The TEST phase of the fold's own train_val net is run in pycaffe, so the test
images get exactly the transform (scale, mean, no mirroring) the net was
trained with. Its Data layer reads the LMDB in key order; the last batch wraps
around to the start, and the wrapped records are dropped.

An image with several crops is predicted by the mean of the softmax over its
crops (test keys are "{item:07d}_{crop:02d}"), then the arg-max.
"""
from pathlib import Path

import lmdb
import numpy as np
from google.protobuf import text_format

from runtime.caffe_env import import_caffe


def lmdb_keys(path):
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return [key.decode("ascii") for key in txn.cursor().iternext(keys=True, values=False)]
    finally:
        env.close()


def _test_data_layer(net_param):
    for layer in net_param.layer:
        in_test = (not layer.include) or any(rule.phase == 1 for rule in layer.include)
        if layer.type == "Data" and in_test:
            return layer
    raise ValueError("the net has no TEST-phase Data layer")


def _logits_blob(net_param):
    for layer in net_param.layer:
        if layer.type == "SoftmaxWithLoss":
            return layer.bottom[0]
    raise ValueError("the net has no SoftmaxWithLoss layer whose input is the logits")


def net_with_test_source(net_path, source, out_path):
    """Copy of a train/val net whose TEST Data layer reads ``source`` (for cross-database tests)."""
    caffe_pb2 = import_caffe().proto.caffe_pb2
    net_param = text_format.Parse(Path(net_path).read_text(), caffe_pb2.NetParameter())
    _test_data_layer(net_param).data_param.source = str(source)
    Path(out_path).write_text(text_format.MessageToString(net_param))
    return Path(out_path)


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def predict_records(net_path, weights, gpu=None):
    """Softmax scores and labels of every record of the net's TEST LMDB, in key order.

    Returns (keys, probabilities (N, K), labels (N,)).
    """
    caffe = import_caffe()
    caffe_pb2 = caffe.proto.caffe_pb2
    net_param = text_format.Parse(Path(net_path).read_text(), caffe_pb2.NetParameter())
    data_layer = _test_data_layer(net_param)
    logits_name = _logits_blob(net_param)
    keys = lmdb_keys(data_layer.data_param.source)
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(int(gpu))
        caffe.set_mode_gpu()
    net = caffe.Net(str(net_path), caffe.TEST, weights=str(weights))
    batch = net.blobs["data"].num
    probabilities, labels = [], []
    for _ in range(-(-len(keys) // batch)):
        net.forward()
        probabilities.append(softmax(net.blobs[logits_name].data.reshape(batch, -1).astype(np.float64)))
        labels.append(net.blobs["label"].data.reshape(batch).astype(np.int64))
    probabilities = np.concatenate(probabilities)[:len(keys)]
    labels = np.concatenate(labels)[:len(keys)]
    return keys, probabilities, labels


def predict_items(keys, probabilities, labels):
    """Average the crops of each image: returns dict item -> (mean probabilities, label)."""
    items = np.array([int(key.split("_")[0]) for key in keys])
    order = np.argsort(items, kind="stable")
    items, probabilities, labels = items[order], probabilities[order], labels[order]
    unique, starts, counts = np.unique(items, return_index=True, return_counts=True)
    sums = np.add.reduceat(probabilities, starts, axis=0)
    means = sums / counts[:, None]
    first_labels = labels[starts]
    for item, start, count in zip(unique, starts, counts):
        if np.any(labels[start:start + count] != labels[start]):
            raise ValueError(f"the crops of test item {item} carry different labels")
    return {int(item): (mean, int(label)) for item, mean, label in zip(unique, means, first_labels)}
