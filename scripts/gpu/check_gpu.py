"""The GPU check's Caffe part (scripts/gpu_check.sh runs it on a GPU machine).

1. pycaffe: a small FER-sized net (48x48 gray input, three convolutions,
   two inner products, SoftmaxWithLoss plus the project's
   FeatureSparsenessLoss Python layer) runs forward and backward on the GPU
   with cuDNN layers and with Caffe's own (engine CAFFE), and on the CPU
   with the same weights and batch; every top, loss and gradient must agree.
2. caffe train: the same net, fed from an LMDB written by data_prep.lmdb_io,
   trains for --iters iterations on --device (gpu or cpu); the loss must fall,
   and the time per iteration is read off the log's timestamps. With
   --curve-reference (the JSON of a strict-FP32 run) the loss curve must
   follow the reference's within --curve-tolerance (the TF32 check).

Prints one JSON object with the figures; exits non-zero when a check fails.

    python scripts/gpu/check_gpu.py --caffe-bin PATH --work DIR [--device gpu|cpu] [--iters N]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from data_prep.lmdb_io import write_lmdb
from runtime.caffe_env import import_caffe

IMAGE_SIZE = 48
CLASSES = 7
BATCH = 64


def net_prototxt(data_layer, caffe_engines=False, sparseness_weight=0.001):
    """The check's net: cuDNN layers where Caffe was built with cuDNN, or with
    ``caffe_engines`` every layer on Caffe's own CPU/CUDA code."""
    engine = "engine: CAFFE" if caffe_engines else ""

    def conv(name, bottom, outputs, kernel, pad):
        return f'''
layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"
  convolution_param {{ num_output: {outputs} kernel_size: {kernel} pad: {pad} {engine}
    weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "{name}_relu" type: "ReLU" bottom: "{name}" top: "{name}"
  relu_param {{ {engine} }} }}
layer {{ name: "{name}_pool" type: "Pooling" bottom: "{name}" top: "{name}_pool"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 {engine} }} }}'''
    return f'''name: "gpu_check"
{data_layer}
{conv("conv1", "data", 32, 5, 2)}
{conv("conv2", "conv1_pool", 64, 3, 1)}
{conv("conv3", "conv2_pool", 128, 3, 1)}
layer {{ name: "fc1" type: "InnerProduct" bottom: "conv3_pool" top: "fc1"
  inner_product_param {{ num_output: 256 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "fc1_relu" type: "ReLU" bottom: "fc1" top: "fc1" relu_param {{ {engine} }} }}
layer {{ name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2"
  inner_product_param {{ num_output: {CLASSES} weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss"
  softmax_param {{ {engine} }} }}
layer {{ name: "sparseness" type: "Python" bottom: "fc1" top: "sparseness"
  python_param {{ module: "caffe_layers.sparseness" layer: "FeatureSparsenessLoss"
                  param_str: '{{"name": "sparseness", "p": 2}}' }}
  loss_weight: {sparseness_weight} }}
'''


INPUT_LAYERS = f'''layer {{ name: "data" type: "Input" top: "data" top: "label"
  input_param {{ shape {{ dim: {BATCH} dim: 1 dim: {IMAGE_SIZE} dim: {IMAGE_SIZE} }}
                shape {{ dim: {BATCH} }} }} }}'''


def lmdb_data_layer(source):
    return f'''layer {{ name: "data" type: "Data" top: "data" top: "label"
  data_param {{ source: "{source}" backend: LMDB batch_size: {BATCH} }}
  transform_param {{ scale: 0.00390625 }} }}'''


def class_pattern_images(rng, count):
    """Noise plus a bright block whose place depends on the class: learnable, not trivial."""
    for index in range(count):
        label = index % CLASSES
        image = rng.integers(0, 90, size=(IMAGE_SIZE, IMAGE_SIZE))
        row, col = divmod(label, 3)
        image[4 + row * 14:4 + row * 14 + 12, 4 + col * 14:4 + col * 14 + 12] += 140
        yield f"{index:06d}", image.astype(np.uint8), label


def forward_backward(caffe, prototxt, weights, data, label):
    net = caffe.Net(str(prototxt), caffe.TRAIN)
    net.copy_from(str(weights))
    net.blobs["data"].data[...] = data
    net.blobs["label"].data[...] = label
    tops = net.forward()
    net.backward()
    grads = {name: [blob.diff.copy() for blob in blobs] for name, blobs in net.params.items()}
    return {k: float(v) for k, v in tops.items()}, net.blobs["fc1"].data.copy(), grads


def max_relative_error(a, b):
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))


def check_pycaffe(caffe, work, rng, tolerance):
    """GPU (cuDNN and Caffe engines) against CPU on one batch.

    Returns each engine's relative errors (tops, loss terms, every parameter
    gradient) and the list of those above ``tolerance``.
    """
    prototxts = {}
    for engine_name, caffe_engines in (("cudnn", False), ("caffe", True)):
        prototxts[engine_name] = work / f"pycaffe_{engine_name}.prototxt"
        prototxts[engine_name].write_text(net_prototxt(INPUT_LAYERS, caffe_engines))
    caffe.set_mode_cpu()
    weights = work / "pycaffe_init.caffemodel"
    caffe.Net(str(prototxts["caffe"]), caffe.TRAIN).save(str(weights))
    data = rng.random((BATCH, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    label = (np.arange(BATCH) % CLASSES).astype(np.float32)
    ref_tops, ref_fc1, ref_grads = forward_backward(caffe, prototxts["caffe"], weights, data,
                                                    label)
    caffe.set_device(0)
    caffe.set_mode_gpu()
    errors, failures = {}, []
    for engine_name, prototxt in prototxts.items():
        tops, fc1, grads = forward_backward(caffe, prototxt, weights, data, label)
        found = {name: abs(tops[name] - ref_tops[name]) / abs(ref_tops[name])
                 for name in ("loss", "sparseness")}
        found["fc1"] = max_relative_error(fc1, ref_fc1)
        for name in grads:
            for index, (grad, ref) in enumerate(zip(grads[name], ref_grads[name])):
                found[f"d{name}[{index}]"] = max_relative_error(grad, ref)
        errors[engine_name] = found
        failures += [f"{engine_name} {key}: {value:.2e}" for key, value in found.items()
                     if not value < tolerance]
    caffe.set_mode_cpu()
    return errors, failures


def log_time(line):
    """Seconds of day of a glog line (I1127 or, glog >= 0.6, I20261127 then 21:22:33.123456)."""
    stamp = re.match(r"[IWEF](?:\d{4})?\d{4} (\d\d):(\d\d):(\d\d\.\d+)", line)
    hours, minutes, seconds = stamp.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def check_train(caffe_bin, work, rng, device, iterations):
    """caffe train on ``device``; returns losses and seconds per iteration."""
    source = work / "train_lmdb"
    if not source.exists():
        write_lmdb(source, class_pattern_images(rng, 1024))
    net = work / "train.prototxt"
    net.write_text(net_prototxt(lmdb_data_layer(source)))
    solver = work / f"solver_{device}.prototxt"
    solver.write_text(f'''net: "{net}"
base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005 lr_policy: "fixed"
max_iter: {iterations} display: 1 snapshot: 0 snapshot_after_train: false
random_seed: 1 solver_mode: {device.upper()}
''')
    command = [str(caffe_bin), "train", "-solver", str(solver)]
    if device == "gpu":
        command += ["-gpu", "0"]
    start = time.time()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, GLOG_logtostderr="1"))
    wall = time.time() - start
    (work / f"train_{device}.log").write_text(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"caffe train on {device} failed (exit {proc.returncode}):\n"
                         + proc.stderr[-4000:])
    lines = [line for line in proc.stderr.splitlines()
             if re.search(r"Iteration \d+ .*loss = ", line)]
    iteration_numbers = [int(re.search(r"Iteration (\d+)", line).group(1)) for line in lines]
    losses = [float(re.search(r"loss = ([-+.\deE]+)", line).group(1)) for line in lines]
    if len(losses) < iterations // 2:
        raise SystemExit(f"caffe train on {device} logged {len(losses)} losses:\n"
                         + proc.stderr[-3000:])
    # Skip the first tenth (cuDNN's and the allocator's warm-up) when timing.
    first = len(lines) // 10
    elapsed = log_time(lines[-1]) - log_time(lines[first])
    if elapsed < 0:  # the run crossed midnight
        elapsed += 24 * 3600
    per_iteration = elapsed / (iteration_numbers[-1] - iteration_numbers[first])
    start_loss, end_loss = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
    if iterations >= 100 and not end_loss < 0.5 * start_loss:
        raise SystemExit(f"caffe train on {device}: loss did not fall ({start_loss:.3f} -> "
                         f"{end_loss:.3f})")
    return {"device": device, "iterations": iterations, "batch": BATCH,
            "seconds_per_iteration": per_iteration, "wall_seconds": wall,
            "loss_first5": start_loss, "loss_last5": end_loss,
            "loss_curve": dict(zip(iteration_numbers, losses))}


def curve_gap(curve, reference):
    """The largest gap between two training runs' loss curves ({iteration: loss}, e.g. TF32
    against strict FP32 from the same seed and data), as a share of the reference's starting
    loss: the mean loss of each tenth of the shared iterations is compared, so that the
    iteration-to-iteration noise of two diverging float paths does not count."""
    shared = sorted(set(curve) & set(reference))
    if len(shared) < 10:
        raise ValueError(f"the loss curves share {len(shared)} iterations; need at least 10")
    tenths = np.array_split(np.array(shared), 10)
    start = float(np.mean([reference[i] for i in tenths[0]]))
    gaps = [abs(np.mean([curve[i] for i in part]) - np.mean([reference[i] for i in part]))
            for part in tenths]
    return float(max(gaps) / start)


def dry_run(caffe, work, rng):
    write_lmdb(work / "train_lmdb", class_pattern_images(rng, 2 * BATCH))
    prototxt = work / "dry_run.prototxt"
    prototxt.write_text(net_prototxt(INPUT_LAYERS, caffe_engines=True))
    caffe.set_mode_cpu()
    net = caffe.Net(str(prototxt), caffe.TRAIN)
    net.blobs["data"].data[...] = rng.random(net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = np.arange(BATCH) % CLASSES
    tops = net.forward()
    net.backward()
    print(json.dumps({"dry_run": {k: float(v) for k, v in tops.items()}}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caffe-bin", required=True, type=Path, help="the caffe tool to run")
    parser.add_argument("--work", required=True, type=Path, help="scratch folder")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--iters", type=int, default=300,
                        help="caffe train iterations (0: no training)")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="largest GPU-vs-CPU relative error accepted")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--curve-reference", type=Path,
                        help="check_gpu.json of a strict-FP32 run (CAFFE_ALLOW_TF32=0): this "
                             "run's training curve must follow its curve")
    parser.add_argument("--curve-tolerance", type=float, default=0.05,
                        help="largest gap between the curves, per tenth of the run, as a "
                             "share of the reference's starting loss (default 0.05)")
    parser.add_argument("--dry-run", action="store_true",
                        help="only write the LMDB and run the net once on the CPU in pycaffe "
                             "(what pack_bundle.py traces and smoke-tests: a CUDA build of "
                             "Caffe cannot train without a GPU)")
    args = parser.parse_args(argv)
    reference = None
    if args.curve_reference is not None:
        if not args.iters:
            parser.error("--curve-reference compares training curves: give --iters > 0")
        try:
            reference = json.loads(args.curve_reference.read_text())["train"]["loss_curve"]
        except (OSError, ValueError, KeyError) as error:
            parser.error(f"--curve-reference {args.curve_reference}: no training curve "
                         f"({error!r}); give the --json of a check_gpu.py run with --iters")
        reference = {int(k): v for k, v in reference.items()}
    args.work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20190101)
    if args.dry_run:
        dry_run(import_caffe(), args.work, rng)
        return
    result = {"python": sys.version.split()[0], "started": datetime.now().isoformat()}
    result["tf32_override"] = os.environ.get("NVIDIA_TF32_OVERRIDE")
    result["caffe_allow_tf32"] = os.environ.get("CAFFE_ALLOW_TF32")
    failures = []
    if args.device == "gpu":
        errors, failures = check_pycaffe(import_caffe(), args.work, rng, args.tolerance)
        result["pycaffe_gpu_vs_cpu_relative_error"] = errors
        result["tolerance"] = args.tolerance
    if args.iters and not failures:
        result["train"] = check_train(args.caffe_bin, args.work, rng, args.device, args.iters)
        if reference is not None:
            gap = curve_gap(result["train"]["loss_curve"], reference)
            result["curve_gap_vs_reference"] = gap
            if gap > args.curve_tolerance:
                failures.append(f"the training curve departs from {args.curve_reference}'s "
                                f"by {gap:.3f} of its starting loss (tolerance "
                                f"{args.curve_tolerance})")
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if failures:
        raise SystemExit("check failed (GPU-vs-CPU tolerance "
                         f"{args.tolerance}): " + "; ".join(failures))


if __name__ == "__main__":
    main()
