"""Speed of the Python layers (caffe_layers/) beside one training step of the project's resnet.

    .venv/bin/python benchmarks/bench_layers.py [--batch 64] [--dims 512 4096] [--repeats 20]
                                            [--resnet-batch 64] [--resnet-repeats 3] [--no-save]

For each layer and feature size D it times one forward + backward of that
layer alone (pycaffe ``net.forward(start=, end=)`` / ``net.backward(start=,
end=)`` on a net of Input layers and the layer), median over --repeats after a
warm-up pass. The layers are timed at the shapes the paper's nets give them:
the sparseness, center and L2-normalisation layers on N×D features, and the
connection-pruning MaskedInnerProduct as W (D -> 7 classes) and as V (the
FC1 layer: the resnet's z -> 512, vgg's 4096 -> 4096), beside Caffe's own
InnerProduct of the same shape; and the hidden-unit variant (^{H,S}): one
FeatureSparsenessLoss over all the resnet's hidden blobs.

The reference is one training step (forward + backward) of the project's face
ResNet as the experiments build it (nets.build, at its training input
112x112; benchmarks.train_runner.caffe_timing_net: the TRAIN phase with Input
layers in place of the LMDB) at --resnet-batch (default 64, the paper's batch
size); a smaller batch is scaled linearly to --batch and the table says so.
The share column is layer time / ResNet iteration time. FC1's input sizes and
the hidden-unit blobs are the resnet's and vgg's own (nets.build.roles).

Prints a table and appends it, with the date, machine and load, to
benchmarks/layers.md.
"""
import argparse
import datetime
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine_probe import machine_description
from benchmarks.train_runner import caffe_timing_net
from nets.build import roles
from runtime.caffe_env import REPO_ROOT, import_caffe

RESULTS = REPO_ROOT / "benchmarks" / "layers.md"
CLASSES = 7


# FC1's width (the 512-d x of the resnet, the 4096-d x of vgg) -> the net whose FC1 it is
FC1_NETS = {512: "resnet", 4096: "vgg"}


def fc1_input_size(dim):
    """Size of z, FC1's input, in the net whose FC1 is ``dim`` wide (else ``dim``)."""
    net = FC1_NETS.get(dim)
    return int(np.prod(roles(net).z_shape)) if net else dim


def python_layer(L, bottoms, module, cls, params, loss):
    extra = {"loss_weight": 1.0} if loss else {}
    return L.Python(*bottoms, python_param={"module": f"caffe_layers.{module}", "layer": cls,
                                            "param_str": json.dumps(params)}, **extra)


def layer_cases(batch, dim):
    """(row label, builder(NetSpec, L) -> name of the timed layer, inputs {blob: shape})."""
    fc1_in = fc1_input_size(dim)

    def sparse(p):
        def build(n, L):
            n.sparsity = python_layer(L, [n.x], "sparseness", "FeatureSparsenessLoss", {"p": p}, True)
            return "sparsity"
        return build

    def center(n, L):
        n.center = python_layer(L, [n.x, n.label], "center_loss", "CenterLoss",
                                {"num_classes": CLASSES}, True)
        return "center"

    def l2norm(n, L):
        n.norm = python_layer(L, [n.x], "l2_norm", "L2Normalize", {"learn_alpha": True}, False)
        return "norm"

    def masked(outputs):
        def build(n, L):
            n.fc = python_layer(L, [n.x], "pruning", "MaskedInnerProduct", {"num_output": outputs},
                                False)
            return "fc"
        return build

    def native(outputs):
        def build(n, L):
            n.fc = L.InnerProduct(n.x, num_output=outputs, weight_filler={"type": "xavier"})
            return "fc"
        return build

    features = {"x": (batch, dim)}
    return [
        (f"FeatureSparsenessLoss p=2, {dim}-d", sparse(2), features),
        (f"FeatureSparsenessLoss p=1, {dim}-d", sparse(1), features),
        (f"CenterLoss {CLASSES} classes, {dim}-d", center, {**features, "label": (batch,)}),
        (f"L2Normalize (learned alpha), {dim}-d", l2norm, features),
        (f"MaskedInnerProduct W {dim}->{CLASSES}", masked(CLASSES), features),
        (f"MaskedInnerProduct V {fc1_in}->{dim}", masked(dim), {"x": (batch, fc1_in)}),
        (f"  (Caffe InnerProduct V {fc1_in}->{dim})", native(dim), {"x": (batch, fc1_in)}),
    ]


def hidden_unit_case(caffe, folder, batch):
    """FeatureSparsenessLoss on every hidden blob of the resnet (the ^{H,S} variants: the
    residual units' outputs and x, nets.build.roles), at their shapes in that net."""
    net_param, net_roles = caffe_timing_net("resnet", 1)
    path = Path(folder) / "resnet_shapes.prototxt"
    path.write_text(str(net_param))
    net = caffe.Net(str(path), caffe.TRAIN)
    shapes = [(batch, *net.blobs[name].data.shape[1:]) for name in net_roles.hidden_blobs]
    inputs = {f"x{i}": shape for i, shape in enumerate(shapes)}
    per_sample = sum(int(np.prod(shape[1:])) for shape in shapes)

    def build(n, L):
        n.sparsity = python_layer(L, [n[name] for name in inputs], "sparseness",
                                  "FeatureSparsenessLoss", {"p": 2}, True)
        return "sparsity"
    return (f"FeatureSparsenessLoss p=2, {len(shapes)} resnet hidden blobs "
            f"({per_sample:,}/sample)", build, inputs)


def write_net(spec, folder, name):
    path = Path(folder) / f"{name}.prototxt"
    path.write_text("force_backward: true\n" + str(spec.to_proto()))
    return path


def time_layer(caffe, folder, build, inputs, repeats, rng):
    L = caffe.layers
    n = caffe.NetSpec()
    for blob, shape in inputs.items():
        n[blob] = L.Input(input_param={"shape": {"dim": list(shape)}})
    name = build(n, L)
    net = caffe.Net(str(write_net(n, folder, name)), caffe.TRAIN)
    for blob, shape in inputs.items():
        net.blobs[blob].data[...] = (rng.integers(0, CLASSES, size=shape) if blob == "label"
                                     else rng.standard_normal(size=shape, dtype=np.float32))
    top = net.top_names[name][0]
    if name in ("norm", "fc"):  # not a loss: give its top a gradient
        net.forward()
        net.blobs[top].diff[...] = rng.normal(size=net.blobs[top].diff.shape)
    times = []
    for _ in range(repeats + 1):  # the first pass (MaskedInnerProduct's pruning) is a warm-up
        start = time.perf_counter()
        net.forward(start=name, end=name)
        net.backward(start=name, end=name)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def time_resnet(caffe, folder, batch, repeats, rng):
    net_param, _ = caffe_timing_net("resnet", batch)
    path = Path(folder) / "resnet.prototxt"
    path.write_text(str(net_param))
    net = caffe.Net(str(path), caffe.TRAIN)
    net.blobs["data"].data[...] = rng.uniform(0, 255, size=net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = rng.integers(0, CLASSES, size=batch)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        net.forward()
        net.backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="batch of the layer timings")
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 4096], help="feature sizes D")
    parser.add_argument("--repeats", type=int, default=20, help="timed passes per layer")
    parser.add_argument("--resnet-batch", type=int, default=64,
                        help="batch of the resnet training step (scaled linearly to --batch)")
    parser.add_argument("--resnet-repeats", type=int, default=3, help="timed ResNet iterations")
    parser.add_argument("--no-hidden", action="store_true",
                        help="skip the hidden-unit case (about 1 GB of blobs at batch 64)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file appended to")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)

    os.environ.setdefault("GLOG_minloglevel", "2")  # before caffe's logging starts
    caffe = import_caffe()
    caffe.set_mode_cpu()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        resnet_s = time_resnet(caffe, folder, args.resnet_batch, args.resnet_repeats, rng)
        resnet_s *= args.batch / args.resnet_batch
        cases = [case for dim in args.dims for case in layer_cases(args.batch, dim)]
        if not args.no_hidden:
            cases.append(hidden_unit_case(caffe, folder, args.batch))
        for label, build, inputs in cases:
            seconds = time_layer(caffe, folder, build, inputs, args.repeats, rng)
            rows.append((label, seconds))
            print(f"{label:<64} {seconds * 1e3:9.3f} ms  {100 * seconds / resnet_s:7.3f} %",
                  flush=True)
    load_after = os.getloadavg()

    scaled = "" if args.resnet_batch == args.batch else \
        f", measured at batch {args.resnet_batch} and scaled to {args.batch}"
    machine, flags = machine_description()
    lines = [
        f"## {datetime.datetime.now().isoformat(timespec='minutes')}: {machine} ({flags})",
        "",
        f"Batch {args.batch}; median of {args.repeats} forward+backward passes per layer; "
        f"resnet (nets/, 1x112x112) training step (forward+backward, batch {args.batch}{scaled}, median of "
        f"{args.resnet_repeats}): **{resnet_s * 1e3:.0f} ms**. Load average before/after: "
        f"{load_before[0]:.2f} / {load_after[0]:.2f} (1 min).",
        "",
        "| layer (forward + backward) | ms | share of a resnet training step |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {label.strip()} | {s * 1e3:.3f} | {100 * s / resnet_s:.3f} % |" for label, s in rows]
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if not args.no_save:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        if not args.results.exists():
            args.results.write_text("# Python layer timings (benchmarks/bench_layers.py)\n\n")
        with args.results.open("a") as out:
            out.write("\n" + table)
        print(f"appended to {args.results}")


if __name__ == "__main__":
    main()
