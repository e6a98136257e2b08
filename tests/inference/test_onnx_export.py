"""ONNX export: onnxruntime's softmax equals pycaffe's for every net and every forward-distinct variant.

Weights are random (Caffe's fillers for the shapes, then He-scaled weights,
random biases, PReLU slopes and learned alphas so that nothing is 0 or 1, and
a classifier scaled to logits of std ~3 so that the softmax is far from
uniform); inputs are generated faces (data_prep.synthetic).
"""
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from google.protobuf import text_format

from data_prep import synthetic
from data_prep.lmdb_io import read_lmdb
from data_prep.prepared import MANIFEST, PreparedDataset
from experiments.running.evaluation import predict_items
from experiments.running.run_folder import CONFIG, TRAINING, snapshot_path
from inference.onnx_export import (MANIFEST_KEYS_LEFT_OUT, OnnxExportError, caffe_pooled_size,
                                   export_onnx, read_metadata)
from inference.onnx_runtime import OnnxClassifier
from nets import deploy_net, file_names
from nets.catalog import NETS, VARIANTS
from runtime.caffe_env import REPO_ROOT
from runtime.files import write_json_atomic
from tests.prepared_fixture import CLASSES, build_prepared_dataset
from tools import crossval
from tools import export_onnx as export_tool

# One variant per distinct deploy forward pass (checked by test_representatives_cover_every_variant):
# plain softmax (= every loss-only variant), c.p. of W and of V, fixed alpha 2 and 0.5, learned
# alpha, NormFace (learned alpha and normalised class weights), dropout (+ center loss).
REPRESENTATIVES = ["softmax", "w_l2_cp", "v_l1_cp", "l2norm_a2", "l2norm_a05", "l2norm_adaptive",
                   "l2norm_normface",
                   "dropout_l2_center"]
# VGG at 72: every variant at a tenth of the cost, and pooling 9 -> 5 -> 3 exercises Caffe's ceil
# rounding; the committed 224 once. ResNet and the toy net at their committed sizes.
CASES = ([("toy", v, None, 8) for v in VARIANTS]
         + [("resnet", v, None, 2) for v in REPRESENTATIVES]
         + [("vgg", v, 72, 2) for v in REPRESENTATIVES]
         + [("vgg", "softmax", None, 2)])
TOLERANCE = 1e-4


def forward_key(net_param):
    """What determines a deploy net's forward pass: its layers less learning rates and penalties."""
    key = type(net_param)()
    key.CopyFrom(net_param)
    key.name = ""
    for layer in key.layer:
        del layer.param[:]
        if layer.type == "Python":
            params = json.loads(layer.python_param.param_str)
            for name in ("penalty", "penalty_weight", "name"):
                params.pop(name, None)
            layer.python_param.param_str = json.dumps(params, sort_keys=True)
    return key.SerializeToString()


def faces(count, size):
    images = [image for _, _, _, image, _ in synthetic.generate(subjects=1, expressions=6,
                                                                 images=2, size=size)]
    return np.stack(images[:count])[:, np.newaxis].astype(np.float32)


def layers_by_name(net_param):
    return {layer.name: layer for layer in net_param.layer}


def randomise(net, net_param, rng):
    """He-scaled weights, random biases, PReLU slopes in (0.05, 0.6), learned alphas in (1.5, 3)."""
    layers = layers_by_name(net_param)
    for name, blobs in net.params.items():
        layer = layers[name]
        if layer.type == "PReLU":
            blobs[0].data[...] = rng.uniform(0.05, 0.6, blobs[0].data.shape)
        elif layer.type == "Python" and layer.python_param.layer == "L2Normalize":
            blobs[0].data[...] = rng.uniform(1.5, 3.0)
        else:
            weights = blobs[0].data
            fan_in = int(np.prod(weights.shape[1:]))
            weights[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), weights.shape)
            for bias in blobs[1:]:
                bias.data[...] = rng.normal(0.0, 0.1, bias.data.shape)


def forward(net, batch):
    net.blobs["data"].reshape(*batch.shape)
    net.blobs["data"].data[...] = batch
    return net.forward()["prob"].copy()


def scale_classifier(net, net_param, batch):
    """Scale the layer feeding the Softmax so that its logits have std ~3 on ``batch``."""
    (softmax,) = [layer for layer in net_param.layer if layer.type == "Softmax"]
    logits = softmax.bottom[0]
    (classifier,) = [layer for layer in net_param.layer if logits in layer.top]
    forward(net, batch)
    factor = 3.0 / float(net.blobs[logits].data.std())
    if classifier.python_param.layer == "NormalizedInnerProduct":
        # Its logits ignore the weights' norm: scale the learned alpha of the L2Normalize before it.
        (norm,) = [layer for layer in net_param.layer if classifier.bottom[0] in layer.top]
        classifier = norm
    for blob in net.params[classifier.name]:
        blob.data[...] *= factor


def write_net(net_param, path):
    path.write_text(text_format.MessageToString(net_param))
    return path


def random_model(caffe, tmp_path, net_param, batch, seed=0):
    """(deploy path, caffemodel path) of ``net_param`` with random weights."""
    deploy = write_net(net_param, tmp_path / "deploy.prototxt")
    net = caffe.Net(str(deploy), caffe.TEST)
    randomise(net, net_param, np.random.default_rng(seed))
    scale_classifier(net, net_param, batch)
    weights = tmp_path / "random.caffemodel"
    net.save(str(weights))
    return deploy, weights


def caffe_probabilities(caffe, deploy, weights, batch):
    """pycaffe's softmax from a fresh net loaded from the files the export read."""
    return forward(caffe.Net(str(deploy), str(weights), caffe.TEST), batch)


def test_representatives_cover_every_variant():
    for net in NETS:
        tested = {forward_key(deploy_net(net, v)) for v in REPRESENTATIVES}
        for variant in VARIANTS:
            assert forward_key(deploy_net(net, variant)) in tested, (net, variant)
    # ... and no two representatives share a forward pass.
    assert len({forward_key(deploy_net("toy", v)) for v in REPRESENTATIVES}) == len(REPRESENTATIVES)


@pytest.mark.parametrize("net_name,variant,input_size,count", CASES,
                         ids=[f"{n}-{v}-{s or NETS[n].input_size}" for n, v, s, _ in CASES])
def test_onnxruntime_softmax_equals_pycaffe(caffe, tmp_path, net_name, variant, input_size, count):
    net_param = deploy_net(net_name, variant, input_size=input_size)
    size = input_size or NETS[net_name].input_size
    batch = faces(count, size)
    deploy, weights = random_model(caffe, tmp_path, net_param, batch)
    metadata = {"class_names": [f"c{i}" for i in range(NETS[net_name].num_classes)], "size": size}
    path = export_onnx(deploy, weights, tmp_path / "model.onnx", metadata)

    onnx.checker.check_model(str(path), full_check=True)
    assert read_metadata(path) == metadata
    classifier = OnnxClassifier(path)
    assert classifier.input_size == size
    assert classifier.class_names == metadata["class_names"]

    expected = caffe_probabilities(caffe, deploy, weights, batch)
    got = classifier.probabilities(batch)
    assert got.shape == expected.shape == (count, NETS[net_name].num_classes)
    assert got.dtype == np.float64
    assert np.abs(got - expected).max() < TOLERANCE
    # The comparison means something: confident, input-dependent softmax outputs.
    assert (expected.max(axis=1) - expected.min(axis=1)).min() > 0.1
    assert np.abs(expected[0] - expected[1]).max() > 1e-3
    # uint8 input (what an image reader gives) is the same input.
    assert np.array_equal(classifier.probabilities(batch.astype(np.uint8)), got)


def test_masked_inner_product_is_pruned_as_the_layer_does(caffe, tmp_path):
    """Weights saved before any forward are not pruned yet; the export masks them as the layer would."""
    net_param = deploy_net("toy", "v_l2_cp")
    batch = faces(8, 48)
    deploy = write_net(net_param, tmp_path / "deploy.prototxt")
    net = caffe.Net(str(deploy), caffe.TEST)
    randomise(net, net_param, np.random.default_rng(1))
    weights = tmp_path / "unpruned.caffemodel"
    net.save(str(weights))
    assert np.count_nonzero(net.params["fc1"][0].data == 0) == 0
    path = export_onnx(deploy, weights, tmp_path / "model.onnx")
    expected = caffe_probabilities(caffe, deploy, weights, batch)
    assert np.abs(OnnxClassifier(path).probabilities(batch) - expected).max() < TOLERANCE
    model = onnx.load(str(path))
    (fc1,) = [t for t in model.graph.initializer if t.name == "fc1/W"]
    pruned = np.count_nonzero(onnx.numpy_helper.to_array(fc1) == 0)
    assert pruned == round(0.3 * net.params["fc1"][0].data.size)


POOLING_NET = """
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 2 dim: {size} dim: {size} }} }} }}
layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool"
        pooling_param {{ pool: {pool} kernel_size: {kernel} pad: {pad} stride: {stride} }} }}
"""


@pytest.mark.parametrize("pool,size,kernel,pad,stride", [
    ("MAX", 9, 2, 0, 2), ("MAX", 7, 3, 1, 2), ("MAX", 6, 3, 1, 2), ("MAX", 10, 3, 1, 3),
    ("MAX", 5, 3, 0, 1), ("AVE", 8, 2, 0, 2), ("AVE", 7, 3, 1, 2)])
def test_pooling_matches_caffe_rounding_and_padding(caffe, tmp_path, pool, size, kernel, pad, stride):
    deploy = tmp_path / "pool.prototxt"
    deploy.write_text(POOLING_NET.format(pool=pool, size=size, kernel=kernel, pad=pad, stride=stride))
    net = caffe.Net(str(deploy), caffe.TEST)
    weights = tmp_path / "none.caffemodel"
    net.save(str(weights))
    pooled = net.blobs["pool"].data.shape[2]
    assert caffe_pooled_size(size, kernel, pad, stride) == pooled
    batch = np.random.default_rng(size).normal(size=(3, 2, size, size)).astype(np.float32)
    net.blobs["data"].reshape(*batch.shape)
    net.blobs["data"].data[...] = batch
    expected = net.forward()["pool"]
    path = export_onnx(deploy, weights, tmp_path / "pool.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"data": batch})
    assert got.shape == expected.shape == (3, 2, pooled, pooled)
    assert np.abs(got - expected).max() < 1e-6


def toy_with_extra_layer(layer_text):
    net_param = deploy_net("toy", "softmax")
    extra = type(net_param.layer[0])()
    text_format.Merge(layer_text, extra)
    net_param.layer.insert(len(net_param.layer) - 1, extra)
    return net_param


@pytest.mark.parametrize("layer_text,message", [
    ('name: "odd_norm" type: "LRN" bottom: "fc1" top: "fc1"', "layer 'odd_norm' has type LRN"),
    ('name: "sparsity" type: "Python" bottom: "fc1" top: "sparsity_loss" '
     'python_param { module: "caffe_layers.sparseness" layer: "FeatureSparsenessLoss" }',
     "layer 'sparsity' (Python caffe_layers.sparseness.FeatureSparsenessLoss) is a training-only"),
    ('name: "accuracy" type: "Accuracy" bottom: "fc2_6cls" bottom: "fc1" top: "accuracy"',
     "layer 'accuracy' (Accuracy) is a training-only"),
])
def test_unsupported_or_training_layer_is_named(tmp_path, layer_text, message):
    deploy = write_net(toy_with_extra_layer(layer_text), tmp_path / "deploy.prototxt")
    with pytest.raises(OnnxExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export_onnx(deploy, tmp_path / "not_read.caffemodel", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_train_val_net_is_refused(tmp_path):
    with pytest.raises(OnnxExportError, match="layer 'data' \\(Data\\) is a training-only layer"):
        export_onnx(REPO_ROOT / "prototxt" / "resnet_softmax_train_val.prototxt",
                    tmp_path / "none.caffemodel", tmp_path / "model.onnx")


def test_caffemodel_of_another_net_is_refused(caffe, tmp_path):
    seven = write_net(deploy_net("toy", "softmax", num_classes=7), tmp_path / "seven.prototxt")
    weights = tmp_path / "seven.caffemodel"
    caffe.Net(str(seven), caffe.TEST).save(str(weights))
    six = write_net(deploy_net("toy", "softmax"), tmp_path / "six.prototxt")
    with pytest.raises(OnnxExportError, match="no weights for layer 'fc2_6cls'"):
        export_onnx(six, weights, tmp_path / "model.onnx")
    with pytest.raises(OnnxExportError, match="caffemodel .*missing.caffemodel does not exist"):
        export_onnx(six, tmp_path / "missing.caffemodel", tmp_path / "model.onnx")


@pytest.fixture
def toy_model(caffe, tmp_path):
    net_param = deploy_net("toy", "l2norm_adaptive")
    batch = faces(6, 48)
    deploy, weights = random_model(caffe, tmp_path, net_param, batch, seed=3)
    return deploy, weights, batch


def test_runtime_works_without_caffe(caffe, tmp_path, toy_model):
    deploy, weights, batch = toy_model
    path = export_onnx(deploy, weights, tmp_path / "toy.onnx")
    np.save(tmp_path / "batch.npy", batch)
    # sys.modules["caffe"] = None makes every `import caffe` fail, as on a machine without Caffe.
    code = ("import sys, json; sys.modules['caffe'] = None\n"
            "import numpy as np\n"
            "from inference.onnx_runtime import OnnxClassifier\n"
            "c = OnnxClassifier(sys.argv[1])\n"
            "p = c.probabilities(np.load(sys.argv[2]))\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('caffe', 'caffe_layers', 'nets', 'experiments') and sys.modules[m] is not None)\n"
            "print(json.dumps({'p': p.tolist(), 'size': c.input_size, 'names': c.class_names, "
            "'loaded': loaded}))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "batch.npy")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["loaded"] == []
    assert result["size"] == 48 and result["names"] is None
    expected = caffe_probabilities(caffe, deploy, weights, batch)
    assert np.abs(np.array(result["p"]) - expected).max() < TOLERANCE


def test_classifier_rejects_wrong_batches(tmp_path, toy_model):
    deploy, weights, _ = toy_model
    classifier = OnnxClassifier(export_onnx(deploy, weights, tmp_path / "toy.onnx"))
    with pytest.raises(ValueError, match=r"batch has shape \(2, 1, 40, 40\).*\(N, 1, 48, 48\)"):
        classifier.probabilities(np.zeros((2, 1, 40, 40), np.float32))
    with pytest.raises(ValueError, match="dtype float64"):
        classifier.probabilities(np.zeros((2, 1, 48, 48)))


def make_run(tmp_path, deploy, weights):
    """A crossval run folder as experiments/ writes it, for a toy l2norm_adaptive model."""
    data = tmp_path / "prepared"
    data.mkdir()
    manifest = {"dataset": "synthetic-48", "classes": ["An", "Di", "Fe", "Ha", "Sa", "Su"],
                "num_classes": 6, "image_size": 48, "crops": {"train": 10, "test": 10},
                "template": {"eye_distance": 0.4}, "gray_normalisation": "in-net",
                "splits": {"fold_00": {"train": 100}}, "counts": {"An": 10}, "skipped": [{"path": "x"}],
                "fallbacks": [], "duplicates": [["a.png", "b.png"]]}
    write_json_atomic(data / MANIFEST, manifest)
    run = tmp_path / "runs" / "synthetic-48_toy_l2norm_adaptive"
    fold = run / "fold_00"
    fold.mkdir(parents=True)
    config = {"tool": "crossval", "data": str(data), "dataset": "synthetic-48", "num_classes": 6,
              "image_size": 48, "net": "toy", "variant": "l2norm_adaptive", "iters": 5}
    write_json_atomic(run / CONFIG, config)
    (run / "fold_01").mkdir()  # an interrupted fold: no training.json
    (fold / file_names("toy", "l2norm_adaptive")["deploy"]).write_text(deploy.read_text())
    snapshot_path(fold, 5).write_bytes(weights.read_bytes())
    write_json_atomic(fold / TRAINING, {"iterations": 5})
    return run, config, manifest


def test_export_tool_on_a_run_folder(caffe, tmp_path, toy_model, capsys):
    deploy, weights, batch = toy_model
    run, config, manifest = make_run(tmp_path, deploy, weights)
    out = export_tool.main(["--model", str(run), "--out", str(tmp_path / "run.onnx")])
    assert "wrote" in capsys.readouterr().out
    metadata = read_metadata(out)
    assert metadata["run"]["config"] == config
    assert metadata["run"]["fold"] == "fold_00"
    assert metadata["run"]["weights"] == "snapshot_iter_5.caffemodel"
    assert metadata["manifest"] == {k: v for k, v in manifest.items() if k not in MANIFEST_KEYS_LEFT_OUT}
    assert metadata["manifest"]["template"]
    assert not {"splits", "skipped", "duplicates"} & set(metadata["manifest"])
    classifier = OnnxClassifier(out)
    assert classifier.class_names == manifest["classes"]
    expected = caffe_probabilities(caffe, deploy, weights, batch)
    assert np.abs(classifier.probabilities(batch) - expected).max() < TOLERANCE

    with pytest.raises(SystemExit, match="fold_01 has no finished training.*one of: fold_00"):
        export_tool.main(["--model", str(run), "--fold", "fold_01", "--out", str(tmp_path / "x.onnx")])
    assert not (tmp_path / "x.onnx").exists()
    # a fold folder names its model as the run folder and --fold do (run_folder.trained_model)
    from_fold = export_tool.main(["--model", str(run / "fold_00"), "--out", str(tmp_path / "fold.onnx")])
    assert read_metadata(from_fold) == metadata
    # the old spelling still works and says what replaced it
    capsys.readouterr()
    old = export_tool.main(["--run", str(run), "--out", str(tmp_path / "old.onnx")])
    assert read_metadata(old) == metadata
    assert "warning: --run is now --model" in capsys.readouterr().err


def test_export_tool_on_deploy_and_weights(tmp_path, toy_model, capsys):
    deploy, weights, batch = toy_model
    out = export_tool.main(["--model", str(deploy), "--weights", str(weights),
                            "--out", str(tmp_path / "sub" / "toy.onnx")])
    assert read_metadata(out) == {}
    assert OnnxClassifier(out).probabilities(batch).shape == (6, 6)
    with pytest.raises(SystemExit):
        export_tool.main(["--model", str(deploy), "--out", str(tmp_path / "y.onnx")])
    assert "a deploy prototxt needs --weights CAFFEMODEL" in capsys.readouterr().err
    old = export_tool.main(["--deploy", str(deploy), "--weights", str(weights), "--out", str(tmp_path / "o.onnx")])
    assert read_metadata(old) == {} and "warning: --deploy is now --model" in capsys.readouterr().err


@pytest.mark.slow
def test_export_of_a_trained_run_reproduces_its_predictions(tmp_path):
    """A real tiny crossval run (caffe train, learned alpha): the ONNX model, fed the fold's test
    LMDB and averaged over crops as evaluation does, gives the run's predictions.json."""
    prepared = build_prepared_dataset(tmp_path / "tiny")
    crossval.main(["--data", str(prepared), "--net", "toy", "--variant", "l2norm_adaptive",
                   "--runs-dir", str(tmp_path / "runs"), "--folds", "1", "--iters", "40",
                   "--batch-size", "16", "--base-lr", "0.01"])
    run = tmp_path / "runs" / "tiny_toy_l2norm_adaptive"
    out = export_tool.main(["--model", str(run), "--out", str(tmp_path / "tiny.onnx")])
    classifier = OnnxClassifier(out)
    assert classifier.class_names == list(CLASSES)
    keys, images, labels = zip(*read_lmdb(PreparedDataset.open(prepared).lmdb("fold_00", "test")))
    items = predict_items(list(keys), classifier.probabilities(np.stack(images)), np.array(labels))
    predictions = json.loads((run / "fold_00" / "predictions.json").read_text())
    assert len(predictions) == len(items) > 0
    for expected in predictions:
        probabilities, label = items[expected["item"]]
        assert label == expected["label"]
        assert np.abs(probabilities - expected["probabilities"]).max() < 1e-5
        assert int(np.argmax(probabilities)) == expected["prediction"]
