"""prepare.py end to end: the prepared-folder contract, every dataset, bad inputs, atomicity."""
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from data_prep.alignment import FaceAligner
from data_prep.face_template import load_template
from data_prep.framing import load_fer2013_framing
from data_prep.items import Item
from data_prep.lmdb_io import read_lmdb
from data_prep.pipeline import ImageError, decode_item
from tools.prepare import build_parser, main
from data_prep.prepared import PreparedDataset
from tests.data_prep.ckplus_fixture import ckplus_layout_with_published_counts
from tests.signals import sigint_as_at_a_terminal

REPO = Path(__file__).resolve().parents[2]
PREPARE = REPO / "data_prep" / "prepare.py"
REQUIRED_MANIFEST_KEYS = {"dataset", "classes", "num_classes", "image_size", "channels", "crops", "seed",
                          "splits", "counts", "template", "skipped", "fallbacks"}


def run(*argv):
    main([*map(str, argv), "--quiet"])


def lmdb_dict(path):
    return {key: (image.copy(), label) for key, image, label in read_lmdb(path)}


def check_prepared_folder(out, crops, size):
    """Everything docs/architecture.md promises about a prepared folder; returns the manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert REQUIRED_MANIFEST_KEYS <= set(manifest)
    assert manifest["channels"] == 1 and manifest["crops"] == crops and manifest["image_size"] == size
    assert len(manifest["classes"]) == manifest["num_classes"]
    items = json.loads((out / "items.json").read_text())
    assert not list(out.parent.glob(f".{out.name}.partial-*")) and not (out / "_crops.npy").exists()
    tested = []
    for name, summary in manifest["splits"].items():
        folder = out / name
        train = lmdb_dict(folder / "train_lmdb")
        assert len(train) == summary["train"]["records"] == summary["train"]["items"] * crops
        pairs = [tuple(map(int, key.split("_")[1:])) for key in sorted(train)]
        assert [int(key.split("_")[0]) for key in sorted(train)] == list(range(len(train)))
        assert len(set(pairs)) == len(pairs)
        if len(pairs) > 4:                         # shuffled, not in item order
            assert pairs != sorted(pairs)
        train_items = {item for item, _ in pairs}
        assert {crop for _, crop in pairs} == set(range(crops))
        for key, (image, label) in train.items():
            assert image.shape == (1, size, size) and image.dtype == np.uint8
            assert label == items[int(key.split("_")[1])]["label"]
        for part in ("test", "val"):
            if part not in summary:
                assert not (folder / f"{part}_lmdb").exists()
                continue
            records = lmdb_dict(folder / f"{part}_lmdb")
            entries = json.loads((folder / f"{part}_items.json").read_text())
            assert len(entries) == summary[part]["items"] and len(records) == summary[part]["records"]
            keys = []
            for entry in entries:
                assert entry["keys"] == [f"{entry['item']:07d}_{crop:02d}" for crop in range(crops)]
                assert entry["source"] == items[entry["item"]]["source"]
                assert entry["subject"] == items[entry["item"]]["subject"]
                for key in entry["keys"]:
                    assert records[key][1] == entry["label"] == items[entry["item"]]["label"]
                keys += entry["keys"]
            assert sorted(keys) == sorted(records)
            part_items = {entry["item"] for entry in entries}
            assert not part_items & train_items
            subjects = {items[i]["subject"] for i in part_items} - {None}
            assert not subjects & {items[i]["subject"] for i in train_items}
            if part == "test":
                tested += sorted(part_items)
    if manifest["split_method"] != "official":
        assert sorted(tested) == list(range(len(items)))         # every item tested exactly once
    return manifest


# --- the synthetic default dataset --------------------------------------------------------------

def test_synthetic_dataset_meets_the_contract_and_is_deterministic(tmp_path):
    common = ["--dataset", "synthetic", "--synthetic-subjects", 6, "--synthetic-images", 3,
              "--folds", 3, "--crops", 5, "--size", 32]
    run(*common, "--out", tmp_path / "one", "--workers", 1)
    manifest = check_prepared_folder(tmp_path / "one", crops=5, size=32)
    assert manifest["dataset"] == "synthetic" and manifest["num_classes"] == 6
    assert manifest["counts"]["items"] == 6 * 6 * 3 and manifest["counts"]["alignment"] == {"known": 108}
    assert manifest["counts"]["per_class"] == {name: 18 for name in manifest["classes"]}
    assert manifest["counts"]["per_subject"]["S01"] == {name: 3 for name in manifest["classes"]}
    for name in ("fold_00", "fold_01", "fold_02"):
        split = manifest["splits"][name]
        assert len(split["test"]["subjects"]) == 2 and len(split["train"]["subjects"]) == 4
        assert manifest["counts"]["per_split"][name]["test"] == {c: 6 for c in manifest["classes"]}
    assert manifest["skipped"] == [] and manifest["fallbacks"] == []
    assert manifest["template"]["points"]["mouth"] == [0.5, 0.73]
    # the drawn images were not kept: sources name them relative to the generated dataset
    items = json.loads((tmp_path / "one" / "items.json").read_text())
    assert items[0]["source"] == "synthetic:images/S01/S01_anger_000.png"
    # same result with two worker processes: imap keeps item order
    run(*common, "--out", tmp_path / "two", "--workers", 2)
    for name in ("fold_00", "fold_02"):
        for db in ("train_lmdb", "test_lmdb"):
            one, two = lmdb_dict(tmp_path / "one" / name / db), lmdb_dict(tmp_path / "two" / name / db)
            assert one.keys() == two.keys()
            assert all(np.array_equal(one[k][0], two[k][0]) and one[k][1] == two[k][1] for k in one)
    # a different seed gives other folds
    run(*common, "--out", tmp_path / "three", "--workers", 1, "--split-seed", 5)
    other = json.loads((tmp_path / "three" / "manifest.json").read_text())
    assert other["splits"]["fold_00"]["test"]["subjects"] != manifest["splits"]["fold_00"]["test"]["subjects"] \
        or other["splits"]["fold_01"]["test"]["subjects"] != manifest["splits"]["fold_01"]["test"]["subjects"]


def test_synthetic_source_can_be_kept(tmp_path):
    run("--dataset", "synthetic", "--root", tmp_path / "faces", "--out", tmp_path / "out",
        "--synthetic-subjects", 3, "--synthetic-images", 1, "--synthetic-expressions", 7, "--folds", 3,
        "--workers", 1)
    assert (tmp_path / "faces" / "labels.csv").is_file() and (tmp_path / "faces" / "landmarks.csv").is_file()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["classes"][-1] == "neutral" and manifest["counts"]["items"] == 21
    with pytest.raises(SystemExit, match="exists; for --dataset synthetic --root names a new folder"):
        run("--dataset", "synthetic", "--root", tmp_path / "faces", "--out", tmp_path / "out2")


# --- real layouts, real photos ------------------------------------------------------------------

@pytest.fixture(scope="module")
def astronaut():
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)


def face_photo(astronaut, rng, size=160):
    """The astronaut's face at a random roll, size and place (a stand-in for one subject's frame)."""
    angle = math.radians(rng.uniform(-8, 8))
    scale = rng.uniform(0.8, 1.0)
    centre = np.array([224.0, 120.0])
    matrix = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) * scale
    shift = np.array([size / 2, size / 2]) + rng.uniform(-8, 8, 2) - matrix @ centre
    return cv2.warpAffine(astronaut, np.hstack([matrix, shift[:, np.newaxis]]), (size, size),
                          borderMode=cv2.BORDER_REFLECT)


def _ckplus(root, astronaut, rng, subjects=("S005", "S022", "S037"), frames=4):
    for subject in subjects:
        for sequence, code in (("001", 3), ("002", 5)):
            folder = root / "cohn-kanade-images" / subject / sequence
            folder.mkdir(parents=True)
            for number in range(1, frames + 1):
                cv2.imwrite(str(folder / f"{subject}_{sequence}_{number:08d}.png"), face_photo(astronaut, rng))
            labels = root / "Emotion" / subject / sequence
            labels.mkdir(parents=True)
            (labels / f"{subject}_{sequence}_{frames:08d}_emotion.txt").write_text(f"   {code:.7e}\n")


def test_ckplus_with_detection_fallback_corrupt_and_duplicate_frames(tmp_path, astronaut, rng):
    root = tmp_path / "CK+"
    _ckplus(root, astronaut, rng)
    frames = root / "cohn-kanade-images"
    corrupt = frames / "S005" / "001" / "S005_001_00000003.png"
    corrupt.write_bytes(corrupt.read_bytes()[:200])                       # truncated PNG
    no_face = frames / "S022" / "002" / "S022_002_00000004.png"
    cv2.imwrite(str(no_face), cv2.GaussianBlur(rng.integers(0, 256, (160, 160)).astype(np.uint8), (0, 0), 2))
    duplicate = frames / "S037" / "002" / "S037_002_00000002.png"
    duplicate.write_bytes((frames / "S037" / "001" / "S037_001_00000002.png").read_bytes())
    # One neutral image per sequence (not the per-subject default) so every frame rule is exercised.
    run("--dataset", "ckplus", "--root", root, "--out", tmp_path / "out", "--folds", 3, "--crops", 1,
        "--size", 96, "--gray", "none", "--workers", 1, "--ckplus-neutral", "sequence")
    manifest = check_prepared_folder(tmp_path / "out", crops=1, size=96)
    assert manifest["num_classes"] == 7
    skipped = {Path(s["source"]).name: s["reason"] for s in manifest["skipped"]}
    assert skipped == {"S005_001_00000003.png": "corrupt or unsupported image: OpenCV cannot decode it",
                       "S037_002_00000002.png": f"duplicate of {frames / 'S037' / '001' / 'S037_001_00000002.png'}"
                                                " (with a different label, 1 vs 3)"}
    assert manifest["fallbacks"] == [{"source": str(no_face), "kind": "frame"}]
    assert manifest["counts"]["items"] == 3 * 2 * 4 - 2
    assert manifest["counts"]["alignment"] == {"detected": 21, "frame": 1}
    assert manifest["counts"]["per_class"]["neutral"] == 6 and manifest["counts"]["per_class"]["disgust"] == 8
    # the stored faces are aligned: dlib finds their eyes where the template puts them
    template = load_template()
    aligner = FaceAligner(68)
    entries = json.loads((tmp_path / "out" / "fold_00" / "test_items.json").read_text())
    records = lmdb_dict(tmp_path / "out" / "fold_00" / "test_lmdb")
    checked = 0
    for entry in entries:
        if entry["source"] == str(no_face):
            continue
        points, kind = aligner.locate(records[entry["keys"][0]][0][0])
        assert kind == "detected"
        found = np.vstack([points["left_eye"], points["right_eye"]])
        assert np.abs(found - (template.triangle()[:2] * 96 - 0.5)).max() < 4.0
        checked += 1
    assert checked >= 6


def test_ckplus_standard_split_and_fallback_skip(tmp_path, astronaut, rng):
    root = tmp_path / "CK+"
    _ckplus(root, astronaut, rng, subjects=("S010", "S002", "S113", "S051"), frames=2)
    blank = root / "cohn-kanade-images" / "S051" / "002" / "S051_002_00000002.png"
    cv2.imwrite(str(blank), np.full((160, 160), 90, np.uint8))
    run("--dataset", "ckplus", "--root", root, "--out", tmp_path / "out", "--split", "ckplus-standard",
        "--folds", 2, "--crops", 2, "--size", 24, "--fallback", "skip", "--workers", 1)
    manifest = check_prepared_folder(tmp_path / "out", crops=2, size=24)
    # ascending IDs S002 S010 S051 S113 dealt to 2 folds in turn
    assert manifest["splits"]["fold_00"]["test"]["subjects"] == ["S002", "S051"]
    assert manifest["splits"]["fold_01"]["test"]["subjects"] == ["S010", "S113"]
    assert manifest["skipped"] == [{"source": str(blank), "reason": "no face found (--fallback skip)"}]
    assert manifest["fallbacks"] == []


def test_fer2013_official_split_stores_the_pixels(tmp_path, rng):
    images = rng.integers(0, 256, (7, 48, 48))
    usages = ["Training", "Training", "Training", "PublicTest", "PrivateTest", "PrivateTest", "Training"]
    images[6] = images[0]                                   # FER2013 has duplicates; they are kept
    rows = ["emotion,pixels,Usage"] + [f"{i % 7},{' '.join(map(str, image.ravel()))},{usage}"
                                       for i, (image, usage) in enumerate(zip(images, usages))]
    (tmp_path / "fer2013.csv").write_text("\n".join(rows) + "\n")
    run("--dataset", "fer2013", "--root", tmp_path / "fer2013.csv", "--out", tmp_path / "out", "--size", 48,
        "--gray", "none", "--workers", 1)
    manifest = check_prepared_folder(tmp_path / "out", crops=1, size=48)
    assert list(manifest["splits"]) == ["official"]
    official = manifest["splits"]["official"]
    assert (official["train"]["items"], official["val"]["items"], official["test"]["items"]) == (4, 1, 2)
    assert official["test"]["subjects"] is None and manifest["counts"]["per_subject"] == {}
    assert manifest["duplicates"] == [{"source": f"{tmp_path / 'fer2013.csv'}:line 8",
                                       "duplicate_of": f"{tmp_path / 'fer2013.csv'}:line 2",
                                       "action": "keep (with a different label, 0 vs 6)"}]
    # FER2013's framing (measured, data_prep/fer2013_framing.json) travels with the model for photos.
    assert manifest["framing"] == load_fer2013_framing().as_dict()
    # not aligned (as in the paper), resized 48 -> 48: the stored image is the csv row itself
    test = lmdb_dict(tmp_path / "out" / "official" / "test_lmdb")
    entries = json.loads((tmp_path / "out" / "official" / "test_items.json").read_text())
    for entry in entries:
        row = int(entry["source"].rsplit(" ", 1)[1]) - 2
        np.testing.assert_array_equal(test[entry["keys"][0]][0][0], images[row])
    assert (tmp_path / "out" / "official" / "val_items.json").is_file()


def _write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _oulu(root, astronaut, rng):
    for subject in ("P001", "P002"):
        for expression in ("Anger", "Happiness"):
            for number in range(5):
                photo = face_photo(astronaut, rng, 120)
                _write_png(root / "NI" / "Strong" / subject / expression / f"{number:03d}.jpeg", photo)


def _mmi(root, astronaut, rng):
    rows = ["sequence,frame,label,subject"]
    for subject in ("S1", "S2", "S3"):
        for label in ("fear", "sad"):
            path = f"{subject}/{label}.png"
            _write_png(root / path, face_photo(astronaut, rng, 120))
            rows.append(f"{subject}_{label},{path},{label},{subject}")
    (root / "mmi_index.csv").write_text("\n".join(rows) + "\n")


def _ckplus48(root, astronaut, rng):
    for subject in ("S010", "S011"):
        for folder in ("happy", "surprise"):
            tight = cv2.resize(face_photo(astronaut, rng, 120)[20:100, 20:100], (48, 48),
                               interpolation=cv2.INTER_AREA)
            _write_png(root / folder / f"{subject}_003_00000012.png", tight)


def _generic_csv(root, astronaut, rng):
    rows = ["path,label,subject"]
    for subject in ("a", "b"):
        for label in ("disgust", "neutral"):
            _write_png(root / "img" / f"{subject}{label}.png", face_photo(astronaut, rng, 120))
            rows.append(f"img/{subject}{label}.png,{label},{subject}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("dataset, build, items, classes", [
    ("oulu", _oulu, 12, 6), ("mmi", _mmi, 6, 6), ("ckplus48", _ckplus48, 4, 6), ("csv", _generic_csv, 4, 7)])
def test_every_layout_prepares(tmp_path, astronaut, rng, dataset, build, items, classes):
    build(tmp_path / "db", astronaut, rng)
    run("--dataset", dataset, "--root", tmp_path / "db", "--out", tmp_path / "out", "--folds", 2,
        "--crops", 2, "--size", 32, "--workers", 1)
    manifest = check_prepared_folder(tmp_path / "out", crops=2, size=32)
    assert manifest["counts"]["items"] == items and manifest["num_classes"] == classes
    assert manifest["counts"]["alignment"] == {"detected": items}


# --- bad input ----------------------------------------------------------------------------------

def test_existing_output_folder_is_refused_and_untouched(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="output folder .* already exists; prepare.py never overwrites"):
        run("--dataset", "synthetic", "--out", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_wrong_layout_names_the_path_and_what_was_expected(tmp_path, capsys):
    (tmp_path / "db" / "pictures").mkdir(parents=True)
    with pytest.raises(SystemExit) as error:
        run("--dataset", "oulu", "--root", tmp_path / "db", "--out", tmp_path / "out")
    message = str(error.value)
    assert message.startswith("prepare.py: error: Oulu-CASIA root ")
    assert str(tmp_path / "db") in message and "NIR (NIR or NI)/Strong/Pxxx/<Expression>/" in message
    assert "found: pictures" in message
    assert list(tmp_path.iterdir()) == [tmp_path / "db"]               # no output, no partial folder


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "ckplus", "--root", "x", "--oulu-light", "Dark"], "--oulu-light applies to --dataset oulu only"),
    (["--dataset", "fer2013", "--root", "x", "--folds", "5"], "--folds does not apply to --split official"),
    (["--dataset", "fer2013", "--root", "x", "--split", "folds"], "FER2013 has no subject identities"),
    (["--dataset", "mmi"], "--root is required for --dataset mmi"),
    (["--dataset", "synthetic", "--synthetic-subjects", "2", "--folds", "3"],
     "2 subjects cannot fill 3 person-independent folds"),
])
def test_option_errors(tmp_path, argv, message):
    with pytest.raises(SystemExit, match=message):
        run(*argv, "--out", tmp_path / "out", "--workers", 1)
    assert not list(tmp_path.iterdir())


def test_everything_skipped_is_an_error(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "a.png").write_bytes(b"not a png at all")
    (tmp_path / "db" / "labels.csv").write_text("path,label,subject\na.png,happy,p1\nb.png,happy,p2\n")
    with pytest.raises(SystemExit, match="every image was skipped"):
        run("--dataset", "csv", "--root", tmp_path / "db", "--out", tmp_path / "out", "--workers", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]


def test_decode_errors_name_the_problem(tmp_path, rng):
    image = rng.integers(0, 256, (30, 30), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image)
    (tmp_path / "cut.jpg").write_bytes(jpeg.tobytes()[:len(jpeg) // 2])
    (tmp_path / "whole.jpg").write_bytes(jpeg.tobytes())
    (tmp_path / "junk.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "tiny.png").write_bytes(cv2.imencode(".png", image[:4, :4])[1].tobytes())

    def reason(source=None, pixels=None):
        with pytest.raises(ImageError) as error:
            decode_item(Item(str(source or "row"), 0, None, "s", pixels=pixels))
        return str(error.value)

    assert decode_item(Item(str(tmp_path / "whole.jpg"), 0, None, "s")).shape == (30, 30)
    assert reason(tmp_path / "cut.jpg") == "corrupt image: the JPEG data is truncated (no end-of-image marker)"
    assert reason(tmp_path / "junk.png") == "corrupt or unsupported image: OpenCV cannot decode it"
    assert reason(tmp_path / "empty.png") == "empty file"
    assert reason(tmp_path / "missing.png").startswith("unreadable file (No such file")
    assert reason(tmp_path / "tiny.png") == "image of 4x4 pixels is too small"
    assert reason(pixels="1 2 3") == "3 pixel values do not make a square image (FER2013 rows hold 2304 = 48x48)"
    assert reason(pixels="1 2 3 300") == "pixel values must be integers 0..255"
    assert reason(pixels="1 2 3 x") == "pixel values must be integers 0..255"
    np.testing.assert_array_equal(decode_item(Item("row", 0, None, "s", pixels="1 2 3 4")), [[1, 2], [3, 4]])


def test_interrupted_run_leaves_no_output_folder(tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, str(PREPARE), "--dataset", "synthetic", "--out", str(out), "--synthetic-subjects", "12",
         "--synthetic-images", "40", "--crops", "9", "--size", "64", "--workers", "1", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_as_at_a_terminal)
    deadline = time.time() + 600                          # imports alone take long on a loaded machine
    while not list(tmp_path.glob(".out.partial-*")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)                                       # well inside the generation/alignment work
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0, "the run finished before it could be interrupted"
    # One line saying what was kept and the command that resumes, no traceback (issue 23, item 5).
    assert process.returncode == 130
    message = stderr.decode().strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert message.startswith("prepare.py: interrupted (Ctrl-C); kept nothing")
    assert message.endswith(f"Resume with: python tools/prepare.py --dataset synthetic --out {out} "
                            "--synthetic-subjects 12 --synthetic-images 40 --crops 9 --size 64 --workers 1 --quiet")
    assert list(tmp_path.iterdir()) == []


def test_known_landmarks_are_used_and_degenerate_ones_skipped(tmp_path, astronaut, rng):
    root = tmp_path / "db"
    rows, marks = ["path,label,subject"], [
        "path,left_eye_x,left_eye_y,right_eye_x,right_eye_y,nose_x,nose_y,"
        "mouth_left_x,mouth_left_y,mouth_right_x,mouth_right_y"]
    for number in range(4):
        _write_png(root / f"{number}.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
        rows.append(f"{number}.png,happy,p{number % 2}")
        # the eyes and mouth of the last image coincide: no transform fits them
        marks.append(f"{number}.png,20,25,44,25,32,35,24,45,40,45" if number < 3
                     else f"{number}.png,30,30,30,30,30,30,30,30,30,30")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "landmarks.csv").write_text("\n".join(marks) + "\n")
    run("--dataset", "csv", "--root", root, "--landmarks-csv", root / "landmarks.csv", "--out",
        tmp_path / "out", "--folds", 2, "--workers", 1, "--size", 16)
    manifest = check_prepared_folder(tmp_path / "out", crops=1, size=16)
    assert manifest["counts"]["alignment"] == {"known": 3}
    assert manifest["skipped"] == [{"source": str((root / "3.png").resolve()),
                                    "reason": "unusable known landmarks: the source points coincide: "
                                              "no transform fits them"}]


def test_the_split_seed_has_one_name_and_the_old_one_warns(capsys):
    # Issue 23, item 6: --seed meant the fold split here and the solver's seed in crossval.
    parser = build_parser()
    assert parser.parse_args(["--dataset", "synthetic", "--out", "x", "--split-seed", "4"]).seed == 4
    assert "warning" not in capsys.readouterr().err
    assert parser.parse_args(["--dataset", "synthetic", "--out", "x", "--seed", "6"]).seed == 6
    assert "warning: --seed is now --split-seed" in capsys.readouterr().err


def test_every_option_is_documented():
    documented = (REPO / "docs" / "data.md").read_text()
    options = [o for action in build_parser()._actions for o in action.option_strings if o.startswith("--")]
    assert len(options) > 25
    missing = [o for o in options if o != "--help" and f"`{o}" not in documented]
    assert not missing, f"options missing from docs/data.md: {missing}"


def test_the_registry_drives_the_command_line(tmp_path):
    from data_prep.registry import DATASETS, datasets_with_option, default_options
    parser = build_parser()
    [dataset_action] = [a for a in parser._actions if "--dataset" in a.option_strings]
    assert list(dataset_action.choices) == list(DATASETS)
    for name, entry in DATASETS.items():
        assert f"{name}: {entry.describe_defaults()}" in parser.epilog and entry.help in dataset_action.help
    assert DATASETS["fer2013"].describe_defaults() == "official split, 1 crop, size 112, not aligned, duplicates kept"
    assert DATASETS["mmi"].describe_defaults() == "10 folds, 25 crops, size 112"
    assert {name: entry.title for name, entry in DATASETS.items()}["ckplus"] == "CK+"
    assert datasets_with_option("keep_contempt") == ("ckplus", "ckplus48", "csv")
    # an option's refusal names exactly the databases whose entry reads it
    with pytest.raises(SystemExit, match="--peak-frames applies to --dataset ckplus/oulu only"):
        run("--dataset", "mmi", "--root", "x", "--peak-frames", "2", "--out", tmp_path / "out")
    assert default_options("oulu").oulu_light == "Strong" and default_options("oulu").keep_contempt is None
    # per-dataset defaults land in the manifest's options
    run("--dataset", "synthetic", "--synthetic-subjects", 3, "--synthetic-images", 1, "--folds", 3,
        "--out", tmp_path / "syn", "--workers", 1, "--strict")
    options = json.loads((tmp_path / "syn" / "manifest.json").read_text())["options"]
    assert (options["crops"], options["size"], options["align"], options["duplicates"]) == (4, 48, "landmarks", "skip")
    assert options["strict"] is True and options["synthetic_size"] == 96


def test_ckplus_default_prepares_the_papers_415_units_and_22410_crops(tmp_path):
    # The paper: "415 expression sequences ... augmented as in Fig. 2 to include 22,410
    # images" = 415 decision units x 3 frames x 18 crops (issue 22, item 3; docs/recipe.md).
    root = ckplus_layout_with_published_counts(tmp_path / "CK+")
    # The fixture's frames are identical uniform PNGs: keep duplicates, no face to align.
    run("--dataset", "ckplus", "--root", root, "--out", tmp_path / "out", "--align", "none",
        "--duplicates", "keep", "--size", 8, "--workers", 1)
    dataset = PreparedDataset.open(tmp_path / "out")
    assert dataset.manifest["crops"] == 18
    assert dataset.manifest["counts"]["items"] == 1245
    test_records = sum(dataset.record_count(split, "test") for split in dataset.fold_splits())
    assert test_records == 22410 == 415 * 3 * 18
    units = dataset.decision_units()
    assert len(set(units.values())) == 415
    tested = [entry["item"] for split in dataset.fold_splits() for entry in dataset.items(split, "test")]
    assert sorted(tested) == list(range(1245))            # every item tested once over the folds
    assert len({units[item] for item in tested}) == 415


def test_the_library_takes_typed_options_and_raises_typed_errors(tmp_path):
    # No argv: data_prep.prepare is a library (tools/prepare.py is the command line).
    from data_prep.prepare import PrepareError, PrepareOptions, prepare_dataset
    with pytest.raises(PrepareError, match="unknown dataset 'nope'; the databases: fer2013, ckplus"):
        prepare_dataset(PrepareOptions(dataset="nope", out=tmp_path / "out"))
    (tmp_path / "taken").mkdir()
    with pytest.raises(PrepareError, match="output folder .*taken already exists; prepare.py never overwrites"):
        prepare_dataset(PrepareOptions(dataset="synthetic", out=tmp_path / "taken"))
    with pytest.raises(ValueError, match="--peak-frames applies to --dataset ckplus/oulu only"):
        prepare_dataset(PrepareOptions(dataset="synthetic", out=tmp_path / "out", peak_frames=2))
    manifest = prepare_dataset(PrepareOptions(dataset="synthetic", out=tmp_path / "out", size=16, crops=1,
                                              folds=2, synthetic_subjects=2, synthetic_images=1,
                                              synthetic_size=40, workers=1, quiet=True))
    assert manifest["options"]["out"] == str(tmp_path / "out") and manifest["folds"] == 2
    assert (tmp_path / "out" / "manifest.json").is_file()
