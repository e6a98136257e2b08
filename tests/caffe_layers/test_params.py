"""Bad input to every layer: param_str errors, wrong blob counts, NaN/Inf bottoms; maths without caffe."""
import json
import subprocess
import sys

import numpy as np
import pytest

from caffe_layers.params import LayerInputError, LayerParamError, NonFiniteInputError
from tests.layer_gradcheck import fill_inputs, input_layer, make_net, python_layer

# module, class, bottoms, the smallest valid params
LAYERS = {
    "FeatureSparsenessLoss": ("sparseness", ["x"], {}),
    "CenterLoss": ("center_loss", ["x", "label"], {"num_classes": 3}),
    "L2Normalize": ("l2_norm", ["x"], {}),
    "MaskedInnerProduct": ("pruning", ["x"], {"num_output": 2}),
}

BAD_PARAMS = [
    ("FeatureSparsenessLoss", {"q": 2}, r"unknown key\(s\) 'q'; valid keys are .*'coefficients'"),
    ("FeatureSparsenessLoss", {"p": 3}, r"key 'p' has the invalid value 3; expected 1 or 2"),
    ("FeatureSparsenessLoss", {"p": "2"}, r"key 'p' must be an integer, got '2' \(str\)"),
    ("FeatureSparsenessLoss", {"p": 2.0}, r"key 'p' must be an integer"),
    ("FeatureSparsenessLoss", {"coefficients": [1, 2]}, r"'coefficients' has 2 entries but the layer has 1"),
    ("FeatureSparsenessLoss", {"coefficients": 1.0}, r"key 'coefficients' must be a list of numbers"),
    ("FeatureSparsenessLoss", {"coefficients": [-1]}, r"key 'coefficients' has the invalid value"),
    ("FeatureSparsenessLoss", {"normalize": "mean"}, r"key 'normalize' .*expected \"batch\" or \"none\""),
    ("CenterLoss", {"num_classes": None}, r"key 'num_classes' must be an integer, got None"),
    ("CenterLoss", {"num_classes": 0}, r"key 'num_classes' has the invalid value 0"),
    ("CenterLoss", {"num_classes": 7.5}, r"key 'num_classes' must be an integer"),
    ("CenterLoss", {"num_classes": 3, "center_filler_std": -1}, r"key 'center_filler_std'"),
    ("CenterLoss", {"num_classes": 3, "alpha": 0.5}, r"unknown key\(s\) 'alpha'"),
    ("L2Normalize", {"alpha": 0}, r"key 'alpha' has the invalid value 0.0"),
    ("L2Normalize", {"alpha": float("nan")}, r"key 'alpha' must be finite"),
    ("L2Normalize", {"learn_alpha": "yes"}, r"key 'learn_alpha' must be true or false"),
    ("L2Normalize", {"eps": -1e-3}, r"key 'eps' has the invalid value"),
    ("MaskedInnerProduct", {"num_output": 2, "prune_ratio": 1.0}, r"key 'prune_ratio' .*\[0, 1\)"),
    ("MaskedInnerProduct", {"num_output": 2, "penalty": "L2"}, r"key 'penalty' has the invalid value 'L2'"),
    ("MaskedInnerProduct", {"num_output": 2, "bias_term": 1}, r"key 'bias_term' must be true or false"),
    ("MaskedInnerProduct", {"num_output": 2, "weight_filler": "msra"}, r"key 'weight_filler'"),
    ("MaskedInnerProduct", {"num_output": 2, "name": 5}, r"key 'name' must be a string"),
]


def layer_net(caffe, path, cls, param_str, extra_bottom_shapes=None):
    module, bottoms, _ = LAYERS[cls]
    shapes = {"x": (4, 3), "label": (4,)}
    shapes.update(extra_bottom_shapes or {})
    layer = python_layer("under_test", module, cls, bottoms, ["out"])
    layer = layer.replace("param_str: '{}'", f"param_str: '{param_str}'")
    return make_net(caffe, path, input_layer({b: shapes[b] for b in bottoms}), layer)


@pytest.mark.parametrize("cls,changes,message", BAD_PARAMS)
def test_bad_param_str_names_the_layer_and_the_key(caffe, tmp_path, cls, changes, message):
    params = {**LAYERS[cls][2], "name": "bad_layer", **changes}
    with pytest.raises(LayerParamError, match=message) as error:
        layer_net(caffe, tmp_path / "net.prototxt", cls, json.dumps(params))
    assert f'caffe_layers.{LAYERS[cls][0]}.{cls} layer' in str(error.value)
    if changes.get("name") is None:
        assert f'{cls} layer "bad_layer"' in str(error.value)


@pytest.mark.parametrize("cls", sorted(LAYERS))
@pytest.mark.parametrize("param_str,message", [
    ("p=2", r"param_str is not valid JSON .*write a JSON object"),
    ("[1, 2]", r"param_str must be a JSON object \{...\}, got list"),
])
def test_malformed_param_str_is_rejected(caffe, tmp_path, cls, param_str, message):
    with pytest.raises(LayerParamError, match=message) as error:
        layer_net(caffe, tmp_path / "net.prototxt", cls, param_str)
    assert cls in str(error.value) and param_str in str(error.value)


@pytest.mark.parametrize("cls", ["CenterLoss", "MaskedInnerProduct"])
def test_missing_required_key_is_named(caffe, tmp_path, cls):
    key = "num_classes" if cls == "CenterLoss" else "num_output"
    with pytest.raises(LayerParamError, match=f"{cls} layer.*required key '{key}' is missing"):
        layer_net(caffe, tmp_path / "net.prototxt", cls, "{}")


def test_wrong_bottom_counts_are_rejected(caffe, tmp_path):
    with pytest.raises(LayerInputError, match="CenterLoss layer.*needs 2 bottom blob"):
        make_net(caffe, tmp_path / "a.prototxt", input_layer({"x": (4, 3)}),
                 python_layer("c", "center_loss", "CenterLoss", ["x"], ["out"], {"num_classes": 3}))
    with pytest.raises(LayerInputError, match="L2Normalize layer.*needs 1 bottom blob"):
        make_net(caffe, tmp_path / "b.prototxt", input_layer({"x": (4, 3), "z": (4, 3)}),
                 python_layer("n", "l2_norm", "L2Normalize", ["x", "z"], ["out"]))
    with pytest.raises(LayerInputError, match="different batch sizes \\[4, 5\\]"):
        make_net(caffe, tmp_path / "c.prototxt", input_layer({"x": (4, 3), "z": (5, 3)}),
                 python_layer("s", "sparseness", "FeatureSparsenessLoss", ["x", "z"], ["out"]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("cls", sorted(LAYERS))
def test_non_finite_bottom_raises_naming_the_layer(caffe, tmp_path, rng, cls, bad):
    params = {**LAYERS[cls][2], "name": "watched"}
    net = layer_net(caffe, tmp_path / "net.prototxt", cls, json.dumps(params))
    values = rng.normal(size=(4, 3))
    values[2, 1] = bad
    fill_inputs(net, {"x": values})
    if "label" in net.blobs:
        fill_inputs(net, {"label": [0, 1, 2, 0]})
    counts = "1 NaN and 0 Inf" if np.isnan(bad) else "0 NaN and 1 Inf"
    with pytest.raises(NonFiniteInputError, match=f'{cls} layer "watched".*bottom\\[0\\].*{counts}'):
        net.forward()


def test_second_sparseness_bottom_is_checked_too(caffe, tmp_path, rng):
    net = make_net(caffe, tmp_path / "net.prototxt", input_layer({"z": (2, 3), "x": (2, 4)}),
                   python_layer("s", "sparseness", "FeatureSparsenessLoss", ["z", "x"], ["out"],
                                {"p": 1}, 1.0))
    values = rng.normal(size=(2, 4))
    values[1, 3] = np.nan
    fill_inputs(net, {"z": rng.normal(size=(2, 3)), "x": values})
    with pytest.raises(NonFiniteInputError, match=r"bottom\[1\] holds 1 NaN"):
        net.forward()


def test_maths_module_imports_without_caffe():
    code = ("import sys\nsys.modules['caffe'] = None  # any 'import caffe' now fails\n"
            "import caffe_layers.functional, caffe_layers.params\nprint('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
