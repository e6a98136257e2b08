"""tools/predict.py and inference.Predictor on a toy model trained with the real pipeline.

The synthetic dataset is prepared by data_prep/prepare.py (its images kept with
--root), one fold is cross-validated by tools/crossval.py with a real `caffe
train`, and predict.py then runs on the fold's test images: its probabilities
must be the ones crossval wrote in predictions.json. prepare aligned the
synthetic faces with their known landmarks (landmarks.csv), so predict gets the
same file with --landmarks-csv; the dlib path is tested separately. The model and its ONNX
export are tests/conftest.py's synthetic_toy_run and synthetic_toy_onnx.
"""
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_prep.framing import load_fer2013_framing
from data_prep.synthetic import draw_face, expression_parameters, make_subject
from inference.predictor import ModelError, Predictor
from inference.preprocessing import ManifestError
from inference.records import read_records
from inference.report_example import predict_example_markdown, write_example_faces
from runtime.caffe_env import REPO_ROOT
from tools import export_onnx, predict

pytestmark = pytest.mark.slow  # conftest's synthetic_toy_run: prepare + a real `caffe train`


def _predict(argv):
    """predict.py's records and Counts for ``argv`` (written to a JSON Lines file)."""
    out = argv[argv.index("--out") + 1]
    counts = predict.main(argv + ["--quiet"])
    return read_records(out), counts


def _by_input(records):
    return {r["input"]: r for r in records}


def _probabilities(record, classes):
    return np.array([record["probabilities"][name] for name in classes])


def test_predictions_agree_with_what_crossval_wrote(synthetic_toy_run, tmp_path):
    out = tmp_path / "faces.jsonl"
    records, counts = _predict(["--model", str(synthetic_toy_run["run"]), *synthetic_toy_run["sources"],
                                "--landmarks-csv", str(synthetic_toy_run["landmarks"]), "--out", str(out)])
    classes = json.loads((synthetic_toy_run["data"] / "manifest.json").read_text())["classes"]
    assert counts.faces == len(synthetic_toy_run["predictions"]) == 36 and counts.no_face == counts.unreadable == 0
    faces = _by_input(records)
    for expected in synthetic_toy_run["predictions"]:
        record = faces[expected["source"]]
        assert record["status"] == "face" and record["landmark_source"] == "known"
        assert classes.index(record["label"]) == expected["prediction"]
        np.testing.assert_allclose(_probabilities(record, classes), expected["probabilities"], rtol=0, atol=1e-6)
    # the model tells the images apart, so agreeing is not agreeing on a constant
    assert len({p["prediction"] for p in synthetic_toy_run["predictions"]}) > 1
    # ... and the comparison is sensitive: dlib's landmarks instead of the known ones change the numbers
    detected, _ = _predict(["--model", str(synthetic_toy_run["fold"]), *synthetic_toy_run["sources"], "--out", str(tmp_path / "d.jsonl")])
    moved = [np.abs(_probabilities(r, classes) - _probabilities(faces[r["input"]], classes)).max()
             for r in detected if r["status"] == "face"]
    assert len(moved) > 30 and np.median(moved) > 1e-3


def test_onnx_path_runs_without_caffe_and_agrees_with_caffe(synthetic_toy_run, synthetic_toy_onnx, tmp_path):
    sources = synthetic_toy_run["sources"][:12]
    caffe_records, _ = _predict(["--model", str(synthetic_toy_run["run"]), *sources, "--out", str(tmp_path / "caffe.jsonl")])
    code = ("import sys; sys.modules['caffe'] = None\n"   # `import caffe` now raises ImportError
            "from tools import predict\n"
            f"predict.main({['--onnx', str(synthetic_toy_onnx), *sources, '--out', str(tmp_path / 'onnx.jsonl')]!r})\n"
            "assert not any(name.startswith(('caffe_layers', 'nets')) for name in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    detected = sum(r["status"] == "face" for r in caffe_records)
    assert detected >= 10 and f"{detected} faces classified" in done.stderr
    onnx_records = read_records(tmp_path / "onnx.jsonl")
    classes = list(onnx_records[0]["probabilities"])
    assert [(r["input"], r["status"]) for r in onnx_records] == [(r["input"], r["status"]) for r in caffe_records]
    for ours, theirs in zip(onnx_records, caffe_records):
        if ours["status"] == "face":
            assert ours["label"] == theirs["label"] and ours["box"] == theirs["box"]
            np.testing.assert_allclose(_probabilities(ours, classes), _probabilities(theirs, classes), atol=1e-5)


def test_onnx_predictor_matches_crossval_with_known_landmarks(synthetic_toy_run, synthetic_toy_onnx):
    predictor = Predictor(synthetic_toy_onnx)
    from data_prep.readers.index_csv import read_landmarks_csv
    known = read_landmarks_csv(synthetic_toy_run["landmarks"])
    expected = synthetic_toy_run["predictions"][:8]
    results = predictor.predict_many([p["source"] for p in expected], [known[p["source"]] for p in expected])
    for result, entry in zip(results, expected):
        (face,) = result.faces
        np.testing.assert_allclose(face.probabilities, entry["probabilities"], atol=1e-5)
        assert predictor.class_names.index(face.label) == entry["prediction"]


def _synthetic_face(seed, label=3, size=96):
    """A face of a subject the model never saw (the dataset's subjects use seeds [0, n])."""
    rng = np.random.default_rng([99, seed])
    subject = make_subject(rng, size)
    image, _ = draw_face(rng, subject, expression_parameters(rng, label, subject), size)
    return image


def test_batched_forward_passes_give_the_single_image_results(synthetic_toy_run):
    images = [_synthetic_face(seed) for seed in range(5)]
    alone = [Predictor(synthetic_toy_run["fold"]).predict(image) for image in images]
    batched = Predictor(synthetic_toy_run["fold"], batch_crops=3).predict_many(images)   # crops of a face split across passes
    assert sum(len(r.faces) for r in alone) >= 4
    for one, many in zip(alone, batched):
        assert [f.box for f in one.faces] == [f.box for f in many.faces]
        for a, b in zip(one.faces, many.faces):
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
            assert a.label == b.label


def test_every_face_is_classified_and_small_faces_and_faceless_images_are_reported(synthetic_toy_run, tmp_path):
    left, right = _synthetic_face(1), _synthetic_face(2)
    right = cv2.resize(right, (80, 80), interpolation=cv2.INTER_AREA)
    pair = np.full((96, 200), 128, np.uint8)
    pair[:, :96], pair[8:88, 110:190] = left, right
    cv2.imwrite(str(tmp_path / "pair.png"), pair)
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((96, 96), 90, np.uint8))
    records, counts = _predict(["--model", str(synthetic_toy_run["run"]), str(tmp_path / "pair.png"), str(tmp_path / "blank.png"),
                                "--out", str(tmp_path / "r.jsonl"), "--annotate", str(tmp_path / "drawn")])
    faces = [r for r in records if r["status"] == "face"]
    assert [r["face"] for r in faces] == [0, 1]
    assert faces[0]["box"][2] < 100 < faces[1]["box"][0]          # the larger (left) face first
    assert all(r["landmark_source"] == "detected" and abs(sum(r["probabilities"].values()) - 1) < 1e-6
               for r in faces)
    (blank,) = [r for r in records if r["input"].endswith("blank.png")]
    assert blank["status"] == "no_face" and blank["reason"] == "no face found"
    assert (counts.faces, counts.no_face, counts.images) == (2, 1, 2)
    drawn = cv2.imread(str(tmp_path / "drawn" / "00000_pair.png"))
    assert drawn.shape == (96, 200, 3) and not np.array_equal(drawn[:, :, 1], drawn[:, :, 2])  # green boxes

    widths = [r["box"][2] - r["box"][0] for r in faces]
    assert widths[0] > widths[1] + 2
    between = str(int(round(sum(widths) / 2)))
    records, counts = _predict(["--model", str(synthetic_toy_run["run"]), str(tmp_path / "pair.png"), "--min-face", between,
                                "--out", str(tmp_path / "s.jsonl")])
    statuses = [r["status"] for r in records]
    assert statuses == ["face", "small_face"] and counts.small_faces == 1
    records, counts = _predict(["--model", str(synthetic_toy_run["run"]), str(tmp_path / "pair.png"), "--min-face", "500",
                                "--out", str(tmp_path / "n.jsonl")])
    assert [r["status"] for r in records] == ["small_face", "small_face", "no_face"]
    assert "narrower than the minimum 500 px" in records[0]["reason"] and counts.no_face == 1


def test_videos_are_sampled_every_nth_frame(synthetic_toy_run, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 96))
    for seed in range(7):
        writer.write(cv2.cvtColor(_synthetic_face(seed), cv2.COLOR_GRAY2BGR))
    writer.release()
    records, counts = _predict(["--model", str(synthetic_toy_run["run"]), str(video), "--every", "3",
                                "--format", "jsonl", "--out", str(tmp_path / "v.jsonl")])
    assert sorted({r["frame"] for r in records}) == [0, 3, 6]
    assert counts.frames == 3 and counts.images == 0 and counts.faces + counts.no_face >= 3
    predict.main(["--model", str(synthetic_toy_run["run"]), str(video), "--every", "3", "--format", "csv",
                  "--out", str(tmp_path / "v.csv"), "--quiet"])
    rows = (tmp_path / "v.csv").read_text().splitlines()
    assert rows[0].startswith("input,frame,face,status,reason,box_left") and rows[0].endswith("p_surprise,label")
    assert len(rows) == len(records) + 1


def test_bad_inputs_are_counted_reported_and_the_run_goes_on(synthetic_toy_run, tmp_path, capsys):
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "sub" / "good.png"), _synthetic_face(3))
    ok, jpeg = cv2.imencode(".jpg", _synthetic_face(4))
    (folder / "truncated.jpg").write_bytes(jpeg.tobytes()[:len(jpeg) // 2])
    (folder / "text.png").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    (tmp_path / "nothing").mkdir()
    out = tmp_path / "r.jsonl"
    counts = predict.main(["--model", str(synthetic_toy_run["run"]), str(folder), str(tmp_path / "missing.png"),
                           str(tmp_path / "nothing"), "--out", str(out)])
    records = _by_input(read_records(out))
    reasons = {name: records[str(folder / name)]["reason"] for name in
               ("truncated.jpg", "text.png", "empty.png", "broken.mp4")}
    assert "truncated" in reasons["truncated.jpg"] and "cannot decode" in reasons["text.png"]
    assert reasons["empty.png"] == "empty file" and "cannot open it as a video" in reasons["broken.mp4"]
    assert records[str(tmp_path / "missing.png")]["reason"] == "no such file or folder"
    assert "holds no image or video files" in records[str(tmp_path / "nothing")]["reason"]
    assert all(r["status"] == "unreadable" for name, r in records.items() if "good" not in name)
    assert records[str(folder / "sub" / "good.png")]["status"] in ("face", "no_face")
    assert counts.unreadable == 6 and counts.images == 1 and counts.inputs == 7
    assert "6 unreadable inputs" in capsys.readouterr().err


def test_model_errors_name_the_file_and_what_to_do(synthetic_toy_run, synthetic_toy_onnx, tmp_path):
    fold, manifest = synthetic_toy_run["fold"], synthetic_toy_run["data"] / "manifest.json"
    # a run folder whose fold lost its caffemodel, or whose training never finished
    broken = tmp_path / "broken_run"
    shutil.copytree(synthetic_toy_run["run"], broken, ignore=shutil.ignore_patterns("*.caffemodel"))
    with pytest.raises(ModelError, match=r"has no caffemodel snapshot_iter_60.caffemodel"):
        Predictor(broken)
    (broken / "fold_00" / "training.json").unlink()
    with pytest.raises(ModelError, match=r"no fold with a finished training"):
        Predictor(broken)
    with pytest.raises(ModelError, match=r"training did not finish"):
        Predictor(broken / "fold_00")
    with pytest.raises(SystemExit, match=r"predict.py: error: .*no fold with a finished training"):
        predict.main(["--model", str(broken), "x.png"])
    # a deploy net whose input size is not the manifest's
    deploy = fold / "toy_l2_deploy.prototxt"
    text = deploy.read_text()
    assert "dim: 48\n" in text
    wrong = tmp_path / "toy_l2_64_deploy.prototxt"
    wrong.write_text(text.replace("dim: 48\n", "dim: 64\n"))
    weights = fold / "snapshot_iter_60.caffemodel"
    with pytest.raises(ModelError, match=r"takes 64x64 inputs but .*manifest.json was prepared at 48x48"):
        Predictor(wrong, weights=weights, manifest=manifest)
    with pytest.raises(SystemExit, match=r"takes 64x64 inputs"):
        predict.main(["--model", str(wrong), "--weights", str(weights), "--manifest", str(manifest), "x.png"])
    with pytest.raises(ModelError, match=r"needs its caffemodel and the manifest.json"):
        Predictor(deploy, weights=weights)
    # a deploy net with weights and manifest given works like the run folder
    direct = Predictor(deploy, weights=weights, manifest=manifest).predict(_synthetic_face(5))
    via_run = Predictor(synthetic_toy_run["run"]).predict(_synthetic_face(5))
    np.testing.assert_array_equal([f.probabilities for f in direct.faces], [f.probabilities for f in via_run.faces])
    # a manifest that does not say how the crops were made
    old = json.loads(manifest.read_text())
    del old["alignment"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ManifestError, match=r"has no 'alignment'.*prepare the dataset again"):
        Predictor(deploy, weights=weights, manifest=tmp_path / "old.json")
    # an ONNX model exported without metadata needs --manifest
    bare = export_onnx.main(["--model", str(deploy), "--weights", str(weights), "--out", str(tmp_path / "bare.onnx")])
    with pytest.raises(ModelError, match=r"records no prepared-dataset manifest.*--manifest"):
        Predictor(bare)
    assert Predictor(bare, manifest=manifest).predict(_synthetic_face(5)).faces[0].label == via_run.faces[0].label


def test_the_report_example_shows_predict_py_output_on_unseen_generated_faces(synthetic_toy_run, tmp_path):
    images = write_example_faces(tmp_path / "faces")
    assert write_example_faces(tmp_path / "faces") == images   # a rerun reuses them
    text = predict_example_markdown(synthetic_toy_run["run"], images)
    assert f"python tools/predict.py --model {synthetic_toy_run['run']} {tmp_path / 'faces'}/ --out faces.jsonl" in text
    records, _ = _predict(["--model", str(synthetic_toy_run["run"]), str(tmp_path / "faces"), "--out", str(tmp_path / "f.jsonl")])
    rows = [line for line in text.splitlines() if line.startswith("| face01_")]
    assert len(rows) == len(records) == 6
    for row, record in zip(rows, records):
        assert row.startswith(f"| {record['input'].rsplit('/', 1)[1]} |")
        assert (f"| {record['label']} | {max(record['probabilities'].values()):.2f} |" in row
                if record["status"] == "face" else f"{record['status']}: " in row)
    (tmp_path / "faces" / "extra.png").write_bytes(b"")
    with pytest.raises(FileExistsError, match="holds other files than the example faces"):
        write_example_faces(tmp_path / "faces")


@pytest.mark.parametrize("mode", ["detected", "known", "none"])
def test_face_crops_are_the_crops_prepare_makes(synthetic_toy_run, tmp_path, mode):
    from dataclasses import replace

    from data_prep.items import Item
    from data_prep.pipeline import process_item
    from data_prep.readers.index_csv import read_landmarks_csv
    from inference.preprocessing import FaceCropper, prep_config_from_manifest

    manifest = json.loads((synthetic_toy_run["data"] / "manifest.json").read_text())
    config = prep_config_from_manifest(manifest)
    assert (config.size, config.crops, config.gray, config.align) == (48, 4, "std", "landmarks")
    if mode == "none":
        config = replace(config, align="none")
    source = synthetic_toy_run["sources"][0]
    marks = read_landmarks_csv(synthetic_toy_run["landmarks"])[source] if mode == "known" else None
    prepared = process_item(0, Item(source, 0, "S01", source, landmarks=marks), config)
    faces, _ = FaceCropper(config).faces(cv2.imread(source, cv2.IMREAD_GRAYSCALE), marks)
    assert prepared.alignment == {"detected": "detected", "known": "known", "none": "none"}[mode]
    assert faces[0].source == {"detected": "detected", "known": "known", "none": "frame"}[mode]
    np.testing.assert_array_equal(faces[0].crops, prepared.crops)


def test_detect_max_side_finds_small_faces_in_large_photos(synthetic_toy_run):
    photo = np.full((1200, 1600), 120, np.uint8)
    photo[500:692, 700:892] = cv2.resize(_synthetic_face(1), (192, 192), interpolation=cv2.INTER_CUBIC)
    # prepare's detection size (320) shrinks this face below what dlib's HOG detector finds
    assert Predictor(synthetic_toy_run["run"]).predict(photo).faces == []
    (face,) = Predictor(synthetic_toy_run["run"], detect_max_side=1200).predict(photo).faces
    assert 700 <= face.box[0] < face.box[2] <= 892 and 500 <= face.box[1] < face.box[3] <= 692
    with pytest.raises(ValueError, match="detect_max_side must be >= the manifest's detect_min_side 160"):
        Predictor(synthetic_toy_run["run"], detect_max_side=100)


def test_worker_processes_give_the_records_of_one_process(synthetic_toy_run, tmp_path):
    from inference.batch import predict_inputs
    from inference.media import expand_inputs

    for seed in range(6):
        cv2.imwrite(str(tmp_path / f"face{seed}.png"), _synthetic_face(seed))
    (tmp_path / "broken.png").write_text("not an image")
    predictor = Predictor(synthetic_toy_run["run"])
    inputs = expand_inputs([tmp_path])
    alone, spread = [], []
    one = predict_inputs(predictor, inputs, alone.append, progress=False)
    two = predict_inputs(predictor, inputs, spread.append, progress=False, workers=2, group_size=2)
    assert one == two and one.unreadable == 1 and one.faces >= 5
    assert [(r["input"], r["status"], r["box"], r["label"]) for r in alone] == \
        [(r["input"], r["status"], r["box"], r["label"]) for r in spread]
    for a, b in zip(alone, spread):
        if a["status"] == "face":
            np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-6)


def test_without_caffe_the_caffe_path_says_to_use_onnx(synthetic_toy_run):
    code = ("import sys; sys.modules['caffe'] = None\n"
            "from tools import predict\n"
            f"predict.main(['--model', {str(synthetic_toy_run['run'])!r}, 'x.png'])\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 1
    assert "pycaffe cannot be imported" in done.stderr and "with --onnx" in done.stderr


def test_gpu_is_used_or_refused_with_a_clear_error(synthetic_toy_run):
    from inference.caffe_backend import gpu_problem

    face = _synthetic_face(5)
    problem = gpu_problem(0)
    if problem is None:   # a CUDA Caffe with a device: the GPU gives the CPU's probabilities
        on_gpu = Predictor(synthetic_toy_run["run"], gpu=0).predict(face)
        on_cpu = Predictor(synthetic_toy_run["run"]).predict(face)
        np.testing.assert_allclose(on_gpu.faces[0].probabilities, on_cpu.faces[0].probabilities, atol=1e-5)
    else:                 # a CPU-only Caffe would abort the process: refused before, saying why
        with pytest.raises(ValueError, match=r"Caffe cannot use GPU 0 \(.+\); run on the CPU \(leave out --gpu\)"):
            Predictor(synthetic_toy_run["run"], gpu=0)


def test_a_deploy_net_is_named_as_in_export_onnx_and_the_old_form_still_works(synthetic_toy_run, tmp_path, capsys):
    deploy, weights = synthetic_toy_run["fold"] / "toy_l2_deploy.prototxt", synthetic_toy_run["fold"] / "snapshot_iter_60.caffemodel"
    manifest = synthetic_toy_run["data"] / "manifest.json"
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), _synthetic_face(6))
    common = ["--manifest", str(manifest), "--out"]
    new, _ = _predict(["--model", str(deploy), "--weights", str(weights), str(image), *common, str(tmp_path / "n.jsonl")])
    assert "warning" not in capsys.readouterr().err
    old, _ = _predict(["--model", str(deploy), str(weights), str(image), *common, str(tmp_path / "o.jsonl")])
    assert "warning: --model DEPLOY CAFFEMODEL is now --model DEPLOY --weights CAFFEMODEL" in capsys.readouterr().err
    assert new == old and new[0]["status"] == "face"
    with pytest.raises(SystemExit):
        predict.main(["--model", str(deploy), str(image), "--manifest", str(manifest)])
    assert "a deploy prototxt needs --weights CAFFEMODEL" in capsys.readouterr().err


def test_nothing_readable_exits_non_zero_naming_each_file_without_video_library_noise(synthetic_toy_run, tmp_path):
    fake_video = tmp_path / "holiday.mp4"
    fake_video.write_text("this is a text file, not a video\n" * 20)
    fake_image = tmp_path / "photo.png"
    fake_image.write_text("not an image")
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "predict.py"), "--model", str(synthetic_toy_run["run"]),
                           str(fake_video), str(fake_image), "--out", str(tmp_path / "r.jsonl")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr
    lines = [line.rsplit("\r", 1)[-1] for line in done.stderr.strip().splitlines()]  # the progress bar's last state
    assert f"predict.py: unreadable: {fake_video}: OpenCV cannot open it as a video" in done.stderr
    assert f"predict.py: unreadable: {fake_image}: " in done.stderr
    assert lines[-1].startswith("predict.py: error: nothing was classified: none of the 2 inputs")
    # FFmpeg ("moov atom not found"), GStreamer and OpenCV's log wrote to fd 2 before: nothing of theirs remains
    noise = [line for line in lines if not line.startswith(("predict.py: ", "predicting: "))]
    assert not noise, done.stderr
    assert {r["status"] for r in read_records(tmp_path / "r.jsonl")} == {"unreadable"}


def test_a_real_video_still_reads_while_native_stderr_is_silenced(tmp_path):
    from inference.media import video_frames
    path = tmp_path / "clip.avi"
    video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    for value in range(0, 250, 50):
        video.write(np.full((48, 64, 3), value, np.uint8))
    video.release()
    frames = list(video_frames(path, every=2))
    assert [number for number, _ in frames] == [0, 2, 4]
    assert abs(int(frames[1][1].mean()) - 100) <= 3


def _align_none_manifest(synthetic_toy_run, tmp_path, dataset, framing=True):
    """The trained run's manifest as if its dataset had been prepared with --align none."""
    manifest = json.loads((synthetic_toy_run["data"] / "manifest.json").read_text())
    manifest["alignment"]["method"] = "none"
    manifest["dataset"] = dataset
    manifest["framing"] = load_fer2013_framing().as_dict() if framing else None
    path = tmp_path / f"{dataset}_{framing}_manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def test_a_face_in_a_photo_is_cut_as_its_ready_cut_database_framed_it(tmp_path):
    # Issue 23, item 9: a model trained on ready-cut faces (FER2013, --align none) sees a face
    # in a photo in the frame its database would have cut: a ready-cut face pasted 3x larger
    # into a photo is found again in (nearly) the square it was pasted into.
    from dataclasses import replace

    from skimage import data as skimage_data

    from data_prep.alignment import FaceAligner
    from data_prep.face_template import load_template
    from data_prep.framing import cut_frame, frame_face, frame_to_face_box
    from data_prep.pipeline import PrepConfig
    from inference.preprocessing import FaceCropper

    framing = load_fer2013_framing()
    gray = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)
    aligner = FaceAligner(68)
    ready_cut = cut_frame(gray, frame_face(gray, aligner.detect(gray), framing, aligner.detect), 48)
    photo = np.full((400, 520), 60, np.uint8)                    # the face, 3x larger, elsewhere
    photo[150:294, 300:444] = cv2.resize(ready_cut, (144, 144), interpolation=cv2.INTER_CUBIC)
    config = replace(PrepConfig(template=load_template(), size=48, crops=1), align="none")
    (framed,), _ = FaceCropper(config, framing=framing).faces(photo)
    assert framed.source == "framed" and 300 <= framed.box[0] < framed.box[2] <= 444
    left, top, side = frame_face(photo, framed.box, framing, aligner.detect)
    # Within a tenth of the side: dlib's boxes at 48 px are whole pixels (1/48 of the side each).
    assert abs(left - 300) < 14.4 and abs(top - 150) < 14.4 and abs(side - 144) < 14.4
    cropper = FaceCropper(config, framing=framing)
    np.testing.assert_array_equal(framed.crops, cropper.crops(photo, frame_to_face_box((left, top, side))))
    # The whole photo as the face (the old behaviour) is another view altogether.
    (old,), _ = FaceCropper(config).faces(photo)
    assert old.source == "frame" and old.box[2] - old.box[0] > 2 * side


def test_an_align_none_model_detects_faces_unless_told_the_inputs_are_crops(synthetic_toy_run, tmp_path):
    noise = np.random.default_rng(5).integers(0, 256, (96, 96)).astype(np.uint8)
    face = _synthetic_face(4)
    fer = _align_none_manifest(synthetic_toy_run, tmp_path, "fer2013")
    framed = Predictor(synthetic_toy_run["run"], manifest=fer)
    assert framed.predict(noise).faces == []                     # no face in noise: reported
    (one,) = framed.predict(face).faces
    whole = Predictor(synthetic_toy_run["run"], manifest=fer, whole_image=True)
    assert len(whole.predict(noise).faces) == 1                  # a ready-cut input: classified whole
    # A FER2013 manifest from before the framing was recorded: the shipped FER2013 framing.
    older = _align_none_manifest(synthetic_toy_run, tmp_path, "fer2013", framing=False)
    assert Predictor(synthetic_toy_run["run"], manifest=older).cropper.framing == load_fer2013_framing()
    other = _align_none_manifest(synthetic_toy_run, tmp_path, "csv", framing=False)
    with pytest.raises(ModelError, match="records no framing.*--whole-image"):
        Predictor(synthetic_toy_run["run"], manifest=other)
    cv2.imwrite(str(tmp_path / "noise.png"), noise)
    records, _ = _predict(["--model", str(synthetic_toy_run["run"]), "--manifest", str(fer), str(tmp_path / "noise.png"),
                           "--whole-image", "--out", str(tmp_path / "whole.jsonl")])
    assert [r["status"] for r in records] == ["face"]
