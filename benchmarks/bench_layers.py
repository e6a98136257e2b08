"""Speed of the Python layers (caffe_layers/) beside one face-ResNet training iteration.

    .venv/bin/python benchmarks/bench_layers.py [--batch 64] [--dims 512 4096] [--repeats 20]
                                            [--resnet-batch 64] [--resnet-repeats 3] [--no-save]

For each layer and feature size D it times one forward + backward of that
layer alone (pycaffe ``net.forward(start=, end=)`` / ``net.backward(start=,
end=)`` on a net of Input layers and the layer), median over --repeats after a
warm-up pass. The layers are timed at the shapes the paper's nets give them:
the sparseness, center and L2-normalisation layers on N×D features, and the
connection-pruning MaskedInnerProduct as W (D -> 7 classes) and as V (the
FC1 layer: 512×6×6 -> 512 for the ResNet, 4096 -> 4096 for VGG-16), beside
Caffe's own InnerProduct of the same shape; and the hidden-unit variant
(^{H,S}): one FeatureSparsenessLoss over the outputs of all 20 convolutions of
the face ResNet below.

The reference is one forward + backward of a SphereFace-20-style face ResNet
built here with NetSpec (1×96×96 input; 3×3 stride-2 convolutions to 64, 128,
256, 512 channels, each followed by 1, 2, 4, 1 residual units of two 3×3
convolutions, PReLU; 512×6×6 -> FC 512 -> FC 7, softmax loss) at
--resnet-batch (default 64, the paper's batch size); a smaller batch is scaled
linearly to --batch and the table says so. The share column is layer time /
ResNet iteration time.

Prints a table and appends it, with the date, machine and load, to
benchmarks/layers.md.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime.caffe_env import REPO_ROOT, import_caffe

RESULTS = REPO_ROOT / "benchmarks" / "layers.md"
CLASSES = 7
RESNET_STAGES = ((64, 1), (128, 2), (256, 4), (512, 1))
FC1_INPUTS = {512: 512 * 6 * 6, 4096: 4096}  # V's input size: ResNet's conv map, VGG's fc6


def python_layer(L, bottoms, module, cls, params, loss):
    extra = {"loss_weight": 1.0} if loss else {}
    return L.Python(*bottoms, python_param={"module": f"caffe_layers.{module}", "layer": cls,
                                            "param_str": json.dumps(params)}, **extra)


def layer_cases(batch, dim):
    """(row label, builder(NetSpec, L) -> name of the timed layer, inputs {blob: shape})."""
    fc1_in = FC1_INPUTS.get(dim, dim)

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


def hidden_unit_case(batch):
    """FeatureSparsenessLoss on every conv output of the face ResNet (the ^{H,S} variants)."""
    shapes, size = [], 96
    for channels, units in RESNET_STAGES:
        size //= 2
        shapes += [(batch, channels, size, size)] * (1 + 2 * units)
    inputs = {f"x{i}": shape for i, shape in enumerate(shapes)}
    per_sample = sum(int(np.prod(shape[1:])) for shape in shapes)

    def build(n, L):
        n.sparsity = python_layer(L, [n[name] for name in inputs], "sparseness",
                                  "FeatureSparsenessLoss", {"p": 2}, True)
        return "sparsity"
    return (f"FeatureSparsenessLoss p=2, {len(shapes)} conv outputs ({per_sample:,}/sample)",
            build, inputs)


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


def face_resnet(caffe, batch):
    L, P = caffe.layers, caffe.params
    n = caffe.NetSpec()
    n.data, n.label = L.Input(ntop=2, input_param={"shape": [{"dim": [batch, 1, 96, 96]},
                                                             {"dim": [batch]}]})
    filler = {"type": "msra"}

    def conv(bottom, channels, stride=1):
        return L.PReLU(L.Convolution(bottom, num_output=channels, kernel_size=3, stride=stride,
                                     pad=1, weight_filler=filler), in_place=True)

    top = n.data
    for stage, (channels, units) in enumerate(RESNET_STAGES, start=1):
        top = n[f"conv{stage}"] = conv(top, channels, stride=2)
        for unit in range(1, units + 1):
            branch = n[f"res{stage}_{unit}a"] = conv(top, channels)
            branch = n[f"res{stage}_{unit}b"] = conv(branch, channels)
            top = n[f"res{stage}_{unit}"] = L.Eltwise(top, branch, operation=P.Eltwise.SUM)
    n.fc5 = L.InnerProduct(top, num_output=512, weight_filler=filler)
    n.fc6 = L.InnerProduct(n.fc5, num_output=CLASSES, weight_filler=filler)
    n.loss = L.SoftmaxWithLoss(n.fc6, n.label)
    return n


def time_resnet(caffe, folder, batch, repeats, rng):
    net = caffe.Net(str(write_net(face_resnet(caffe, batch), folder, "face_resnet")), caffe.TRAIN)
    net.blobs["data"].data[...] = rng.normal(size=net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = rng.integers(0, CLASSES, size=batch)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        net.forward()
        net.backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}, {cpu}, {os.cpu_count()} logical CPUs"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="batch of the layer timings")
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 4096], help="feature sizes D")
    parser.add_argument("--repeats", type=int, default=20, help="timed passes per layer")
    parser.add_argument("--resnet-batch", type=int, default=64,
                        help="batch of the face-ResNet iteration (scaled linearly to --batch)")
    parser.add_argument("--resnet-repeats", type=int, default=3, help="timed ResNet iterations")
    parser.add_argument("--no-hidden", action="store_true",
                        help="skip the hidden-unit case (about 600 MB of blobs at batch 64)")
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
            cases.append(hidden_unit_case(args.batch))
        for label, build, inputs in cases:
            seconds = time_layer(caffe, folder, build, inputs, args.repeats, rng)
            rows.append((label, seconds))
            print(f"{label:<64} {seconds * 1e3:9.3f} ms  {100 * seconds / resnet_s:7.3f} %",
                  flush=True)
    load_after = os.getloadavg()

    scaled = "" if args.resnet_batch == args.batch else \
        f", measured at batch {args.resnet_batch} and scaled to {args.batch}"
    lines = [
        f"## {datetime.datetime.now().isoformat(timespec='minutes')}: {machine()}",
        "",
        f"Batch {args.batch}; median of {args.repeats} forward+backward passes per layer; "
        f"face-ResNet iteration (forward+backward, batch {args.batch}{scaled}, median of "
        f"{args.resnet_repeats}): **{resnet_s * 1e3:.0f} ms**. Load average before/after: "
        f"{load_before[0]:.2f} / {load_after[0]:.2f} (1 min).",
        "",
        "| layer (forward + backward) | ms | share of a face-ResNet iteration |",
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
