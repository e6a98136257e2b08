"""Every reader on a small copy laid out exactly like the real database (generated here)."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep.items import DatasetLayoutError
from data_prep.readers.ckplus import read_ckplus, read_ckplus48
from tests.data_prep.ckplus_fixture import CKPLUS_LABELLED, ckplus_layout_with_published_counts
from data_prep.readers.fer2013 import read_fer2013
from data_prep.readers.index_csv import (MmiIndexMismatch, mmi_check_text, read_csv_dataset,
                                        read_landmarks_csv, read_mmi)
from data_prep.readers.oulu import read_oulu


def _png(path, rng, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rng.integers(0, 256, size, dtype=np.uint8))
    return path


def _reasons(result):
    return {Path(skip.source).name if "line" not in skip.source else skip.source: skip.reason
            for skip in result.skipped}


# --- FER2013 ------------------------------------------------------------------------------------

def _pixels(rng, count=2304):
    return " ".join(str(v) for v in rng.integers(0, 256, count))


def test_fer2013_csv(tmp_path, rng):
    rows = ["emotion,pixels,Usage",
            f"0,{_pixels(rng)},Training",
            f"6,{_pixels(rng)},PublicTest",
            f"3,{_pixels(rng)},PrivateTest",
            f"7,{_pixels(rng)},Training",          # out of range
            f",{_pixels(rng)},Training",           # missing label
            f"2,{_pixels(rng)},Holdout",           # unknown usage
            "4,1 2 3"]                             # a field missing
    (tmp_path / "fer2013.csv").write_text("\n".join(rows) + "\n")
    result = read_fer2013(tmp_path)                      # the folder holding fer2013.csv
    assert [(i.label, i.usage, i.subject) for i in result.items] == [
        (0, "train", None), (6, "val", None), (3, "test", None)]
    assert result.items[0].source == f"{tmp_path / 'fer2013.csv'}:line 2"
    assert result.items[1].pixels == rows[2].split(",")[1]
    assert result.num_classes == 7
    reasons = {skip.source.rsplit(":", 1)[1]: skip.reason for skip in result.skipped}
    assert reasons == {"line 5": "label '7' out of range: emotion must be 0..6",
                       "line 6": "missing label (emotion is empty)",
                       "line 7": "Usage 'Holdout' is not one of ['PrivateTest', 'PublicTest', 'Training']",
                       "line 8": "2 fields, the header has 3"}
    assert [i.label for i in read_fer2013(tmp_path / "fer2013.csv").items] == [0, 6, 3]


def test_fer2013_csv_with_another_column_order(tmp_path, rng):
    # the ICML-workshop copy: "emotion, Usage, pixels" with spaces in the header
    (tmp_path / "icml_face_data.csv").write_text(f"emotion, Usage, pixels\n5,Training,{_pixels(rng)}\n")
    [item] = read_fer2013(tmp_path / "icml_face_data.csv").items
    assert (item.label, item.usage, len(item.pixels.split())) == (5, "train", 2304)


def test_fer2013_csv_without_the_columns(tmp_path):
    (tmp_path / "fer2013.csv").write_text("label,image\n1,2\n")
    with pytest.raises(DatasetLayoutError, match=r"emotion, pixels and Usage; missing \['Usage', 'emotion', 'pixels'\]"):
        read_fer2013(tmp_path)


def test_fer2013_image_folders(tmp_path, rng):
    _png(tmp_path / "train" / "angry" / "Training_10118481.png", rng)
    _png(tmp_path / "train" / "neutral" / "Training_99.png", rng)
    _png(tmp_path / "test" / "happy" / "PublicTest_5.png", rng)
    _png(tmp_path / "test" / "sad" / "PrivateTest_9.png", rng)
    _png(tmp_path / "test" / "fear" / "im12.png", rng)               # no prefix
    _png(tmp_path / "train" / "surprise" / "PublicTest_3.png", rng)  # prefix contradicts folder
    (tmp_path / "train" / "angry" / ".DS_Store").write_text("x")
    result = read_fer2013(tmp_path)
    got = sorted((Path(i.source).name, i.label, i.usage) for i in result.items)
    assert got == [("PrivateTest_9.png", 4, "test"), ("PublicTest_5.png", 3, "val"),
                   ("Training_10118481.png", 0, "train"), ("Training_99.png", 6, "train")]
    reasons = _reasons(result)
    assert "prefix that tells its official split" in reasons["im12.png"]
    assert reasons["PublicTest_3.png"] == "prefix says val but the file is in train/"


def test_fer2013_image_folders_of_lossless_webp_give_the_same_items_and_pixels(tmp_path, rng):
    from data_prep.pipeline import decode_item
    for name in ("train/angry/Training_1", "test/happy/PublicTest_2", "test/sad/PrivateTest_3"):
        image = rng.integers(0, 256, (48, 48)).astype(np.uint8)
        for folder, suffix, flags in (("png", ".png", []), ("webp", ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])):
            path = tmp_path / folder / (name + suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), image, flags)
    png, webp = read_fer2013(tmp_path / "png"), read_fer2013(tmp_path / "webp")
    assert [(Path(i.source).stem, i.label, i.usage) for i in webp.items] == \
        [(Path(i.source).stem, i.label, i.usage) for i in png.items] and len(webp.items) == 3
    for a, b in zip(png.items, webp.items):
        assert np.array_equal(decode_item(a), decode_item(b))


def test_fer2013_unknown_class_folder(tmp_path, rng):
    _png(tmp_path / "train" / "bored" / "Training_1.png", rng)
    (tmp_path / "test").mkdir()
    with pytest.raises(DatasetLayoutError, match="unknown class folder 'bored'"):
        read_fer2013(tmp_path)


def test_fer2013_wrong_layout_names_the_path_and_the_expectation(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetLayoutError) as error:
        read_fer2013(tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and "fer2013.csv" in message and "train/<class>/" in message
    assert "found: images" in message


# --- CK+ ----------------------------------------------------------------------------------------

def _ck_sequence(root, rng, subject, sequence, frames, code_text=None):
    for number in range(1, frames + 1):
        _png(root / "cohn-kanade-images" / subject / sequence / f"{subject}_{sequence}_{number:08d}.png", rng)
    if code_text is not None:
        labels = root / "Emotion" / subject / sequence
        labels.mkdir(parents=True, exist_ok=True)
        (labels / f"{subject}_{sequence}_{frames:08d}_emotion.txt").write_text(code_text)


@pytest.fixture
def ckplus_root(tmp_path, rng):
    root = tmp_path / "CK+"
    _ck_sequence(root, rng, "S005", "001", 6, "   3.0000000e+00\n")      # disgust
    _ck_sequence(root, rng, "S005", "002", 4)                            # unlabelled
    _ck_sequence(root, rng, "S005", "003", 5, "   5.0000000e+00\n")      # happy
    _ck_sequence(root, rng, "S010", "001", 5, "   2.0000000e+00\n")      # contempt
    _ck_sequence(root, rng, "S010", "002", 5, "   9.0000000e+00\n")      # out of range
    _ck_sequence(root, rng, "S011", "001", 2, "   7.0000000e+00\n")      # surprise, short sequence
    _ck_sequence(root, rng, "S011", "003", 4, "abc\n")                   # unreadable
    (root / "Emotion" / "S099" / "001").mkdir(parents=True)              # label folder, no images
    (root / "Emotion" / "S099" / "001" / "S099_001_00000009_emotion.txt").write_text("   1.0000000e+00\n")
    (root / "cohn-kanade-images" / "S005" / "001" / ".DS_Store").write_text("x")
    return root


def test_ckplus_peaks_and_neutral_frames(ckplus_root):
    result = read_ckplus(ckplus_root, neutral="sequence", neutral_frames=1)
    got = [(Path(i.source).name, i.label, i.subject, i.sequence) for i in result.items]
    assert got == [
        ("S005_001_00000001.png", 6, "S005", "S005_001"),
        ("S005_001_00000004.png", 1, "S005", "S005_001"),
        ("S005_001_00000005.png", 1, "S005", "S005_001"),
        ("S005_001_00000006.png", 1, "S005", "S005_001"),
        ("S005_003_00000001.png", 6, "S005", "S005_003"),
        ("S005_003_00000003.png", 3, "S005", "S005_003"),
        ("S005_003_00000004.png", 3, "S005", "S005_003"),
        ("S005_003_00000005.png", 3, "S005", "S005_003"),
        ("S011_001_00000001.png", 6, "S011", "S011_001"),
        ("S011_001_00000002.png", 5, "S011", "S011_001"),   # the first frame is never a peak
    ]
    assert result.num_classes == 7
    reasons = {Path(s.source).relative_to(ckplus_root).as_posix(): s.reason for s in result.skipped}
    assert "no Emotion label file" in reasons["cohn-kanade-images/S005/002"]
    assert "contempt dropped" in reasons["cohn-kanade-images/S010/001"]
    assert reasons["Emotion/S010/002/S010_002_00000005_emotion.txt"] == \
        "emotion code '9.0000000e+00' out of range: CK+ codes are 0..7"
    assert "unreadable emotion label 'abc'" in reasons["Emotion/S011/003/S011_003_00000004_emotion.txt"]
    assert "emotion label without an image sequence" in reasons["Emotion/S099/001"]
    assert len(result.skipped) == 5


def test_ckplus_options(ckplus_root):
    # one neutral image per subject: the default before 2026-12-04, now --ckplus-neutral-frames 1
    per_subject = read_ckplus(ckplus_root, neutral_frames=1)
    assert [Path(i.source).name for i in per_subject.items if i.label == 6] == [
        "S005_001_00000001.png", "S011_001_00000001.png"]
    assert per_subject.info["neutral"] == "subject"
    assert per_subject.info["counts"] == {"sequences_used": 3, "subjects_used": 2,
                                          "neutral_images": 2, "peak_images": 7, "units": 5,
                                          "neutral_units": 2, "short_neutral_units": 0}
    no_neutral = read_ckplus(ckplus_root, neutral="none", peak_frames=1)
    assert [Path(i.source).name for i in no_neutral.items] == [
        "S005_001_00000006.png", "S005_003_00000005.png", "S011_001_00000002.png"]
    assert no_neutral.num_classes == 6
    with_contempt = read_ckplus(ckplus_root, keep_contempt=True, neutral_frames=1)
    assert [i.label for i in with_contempt.items if i.subject == "S010"] == [6, 7, 7, 7]
    assert with_contempt.num_classes == 8


def test_ckplus_neutral_units_take_the_first_frames_and_never_a_peak(ckplus_root):
    result = read_ckplus(ckplus_root)  # the default: three frames a neutral unit
    got = [(Path(i.source).name, i.label) for i in result.items]
    assert got == [
        ("S005_001_00000001.png", 6), ("S005_001_00000002.png", 6), ("S005_001_00000003.png", 6),
        ("S005_001_00000004.png", 1), ("S005_001_00000005.png", 1), ("S005_001_00000006.png", 1),
        ("S005_003_00000003.png", 3), ("S005_003_00000004.png", 3), ("S005_003_00000005.png", 3),
        ("S011_001_00000001.png", 6),                     # two frames: one neutral, one peak
        ("S011_001_00000002.png", 5),
    ]
    assert result.info["neutral_frames"] == 3
    assert result.info["counts"]["short_neutral_units"] == 1
    with pytest.raises(ValueError, match="neutral_frames must be >= 1"):
        read_ckplus(ckplus_root, neutral_frames=0)


@pytest.fixture(scope="module")
def ckplus_published_counts(tmp_path_factory):
    return ckplus_layout_with_published_counts(tmp_path_factory.mktemp("ckplus") / "CK+")


def test_ckplus_fixture_has_the_published_counts(ckplus_published_counts):
    root = ckplus_published_counts
    sequences = [p for p in (root / "cohn-kanade-images").glob("S*/*") if p.is_dir()]
    labels = [float(p.read_text()) for p in (root / "Emotion").glob("S*/*/*_emotion.txt")]
    assert len({p.parent.name for p in sequences}) == 123 and len(sequences) == 593
    assert {code: labels.count(code) for code in CKPLUS_LABELLED} == CKPLUS_LABELLED
    assert len({p.parent.parent.name for p in (root / "Emotion").glob("S*/*/*_emotion.txt")}) == 118


def test_ckplus_one_neutral_frame_gives_the_papers_1033_images(ckplus_published_counts):
    result = read_ckplus(ckplus_published_counts, neutral_frames=1)
    labels = [item.label for item in result.items]
    assert len(result.items) == 1033                     # the paper's "1033 expression images"
    assert labels.count(6) == 106                        # Table 13's Ne row: 102/106 = 96.23 %
    assert len(result.items) - labels.count(6) == 3 * 309
    # peak frames per class, in the project's label order An Di Fe Ha Sa Su
    assert [labels.count(k) for k in range(6)] == [3 * 45, 3 * 59, 3 * 25, 3 * 69, 3 * 28, 3 * 83]
    assert result.info["counts"] == {"sequences_used": 309, "subjects_used": 106,
                                     "neutral_images": 106, "peak_images": 927, "units": 415,
                                     "neutral_units": 106, "short_neutral_units": 0}
    # The neutral image of a subject whose first labelled sequence is contempt comes from its next one.
    neutral = {item.subject: Path(item.source).name for item in result.items if item.label == 6}
    assert neutral["S005"] == "S005_002_00000001.png" and neutral["S011"] == "S011_001_00000001.png"
    assert len(neutral) == 106


def test_ckplus_default_is_the_papers_415_units_of_three_frames(ckplus_published_counts):
    # The paper: "415 expression sequences ... augmented ... to include 22,410 images" =
    # 415 units x 3 frames x 18 crops (the crops: tests/data_prep/test_prepare.py).
    result = read_ckplus(ckplus_published_counts)
    labels = [item.label for item in result.items]
    assert len(result.items) == 415 * 3 == 1245
    assert labels.count(6) == 106 * 3
    counts = result.info["counts"]
    assert (counts["units"], counts["neutral_units"], counts["short_neutral_units"]) == (415, 106, 0)
    units = {(item.sequence, item.label) for item in result.items}
    assert len(units) == 415
    assert all(sum((i.sequence, i.label) == unit for i in result.items) == 3 for unit in units)


def test_ckplus_sequence_rule_gives_one_neutral_per_sequence(ckplus_published_counts):
    result = read_ckplus(ckplus_published_counts, neutral="sequence", neutral_frames=1)
    assert result.info["counts"]["neutral_images"] == 309 and len(result.items) == 309 + 927


def test_ckplus_wrong_layout(tmp_path, rng):
    _png(tmp_path / "ck" / "cohn-kanade-images" / "S005" / "001" / "a.png", rng)
    with pytest.raises(DatasetLayoutError) as error:
        read_ckplus(tmp_path / "ck")
    message = str(error.value)
    assert f"CK+ root {tmp_path / 'ck'}: missing Emotion/" in message
    assert "Emotion/Sxxx/yyy/*_emotion.txt" in message and "found: cohn-kanade-images" in message


def test_ckplus48(tmp_path, rng):
    root = tmp_path / "CK+48"
    _png(root / "anger" / "S010_004_00000017.png", rng, (48, 48))
    _png(root / "anger" / "S010_004_00000018.png", rng, (48, 48))
    _png(root / "surprise" / "S011_001_00000016.png", rng, (48, 48))
    _png(root / "contempt" / "S138_008_00000007.png", rng, (48, 48))
    _png(root / "happy" / "face.png", rng, (48, 48))
    result = read_ckplus48(root)
    assert [(Path(i.source).name, i.label, i.subject, i.sequence) for i in result.items] == [
        ("S010_004_00000017.png", 0, "S010", "S010_004"), ("S010_004_00000018.png", 0, "S010", "S010_004"),
        ("S011_001_00000016.png", 5, "S011", "S011_001")]
    assert result.num_classes == 6
    reasons = _reasons(result)
    assert "contempt dropped" in reasons["S138_008_00000007.png"]
    assert "does not start with Sxxx_yyy_" in reasons["face.png"]
    assert read_ckplus48(root, keep_contempt=True).num_classes == 8
    _png(root / "bored" / "S001_001_00000001.png", rng)
    with pytest.raises(DatasetLayoutError, match="expected class folders anger, contempt"):
        read_ckplus48(root)


# --- Oulu-CASIA ---------------------------------------------------------------------------------

def _oulu_sequence(folder, rng, frames, suffix=".jpeg"):
    for number in range(frames):
        path = folder / f"{number:03d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), rng.integers(0, 256, (12, 16), dtype=np.uint8))


def test_oulu_casia(tmp_path, rng):
    root = tmp_path / "Oulu_CASIA"
    for camera in ("NI", "VL"):
        for subject in ("P001", "P002"):
            for expression in ("Anger", "Happiness", "Surprise"):
                _oulu_sequence(root / "OriginalImg" / camera / "Strong" / subject / expression, rng, 12)
    _oulu_sequence(root / "OriginalImg" / "NI" / "Strong" / "P002" / "Smile", rng, 3)
    (root / "OriginalImg" / "NI" / "Strong" / "P002" / "Fear").mkdir()
    result = read_oulu(root)
    assert len(result.items) == 2 * 3 * 3 and result.num_classes == 6
    first = result.items[:3]
    assert [Path(i.source).name for i in first] == ["009.jpeg", "010.jpeg", "011.jpeg"]
    assert {(i.label, i.subject, i.sequence) for i in first} == {(0, "P001", "P001_Anger")}
    assert {i.label for i in result.items} == {0, 3, 5}
    assert all("/NI/Strong/" in i.source for i in result.items)
    reasons = _reasons(result)
    assert "unknown expression folder" in reasons["Smile"] and reasons["Fear"] == "no image frames in the sequence"
    vis = read_oulu(root, camera="VIS", peak_frames=2)
    assert len(vis.items) == 12 and all("/VL/Strong/" in i.source for i in vis.items)
    with pytest.raises(DatasetLayoutError, match=r"expected NIR \(NIR or NI\)/Dark/Pxxx/<Expression>/"):
        read_oulu(root, light="Dark")


def test_oulu_casia_units_are_its_480_sequences(tmp_path, rng):
    # The paper's Oulu-CASIA figures are k / 480: 80 subjects x 6 sequences, one decision
    # each over its three peak frames (issue 22, item 3; data_prep/prepared.py's units).
    for subject in range(80):
        for expression in ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"):
            _oulu_sequence(tmp_path / "NI" / "Strong" / f"P{subject:03d}" / expression, rng, 4)
    items = read_oulu(tmp_path).items
    units = {(item.sequence, item.label) for item in items}
    assert len(items) == 1440 and len(units) == 480
    assert all(sum((i.sequence, i.label) == unit for i in items) == 3 for unit in list(units)[:20])


def test_oulu_casia_without_originalimg(tmp_path, rng):
    _oulu_sequence(tmp_path / "NIR" / "Strong" / "P010" / "Sadness", rng, 5, ".png")
    assert [(i.label, i.subject) for i in read_oulu(tmp_path).items] == [(4, "P010")] * 3


# --- MMI and generic CSV ------------------------------------------------------------------------

def test_mmi_index(tmp_path, rng):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        _png(tmp_path / "frames" / name, rng)
    (tmp_path / "mmi_index.csv").write_text(
        "sequence,frame,label,subject\n"
        "S001_1,frames/a.png,happy,S001\n"
        "S001_1,frames/b.png,3,S001\n"
        "S002_4,frames/c.png,Surprise,S002\n"
        "S002_4,frames/c.png,surprise,S002\n"          # the same frame twice
        "S002_5,frames/d.png,neutral,S002\n"           # not one of MMI's six classes
        "S003_1,frames/missing.png,fear,S003\n"
        "S003_2,frames/d.png,,S003\n")
    result = read_mmi(tmp_path)
    assert [(Path(i.source).name, i.label, i.subject, i.sequence) for i in result.items] == [
        ("a.png", 3, "S001", "S001_1"), ("b.png", 3, "S001", "S001_1"), ("c.png", 5, "S002", "S002_4")]
    assert result.num_classes == 6
    reasons = [skip.reason for skip in result.skipped]
    assert reasons[0] == "duplicate path: listed already at line 4"
    assert reasons[1] == "label 'neutral' is not one of the dataset's 6 classes"
    assert reasons[2].startswith("file not found (listed at ")
    assert reasons[3].startswith("duplicate path") and len(reasons) == 4
    (tmp_path / "other.csv").write_text("frame,label\nframes/a.png,happy\n")
    with pytest.raises(DatasetLayoutError, match=r"columns frame, label, subject, sequence; missing \['subject', 'sequence'\]"):
        read_mmi(tmp_path, index=tmp_path / "other.csv")
    with pytest.raises(DatasetLayoutError, match="mmi_index.csv"):
        read_mmi(tmp_path / "frames")


MMI_SIX = ("anger", "disgust", "fear", "happy", "sadness", "surprise")


def _mmi_like(root, sequences=205, subjects=30, frames=16):
    """An MMI-like copy: one folder of frames per session, neutral - apex - neutral, and an index
    listing the three frames at each sequence's apex (the middle), 615 rows for 205 sequences."""
    png = cv2.imencode(".png", np.full((6, 5), 128, np.uint8))[1].tobytes()
    rows = ["sequence,frame,label,subject"]
    for number in range(sequences):
        subject, session = f"S{number % subjects + 1:03d}", str(100 + number)
        folder = root / "frames" / subject / session
        folder.mkdir(parents=True)
        for frame in range(frames):
            (folder / f"frame_{frame:04d}.png").write_bytes(png)
        apex = frames // 2
        for frame in (apex - 1, apex, apex + 1):
            rows.append(f"{session},frames/{subject}/{session}/frame_{frame:04d}.png,"
                        f"{MMI_SIX[number % 6]},{subject}")
    (root / "mmi_index.csv").write_text("\n".join(rows) + "\n")
    return root / "mmi_index.csv"


def test_mmi_index_following_the_papers_selection_passes_the_check(tmp_path):
    _mmi_like(tmp_path)
    result = read_mmi(tmp_path, strict=True)
    check = result.info["index_check"]
    assert check["matches"] and check["mismatches"] == []
    assert check["found"]["sequences"] == 205 and check["found"]["frames"] == 615 == len(result.items)
    assert len({(item.sequence, item.label) for item in result.items}) == 205    # decision units
    assert sum(check["found"]["sequences_per_class"].values()) == 205
    assert "follows the paper's selection" in mmi_check_text(tmp_path / "mmi_index.csv", check)


def test_mmi_index_check_lists_every_mismatch(tmp_path):
    index = _mmi_like(tmp_path, sequences=8, subjects=3, frames=12)
    lines = index.read_text().splitlines()
    # sequence 100: drop its last peak frame; 101: a gap (frames 5, 6, 8); 102: the same frame
    # twice; 103: one frame labelled differently; 104: a frame of another subject.
    lines.remove("100,frames/S001/100/frame_0007.png,anger,S001")
    lines[lines.index("101,frames/S002/101/frame_0007.png,disgust,S002")] = \
        "101,frames/S002/101/frame_0008.png,disgust,S002"
    lines.append("102,frames/S003/102/frame_0006.png,fear,S003")
    lines[lines.index("103,frames/S001/103/frame_0006.png,happy,S001")] = \
        "103,frames/S001/103/frame_0006.png,sadness,S001"
    lines[lines.index("104,frames/S002/104/frame_0007.png,sadness,S002")] = \
        "104,frames/S002/104/frame_0007.png,sadness,S003"
    index.write_text("\n".join(lines) + "\n")
    result = read_mmi(tmp_path)
    mismatches = result.info["index_check"]["mismatches"]
    duplicate = tmp_path / "frames" / "S003" / "102" / "frame_0006.png"
    assert mismatches == [
        f"frame {duplicate} listed 2 times (lines 8, 25)",
        "1 row(s) left out (listed in skipped: missing files, labels outside the six classes, "
        "missing subjects, duplicates); every row should be usable",
        "sequence 100: 2 frame(s), expected 3 peak frames",
        "sequence 101: frames 5, 6, 8 are not consecutive (the peak frames are the apex and its neighbours)",
        "sequence 103: frames with different labels (happiness, sadness)",
        "sequence 104: frames of different subjects (S002, S003)",
        "8 sequences, the paper uses 205",
        "23 frames, the paper uses 615 (205 sequences x 3 peak frames)",
    ]
    assert not result.info["index_check"]["matches"]
    with pytest.raises(MmiIndexMismatch) as error:
        read_mmi(tmp_path, strict=True)
    message = str(error.value)
    assert "8 mismatch(es) with the paper's selection" in message
    assert all(f"  - {line}" in message for line in mismatches)


def test_mmi_index_check_names_a_missing_class(tmp_path):
    index = _mmi_like(tmp_path, sequences=6, subjects=2, frames=6)
    index.write_text("\n".join(line for line in index.read_text().splitlines() if ",fear," not in line) + "\n")
    check = read_mmi(tmp_path).info["index_check"]
    assert "no sequence of fear: the paper uses all six classes" in check["mismatches"]
    assert check["found"]["sequences_per_class"]["fear"] == 0


def test_generic_csv_with_landmarks(tmp_path, rng):
    for name in ("x1.png", "x2.png", "x3.png", "x4.png", "x5.png", "x6.png"):
        _png(tmp_path / "img" / name, rng)
    absolute = tmp_path / "img" / "x6.png"
    (tmp_path / "labels.csv").write_text(
        "path,label,subject\n"
        "img/x1.png,angry,p1\n"
        f"{absolute},neutral,p2\n"
        "img/x2.png,12,p1\n"           # out of range
        "img/x3.png,,p1\n"             # missing label
        "img/x4.png,sad,\n"            # missing subject
        "img/x5.png,contempt,p3\n")
    (tmp_path / "landmarks.csv").write_text(
        "path,left_eye_x,left_eye_y,right_eye_x,right_eye_y,nose_x,nose_y,"
        "mouth_left_x,mouth_left_y,mouth_right_x,mouth_right_y\n"
        "img/x1.png,3,4,8,4,5.5,6,4,8,7,8\n")
    result = read_csv_dataset(tmp_path, landmarks_csv=tmp_path / "landmarks.csv")
    assert [(Path(i.source).name, i.label, i.subject) for i in result.items] == [("x1.png", 0, "p1"), ("x6.png", 6, "p2")]
    assert result.items[0].landmarks == ((3, 4), (8, 4), (5.5, 6), (4, 8), (7, 8))
    assert result.items[1].landmarks is None
    assert result.num_classes == 7
    reasons = _reasons(result)
    assert reasons["x2.png"].startswith("label 12 out of range 0..7")
    assert reasons["x3.png"].startswith("missing label")
    assert reasons["x4.png"].startswith("missing subject")
    assert reasons["x5.png"].startswith("contempt dropped")
    kept = read_csv_dataset(tmp_path, keep_contempt=True)
    assert kept.num_classes == 8 and kept.items[-1].label == 7


def test_landmarks_csv_must_hold_numbers(tmp_path):
    (tmp_path / "landmarks.csv").write_text(
        "path,left_eye_x,left_eye_y,right_eye_x,right_eye_y,nose_x,nose_y,"
        "mouth_left_x,mouth_left_y,mouth_right_x,mouth_right_y\n"
        "a.png,3,4,8,4,five,6,4,8,7,8\n")
    with pytest.raises(DatasetLayoutError, match="landmarks.csv:line 2: landmark coordinates must be numbers"):
        read_landmarks_csv(tmp_path / "landmarks.csv")
