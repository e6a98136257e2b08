"""Scores of a trained net on a test LMDB, and per-image predictions.

The TEST phase of the fold's own train_val net is run in pycaffe, so the test
images get exactly the transform (scale, mean, no mirroring) the net was
trained with. Its Data layer reads the LMDB in key order; the last batch wraps
around to the start, and the wrapped records are dropped.

An image with several crops is predicted by the mean of the softmax over its
crops, then the arg-max.
"""
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from data_prep.lmdb_io import lmdb_keys
from data_prep.prepared import parse_key
from experiments.errors import ExperimentError
from experiments.analysis import metrics
from experiments.running.run_folder import PREDICTIONS, RESULT
from nets.blocks import TEST
from nets.build import phase_net
from runtime.caffe_env import import_caffe
from runtime.files import read_json, write_json_atomic
from runtime.prototxt import read_net


class EvaluationError(ExperimentError):
    """A test LMDB that does not match its prepared dataset's item list."""


def _test_data_layer(net_param):
    """The Data layer Caffe runs in the TEST phase (nets.build.phase_net owns the phase rules)."""
    caffe_pb2 = import_caffe().proto.caffe_pb2
    for layer in net_param.layer:
        if layer.type != "Data":
            continue
        alone = caffe_pb2.NetParameter()
        alone.layer.add().CopyFrom(layer)
        if phase_net(alone, TEST).layer:
            return layer
    raise ValueError("the net has no TEST-phase Data layer")


def test_source(net_path):
    """The LMDB a train/val net's TEST phase reads."""
    return Path(_test_data_layer(read_net(net_path)).data_param.source)


def _logits_blob(net_param):
    for layer in net_param.layer:
        if layer.type == "SoftmaxWithLoss":
            return layer.bottom[0]
    raise ValueError("the net has no SoftmaxWithLoss layer whose input is the logits")


def net_with_test_source(net_path, source, out_path):
    """Copy of a train/val net whose TEST Data layer reads ``source`` (for cross-database tests)."""
    net_param = read_net(net_path)
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
    net_param = read_net(net_path)
    keys = lmdb_keys(_test_data_layer(net_param).data_param.source)
    logits_name = _logits_blob(net_param)
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
    items = np.array([parse_key(key)[0] for key in keys])
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


def unit_result(predictions, num_classes, scored):
    """result.json's unit-level figures from predictions that carry a ``unit``."""
    _, labels, means, _ = metrics.decide_units([p["unit"] for p in predictions],
                                               [p["label"] for p in predictions],
                                               [p["probabilities"] for p in predictions])
    decisions = scored[np.argmax(means[:, scored], axis=1)]
    cm = metrics.confusion_matrix(labels, decisions, num_classes)
    return {"test_units": int(len(labels)), "unit_accuracy": metrics.accuracy(cm),
            "unit_confusion": cm.tolist()}


def evaluate(out_dir, net_path, snapshot, test_items_path, num_classes, gpu=None, extra=None,
             units=None, scored_classes=None):
    """Test ``snapshot`` on the TEST LMDB of ``net_path``; writes predictions.json, result.json.

    An image's prediction is the arg-max of the mean softmax over its crops.
    ``units`` ({item: unit name}, data_prep.prepared.PreparedDataset.decision_units)
    adds one decision per unit -- the arg-max of the mean over its images -- as
    result.json's ``unit_accuracy``, ``unit_confusion`` and ``test_units``, and
    each prediction's ``unit``. ``scored_classes`` (the model's class indices
    the test database has) restricts every arg-max to them: a seven-class model
    tested on a six-class database is not marked wrong for answering neutral
    (recorded as result.json's ``scored_classes``); None scores every class.
    """
    keys, probabilities, labels = predict_records(net_path, snapshot, gpu=gpu)
    per_item = predict_items(keys, probabilities, labels)
    scored = np.arange(num_classes) if scored_classes is None else np.asarray(sorted(scored_classes))
    test_items = {entry["item"]: entry for entry in read_json(test_items_path)}
    predictions = []
    for item, (mean_probs, label) in sorted(per_item.items()):
        entry = test_items.get(item)
        if entry is None or entry["label"] != label:
            raise EvaluationError(f"test item {item} of {net_path}'s test LMDB does not match "
                                  f"{test_items_path}")
        predictions.append({"item": item, "label": label, "subject": entry["subject"],
                            "source": entry["source"], "probabilities": mean_probs.tolist(),
                            "prediction": int(scored[np.argmax(mean_probs[scored])])})
        if units is not None:
            predictions[-1]["unit"] = units[item]
    if len(predictions) != len(test_items):
        raise EvaluationError(f"the test LMDB holds {len(predictions)} images but "
                              f"{test_items_path} lists {len(test_items)}; the prepared dataset is "
                              "inconsistent: prepare it again")
    write_json_atomic(Path(out_dir) / PREDICTIONS, predictions)
    cm = metrics.confusion_matrix([p["label"] for p in predictions],
                                  [p["prediction"] for p in predictions], num_classes)
    result = metrics.summary(cm)
    result.update({"test_images": len(predictions), "test_records": len(keys),
                   "snapshot": Path(snapshot).name, **(extra or {})})
    if units is not None:
        result.update(unit_result(predictions, num_classes, scored))
    if scored_classes is not None:
        result["scored_classes"] = scored.tolist()
    write_json_atomic(Path(out_dir) / RESULT, result)
    return result
