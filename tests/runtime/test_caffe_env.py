"""The runtime: the project's Caffe build, pycaffe, Python layers, caffe train."""
import os
import re
import subprocess
import textwrap

import numpy as np
import pytest

from data_prep.lmdb_io import write_lmdb
from runtime.caffe_env import CaffeNotAvailable, caffe_binary, check_caffe_binary

# A loss layer defined in the test: L = 1/(2N) sum ||x - onehot(y)||^2.
SQUARED_LOSS_LAYER = textwrap.dedent('''
    import caffe
    import numpy as np

    class OneHotSquaredLoss(caffe.Layer):
        def setup(self, bottom, top):
            if len(bottom) != 2:
                raise Exception("needs scores and labels")

        def reshape(self, bottom, top):
            top[0].reshape(1)

        def _residual(self, bottom):
            target = np.zeros_like(bottom[0].data)
            target[np.arange(target.shape[0]), bottom[1].data.astype(int).ravel()] = 1.0
            return bottom[0].data - target

        def forward(self, bottom, top):
            r = self._residual(bottom)
            top[0].data[0] = 0.5 * np.sum(r * r) / r.shape[0]

        def backward(self, top, propagate_down, bottom):
            if propagate_down[0]:
                bottom[0].diff[...] = top[0].diff[0] * self._residual(bottom) / bottom[0].num
''')


def tiny_net(lmdb_path, batch):
    return textwrap.dedent(f'''
        name: "tiny"
        layer {{ name: "data" type: "Data" top: "data" top: "label"
                 data_param {{ source: "{lmdb_path}" backend: LMDB batch_size: {batch} }}
                 transform_param {{ scale: 0.00390625 }} }}
        layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
                 inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}
        layer {{ name: "loss" type: "Python" bottom: "fc" bottom: "label" top: "loss"
                 python_param {{ module: "tiny_loss" layer: "OneHotSquaredLoss" }}
                 loss_weight: 1 }}
    ''')


def class_pattern_records(rng, n, size=8):
    """Each class lights up its own band of rows, plus noise: learnable by one FC layer."""
    for i in range(n):
        label = i % 3
        image = rng.integers(0, 60, size=(size, size))
        image[label * 2:label * 2 + 3, :] += 180
        yield f"{i:06d}", image.astype(np.uint8), label


@pytest.fixture
def tiny_train_dir(tmp_path, rng):
    write_lmdb(tmp_path / "train_lmdb", class_pattern_records(rng, 96))
    (tmp_path / "tiny_loss.py").write_text(SQUARED_LOSS_LAYER)
    (tmp_path / "net.prototxt").write_text(tiny_net(tmp_path / "train_lmdb", 16))
    (tmp_path / "solver.prototxt").write_text(textwrap.dedent(f'''
        net: "{tmp_path / 'net.prototxt'}"
        base_lr: 0.02  momentum: 0.9  lr_policy: "fixed"
        max_iter: 40  display: 1  snapshot: 0
        snapshot_after_train: false  solver_mode: CPU  random_seed: 1
    '''))
    return tmp_path


def run_caffe(caffe_bin, args, extra_pythonpath):
    env = dict(os.environ, PYTHONPATH=str(extra_pythonpath), GLOG_logtostderr="1")
    return subprocess.run([str(caffe_bin), *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_pycaffe_knows_python_layer(caffe):
    assert "Python" in caffe.layer_type_list()


def test_caffe_tool_reports_version(caffe_bin):
    assert re.search(r"\d+\.\d+", check_caffe_binary(caffe_bin))


def test_caffe_train_with_python_loss_decreases(caffe_bin, tiny_train_dir):
    proc = run_caffe(caffe_bin, ["train", "-solver", str(tiny_train_dir / "solver.prototxt")],
                     tiny_train_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [float(v) for v in re.findall(r"Iteration \d+ .*?, loss = ([-+.\deE]+\d)", proc.stderr)]
    assert len(losses) >= 20, proc.stderr[-3000:]
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.5 * first, losses


def test_pycaffe_forward_backward_through_python_layer(caffe, tiny_train_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(tiny_train_dir))
    net = caffe.Net(str(tiny_train_dir / "net.prototxt"), caffe.TRAIN)
    loss = net.forward()["loss"]
    fc, label = net.blobs["fc"].data.copy(), net.blobs["label"].data.astype(int)
    onehot = np.eye(3)[label]
    assert loss == pytest.approx(0.5 * np.sum((fc - onehot) ** 2) / 16, rel=1e-5)
    net.backward()
    assert np.allclose(net.blobs["fc"].diff, (fc - onehot) / 16, atol=1e-6)
    assert np.abs(net.params["fc"][0].diff).sum() > 0


def test_missing_caffe_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CAFFE_BIN", str(tmp_path / "no-such-caffe"))
    with pytest.raises(CaffeNotAvailable, match="scripts/install.sh"):
        caffe_binary()


def test_broken_caffe_says_what_to_run(tmp_path):
    broken = tmp_path / "caffe"
    broken.write_text("#!/bin/sh\necho 'error while loading shared libraries: libcaffe.so' >&2\nexit 127\n")
    broken.chmod(0o755)
    with pytest.raises(CaffeNotAvailable, match=r"broken \(exit 127.*scripts/install.sh"):
        check_caffe_binary(broken)


def test_missing_pycaffe_says_what_to_run(tmp_path):
    # A plain interpreter without the project's .pth cannot import caffe.
    code = ("from runtime.caffe_env import import_caffe\n"
            "try:\n    import_caffe()\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    from runtime.caffe_env import REPO_ROOT
    proc = subprocess.run(["/usr/bin/python3", "-S", "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": os.environ["PATH"]})
    assert "CaffeNotAvailable" in proc.stdout and "scripts/install.sh" in proc.stdout, proc


def test_importing_caffe_leaves_child_processes_their_full_logs(caffe, monkeypatch):
    # import_caffe quiets pycaffe's own INFO logging, but must not hand that
    # setting to `caffe train` children through the environment.
    monkeypatch.delenv("GLOG_minloglevel", raising=False)
    from runtime.caffe_env import import_caffe
    import_caffe()
    assert "GLOG_minloglevel" not in os.environ


FAILING_LAYER = textwrap.dedent('''
    import caffe

    class Failing(caffe.Layer):
        def setup(self, bottom, top):
            raise ValueError("this layer refuses: param_str key 'bogus' is unknown")

        def reshape(self, bottom, top):
            pass

        def forward(self, bottom, top):
            pass

        def backward(self, top, propagate_down, bottom):
            pass
''')


def test_caffe_train_prints_a_python_layer_error(caffe_bin, tmp_path):
    # caffe_build/patches/0005: the tool is built with WITH_PYTHON_LAYER, so a
    # layer's exception is printed with its traceback and the exit status is 1.
    (tmp_path / "failing_layer.py").write_text(FAILING_LAYER)
    (tmp_path / "net.prototxt").write_text(textwrap.dedent('''
        name: "failing"
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "bad" type: "Python" bottom: "data" top: "out"
                python_param { module: "failing_layer" layer: "Failing" } }
    '''))
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.1\nmax_iter: 1\nsolver_mode: CPU\n')
    proc = run_caffe(caffe_bin, ["train", "-solver", str(tmp_path / "solver.prototxt")], tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "ValueError: this layer refuses: param_str key 'bogus' is unknown" in proc.stderr
