"""Alignment: similarity transform, crops, warps, gray levels, dlib on a real photo, templates."""
import json
import math

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from data_prep.alignment import (FaceAligner, apply_affine, crop_matrices, crop_offsets, frame_to_box,
                                 known_points, normalise_gray, points_to_box, similarity_transform,
                                 warp_crops)
from data_prep.compute_template import compute_template
from tools.compute_template import main as compute_template_main
from data_prep.face_template import Template, load_template, template_from_dict, template_from_faces

# Marked by hand on skimage's astronaut photo (512x512, converted to gray),
# independently of dlib: eye centre = midpoint of the eye's corners, mouth =
# midpoint of the two mouth corners, in pixel-index coordinates.
ASTRONAUT_EYES = np.array([[202.0, 101.0], [246.0, 102.5]])
ASTRONAUT_MOUTH = np.array([223.0, 141.5])


@pytest.fixture(scope="module")
def astronaut():
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)


@pytest.fixture(scope="module")
def aligner68():
    return FaceAligner(68)


@pytest.fixture(scope="module")
def template():
    return load_template()


def _similarity(angle_deg, scale, shift):
    angle = math.radians(angle_deg)
    return np.array([[scale * math.cos(angle), -scale * math.sin(angle), shift[0]],
                     [scale * math.sin(angle), scale * math.cos(angle), shift[1]]])


def face_photo(astronaut, angle_deg, eye_distance, eyes_at, size):
    """The astronaut rotated, scaled and moved so that her eye midpoint is at ``eyes_at``."""
    scale = eye_distance / np.linalg.norm(ASTRONAUT_EYES[1] - ASTRONAUT_EYES[0])
    matrix = _similarity(angle_deg, scale, (0, 0))
    matrix[:, 2] = np.asarray(eyes_at) - apply_affine(matrix, ASTRONAUT_EYES.mean(axis=0)[np.newaxis])[0]
    photo = cv2.warpAffine(astronaut, matrix, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    return photo, matrix


# --- geometry -----------------------------------------------------------------------------------

def test_similarity_recovers_a_known_transform(rng):
    truth = _similarity(23.0, 1.7, (5.0, -3.0))
    src = rng.uniform(-50, 50, (4, 2))
    np.testing.assert_allclose(similarity_transform(src, apply_affine(truth, src)), truth, atol=1e-9)


def test_similarity_is_the_least_squares_fit(rng):
    src = rng.uniform(0, 100, (3, 2))
    dst = apply_affine(_similarity(-10, 0.5, (3, 4)), src) + rng.normal(0, 2, (3, 2))
    # independent solution: x' = a x - b y + tx, y' = b x + a y + ty is linear in (a, b, tx, ty)
    rows = np.zeros((6, 4))
    rows[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(3), np.zeros(3)])
    rows[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(3), np.ones(3)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, dst.ravel(), rcond=None)
    np.testing.assert_allclose(similarity_transform(src, dst), [[a, -b, tx], [b, a, ty]], atol=1e-9)


def test_similarity_never_reflects():
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mirrored = src * [-1, 1]
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0


def test_similarity_rejects_coincident_points():
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((3, 2)), np.zeros((3, 2)))


def test_points_to_box_maps_the_triangle_onto_the_template(template):
    truth = _similarity(12, 250, (30, 40))           # face box fraction -> image pixels
    triangle = apply_affine(truth, template.triangle())
    to_box = points_to_box({"left_eye": triangle[0], "right_eye": triangle[1], "mouth": triangle[2]}, template)
    np.testing.assert_allclose(apply_affine(to_box, triangle), template.triangle(), atol=1e-9)
    # without a mouth (dlib's 5-point model) eyes and base of the nose are used
    marks = apply_affine(truth, template.points())
    to_box = points_to_box({"left_eye": marks[0], "right_eye": marks[1], "nose_base": marks[2],
                            "mouth": None}, template)
    np.testing.assert_allclose(apply_affine(to_box, marks), template.points(), atol=1e-9)


def test_known_points_use_the_mouth_corner_midpoint():
    points = known_points([(10, 20), (30, 20), (20, 30), (14, 40), (28, 42)])
    np.testing.assert_allclose(points["mouth"], [21, 41])
    np.testing.assert_allclose(points["left_eye"], [10, 20])


@pytest.mark.parametrize("count, side", [(1, 1), (4, 2), (5, 3), (9, 3), (16, 4), (25, 5)])
def test_crop_offsets(count, side):
    offsets = crop_offsets(count, 0.1)
    assert offsets.shape == (count, 2)
    assert len({tuple(o) for o in offsets.round(9)}) == count
    assert np.all(np.abs(offsets) <= 0.1 + 1e-12)
    expected_steps = np.linspace(-0.1, 0.1, side) if side > 1 else [0.0]
    assert set(offsets.ravel().round(9)) <= set(np.round(expected_steps, 9))
    if side % 2:                         # odd grids start with the centred crop
        assert np.allclose(offsets[0], 0)
    distances = np.hypot(*offsets.T)
    assert np.all(np.diff(distances) >= -1e-12)


def test_crop_offsets_rejects_zero():
    with pytest.raises(ValueError, match=">= 1"):
        crop_offsets(0, 0.1)


def test_frame_to_box_centres_the_image_with_its_longer_side_on_the_box():
    matrix = frame_to_box(100, 50)          # height 100, width 50
    corners = np.array([[-0.5, -0.5], [49.5, 99.5]])   # outer edges of the corner pixels
    np.testing.assert_allclose(apply_affine(matrix, corners), [[0.25, 0.0], [0.75, 1.0]], atol=1e-12)


def _blob_image(shape, centre, sigma):
    y, x = np.mgrid[:shape[0], :shape[1]]
    return np.rint(250 * np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma ** 2))).astype(np.uint8)


def _centroid(image):
    weights = image.astype(np.float64) - np.median(image)
    weights[weights < 0] = 0
    y, x = np.mgrid[:image.shape[0], :image.shape[1]]
    return np.array([(weights * x).sum(), (weights * y).sum()]) / weights.sum()


@pytest.mark.parametrize("source_size, face_scale", [(120, 1.0), (900, 0.1)])
def test_warp_puts_a_point_where_the_transform_says(source_size, face_scale):
    # the small-scale case goes through the INTER_AREA pre-shrink
    spot = np.array([0.43 * source_size, 0.57 * source_size])
    image = _blob_image((source_size, source_size), spot, sigma=6 / face_scale)
    to_box = _similarity(8, face_scale / 64, (0, 0))      # face_scale output pixels per source pixel
    to_box[:, 2] = [0.45, 0.55] - apply_affine(to_box, spot[np.newaxis])[0]
    offsets = crop_offsets(5, 0.1)
    crops = warp_crops(image, to_box, offsets, 64)
    for crop, matrix in zip(crops, crop_matrices(to_box, offsets, 64)):
        expected = apply_affine(matrix, spot[np.newaxis])[0]
        assert np.linalg.norm(_centroid(crop) - expected) < 0.35


def test_gray_std_normalisation(rng):
    crops = rng.normal(90, 10, (3, 20, 20)).clip(0, 255).astype(np.uint8)
    crops[1] = crops[1] // 3 + 150                      # a different brightness and contrast
    out = normalise_gray(crops, "std").astype(np.float64)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 127.5, atol=0.6)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 42.5, atol=0.6)
    # the normalisation is per crop: the same face under other lighting gives the same crop
    relit = np.clip(crops[0].astype(np.float64) * 1.5 + 20, 0, 255).astype(np.uint8)
    diff = normalise_gray(relit[np.newaxis], "std")[0].astype(int) - out[0]
    assert np.abs(diff).max() <= 4
    assert np.all(normalise_gray(np.full((1, 5, 5), 77, np.uint8), "std") == 128)


def test_gray_hist_and_none(rng):
    crops = rng.integers(100, 140, (2, 32, 32), dtype=np.uint8)
    equalised = normalise_gray(crops, "hist")
    assert equalised.min() < 10 and equalised.max() == 255
    assert normalise_gray(crops, "none") is crops
    with pytest.raises(ValueError, match="gray normalisation"):
        normalise_gray(crops, "fancy")


# --- dlib on a real photo -----------------------------------------------------------------------

def test_astronaut_eyes_and_mouth_land_on_the_template(astronaut, aligner68, template):
    points, kind = aligner68.locate(astronaut)
    assert kind == "detected"
    size = 128
    to_pixels = crop_matrices(points_to_box(points, template), np.zeros((1, 2)), size)[0]
    hand_marked = np.vstack([ASTRONAUT_EYES, ASTRONAUT_MOUTH])
    landed = apply_affine(to_pixels, hand_marked)
    target = template.triangle() * size - 0.5
    # "a few pixels": the similarity cannot fit a smiling mouth exactly; 4 px = 8% of the eye distance
    assert np.abs(landed - target).max() < 4.0, (landed, target)


def test_aligned_astronaut_has_her_landmarks_where_the_transform_put_them(astronaut, aligner68, template):
    points, _ = aligner68.locate(astronaut)
    to_box = points_to_box(points, template)
    offsets = crop_offsets(5, 0.08)
    crops = warp_crops(astronaut, to_box, offsets, 128)
    for crop, matrix in zip(crops[[0, 3]], crop_matrices(to_box, offsets, 128)[[0, 3]]):
        again, kind = aligner68.locate(crop)
        assert kind == "detected"
        for name in ("left_eye", "right_eye", "mouth"):
            expected = apply_affine(matrix, points[name][np.newaxis])[0]
            assert np.linalg.norm(again[name] - expected) < 2.0, name


def test_five_point_model_aligns_eyes_and_nose(astronaut, template):
    points, kind = FaceAligner(5).locate(astronaut)
    assert kind == "detected" and points["mouth"] is None
    size = 128
    to_pixels = crop_matrices(points_to_box(points, template), np.zeros((1, 2)), size)[0]
    target = template.points() * size - 0.5
    eyes = apply_affine(to_pixels, ASTRONAUT_EYES)
    assert np.abs(eyes - target[:2]).max() < 4.0
    # the mouth is not measured by this model: a smiling mouth lands higher than the template's
    mouth = apply_affine(to_pixels, ASTRONAUT_MOUTH[np.newaxis])[0]
    assert np.linalg.norm(mouth - target[3]) < 0.15 * size


@pytest.mark.parametrize("angle", [-12.0, 9.0])
def test_rotated_and_scaled_photo_is_aligned(astronaut, aligner68, template, angle):
    photo, placed = face_photo(astronaut, angle, eye_distance=45, eyes_at=(120, 105), size=256)
    points, kind = aligner68.locate(photo)
    assert kind == "detected"
    to_pixels = crop_matrices(points_to_box(points, template), np.zeros((1, 2)), 96)[0]
    eyes = apply_affine(to_pixels, apply_affine(placed, ASTRONAUT_EYES))
    assert np.abs(eyes - (template.triangle()[:2] * 96 - 0.5)).max() < 3.5
    # roll is removed: the eyes are level
    assert abs(eyes[1, 1] - eyes[0, 1]) < 1.5


def test_small_precropped_face_is_found_by_upsampling(astronaut, aligner68):
    crop = cv2.resize(astronaut[83:170, 179:266], (48, 48), interpolation=cv2.INTER_AREA)
    points, kind = aligner68.locate(crop)
    assert kind == "detected"
    scale = 48 / 87
    expected = (ASTRONAUT_EYES + 0.5 - [179, 83]) * scale - 0.5
    assert np.abs(np.vstack([points["left_eye"], points["right_eye"]]) - expected).max() < 2.0


def test_no_face_gives_the_whole_frame_fallback(aligner68, rng):
    noise = cv2.GaussianBlur(rng.integers(0, 256, (120, 120)).astype(np.uint8), (0, 0), 2)
    assert aligner68.locate(noise) == (None, "frame")
    assert aligner68.locate(np.full((48, 48), 128, np.uint8)) == (None, "frame")


def test_unknown_landmark_model():
    with pytest.raises(ValueError, match="landmark_model"):
        FaceAligner(17)


# --- templates ----------------------------------------------------------------------------------

def test_default_template_is_valid_and_self_describing(template):
    assert template.name == "default"
    assert template.left_eye[0] < 0.5 < template.right_eye[0]
    assert "not measured on CK+" in template.source["method"]
    geometry = template.geometry()
    assert geometry["eye_distance"] == pytest.approx(0.38)
    assert geometry["margin_top"] == pytest.approx(0.35) and geometry["margin_bottom"] == pytest.approx(0.27)
    assert json.loads(json.dumps(template.as_dict()))["points"]["mouth"] == [0.5, 0.73]


def test_bad_templates_are_rejected(tmp_path):
    good = load_template().as_dict()
    swapped = json.loads(json.dumps(good))
    swapped["points"]["left_eye"], swapped["points"]["right_eye"] = good["points"]["right_eye"], good["points"]["left_eye"]
    with pytest.raises(ValueError, match="left_eye must be left of right_eye"):
        template_from_dict(swapped)
    outside = json.loads(json.dumps(good))
    outside["points"]["mouth"] = [0.5, 1.2]
    with pytest.raises(ValueError, match="inside the box"):
        template_from_dict(outside)
    with pytest.raises(ValueError, match="expected"):
        template_from_dict({"points": {"left_eye": [0.3, 0.3]}})
    broken = tmp_path / "t.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_template(broken)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_template(tmp_path / "missing.json")
    load_template().save(tmp_path / "copy.json")
    assert load_template(tmp_path / "copy.json") == load_template()
    with pytest.raises(FileExistsError):
        load_template().save(tmp_path / "copy.json")


def test_template_from_faces_recovers_the_generating_geometry(rng):
    truth = Template((0.3, 0.36), (0.7, 0.36), (0.5, 0.6), (0.5, 0.75))
    detector_box = np.array([[0.12, 0.12], [0.88, 0.88]])   # a detector box inside the face box
    faces = []
    for _ in range(20):
        place = _similarity(rng.uniform(-5, 5), rng.uniform(150, 400), rng.uniform(50, 300, 2))
        marks = apply_affine(place, truth.points())
        # the detector's box is upright; its size and centre follow the face
        centre = apply_affine(place, detector_box.mean(axis=0)[np.newaxis])[0]
        half = np.sqrt(abs(np.linalg.det(place[:, :2]))) * (detector_box[1, 0] - detector_box[0, 0]) / 2
        faces.append(({"left_eye": marks[0], "right_eye": marks[1], "nose_base": marks[2], "mouth": marks[3]},
                      (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)))
    # with a margin that widens the 0.76 detector box back to the full box
    measured = template_from_faces(faces, margin=(1 / 0.76 - 1) / 2)
    np.testing.assert_allclose(measured.points(), truth.points(), atol=0.01)
    assert measured.source["faces"] == 20


def _ckplus_from_astronaut(root, astronaut, rng):
    """A CK+ copy whose frames are the astronaut at several sizes and rolls."""
    for subject, sequence, code in (("S005", "001", 3), ("S010", "002", 5), ("S011", "001", 7)):
        frames = root / "cohn-kanade-images" / subject / sequence
        frames.mkdir(parents=True)
        for number in range(1, 5):
            photo, _ = face_photo(astronaut, rng.uniform(-8, 8), rng.uniform(38, 60),
                                  (rng.uniform(90, 110), rng.uniform(80, 95)), 200)
            cv2.imwrite(str(frames / f"{subject}_{sequence}_{number:08d}.png"), photo)
        labels = root / "Emotion" / subject / sequence
        labels.mkdir(parents=True)
        (labels / f"{subject}_{sequence}_00000004_emotion.txt").write_text(f"   {code:.7e}\n")


def test_compute_template_measures_a_ckplus_copy(tmp_path, astronaut, rng):
    _ckplus_from_astronaut(tmp_path / "ck", astronaut, rng)
    template = compute_template(tmp_path / "ck", margin=0.15, progress=False)
    # 3 sequences x (neutral first frame + 3 peaks)
    assert template.source["faces"] == 12 and template.source["left_out"] == 0
    # the astronaut's own proportions, from the hand-marked points: mouth drop / eye distance
    eye_distance = np.linalg.norm(ASTRONAUT_EYES[1] - ASTRONAUT_EYES[0])
    drop = (ASTRONAUT_MOUTH[1] - ASTRONAUT_EYES[:, 1].mean()) / eye_distance
    geometry = template.geometry()
    measured_drop = (template.mouth[1] - template.left_eye[1]) / geometry["eye_distance"]
    assert measured_drop == pytest.approx(drop, abs=0.06)
    assert abs(template.mouth[0] - 0.5) < 0.05 and abs(template.left_eye[1] - template.right_eye[1]) < 0.01
    # the command line writes it for prepare.py --template
    compute_template_main(["--root", str(tmp_path / "ck"), "--out", str(tmp_path / "t.json"),
                           "--workers", "1", "--quiet"])
    assert load_template(tmp_path / "t.json").points() == pytest.approx(template.points())
    with pytest.raises(SystemExit, match="already exists"):
        compute_template_main(["--root", str(tmp_path / "ck"), "--out", str(tmp_path / "t.json"), "--quiet"])
