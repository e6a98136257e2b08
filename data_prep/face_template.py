"""The face template: where the eyes, nose base and mouth land in the aligned face box.

Coordinates are fractions of the square face box (x to the right, y down,
(0, 0) the box's top-left corner, (1, 1) its bottom-right). "left" is the
image's left. Section 2.1 of the paper aligns every database to CK+'s mean
triangle (the two eye centres and the mouth) and to CK+'s mean margins
around it; data_prep/compute_template.py measures both on a CK+ copy. The
default template (default_template.json) is hand-set from typical adult face
proportions, not measured on CK+: see its "source" field.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_TEMPLATE_PATH = Path(__file__).resolve().with_name("default_template.json")
POINT_NAMES = ("left_eye", "right_eye", "nose_base", "mouth")


@dataclass(frozen=True)
class Template:
    """Template points in face-box fractions; ``source`` describes where they come from."""
    left_eye: tuple
    right_eye: tuple
    nose_base: tuple
    mouth: tuple
    name: str = "default"
    source: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        points = self.points()
        if not np.all(np.isfinite(points)) or np.any(points < 0) or np.any(points > 1):
            raise ValueError(f"template {self.name!r}: every point must lie inside the box [0, 1]^2, "
                             f"got {dict(zip(POINT_NAMES, points.tolist()))}")
        if not self.left_eye[0] < self.right_eye[0]:
            raise ValueError(f"template {self.name!r}: left_eye must be left of right_eye")
        if not self.mouth[1] > max(self.left_eye[1], self.right_eye[1]):
            raise ValueError(f"template {self.name!r}: the mouth must be below the eyes")

    def points(self):
        """(4, 2) array in POINT_NAMES order."""
        return np.array([self.left_eye, self.right_eye, self.nose_base, self.mouth], dtype=np.float64)

    def triangle(self):
        """(3, 2): left eye, right eye, mouth - the paper's alignment triangle."""
        return np.array([self.left_eye, self.right_eye, self.mouth], dtype=np.float64)

    def geometry(self):
        """The paper's description of the template: triangle sides and margins, in box sides."""
        left, right, mouth = self.triangle()
        low, high = self.triangle().min(axis=0), self.triangle().max(axis=0)
        return {"eye_distance": float(np.linalg.norm(right - left)),
                "left_eye_to_mouth": float(np.linalg.norm(mouth - left)),
                "right_eye_to_mouth": float(np.linalg.norm(mouth - right)),
                "margin_left": float(low[0]), "margin_top": float(low[1]),
                "margin_right": float(1 - high[0]), "margin_bottom": float(1 - high[1])}

    def as_dict(self):
        return {"name": self.name,
                "units": "fractions of the square face box; x right, y down; left = image left",
                "points": {name: [float(v) for v in getattr(self, name)] for name in POINT_NAMES},
                "geometry": self.geometry(), "source": self.source}

    def save(self, path):
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} already exists; choose another file name")
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")


def template_from_dict(data, origin="template"):
    try:
        points = data["points"]
        values = {name: tuple(float(v) for v in points[name]) for name in POINT_NAMES}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{origin}: expected {{\"points\": {{{', '.join(POINT_NAMES)}: [x, y]}}}}; "
                         f"problem: {exc!r}") from exc
    if any(len(v) != 2 for v in values.values()):
        raise ValueError(f"{origin}: every point must be [x, y]")
    return Template(**values, name=str(data.get("name", origin)), source=data.get("source", {}))


def load_template(path=None):
    """The template in the JSON file ``path`` (default: the shipped default template)."""
    path = Path(path) if path else DEFAULT_TEMPLATE_PATH
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"template file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"template file {path} is not valid JSON: {exc}") from exc
    return template_from_dict(data, origin=str(path))


def template_from_faces(faces, margin=0.15, name="ckplus", source=None):
    """Mean template of measured faces, as Section 2.1 does with CK+.

    ``faces``: sequence of (points, rect) with points a dict of left_eye,
    right_eye, mouth, nose_base (image pixels) and rect the detector's face
    rectangle (left, top, right, bottom). Each face is expressed in its own
    eye frame (origin between the eyes, x along the eyes, unit = eye
    distance), so that faces of any size and roll average together; the mean
    triangle and mean face rectangle in that frame, the rectangle widened by
    ``margin`` of its side on every edge, give the template.
    """
    if not faces:
        raise ValueError("no measured faces to build a template from")
    mouths, noses, centres, sides, distances = [], [], [], [], []
    for points, rect in faces:
        left, right = np.asarray(points["left_eye"], float), np.asarray(points["right_eye"], float)
        distance = float(np.linalg.norm(right - left))
        if distance <= 0:
            continue
        cos, sin = (right - left) / distance
        to_eye_frame = np.array([[cos, sin], [-sin, cos]]) / distance   # rotate by -roll, scale to eye units
        origin = (left + right) / 2
        mouths.append(to_eye_frame @ (np.asarray(points["mouth"], float) - origin))
        noses.append(to_eye_frame @ (np.asarray(points["nose_base"], float) - origin))
        rect_left, rect_top, rect_right, rect_bottom = rect
        centres.append(to_eye_frame @ (np.array([rect_left + rect_right, rect_top + rect_bottom]) / 2 - origin))
        sides.append((rect_right - rect_left + rect_bottom - rect_top) / 2 / distance)
        distances.append(distance)
    mouth, nose, centre = np.mean(mouths, axis=0), np.mean(noses, axis=0), np.mean(centres, axis=0)
    side = float(np.mean(sides)) * (1 + 2 * margin)
    corner = centre - side / 2

    def fraction(point):
        return tuple(float(v) for v in (np.asarray(point) - corner) / side)

    stats = {"method": "measured", "faces": len(distances), "margin": margin,
             "mean_eye_distance_px": float(np.mean(distances)),
             "eye_to_mouth_in_eye_distances": [float(v) for v in mouth],
             "eye_to_mouth_std": [float(v) for v in np.std(mouths, axis=0)],
             "nose_base_in_eye_distances": [float(v) for v in nose],
             "face_box_side_in_eye_distances": side,
             "detector_box_side_in_eye_distances": float(np.mean(sides))}
    return Template(fraction((-0.5, 0)), fraction((0.5, 0)), fraction(nose), fraction(mouth),
                    name=name, source={**stats, **(source or {})})
