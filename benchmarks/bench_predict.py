"""Benchmark of prediction (tools/predict.py's code): faces per second, Caffe and ONNX side by side.

    python benchmarks/bench_predict.py [--images 120] [--net toy] [--variant l2] [--size 48] [--crops 4]

The model is the catalog's deploy net with the random weights of its fillers
(speed does not depend on training), saved as a caffemodel and exported to
ONNX by inference.onnx_export; the preprocessing comes from a one-image
synthetic dataset prepared with the same --size and --crops. The inputs are
--images generated 128x128 faces of unseen subjects, written as PNG files.
Per backend, in this one process:
  end-to-end  inference.batch.predict_inputs over the files, as predict.py
              runs: decoding, dlib detection and landmarks, crops, forward passes
  forward     the net alone on the crops of the faces found (Predictor.face_probabilities)
"cpu ms/face" is the process's CPU time (all threads) per face, less
sensitive than wall time to a shared machine. Results are printed and
appended to benchmarks/predict.csv with the date, commit, CPU and load.
"""
import argparse
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.results import append_rows, git_commit
from data_prep.prepare import PrepareOptions, prepare_dataset
from inference.batch import predict_inputs
from inference.media import expand_inputs, read_gray
from inference.onnx_export import export_onnx
from inference.predictor import Predictor
from inference.report_example import write_example_faces
from nets.build import deploy_net
from nets.experiment import render
from runtime.caffe_env import import_caffe

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "predict.csv"
FIELDS = ("date", "commit", "cpu", "cpus", "load_1min", "backend", "net", "variant", "size", "crops", "images",
          "faces", "end_to_end_s", "end_to_end_faces_per_s", "forward_faces_per_s", "forward_cpu_ms_per_face",
          "end_to_end_cpu_ms_per_face")


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                return line.split(":", 1)[1].strip() + (" AVX-512" if "avx512f" in flags else "")
    except OSError:
        pass
    return "unknown"


def random_model(folder, net, variant, size, num_classes=6):
    """(deploy prototxt, caffemodel) of the catalog net with its fillers' random weights."""
    caffe = import_caffe()
    deploy = folder / f"{net}_{variant}_deploy.prototxt"
    deploy.write_text(render(deploy_net(net, variant, num_classes=num_classes, input_size=size)))
    weights = folder / "random.caffemodel"
    caffe.set_mode_cpu()
    caffe.Net(str(deploy), caffe.TEST).save(str(weights))
    return deploy, weights


def measure(predictor, inputs):
    """(faces, end-to-end seconds, end-to-end cpu s, forward faces/s, forward cpu ms/face)."""
    predict_inputs(predictor, inputs[:4], lambda record: None, progress=False)   # warm-up: dlib, first passes
    wall, cpu = time.perf_counter(), time.process_time()
    counts = predict_inputs(predictor, inputs, lambda record: None, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    crops = [face.crops for item in inputs for face in predictor.cropper.faces(read_gray(item.path))[0]]
    forward_wall, forward_cpu = time.perf_counter(), time.process_time()
    predictor.face_probabilities(crops)
    forward_wall, forward_cpu = time.perf_counter() - forward_wall, time.process_time() - forward_cpu
    return counts.faces, wall, cpu, len(crops) / forward_wall, 1000 * forward_cpu / max(1, len(crops))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120, help="generated face images (default 120)")
    parser.add_argument("--net", default="toy", help="catalog net (default toy)")
    parser.add_argument("--variant", default="l2", help="variant (default l2)")
    parser.add_argument("--size", type=int, default=48, help="crop side (default 48, the toy net's)")
    parser.add_argument("--crops", type=int, default=4, help="crops per face (default 4, the main job's)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare_dataset(PrepareOptions(dataset="synthetic", out=tmp / "data", size=args.size, crops=args.crops,
                                       folds=2, synthetic_subjects=2, synthetic_images=1, workers=1,
                                       quiet=True))
        manifest = tmp / "data" / "manifest.json"
        deploy, weights = random_model(tmp, args.net, args.variant, args.size)
        onnx_path = export_onnx(deploy, weights, tmp / "model.onnx")
        subjects = -(-args.images // 6)
        paths = write_example_faces(tmp / "faces", subjects=subjects)[:args.images]
        inputs = expand_inputs(paths)
        rows = []
        for backend, predictor in (("caffe", Predictor(deploy, weights=weights, manifest=manifest)),
                                   ("onnx", Predictor(onnx_path, manifest=manifest))):
            faces, wall, cpu, forward_rate, forward_cpu_ms = measure(predictor, inputs)
            rows.append({"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": git_commit(),
                         "cpu": cpu_name(), "cpus": len(os.sched_getaffinity(0)),
                         "load_1min": f"{os.getloadavg()[0]:.2f}", "backend": backend, "net": args.net,
                         "variant": args.variant, "size": args.size, "crops": args.crops, "images": len(inputs),
                         "faces": faces, "end_to_end_s": f"{wall:.2f}",
                         "end_to_end_faces_per_s": f"{faces / wall:.1f}", "forward_faces_per_s": f"{forward_rate:.0f}",
                         "forward_cpu_ms_per_face": f"{forward_cpu_ms:.2f}",
                         "end_to_end_cpu_ms_per_face": f"{1000 * cpu / max(1, faces):.2f}"})
    print(f"{rows[0]['cpu']}, {rows[0]['cpus']} cpus, load {rows[0]['load_1min']}; {args.net}/{args.variant} "
          f"{args.size}x{args.size}, {args.crops} crops, {len(inputs)} images of 128x128")
    print(f"{'backend':>8}{'faces':>7}{'end-to-end faces/s':>20}{'cpu ms/face':>13}"
          f"{'forward faces/s':>17}{'cpu ms/face':>13}")
    for row in rows:
        print(f"{row['backend']:>8}{row['faces']:>7}{row['end_to_end_faces_per_s']:>20}"
              f"{row['end_to_end_cpu_ms_per_face']:>13}{row['forward_faces_per_s']:>17}"
              f"{row['forward_cpu_ms_per_face']:>13}")
    append_rows(RESULTS, FIELDS, rows)


if __name__ == "__main__":
    main()
