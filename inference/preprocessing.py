"""The faces of an image as a model's input crops, made exactly as data_prep made its training crops.

A prepared dataset's manifest records how its crops were cut (template, size,
crop count and shift, alignment method, landmark model, gray normalisation,
detector sizes); ``prep_config_from_manifest`` turns it back into the
data_prep.pipeline.PrepConfig that prepare.py used. ``FaceCropper`` then runs
data_prep's own functions on every face of an image: dlib detection
(FaceAligner.detect_all, the detector and resizing rules prepare used, which
keeps only the largest face), the alignment points, the similarity transform
onto the template, the crop windows and the gray normalisation
(data_prep.pipeline.process_item composes the same calls for one face).

Where the landmarks come from follows prepare's rule: known landmarks when the
caller gives them (prepare used them for every image listed in a landmarks
CSV, e.g. the synthetic faces), else dlib's. A model prepared with ``--align
none`` (FER2013, whose images are ready-cut faces) was trained on whole images
framed as its database frames faces: every face dlib finds is cut with that
framing (the manifest's ``framing``, data_prep/framing.py), and the whole image
is the face only when the caller says the inputs are such crops already
(``framing=None``). Unlike prepare,
an image without a face is reported, not mapped whole onto the face box,
unless ``fallback="frame"`` asks for prepare's ``--fallback frame`` rule.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from data_prep.alignment import (FaceAligner, apply_affine, crop_offsets, frame_to_box, known_points,
                                 normalise_gray, points_to_box, warp_crops)
from data_prep.face_template import template_from_dict
from data_prep.framing import frame_face, frame_to_face_box
from data_prep.pipeline import PrepConfig

FALLBACKS = ("report", "frame")
# The manifest keys that say how crops were made (prepare.py writes them).
_REQUIRED_KEYS = ("image_size", "crops", "crop_offsets", "template", "alignment", "classes")


class ManifestError(ValueError):
    """A manifest that does not say how its crops were made; the message says what to do."""


def prep_config_from_manifest(manifest, origin="manifest"):
    """The PrepConfig prepare.py used for the dataset ``manifest`` describes."""
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ManifestError(f"error: {origin} has no {', '.join(map(repr, missing))}: it was not written by "
                            "data_prep/prepare.py (or by an older version); prepare the dataset again or "
                            "pass the manifest.json of the dataset the model was trained on")
    alignment = manifest["alignment"]
    try:
        config = PrepConfig(template=template_from_dict(manifest["template"], origin=f"{origin} template"),
                            size=int(manifest["image_size"]), crops=int(manifest["crops"]),
                            crop_shift=float(alignment["crop_shift"]), align=alignment["method"],
                            landmark_model=int(alignment["landmark_model"]), fallback=alignment["fallback"],
                            gray=alignment["gray"], detect_min_side=int(alignment["detect_min_side"]),
                            detect_max_side=int(alignment["detect_max_side"]))
    except KeyError as exc:
        raise ManifestError(f"error: {origin}: \"alignment\" has no {exc}; prepare the dataset again") from None
    # The manifest stores the offsets rounded; they must be the ones the count and shift give.
    offsets = crop_offsets(config.crops, config.crop_shift)
    stored = np.asarray(manifest["crop_offsets"], np.float64)
    if stored.shape != offsets.shape or not np.allclose(stored, offsets, atol=1e-5):
        raise ManifestError(f"error: {origin}: crop_offsets {stored.tolist()} are not the {config.crops} crops "
                            f"of shift {config.crop_shift} that data_prep cuts; the manifest was edited or "
                            "written by another version: prepare the dataset again")
    return config


@dataclass(frozen=True)
class Face:
    """One face ready for the net.

    box      (left, top, right, bottom) in image pixels: dlib's rectangle, or for
             known landmarks and whole frames the aligned face box
    points   alignment points {left_eye, right_eye, nose_base, mouth: (x, y) or None}, None for frames
    source   "detected", "known" (given landmarks), "framed" (dlib's face cut with the
             database's framing) or "frame" (whole image)
    crops    (crops, S, S) uint8, normalised as the training crops were
    """
    box: tuple
    points: Optional[dict]
    source: str
    crops: np.ndarray


@dataclass(frozen=True)
class SmallFace:
    """A detected face left out because it is smaller than the cropper's ``min_face``."""
    box: tuple
    reason: str


def face_box(to_box):
    """Bounding rectangle, in image pixels, of the face box that ``to_box`` maps onto the unit square."""
    inverse = np.linalg.inv(np.vstack([to_box, [0, 0, 1]]))[:2]
    corners = apply_affine(inverse, [(0, 0), (1, 0), (0, 1), (1, 1)])
    return tuple(float(v) for v in (*corners.min(axis=0), *corners.max(axis=0)))


class FaceCropper:
    """Every face of a 2-D uint8 gray image -> Face with the model's crops.

    min_face: detected faces whose rectangle is narrower than this many pixels
        are left out and returned as SmallFace (dlib finds faces down to about
        20 pixels after upsampling; below that the crops are mostly blur).
    fallback: "report" (no face -> none returned) or "frame" (prepare's
        --fallback frame: the whole image is the face).
    framing: for a model prepared with --align none, the data_prep.framing.Framing
        its faces are cut with; None: each whole image is the face (inputs that are
        ready-cut faces already).
    """

    def __init__(self, config, min_face=20, fallback="report", framing=None):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        if min_face < 0:
            raise ValueError(f"min_face must be >= 0 pixels, got {min_face}")
        self.config = config
        self.min_face = min_face
        self.fallback = fallback
        self.framing = framing
        self._offsets = crop_offsets(config.crops, config.crop_shift)
        self._aligner = None

    def _dlib(self):
        if self._aligner is None:  # loading dlib's models takes ~0.7 s: only when a face must be detected
            config = self.config
            self._aligner = FaceAligner(config.landmark_model, config.detect_min_side, config.detect_max_side)
        return self._aligner

    def crops(self, gray, to_box):
        """The normalised crops of the face that ``to_box`` maps onto the face box."""
        return normalise_gray(warp_crops(gray, to_box, self._offsets, self.config.size), self.config.gray)

    def faces(self, gray, landmarks=None):
        """(faces, small faces) of ``gray``; ``landmarks``: known five points (items.LANDMARK_NAMES order)."""
        gray = np.ascontiguousarray(gray)
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError(f"expected a 2-D uint8 gray image, got {gray.dtype} of shape {gray.shape}")
        if self.config.align == "none" and self.framing is None:
            return [self._frame_face(gray)], []
        if landmarks is not None and self.config.align != "none":
            points = known_points(landmarks)
            to_box = points_to_box(points, self.config.template)
            return [Face(face_box(to_box), _plain(points), "known", self.crops(gray, to_box))], []
        faces, small = [], []
        aligner = self._dlib()
        for rect in aligner.detect_all(gray):
            if rect[2] - rect[0] < self.min_face:
                small.append(SmallFace(rect, f"face of {rect[2] - rect[0]:.0f} px is narrower than the "
                                             f"minimum {self.min_face} px (--min-face)"))
                continue
            if self.config.align == "none":
                frame = frame_face(gray, rect, self.framing, aligner.detect)
                faces.append(Face(tuple(float(v) for v in rect), None, "framed",
                                  self.crops(gray, frame_to_face_box(frame))))
                continue
            points = aligner.face_points(gray, rect)
            to_box = points_to_box(points, self.config.template)
            faces.append(Face(tuple(float(v) for v in rect), _plain(points), "detected", self.crops(gray, to_box)))
        if not faces and self.fallback == "frame":
            faces.append(self._frame_face(gray))
        return faces, small

    def _frame_face(self, gray):
        to_box = frame_to_box(*gray.shape)
        return Face(face_box(to_box), None, "frame", self.crops(gray, to_box))


def _plain(points):
    """Alignment points as plain (x, y) float tuples (None where the landmark model has no such point)."""
    return {name: None if value is None else tuple(float(v) for v in value) for name, value in points.items()}
