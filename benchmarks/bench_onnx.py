"""Speed of an exported ONNX model (inference.onnx_runtime) beside pycaffe's forward of the same net.

    .venv/bin/python benchmarks/bench_onnx.py [--cases toy:softmax:64 resnet:softmax:8]
                                              [--repeats 10] [--no-save]

For each case NET:VARIANT:BATCH it builds the committed deploy net with
random weights (the classifier scaled so that the softmax is neither
uniform nor one-hot), exports it with inference.onnx_export, and times a forward
pass of a BATCH of generated faces (data_prep.synthetic) with pycaffe
(``net.forward()``, CPU) and with OnnxClassifier.probabilities (onnxruntime,
CPU provider): the median over --repeats after one warm-up pass, as images
per second. Both use their default threading (Caffe: OpenBLAS's threads,
onnxruntime: one per core). The max abs difference of the two softmax outputs
is printed beside the speeds.

Prints a table and appends it, with the date, machine and load, to
benchmarks/onnx.md.
"""
import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from data_prep import synthetic
from inference.onnx_export import export_onnx
from inference.onnx_runtime import OnnxClassifier
from nets import deploy_net
from nets.catalog import NETS
from runtime.caffe_env import REPO_ROOT, import_caffe

RESULTS = REPO_ROOT / "benchmarks" / "onnx.md"


def parse_case(text):
    net, variant, batch = text.split(":")
    return net, variant, int(batch)


def faces(count, size):
    images = [image for _, _, _, image, _ in synthetic.generate(
        subjects=max(1, count // 12 + 1), expressions=6, images=2, size=size)]
    return np.stack(images[:count])[:, np.newaxis].astype(np.float32)


def random_model(caffe, folder, net, variant, batch, seed=0):
    """(deploy path, caffemodel path): He-scaled random weights, random biases, and the classifier
    scaled to logits of std 3 on ``batch`` (a softmax neither uniform nor one-hot)."""
    net_param = deploy_net(net, variant)
    deploy = Path(folder) / f"{net}_{variant}_deploy.prototxt"
    deploy.write_text(text_format.MessageToString(net_param))
    model = caffe.Net(str(deploy), caffe.TEST)
    rng = np.random.default_rng(seed)
    for blobs in model.params.values():
        weights = blobs[0].data
        if weights.ndim > 1:
            weights[...] = rng.normal(0.0, np.sqrt(2.0 / np.prod(weights.shape[1:])), weights.shape)
        for bias in blobs[1:]:
            bias.data[...] = rng.normal(0.0, 0.1, bias.data.shape)
    (logits,) = [layer.bottom[0] for layer in net_param.layer if layer.type == "Softmax"]
    (classifier,) = [layer.name for layer in net_param.layer if logits in layer.top]
    model.blobs["data"].reshape(*batch.shape)
    model.blobs["data"].data[...] = batch
    model.forward()
    factor = 3.0 / float(model.blobs[logits].data.std())
    for blob in model.params[classifier]:
        blob.data[...] *= factor
    weights_path = Path(folder) / f"{net}_{variant}.caffemodel"
    model.save(str(weights_path))
    return deploy, weights_path


def median_seconds(run, repeats):
    run()  # warm-up: allocation, MaskedInnerProduct's pruning, onnxruntime's first-run setup
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_case(caffe, folder, net, variant, batch_size, repeats):
    batch = faces(batch_size, NETS[net].input_size)
    deploy, weights = random_model(caffe, folder, net, variant, batch)
    onnx_path = export_onnx(deploy, weights, Path(folder) / f"{net}_{variant}.onnx")
    model = caffe.Net(str(deploy), str(weights), caffe.TEST)
    model.blobs["data"].reshape(*batch.shape)
    model.blobs["data"].data[...] = batch

    def caffe_forward():
        return model.forward()["prob"]

    classifier = OnnxClassifier(onnx_path)
    caffe_s = median_seconds(caffe_forward, repeats)
    onnx_s = median_seconds(lambda: classifier.probabilities(batch), repeats)
    difference = float(np.abs(classifier.probabilities(batch) - caffe_forward()).max())
    return {"case": f"{net} {variant}", "batch": batch_size, "caffe": batch_size / caffe_s,
            "onnx": batch_size / onnx_s, "difference": difference}


def table(rows):
    lines = ["| net / variant | batch | pycaffe images/s | onnxruntime images/s | ratio | max abs diff |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['batch']} | {r['caffe']:.1f} | {r['onnx']:.1f} | "
                     f"{r['onnx'] / r['caffe']:.2f}x | {r['difference']:.1e} |")
    return "\n".join(lines)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", type=parse_case,
                        default=[parse_case("toy:softmax:64"), parse_case("resnet:softmax:8")],
                        help="NET:VARIANT:BATCH (default: toy:softmax:64 resnet:softmax:8)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-save", action="store_true", help=f"do not append to {RESULTS}")
    args = parser.parse_args(argv)
    caffe = import_caffe()
    caffe.set_mode_cpu()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        rows = [bench_case(caffe, folder, net, variant, batch, args.repeats)
                for net, variant, batch in args.cases]
    load = os.getloadavg()
    header = (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, "
              f"load {load_before:.1f} before, {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} after (1/5/15 min), "
              f"median of {args.repeats} after a warm-up")
    text = f"{header}\n\n{table(rows)}\n"
    print(text)
    if not args.no_save:
        with open(RESULTS, "a") as f:
            f.write(f"\n## {text}")
    return rows


if __name__ == "__main__":
    main()
