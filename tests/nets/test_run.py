"""The generated nets run in real Caffe: one forward/backward in pycaffe at batch
2 on random input (every toy variant; a representative set on the full-size
face ResNet and VGG-16), the loss values equal independent formulas on the
net's own blobs, the deploy net reproduces the test net, and the toy net
trains under `caffe train` on a tiny LMDB.
"""
import os
import re
import subprocess

import numpy as np
import pytest
from google.protobuf import text_format

from data_prep.lmdb_io import write_lmdb
from nets import VARIANTS, deploy_net, phase_net, roles, train_val_net, write_experiment

BATCH = 2
RESNET_VARIANTS = ["l2h_s", "l2l2", "v_l2_cp", "w_l1_cp", "l2norm_adaptive", "dropout_l2_center"]
VGG_VARIANTS = ["l1h_d", "v_l1_cp", "dropout_l2_center"]
# Table 3's text: "the number of hidden units of 12 hidden layers in ResNet, i.e. 582,912".
PAPER_RESNET_HIDDEN_UNITS = 582912


def input_net(caffe, net_param, phase, path, side, batch=BATCH):
    """The phase's net with its Data layer replaced by an Input of (data, label)."""
    pb = caffe.proto.caffe_pb2
    selected = phase_net(net_param, phase)
    result = pb.NetParameter(name=selected.name)
    for layer in selected.layer:
        if layer.type == "Data":
            feed = result.layer.add(name="data", type="Input", top=["data", "label"])
            feed.input_param.shape.add(dim=[batch, 1, side, side])
            feed.input_param.shape.add(dim=[batch])
        else:
            result.layer.add().CopyFrom(layer)
    path.write_text(text_format.MessageToString(result))
    return caffe.Net(str(path), phase)


def feed(net, rng, num_classes):
    net.blobs["data"].data[...] = rng.integers(0, 256, net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = rng.integers(0, num_classes, net.blobs["label"].data.shape)


def flat(net, blob):
    return net.blobs[blob].data.reshape(BATCH, -1).astype(np.float64)


def check_losses(net, outputs, net_name, variant_name):
    """Every loss top against its formula on the blobs it should read."""
    variant = VARIANTS[variant_name]
    r = roles(net_name)
    assert all(np.isfinite(value).all() for value in outputs.values())
    logits, labels = flat(net, r.logits_blob), net.blobs["label"].data.astype(int)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert outputs["loss"] == pytest.approx(-log_softmax[np.arange(BATCH), labels].mean(), rel=1e-4)

    expected_tops = {"loss"}
    if variant.sparseness is not None:
        expected_tops.add("sparseness_loss")
        blobs = {"x": [r.x_blob], "zx": [r.z_blob, r.x_blob],
                 "hidden": list(r.hidden_blobs)}[variant.sparseness.where]
        coefficient = 1 / len(blobs) if variant.sparseness.divided else 1.0
        if variant.sparseness.p == 2:
            value = sum(0.5 * (flat(net, b) ** 2).sum() for b in blobs)
        else:
            value = sum(np.abs(flat(net, b)).sum() for b in blobs)
        assert outputs["sparseness_loss"] == pytest.approx(coefficient * value / BATCH, rel=1e-4)
    if variant.center:
        expected_tops.add("center_loss")
        centers = net.params[f"center_loss_{r.num_classes}cls"][0].data
        residual = flat(net, r.x_blob) - centers[labels]
        assert outputs["center_loss"] == pytest.approx(0.5 * (residual ** 2).sum() / BATCH,
                                                       rel=1e-4)
    assert set(outputs) == expected_tops
    if variant.l2norm is not None:
        norms = np.linalg.norm(flat(net, f"{r.x_blob}_norm"), axis=1)
        assert norms == pytest.approx([variant.l2norm.alpha] * BATCH, rel=1e-4)
    if variant.pruning is not None:
        layer = r.classifier_layer if variant.pruning.target == "W" else r.fc1_layer
        assert np.mean(net.params[layer][0].data == 0) == pytest.approx(0.3, abs=0.01)


def run_forward_backward(caffe, tmp_path, rng, net_name, variant):
    r = roles(net_name)
    net = input_net(caffe, train_val_net(net_name, variant), caffe.TRAIN, tmp_path / "net.prototxt",
                    r.input_size)
    feed(net, rng, r.num_classes)
    outputs = {name: float(value.ravel()[0]) for name, value in net.forward().items()}
    net.backward()
    check_losses(net, outputs, net_name, variant)
    for layer in (r.fc1_layer, r.classifier_layer):
        assert np.abs(net.params[layer][0].diff).sum() > 0, f"no gradient reaches {layer}"
    return net


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_toy_forward_backward(caffe, tmp_path, rng, variant):
    run_forward_backward(caffe, tmp_path, rng, "toy", variant)


@pytest.mark.parametrize("variant", RESNET_VARIANTS)
def test_face_resnet_forward_backward(caffe, tmp_path, rng, variant):
    net = run_forward_backward(caffe, tmp_path, rng, "resnet", variant)
    assert net.blobs["res5_6"].data.shape[1:] == roles("resnet").z_shape
    if variant == "l2h_s":
        units = sum(net.blobs[name].data[0].size for name in roles("resnet").hidden_blobs)
        assert units == PAPER_RESNET_HIDDEN_UNITS


@pytest.mark.parametrize("variant", VGG_VARIANTS)
def test_vgg_forward_backward(caffe, tmp_path, rng, variant):
    net = run_forward_backward(caffe, tmp_path, rng, "vgg", variant)
    assert net.blobs["pool5"].data.shape[1:] == (512, 7, 7)  # VGG-Face's fc6 fits
    assert net.blobs["data_3ch"].data.shape[1] == 3


@pytest.mark.parametrize("net_name, variants", [
    ("toy", sorted(VARIANTS)), ("resnet", ["l2_center", "v_l2_cp"])])
def test_deploy_net_reproduces_the_test_net(caffe, tmp_path, rng, net_name, variants):
    r = roles(net_name)
    for variant in variants:
        test_net = input_net(caffe, train_val_net(net_name, variant), caffe.TEST,
                             tmp_path / "test.prototxt", r.input_size, batch=1)
        feed(test_net, rng, r.num_classes)
        test_net.forward()
        weights = str(tmp_path / "weights.caffemodel")
        test_net.save(weights)
        (tmp_path / "deploy.prototxt").write_text(
            text_format.MessageToString(deploy_net(net_name, variant)))
        deploy = caffe.Net(str(tmp_path / "deploy.prototxt"), caffe.TEST, weights=weights)
        deploy.blobs["data"].data[...] = test_net.blobs["data"].data
        prob = deploy.forward()["prob"][0]
        logits = test_net.blobs[r.logits_blob].data[0].astype(np.float64)
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert prob == pytest.approx(expected, rel=1e-4, abs=1e-6), variant


def class_band_records(rng, n, num_classes, size=48):
    """Class c brightens its own band of rows: learnable by the toy net."""
    band = size // num_classes
    for i in range(n):
        label = i % num_classes
        image = rng.integers(0, 80, size=(size, size))
        image[label * band:(label + 1) * band, :] += 150
        yield f"{i:07d}_00", image.astype(np.uint8), label


def run_caffe_train(caffe_bin, solver_path, cwd):
    # import_caffe() quietens glog for pycaffe; the log is read here.
    return subprocess.run([str(caffe_bin), "train", "-solver", str(solver_path)],
                          capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0"))


def test_toy_net_trains_under_caffe_train(caffe_bin, tmp_path, rng):
    write_lmdb(tmp_path / "train_lmdb", class_band_records(rng, 120, 6))
    write_lmdb(tmp_path / "test_lmdb", class_band_records(rng, 30, 6))
    paths = write_experiment(tmp_path / "run", "toy", "l2_center", num_classes=6,
                             train_source=tmp_path / "train_lmdb",
                             test_source=tmp_path / "test_lmdb", batch_size=16,
                             test_batch_size=10, max_iter=80, test_interval=80,
                             display=1, average_loss=1, snapshot=0)
    proc = run_caffe_train(caffe_bin, paths["solver"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [float(v) for v in re.findall(r"Iteration \d+ .*?, loss = ([-+.\deE]+\d)", proc.stderr)]
    assert len(losses) >= 70, proc.stderr[-3000:]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.5 * first, losses
    assert (tmp_path / "run" / "toy_l2_center_iter_80.caffemodel").is_file()
    accuracy = re.findall(r"Test net output #\d+: accuracy = ([.\d]+)", proc.stderr)
    assert float(accuracy[-1]) > float(accuracy[0])


def test_an_lmdb_of_the_wrong_size_stops_caffe_instead_of_being_cropped(caffe_bin, tmp_path, rng):
    write_lmdb(tmp_path / "train_lmdb", class_band_records(rng, 12, 6, size=64))
    paths = write_experiment(tmp_path / "run", "toy", "softmax", num_classes=6,
                             train_source=tmp_path / "train_lmdb",
                             test_source=tmp_path / "train_lmdb", batch_size=4,
                             test_batch_size=4, max_iter=2)
    proc = run_caffe_train(caffe_bin, paths["solver"], tmp_path)
    assert proc.returncode != 0
    assert "Creating Layer input_is_1x48x48" in proc.stderr
    assert "output count must match input count" in proc.stderr
