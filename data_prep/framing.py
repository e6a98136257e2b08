"""How a database of ready-cut face images frames its faces, measured with dlib's detector.

FER2013 is prepared with ``--align none``: each 48x48 image is already a face
crop and is used whole. A model trained on it has only ever seen faces framed
the way FER2013's collectors framed them. To give it the same view of a face in
a photo, inference detects the face with the same dlib detector data_prep uses
and cuts the frame FER2013 would have cut around that box. ``Framing`` is that
relation, measured on the database's own images:

    box_side  the detector's box side / the image side (median)
    center_x  (box centre x - image centre x) / the image side (median)
    center_y  (box centre y - image centre y) / the image side (median)

``frame_of`` inverts it: the square frame around a detected box. dlib's box
for one face changes with the face's size in pixels (its detector works on a
pyramid of fixed steps: up to 15 % on the same face), so ``frame_face`` finds
the frame in two passes: a first frame from the box in the photo, then the box
found again in that frame resized to the measured images' side (``image_side``,
48 for FER2013), where the detector sees the face as it saw FER2013's. The measured
FER2013 framing ships as data_prep/fer2013_framing.json (how it was measured:
docs/data.md, "FER2013's framing"); prepare.py writes it into the manifest of
every ``--align none`` dataset, and inference reads it from there.
"""
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

FER2013_FRAMING_FILE = Path(__file__).with_name("fer2013_framing.json")


class FramingError(ValueError):
    """A framing that cannot be measured or read; the message says why."""


@dataclass(frozen=True)
class Framing:
    box_side: float
    center_x: float
    center_y: float
    image_side: int = 48     # side of the images it was measured on (the detector's view)
    measured: int = 0        # images in which a face was found
    tried: int = 0           # images looked at
    source: str = ""         # what was measured, for the manifest

    def frame_of(self, box):
        """(left, top, side) of the square frame around ``box`` = (left, top, right, bottom)."""
        left, top, right, bottom = box
        side = ((right - left) + (bottom - top)) / 2 / self.box_side
        centre_x = (left + right) / 2 - self.center_x * side
        centre_y = (top + bottom) / 2 - self.center_y * side
        return centre_x - side / 2, centre_y - side / 2, side

    def as_dict(self):
        return asdict(self)


def box_relation(box, image_side):
    """(box side, centre x offset, centre y offset) of ``box`` in units of the image side."""
    left, top, right, bottom = box
    centre = image_side / 2
    return (((right - left) + (bottom - top)) / 2 / image_side,
            ((left + right) / 2 - centre) / image_side, ((top + bottom) / 2 - centre) / image_side)


def cut_frame(gray, frame, out_side):
    """The square ``frame`` (left, top, side) of ``gray`` resized to out_side x out_side; parts
    outside the image repeat its edge pixels (a face near the border keeps its frame)."""
    left, top, side = frame
    scale = out_side / side
    matrix = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])
    return cv2.warpAffine(gray, matrix, (out_side, out_side), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)


def frame_to_face_box(frame):
    """2x3 transform putting the square ``frame`` (left, top, side) onto the face box, as
    data_prep.alignment.frame_to_box puts a whole ready-cut image there."""
    left, top, side = frame
    return np.array([[1 / side, 0.0, -left / side], [0.0, 1 / side, -top / side]])


def frame_face(gray, box, framing, detect):
    """(left, top, side) in ``gray`` of the frame ``framing`` puts around the face in ``box``.

    Pass 1: the frame around ``box``; pass 2: that frame cut at ``framing.image_side``
    pixels, the face detected again there, and the frame around that box, mapped back.
    If pass 2 finds no face the first frame is kept.
    """
    left, top, side = framing.frame_of(box)
    view = cut_frame(gray, (left, top, side), framing.image_side)
    again = detect(view)
    if again is None:
        return left, top, side
    scale = side / framing.image_side
    inner_left, inner_top, inner_side = framing.frame_of(again)
    return left + inner_left * scale, top + inner_top * scale, inner_side * scale


def measure_framing(images, detect, source=""):
    """The median box-to-frame relation of ``images`` (square 2-D uint8 arrays of one side) under
    ``detect`` (gray -> largest box or None, e.g. data_prep.alignment.FaceAligner.detect)."""
    relations, tried, sides = [], 0, set()
    for image in images:
        tried += 1
        if image.shape[0] != image.shape[1]:
            raise FramingError(f"image {tried} is {image.shape[1]}x{image.shape[0]}: the framing of "
                               "ready-cut faces is measured on square images")
        sides.add(image.shape[0])
        box = detect(image)
        if box is not None:
            relations.append(box_relation(box, image.shape[0]))
    if len(sides) > 1:
        raise FramingError(f"images of sides {sorted(sides)}: measure images of one size (the "
                           "detector's box depends on the face's size in pixels)")
    if not relations:
        raise FramingError(f"no face found in any of the {tried} images: nothing to measure")
    side, centre_x, centre_y = np.median(np.array(relations), axis=0)
    return Framing(float(side), float(centre_x), float(centre_y), sides.pop(), len(relations), tried,
                   source)


def framing_from_dict(values, origin="framing"):
    try:
        framing = Framing(**{key: values[key] for key in ("box_side", "center_x", "center_y")},
                          image_side=int(values["image_side"]), measured=int(values.get("measured", 0)),
                          tried=int(values.get("tried", 0)), source=str(values.get("source", "")))
    except (KeyError, TypeError) as exc:
        raise FramingError(f"{origin}: not a framing ({exc}); expected box_side, center_x, center_y, "
                           "image_side") from None
    if not framing.box_side > 0:
        raise FramingError(f"{origin}: box_side {framing.box_side} must be > 0")
    return framing


def load_fer2013_framing():
    """The framing measured on FER2013 (data_prep/fer2013_framing.json)."""
    return framing_from_dict(json.loads(FER2013_FRAMING_FILE.read_text()), str(FER2013_FRAMING_FILE))
