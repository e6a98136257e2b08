"""data_prep/framing.py: the box-to-frame relation of ready-cut faces, measured with the real dlib
detector on frames cut around a real face at a known relation, and its inverse."""
import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from data_prep.alignment import FaceAligner
from data_prep.framing import (Framing, FramingError, box_relation, cut_frame, frame_face,
                               framing_from_dict, load_fer2013_framing, measure_framing)


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner(68)


@pytest.fixture(scope="module")
def astronaut_face(aligner):
    gray = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)
    return gray, aligner.detect(gray)


def test_frame_of_inverts_box_relation():
    framing = Framing(box_side=0.8, center_x=0.05, center_y=-0.03)
    box = (100.0, 50.0, 180.0, 130.0)
    left, top, side = framing.frame_of(box)
    assert side == pytest.approx(100.0)
    shifted = (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
    assert box_relation(shifted, side) == pytest.approx((0.8, 0.05, -0.03))


def test_measure_framing_is_the_median_relation_of_the_faces_found():
    boxes = iter([(10, 12, 40, 42), None, (8, 10, 40, 42), (12, 12, 44, 44)])
    images = [np.zeros((48, 48), np.uint8)] * 4
    framing = measure_framing(images, lambda image: next(boxes), source="test")
    relations = np.array([box_relation(b, 48) for b in [(10, 12, 40, 42), (8, 10, 40, 42), (12, 12, 44, 44)]])
    expected = np.median(relations, axis=0)
    assert (framing.box_side, framing.center_x, framing.center_y) == pytest.approx(tuple(expected))
    assert (framing.image_side, framing.measured, framing.tried) == (48, 3, 4)


def test_a_face_framed_in_two_passes_looks_to_the_detector_as_measured(astronaut_face, aligner):
    # The frame frame_face cuts around a real face, seen at the measured images' side, gives the
    # detector's box back at the measured relation: the view a FER2013 model was trained on.
    gray, box = astronaut_face
    framing = load_fer2013_framing()
    left, top, side = frame_face(gray, box, framing, aligner.detect)
    view = cut_frame(gray, (left, top, side), framing.image_side)
    seen = box_relation(aligner.detect(view), framing.image_side)
    assert seen == pytest.approx((framing.box_side, framing.center_x, framing.center_y), abs=0.05)
    # One pass alone (the photo's own box) misses it by more: dlib's box depends on the face's size.
    one_pass = cut_frame(gray, framing.frame_of(box), framing.image_side)
    first = box_relation(aligner.detect(one_pass), framing.image_side)
    assert abs(first[0] - framing.box_side) > abs(seen[0] - framing.box_side)


def test_no_face_and_non_square_images_are_refused(aligner, rng):
    noise = [rng.integers(0, 256, (64, 64)).astype(np.uint8) for _ in range(2)]
    with pytest.raises(FramingError, match="no face found in any of the 2 images"):
        measure_framing(noise, aligner.detect)
    with pytest.raises(FramingError, match="64x32: the framing of ready-cut faces is measured on square"):
        measure_framing([np.zeros((32, 64), np.uint8)], aligner.detect)
    with pytest.raises(FramingError, match="images of sides \\[32, 48\\]"):
        measure_framing([np.zeros((48, 48), np.uint8), np.zeros((32, 32), np.uint8)], lambda image: None)


def test_the_shipped_fer2013_framing_reads_back():
    framing = load_fer2013_framing()
    assert 0.5 < framing.box_side < 1.2 and framing.measured > 1000 and framing.tried >= framing.measured
    assert framing.image_side == 48
    assert framing_from_dict(framing.as_dict()) == framing
    with pytest.raises(FramingError, match="box_side 0 must be > 0"):
        framing_from_dict({"box_side": 0, "center_x": 0, "center_y": 0, "image_side": 48})
