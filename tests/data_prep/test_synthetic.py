"""The synthetic expression dataset: determinism, landmarks, layout, and that a small CNN learns it."""
import json
from collections import defaultdict

import numpy as np
import pytest

from data_prep.lmdb_io import read_lmdb
from tools.prepare import main as prepare_main
from data_prep.readers.index_csv import read_csv_dataset
from data_prep.synthetic import generate, make_subject, write_dataset
from tools.synthetic import main as synthetic_main


def test_generation_is_deterministic_and_varied():
    first = list(generate(subjects=3, expressions=6, images=2, size=64, seed=4))
    again = list(generate(subjects=3, expressions=6, images=2, size=64, seed=4))
    other = list(generate(subjects=3, expressions=6, images=2, size=64, seed=5))
    assert len(first) == 36
    assert all(np.array_equal(a[3], b[3]) and np.allclose(a[4], b[4]) for a, b in zip(first, again))
    assert not any(np.array_equal(a[3], b[3]) for a, b in zip(first, other))
    assert [(s, label) for s, label, *_ in first[:3]] == [("S01", 0), ("S01", 0), ("S01", 1)]
    # two images of the same subject and expression differ (intensity, pose, lighting, noise)
    assert np.abs(first[0][3].astype(int) - first[1][3].astype(int)).mean() > 5


def test_subjects_have_their_own_geometry():
    subjects = [make_subject(np.random.default_rng([0, n]), 96) for n in range(6)]
    for key in ("a", "eye_dx", "mouth_half", "nose_len", "skin"):
        assert len({round(s[key], 6) for s in subjects}) == 6


def test_landmarks_mark_eyes_nose_and_mouth():
    checked = 0
    for _, _, _, image, marks in generate(subjects=4, expressions=6, images=3, size=96, seed=1):
        image = image.astype(np.float64)
        left_eye, right_eye, nose, mouth_left, mouth_right = marks
        eye_distance = np.linalg.norm(right_eye - left_eye)
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        eye_line = (left_eye[1] + right_eye[1]) / 2
        assert eye_line < nose[1] < (mouth_left[1] + mouth_right[1]) / 2
        assert 10 < eye_distance < 40

        def patch(point):
            x, y = np.rint(point).astype(int)
            return image[y - 1:y + 2, x - 1:x + 2].mean()

        for eye in (left_eye, right_eye):
            cheek = eye + (right_eye - left_eye)[::-1] * [-1, 1] * 0.45      # below the eye
            assert patch(eye) < patch(cheek) - 25                         # the dark iris
        checked += 1
    assert checked == 72


def test_written_dataset_has_the_generic_csv_layout(tmp_path, capsys):
    count = write_dataset(tmp_path / "faces", subjects=2, expressions=7, images=2, size=48, seed=3)
    assert count == 28
    read = read_csv_dataset(tmp_path / "faces", landmarks_csv=tmp_path / "faces" / "landmarks.csv")
    assert len(read.items) == 28 and not read.skipped and read.num_classes == 7
    assert {item.subject for item in read.items} == {"S01", "S02"}
    assert sorted({item.label for item in read.items}) == list(range(7))
    assert all(item.landmarks is not None and len(item.landmarks) == 5 for item in read.items)
    assert read.items[0].source.endswith("images/S01/S01_anger_000.png")
    with pytest.raises(FileExistsError, match="already exists"):
        write_dataset(tmp_path / "faces")
    synthetic_main(["--out", str(tmp_path / "cli"), "--subjects", "1", "--images", "1", "--size", "40"])
    assert "wrote 6 images of 1 subjects" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="already exists"):
        synthetic_main(["--out", str(tmp_path / "cli")])


def test_bad_generator_parameters():
    with pytest.raises(ValueError, match="expressions must be 6"):
        list(generate(expressions=5))
    with pytest.raises(ValueError, match="size must be >= 32"):
        list(generate(size=16))


TRAIN_NET = """
layer {{ name: "data" type: "Data" top: "data" top: "label"
  transform_param {{ scale: 0.00390625 mirror: true }}
  data_param {{ source: "{source}" batch_size: 32 backend: LMDB }} }}
{body}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "logits" bottom: "label" top: "loss" }}
"""
DEPLOY_NET = """
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: {n} dim: 1 dim: 32 dim: 32 }} }} }}
{body}
layer {{ name: "prob" type: "Softmax" bottom: "logits" top: "prob" }}
"""
BODY = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 16 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc1" type: "InnerProduct" bottom: "pool2" top: "fc1"
  inner_product_param { num_output: 32 weight_filler { type: "xavier" } } }
layer { name: "relu3" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "logits" type: "InnerProduct" bottom: "fc1" top: "logits"
  inner_product_param { num_output: 6 weight_filler { type: "xavier" } } }
"""


def test_a_small_cnn_learns_the_expressions_of_unseen_subjects(tmp_path, caffe):
    out = tmp_path / "prepared"
    prepare_main(["--dataset", "synthetic", "--out", str(out), "--synthetic-subjects", "8",
                  "--synthetic-images", "5", "--folds", "4", "--crops", "2", "--size", "32",
                  "--workers", "1", "--quiet"])
    fold = out / "fold_00"
    (tmp_path / "train.prototxt").write_text(TRAIN_NET.format(source=fold / "train_lmdb", body=BODY))
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "train.prototxt"}"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0005\n'
        'lr_policy: "fixed"\nmax_iter: 250\nrandom_seed: 7\nsolver_mode: CPU\n'
        f'snapshot_prefix: "{tmp_path / "snap"}"\n')
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
    solver.step(250)
    solver.net.save(str(tmp_path / "trained.caffemodel"))

    records = {key: image for key, image, _ in read_lmdb(fold / "test_lmdb")}
    entries = json.loads((fold / "test_items.json").read_text())
    keys = [key for entry in entries for key in entry["keys"]]
    (tmp_path / "deploy.prototxt").write_text(DEPLOY_NET.format(n=len(keys), body=BODY))
    net = caffe.Net(str(tmp_path / "deploy.prototxt"), str(tmp_path / "trained.caffemodel"), caffe.TEST)
    net.blobs["data"].data[...] = np.stack([records[key] for key in keys]) / 256.0
    prob = dict(zip(keys, net.forward()["prob"].copy()))
    # as the evaluation does: softmax averaged over an item's crops
    correct = defaultdict(list)
    for entry in entries:
        guess = int(np.mean([prob[key] for key in entry["keys"]], axis=0).argmax())
        correct[entry["subject"]].append(guess == entry["label"])
    accuracy = np.mean([hit for hits in correct.values() for hit in hits])
    assert len(correct) == 2                                     # two subjects never seen in training
    assert accuracy > 0.5, f"accuracy {accuracy:.2f} on unseen subjects (chance 0.17)"
