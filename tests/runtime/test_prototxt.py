"""runtime/prototxt.py: the one reader of Caffe's text-format nets and solvers."""
import ast

import pytest

from runtime.caffe_env import REPO_ROOT
from runtime.prototxt import PrototxtError, read_net, read_prototxt, read_solver

LIBRARIES = ("runtime", "caffe_layers", "nets", "data_prep", "experiments", "inference", "tools", "benchmarks")


def test_committed_net_and_solver_are_read(caffe):
    solver = read_solver(REPO_ROOT / "prototxt" / "resnet_l2_solver.prototxt")
    assert solver.net.endswith("resnet_l2_train_val.prototxt") and solver.base_lr > 0
    net = read_net(REPO_ROOT / "prototxt" / "resnet_l2_deploy.prototxt")
    assert net.layer[0].type == "Input"
    # a caller may bring its own caffe_pb2 (preflight loads it without libcaffe)
    assert read_prototxt(REPO_ROOT / "prototxt" / "resnet_l2_deploy.prototxt",
                         caffe.proto.caffe_pb2.NetParameter()) == net


def test_missing_and_malformed_files_name_the_file_and_the_fault(caffe, tmp_path):
    with pytest.raises(PrototxtError, match=r"nothing.prototxt is not a readable Caffe prototxt \(No such file"):
        read_net(tmp_path / "nothing.prototxt")
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\nlayer { nme: "y" }\n')
    with pytest.raises(PrototxtError) as raised:
        read_net(bad)
    assert raised.value.path == bad and "2:" in raised.value.reason and "nme" in raised.value.reason


def test_no_other_module_parses_prototxt_text():
    # text_format.Parse/Merge outside runtime/prototxt.py would be a second reader.
    readers = []
    for package in LIBRARIES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if path == REPO_ROOT / "runtime" / "prototxt.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (isinstance(node, ast.Attribute) and node.attr in ("Parse", "Merge")
                        and isinstance(node.value, ast.Name) and node.value.id == "text_format"):
                    readers.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not readers, readers
