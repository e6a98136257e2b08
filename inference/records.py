"""What tools/predict.py writes: one record per face, and one per input or frame without a usable face.

A record (JSON Lines: one object per line; CSV: the same fields flattened):
    input      the file as given (or as found in a given folder)
    frame      the video frame number (0-based), null for images
    face       the face's number in its image (0 = largest), null for the other statuses
    status     "face"       a face, classified
               "small_face" a face narrower than --min-face, not classified
               "no_face"    an image or frame in which no face was classified
               "unreadable" a file or video that could not be read (``reason`` says why)
    reason     why, for every status but "face"
    box        [left, top, right, bottom] in image pixels (face and small_face)
    landmarks  the alignment points {left_eye, right_eye, nose_base, mouth: [x, y] or null}
    landmark_source  "detected" (dlib), "known" (--landmarks-csv) or "frame" (the whole image)
    probabilities    {class name: mean softmax over the face's crops}
    label      the most probable class

Writers write to a file atomically (a temporary sibling renamed at close) or
to a stream such as stdout.
"""
import csv
import json
import os
import sys
from pathlib import Path

import cv2

POINT_NAMES = ("left_eye", "right_eye", "nose_base", "mouth")
FORMATS = ("jsonl", "csv")
_BASE_FIELDS = ("input", "frame", "face", "status", "reason")


def _point(value):
    return None if value is None else [float(value[0]), float(value[1])]


def face_record(source, frame, number, prediction, class_names):
    return {"input": str(source), "frame": frame, "face": number, "status": "face", "reason": None,
            "box": [float(v) for v in prediction.box],
            "landmarks": None if prediction.points is None
            else {name: _point(prediction.points.get(name)) for name in POINT_NAMES},
            "landmark_source": prediction.source,
            "probabilities": {name: float(p) for name, p in zip(class_names, prediction.probabilities)},
            "label": prediction.label}


def issue_record(source, frame, status, reason, box=None):
    return {"input": str(source), "frame": frame, "face": None, "status": status, "reason": reason,
            "box": None if box is None else [float(v) for v in box], "landmarks": None,
            "landmark_source": None, "probabilities": None, "label": None}


def csv_fields(class_names):
    return (list(_BASE_FIELDS) + [f"box_{side}" for side in ("left", "top", "right", "bottom")]
            + [f"{name}_{axis}" for name in POINT_NAMES for axis in ("x", "y")]
            + ["landmark_source"] + [f"p_{name}" for name in class_names] + ["label"])


def flatten(record, class_names):
    """The CSV row of a record (empty cells for absent values)."""
    row = {key: record[key] for key in _BASE_FIELDS}
    for side, value in zip(("left", "top", "right", "bottom"), record["box"] or [None] * 4):
        row[f"box_{side}"] = value
    for name in POINT_NAMES:
        point = (record["landmarks"] or {}).get(name) or [None, None]
        row[f"{name}_x"], row[f"{name}_y"] = point
    row["landmark_source"] = record["landmark_source"]
    for name in class_names:
        row[f"p_{name}"] = None if record["probabilities"] is None else record["probabilities"][name]
    row["label"] = record["label"]
    return {key: "" if value is None else value for key, value in row.items()}


class RecordWriter:
    """Writes records as JSON Lines or CSV to ``path`` (atomically) or to ``stream`` (default stdout)."""

    def __init__(self, fmt, class_names, path=None, stream=None):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        self.fmt, self.class_names = fmt, list(class_names)
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
            self._handle = open(self._tmp, "w", newline="")
        else:
            self._handle = stream or sys.stdout
        self._csv = None
        if fmt == "csv":
            self._csv = csv.DictWriter(self._handle, fieldnames=csv_fields(self.class_names))
            self._csv.writeheader()

    def write(self, record):
        if self._csv is not None:
            self._csv.writerow(flatten(record, self.class_names))
        else:
            self._handle.write(json.dumps(record) + "\n")

    def close(self, keep=True):
        """Finish the file (renamed into place) or, with keep=False, drop it (an interrupted run)."""
        if self.path is None:
            self._handle.flush()
            return
        self._handle.close()
        if keep:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def read_records(path):
    """The records of a JSON Lines file written by RecordWriter."""
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def annotate(image, prediction):
    """A BGR copy of ``image`` with each face's box, alignment points and label drawn (small faces in gray)."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    scale = max(canvas.shape[:2]) / 480
    thickness = max(1, round(2 * scale))
    for small in prediction.small:
        left, top, right, bottom = (int(round(v)) for v in small.box)
        cv2.rectangle(canvas, (left, top), (right, bottom), (160, 160, 160), thickness)
    for face in prediction.faces:
        left, top, right, bottom = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (left, top), (right, bottom), (0, 200, 0), thickness)
        for point in (face.points or {}).values():
            if point is not None:
                cv2.circle(canvas, (int(round(point[0])), int(round(point[1]))), thickness + 1, (0, 0, 255), -1)
        text = f"{face.label} {100 * face.probabilities.max():.0f}%"
        font_scale = max(0.35, 0.6 * scale)
        (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        y = top - 4 if top - height - 6 >= 0 else bottom + height + 4
        cv2.rectangle(canvas, (left, y - height - 2), (left + width + 2, y + base), (0, 200, 0), -1)
        cv2.putText(canvas, text, (left + 1, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
