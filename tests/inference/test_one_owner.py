"""Facts of the ONNX export that have one owner: the metadata key, the Python layers' defaults."""
import ast
import json

import pytest

from caffe_layers import l2_norm, normface, pruning
from caffe_layers.params import REQUIRED, Param
from inference import onnx_export, onnx_metadata, onnx_runtime
from inference.onnx_export import python_layer_params
from runtime.caffe_env import REPO_ROOT


def _assigned_names(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    return {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def test_the_metadata_key_is_defined_in_one_module_only():
    definers = [path.name for path in sorted((REPO_ROOT / "inference").glob("*.py"))
                if "METADATA_KEY" in _assigned_names(path)]
    assert definers == ["onnx_metadata.py"]
    assert onnx_export.METADATA_KEY is onnx_runtime.METADATA_KEY is onnx_metadata.METADATA_KEY


def _python_layer(caffe, module, layer, param_str=""):
    param = caffe.proto.caffe_pb2.LayerParameter(name="x", type="Python")
    param.python_param.module, param.python_param.layer = module, layer
    param.python_param.param_str = param_str
    return param


@pytest.mark.parametrize("module, schema", [(l2_norm, l2_norm.SCHEMA), (pruning, pruning.SCHEMA),
                                            (normface, normface.SCHEMA)])
def test_python_layer_params_are_the_layer_schema_defaults_and_the_given_keys(caffe, module, schema):
    name = {l2_norm: "L2Normalize", pruning: "MaskedInnerProduct", normface: "NormalizedInnerProduct"}[module]
    layer = _python_layer(caffe, module.__name__, name, json.dumps({"num_output": 6}))
    expected = {key: spec.default for key, spec in schema.items() if spec.default is not REQUIRED}
    assert python_layer_params(layer) == {**expected, "num_output": 6}


def test_a_changed_layer_default_reaches_the_exporter(caffe, monkeypatch):
    # The exporter holds no copy: changing the layer's schema changes what it exports with.
    monkeypatch.setitem(l2_norm.SCHEMA, "eps", Param("float", 0.25, "a non-negative number"))
    monkeypatch.setitem(pruning.SCHEMA, "prune_ratio", Param("float", 0.75, "a number in [0, 1)"))
    assert python_layer_params(_python_layer(caffe, "caffe_layers.l2_norm", "L2Normalize"))["eps"] == 0.25
    masked = _python_layer(caffe, "caffe_layers.pruning", "MaskedInnerProduct", '{"num_output": 3}')
    assert python_layer_params(masked)["prune_ratio"] == 0.75
    given = _python_layer(caffe, "caffe_layers.l2_norm", "L2Normalize", '{"eps": 0.5}')
    assert python_layer_params(given)["eps"] == 0.5
