"""The data-quality audit: clean copies stay quiet, each kind of damage raises exactly its warning."""
import json

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from data_prep.audit import FIGURES, audit_summary_markdown, image_figures
from data_prep.labels import CLASS_NAMES
from tools.prepare import main as prepare_main
from data_prep.synthetic import generate
from tools.audit_data import main as audit_main

# FER2013 image-export folder names (data_prep/readers/fer2013.py), in label order
FER_FOLDERS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
PREFIX = {"S05": "PublicTest", "S06": "PrivateTest"}            # S01-S04: Training


@pytest.fixture(scope="module")
def faces():
    """(subject, label, image) of 6 subjects x 7 classes x 4 drawn 48x48 faces (a small FER2013)."""
    return [(subject, label, image) for subject, label, _, image, _ in generate(6, 7, 4, 48, seed=3)]


def write_fer_export(root, faces, damage=lambda usage, label, number, image: image):
    """The faces laid out as the FER2013 image export; ``damage`` may alter any image."""
    for number, (subject, label, image) in enumerate(faces):
        usage = PREFIX.get(subject, "Training")
        top = "train" if usage == "Training" else "test"
        path = root / top / FER_FOLDERS[label] / f"{usage}_{number}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), damage(usage, label, number, image))
    return root


def prepare(root, out, *extra):
    prepare_main(["--dataset", "fer2013", "--root", str(root), "--out", str(out), "--size", "24",
                  "--workers", "1", "--quiet", *extra])
    return json.loads((out / "manifest.json").read_text())


def checks(audit):
    return sorted((w["check"], w["part"], w["class"]) for w in audit["warnings"])


def test_clean_copy_raises_no_warning(tmp_path, faces, capsys):
    manifest = prepare(write_fer_export(tmp_path / "fer", faces), tmp_path / "out")
    audit = manifest["audit"]
    assert audit["warnings"] == []
    official = audit["splits"]["official"]
    assert [official[p]["all"]["images"] for p in ("train", "val", "test")] == [112, 28, 28]
    assert official["train"]["per_class"]["fear"]["images"] == 16
    assert official["train"]["all"]["sizes"] == {"48x48": 112}
    assert set(official["train"]["all"]) >= {"sharpness", "brightness", "contrast", "fine_detail", "near_constant"}
    assert "prepare.py: warning" not in capsys.readouterr().err


def test_blurred_train_split_raises_exactly_the_sharpness_warning(tmp_path, faces, capsys):
    def blur(usage, label, number, image):
        return cv2.GaussianBlur(image, (0, 0), 3) if usage == "Training" else image

    root = write_fer_export(tmp_path / "fer", faces, blur)
    audit = prepare(root, tmp_path / "out")["audit"]
    assert checks(audit) == [("split_sharpness", "train/test", None), ("split_sharpness", "train/val", None)]
    warning = audit["warnings"][0]
    assert warning["value"] < warning["reference"] / 50             # sigma 3 leaves ~1/100 of the Laplacian
    assert "split official: median sharpness of train is" in warning["message"]
    assert "check how the copy was exported" in warning["message"]
    assert "prepare.py: warning: split official: median sharpness of train" in capsys.readouterr().err
    # --strict: an error, and nothing is left behind
    with pytest.raises(SystemExit, match="data-quality audit found 2 problem.* --strict .*nothing was written"):
        prepare(root, tmp_path / "strict", "--strict")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer", "out"]
    # the same audit from the command line, on the raw folder and on the prepared one
    raw = audit_main([str(root), "--dataset", "fer2013", "--workers", "1", "--quiet",
                      "--markdown", str(tmp_path / "audit.md")])
    assert checks(raw) == checks(audit) and raw["splits"] == audit["splits"]
    assert "**2 warning(s):**" in (tmp_path / "audit.md").read_text()
    with pytest.raises(SystemExit) as error:
        audit_main([str(tmp_path / "out"), "--strict"])
    assert error.value.code == 1
    # recomputed on the stored crops (gray-normalised, resized to 24): the blur still shows
    recomputed = audit_main([str(tmp_path / "out"), "--recompute"])
    assert recomputed["measured_on"].startswith("stored crops")
    assert checks(recomputed) == checks(audit)


def test_constant_images_raise_exactly_that_warning(tmp_path, faces):
    happy_train = [n for n, (subject, label, _) in enumerate(faces) if label == 3 and subject not in PREFIX]

    def blank(usage, label, number, image):
        return np.full_like(image, 128) if number in happy_train[:3] else image

    audit = prepare(write_fer_export(tmp_path / "fer", faces, blank), tmp_path / "out")["audit"]
    assert checks(audit) == [("constant_images", "train", "happiness")]
    assert audit["warnings"][0]["message"].startswith(
        "split official, train, class happiness: 3 of 16 images (18.8%) are constant or nearly so")
    assert audit["splits"]["official"]["train"]["per_class"]["happiness"]["constant"] == pytest.approx(3 / 16, 1e-3)


def test_one_class_upscaled_from_24_raises_exactly_the_upscaling_warning(tmp_path, faces):
    def upscale(usage, label, number, image):
        if label != 2:
            return image
        small = cv2.resize(image, (24, 24), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (48, 48), interpolation=cv2.INTER_CUBIC)

    audit = prepare(write_fer_export(tmp_path / "fer", faces, upscale), tmp_path / "out")["audit"]
    # val/test hold 4 images per class, too few to judge a class: only train's fear is checked
    assert checks(audit) == [("upscaled", "train", "fear")]
    assert "images of 48x48 pixels hold no detail finer than half their resolution" in audit["warnings"][0]["message"]


@pytest.fixture(scope="module")
def photo():
    gray = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray[30:210, 140:320], (96, 96), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("interpolation", [cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4])
def test_fine_detail_tells_upscaled_from_blurred_photos(photo, interpolation):
    column = {name: i for i, name in enumerate(FIGURES)}
    original = image_figures(photo)
    upscaled = image_figures(cv2.resize(cv2.resize(photo, (48, 48), interpolation=cv2.INTER_AREA), (96, 96),
                                        interpolation=interpolation))
    blurred = image_figures(cv2.GaussianBlur(photo, (0, 0), 3))
    assert original[column["fine_detail"]] > 0.5
    assert upscaled[column["fine_detail"]] < 0.35
    assert blurred[column["fine_detail"]] > 0.5                       # its remaining detail is rounding noise
    assert blurred[column["sharpness"]] < original[column["sharpness"]] / 20
    assert original[column["blocky"]] == upscaled[column["blocky"]] == 0


def test_nearest_neighbour_upscaling_is_blocky_and_constant_images_are_flagged(photo):
    column = {name: i for i, name in enumerate(FIGURES)}
    nearest = cv2.resize(photo[::2, ::2], (96, 96), interpolation=cv2.INTER_NEAREST)
    assert image_figures(nearest)[column["blocky"]] == 1
    flat = image_figures(np.full((30, 40), 7, np.uint8))
    assert flat[column["constant"]] == 1 and flat[column["contrast"]] == 0 and np.isnan(flat[column["fine_detail"]])
    assert (flat[column["height"]], flat[column["width"]]) == (30, 40)


def test_markdown_summary_names_every_part_and_warning(tmp_path, faces):
    def blank(usage, label, number, image):
        return np.zeros_like(image) if usage == "Training" and label == 0 else image

    audit = prepare(write_fer_export(tmp_path / "fer", faces, blank), tmp_path / "out")["audit"]
    text = audit_summary_markdown(audit)
    assert "| official | train | 112 |" in text and "| official | val | 28 |" in text
    assert "**1 warning(s):**" in text and "class anger: 16 of 16 images (100.0%) are constant" in text
    assert CLASS_NAMES[0] == "anger"
