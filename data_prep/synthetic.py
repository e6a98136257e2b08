"""A licence-free expression dataset of procedurally drawn gray faces.

Every subject has its own face geometry (face size and shape, eye spacing and
size, brow length and thickness, nose length, mouth width, lip thickness),
skin, hair and iris tones, and its own resting expression (a small personal
offset of the expression parameters). An expression sets ten parameters
(brow raise, inner-brow raise, brows drawn together, eye opening, mouth width,
mouth opening, mouth-corner raise, upper-lip raise, nose wrinkle, cheek raise)
following the facial actions of the six basic expressions (anger: brows down
and together, narrowed eyes, pressed lips; disgust: raised upper lip, wrinkled
nose; fear: raised straight brows, wide eyes, stretched open mouth; happiness:
raised mouth corners, raised cheeks; sadness: raised inner brows, lowered
corners; surprise: high arched brows, wide eyes, round open mouth). Each image
draws a random intensity (0.5-1 of the full expression) and parameter noise,
a random head pose (roll, scale, shift), a lighting gradient, gain, offset,
blur and sensor noise, and a low-frequency background, so that a small CNN
has to learn the expression cues across subjects rather than read one pixel.

The five landmarks (eye centres, nose tip, mouth corners, image left first)
are known exactly and written beside the images; data_prep aligns synthetic
faces with them instead of running dlib's detector, which is trained on photos.

On disk the dataset has the generic CSV layout (data_prep/readers/index_csv.py):
    <out>/labels.csv      path,label,subject
    <out>/landmarks.csv   path + the ten landmark coordinates
    <out>/images/S01/S01_happiness_003.png ...

    python data_prep/synthetic.py --out DIR [--subjects 10] [--expressions 6]
        [--images 8] [--size 96] [--seed 0]

runs tools/synthetic.py, the command line (runtime/forward.py).
"""
import csv
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data_prep.labels import CLASS_NAMES, SEVEN_CLASSES, SIX_CLASSES
from data_prep.readers.index_csv import CSV_INDEX, LANDMARK_COLUMNS

LANDMARKS_FILE = "landmarks.csv"
_SUPERSAMPLE = 2            # drawn at twice the size, then area-averaged (anti-aliasing)
_SHIFT = 3                  # cv2 fixed-point bits: polygon vertices at 1/8 pixel
PARAMETERS = ("brow_raise", "brow_inner", "brow_together", "eye_open", "mouth_width",
              "mouth_open", "corner_up", "upper_lip", "nose_wrinkle", "cheek_raise")
# One row per class in the project's order (An Di Fe Ha Sa Su Ne).
EXPRESSIONS = np.array([
    # raise inner together eye  width open  corner upper wrinkle cheek
    [-0.6, -1.0, 1.0, 0.70, 0.85, 0.00, -0.35, 0.0, 0.5, 0.0],   # anger
    [-0.4, -0.3, 0.5, 0.65, 0.90, 0.15, -0.60, 1.0, 1.0, 0.4],   # disgust
    [0.8, 0.9, 0.6, 1.35, 1.15, 0.50, -0.40, 0.0, 0.0, 0.0],     # fear
    [0.1, 0.0, 0.0, 0.75, 1.30, 0.35, 1.00, 0.0, 0.0, 1.0],      # happiness
    [-0.1, 1.0, 0.3, 0.80, 0.95, 0.00, -0.90, 0.0, 0.0, 0.0],    # sadness
    [1.2, 0.3, 0.0, 1.50, 0.80, 1.20, 0.00, 0.0, 0.0, 0.0],      # surprise
    [0.0, 0.0, 0.0, 1.00, 1.00, 0.00, 0.00, 0.0, 0.0, 0.0],      # neutral
])
NEUTRAL_PARAMETERS = EXPRESSIONS[6]
# Per-image parameter noise and per-subject resting offsets, in parameter units.
_IMAGE_NOISE = np.array([0.15, 0.15, 0.15, 0.10, 0.06, 0.08, 0.15, 0.15, 0.15, 0.15])
_SUBJECT_OFFSET = np.array([0.20, 0.20, 0.20, 0.10, 0.06, 0.04, 0.15, 0.10, 0.10, 0.10])


def make_subject(rng, size):
    """Random face geometry and tones of one subject (lengths in pixels of a size x size image)."""
    a = size * rng.uniform(0.26, 0.31)          # face half-width
    b = a * rng.uniform(1.2, 1.4)               # face half-height
    eye_w = a * rng.uniform(0.16, 0.21)
    skin = rng.uniform(120, 205)
    return {
        "a": a, "b": b,
        "eye_dx": a * rng.uniform(0.38, 0.46), "eye_y": -b * rng.uniform(0.10, 0.20),
        "eye_w": eye_w, "eye_h": eye_w * rng.uniform(0.45, 0.6),
        "brow_gap": a * rng.uniform(0.14, 0.2), "brow_half": eye_w * rng.uniform(1.1, 1.4),
        "brow_thick": a * rng.uniform(0.05, 0.09),
        "nose_len": b * rng.uniform(0.36, 0.46), "mouth_gap": b * rng.uniform(0.2, 0.27),
        "mouth_half": a * rng.uniform(0.30, 0.40), "lip": a * rng.uniform(0.04, 0.07),
        "skin": skin, "hair": float(np.clip(skin - rng.uniform(50, 110), 10, 200)),
        "iris": rng.uniform(15, 70), "hair_top": rng.uniform(0.85, 1.05),
        "offset": rng.normal(0, 1, len(PARAMETERS)) * _SUBJECT_OFFSET,
    }


class _Canvas:
    """A float canvas drawn in face coordinates (pixels, origin at the face centre) through a pose."""

    def __init__(self, size, background, pose):
        self.size = size
        self.image = background
        self.pose = pose                         # 2x3: face coordinates -> supersampled pixels

    def to_pixels(self, points):
        points = np.asarray(points, np.float64).reshape(-1, 2)
        return points @ self.pose[:, :2].T + self.pose[:, 2]

    def _fixed(self, points):
        return np.round(self.to_pixels(points) * (1 << _SHIFT)).astype(np.int32)

    def fill(self, points, value):
        cv2.fillPoly(self.image, [self._fixed(points)], float(value), cv2.LINE_8, _SHIFT)

    def line(self, points, value, thickness):
        width = max(1, int(round(thickness * self.scale())))
        cv2.polylines(self.image, [self._fixed(points)], False, float(value), width, cv2.LINE_8, _SHIFT)

    def scale(self):
        return math.sqrt(abs(np.linalg.det(self.pose[:, :2])))


def _ellipse(cx, cy, rx, ry, n=28):
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], axis=1)


def _curve(start, control, end, n=12):
    """Quadratic Bezier from ``start`` to ``end`` pulled towards ``control``."""
    t = np.linspace(0, 1, n)[:, np.newaxis]
    start, control, end = (np.asarray(p, np.float64) for p in (start, control, end))
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t ** 2 * end


def draw_face(rng, subject, params, size):
    """One uint8 size x size image of ``subject`` showing expression ``params``; and its 5 landmarks."""
    s = subject
    a, b = s["a"], s["b"]
    raise_, inner, together, eye_open, width, mouth_open, corner, upper, wrinkle, cheek = params
    big = size * _SUPERSAMPLE
    angle = math.radians(float(np.clip(rng.normal(0, 6), -14, 14)))
    zoom = rng.uniform(0.9, 1.1) * _SUPERSAMPLE
    centre = (np.array([size / 2, size / 2 + 0.04 * size]) + rng.uniform(-0.06, 0.06, 2) * size) * _SUPERSAMPLE
    pose = np.array([[zoom * math.cos(angle), -zoom * math.sin(angle), centre[0]],
                     [zoom * math.sin(angle), zoom * math.cos(angle), centre[1]]])
    background = cv2.resize(rng.normal(0, 28, (4, 4)).astype(np.float32), (big, big),
                            interpolation=cv2.INTER_CUBIC) + rng.uniform(40, 215)
    canvas = _Canvas(size, background.astype(np.float32), pose)

    skin, hair = s["skin"], s["hair"]
    canvas.fill(_ellipse(0, -0.18 * b, 1.08 * a, s["hair_top"] * b), hair)            # hair behind
    canvas.fill([(-0.45 * a, 0.6 * b), (0.45 * a, 0.6 * b), (0.5 * a, 1.6 * b), (-0.5 * a, 1.6 * b)],
                skin * 0.85)                                                            # neck
    canvas.fill(_ellipse(0, 0, a, b), skin)                                             # head
    canvas.fill(_ellipse(0, -0.93 * b, 0.8 * a, 0.3 * b), hair)                          # fringe

    eye_y = s["eye_y"]
    eye_h = s["eye_h"] * max(0.15, eye_open * (1 - 0.2 * cheek))
    eye_centres = []
    for side in (-1, 1):
        ex = side * s["eye_dx"]
        eye_centres.append((ex, eye_y))
        canvas.fill(_ellipse(ex, eye_y, s["eye_w"], eye_h), min(255, skin + 45))          # sclera
        iris_r = min(eye_h, 0.55 * s["eye_w"])
        canvas.fill(_ellipse(ex, eye_y, iris_r, iris_r), s["iris"])                       # iris
        lid = _ellipse(ex, eye_y, s["eye_w"], eye_h, 28)[14:]                             # upper arc
        canvas.line(lid, skin * 0.35, 0.05 * a)
        # brow: inner end towards the midline, its height and tilt set by the expression
        base = eye_y - s["eye_h"] - s["brow_gap"] - raise_ * 0.16 * a
        inner_pt = (side * (s["eye_dx"] - s["brow_half"] - together * 0.08 * a), base - inner * 0.12 * a)
        outer_pt = (side * (s["eye_dx"] + s["brow_half"]), base + inner * 0.04 * a + 0.04 * a)
        arch = (side * s["eye_dx"], base - (0.05 + 0.04 * max(raise_, 0)) * a)
        canvas.line(_curve(inner_pt, arch, outer_pt), hair * 0.8, s["brow_thick"])

    nose_y = eye_y + s["nose_len"]
    canvas.line([(0.02 * a, eye_y + 0.15 * b), (0.08 * a, nose_y - 0.05 * b), (0, nose_y)],
                skin * 0.8, 0.03 * a)
    for side in (-1, 1):
        canvas.fill(_ellipse(side * 0.1 * a, nose_y + 0.02 * b, 0.06 * a, 0.035 * a), skin * 0.45)
    if wrinkle > 0.2:
        shade = skin * (1 - 0.35 * min(wrinkle, 1.5))
        for k in range(3):
            y = eye_y + (0.08 + 0.06 * k) * b
            canvas.line([(-0.09 * a, y), (0.09 * a, y - 0.01 * b)], shade, 0.025 * a)

    mouth_y = nose_y + s["mouth_gap"]
    half = s["mouth_half"] * width
    corner_y = mouth_y - corner * 0.13 * a
    opening = max(0.0, mouth_open) * 0.28 * a
    lift = max(0.0, upper) * 0.09 * a
    left, right = (-half, corner_y), (half, corner_y)
    # inner lip lines; the controls sit at twice the wanted mid-point offset (Bezier midpoint = half)
    top_inner = _curve(left, (0, mouth_y + 2 * (-opening / 2 - lift) + (mouth_y - corner_y)), right)
    bottom_inner = _curve(left, (0, mouth_y + 2 * (opening / 2) + (mouth_y - corner_y)), right)
    lip = s["lip"]
    lips = np.vstack([top_inner + [0, -lip], (bottom_inner + [0, 1.3 * lip])[::-1]])
    canvas.fill(lips, skin * 0.7)
    if opening > 0.02 * a:
        canvas.fill(np.vstack([top_inner, bottom_inner[::-1]]), 25)
    else:
        canvas.line(top_inner, skin * 0.3, 0.035 * a)
    fold = 0.6 * cheek + 0.3 * max(wrinkle, 0)
    if fold > 0.15:
        for side in (-1, 1):
            canvas.line(_curve((side * 0.17 * a, nose_y), (side * (half + 0.12 * a), mouth_y - 0.05 * b),
                               (side * (half + 0.06 * a), corner_y + 0.06 * b)),
                        skin * (1 - 0.3 * min(fold, 1.2)), 0.03 * a)

    image = canvas.image
    direction = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-1, 1, big, dtype=np.float32)
    light = 1 + rng.uniform(0, 0.35) * (math.cos(direction) * ramp[np.newaxis, :]
                                        + math.sin(direction) * ramp[:, np.newaxis])
    image = image * light * rng.uniform(0.75, 1.2) + rng.uniform(-20, 20)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    blur = rng.uniform(0, 0.8)
    if blur > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    image = image + rng.normal(0, rng.uniform(2, 8), image.shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    face_points = [eye_centres[0], eye_centres[1], (0, nose_y), left, right]
    landmarks = canvas.to_pixels(face_points) / _SUPERSAMPLE - 0.5   # pixel-centre coordinates
    return image, landmarks


def expression_parameters(rng, label, subject):
    """Parameters of one image: a random intensity of the class, the subject's offset, noise."""
    intensity = rng.uniform(0.5, 1.0)
    params = NEUTRAL_PARAMETERS + intensity * (EXPRESSIONS[label] - NEUTRAL_PARAMETERS)
    return params + subject["offset"] + rng.normal(0, 1, len(PARAMETERS)) * _IMAGE_NOISE


def generate(subjects=10, expressions=6, images=8, size=96, seed=0):
    """Yield (subject id, label, image index, image, landmarks) for the whole dataset, deterministically."""
    if expressions not in (SIX_CLASSES, SEVEN_CLASSES):
        raise ValueError(f"expressions must be 6 (An..Su) or 7 (with neutral), got {expressions}")
    if subjects < 1 or images < 1:
        raise ValueError("subjects and images must be >= 1")
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    for number in range(subjects):
        rng = np.random.default_rng([seed, number])
        subject = make_subject(rng, size)
        for label in range(expressions):
            for index in range(images):
                image, landmarks = draw_face(rng, subject, expression_parameters(rng, label, subject), size)
                yield f"S{number + 1:02d}", label, index, image, landmarks


def write_dataset(out, subjects=10, expressions=6, images=8, size=96, seed=0, progress=False):
    """Write the dataset to the new folder ``out`` (atomically); returns the number of images."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new folder for the synthetic dataset")
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    count = 0
    try:
        (tmp / "images").mkdir(parents=True)
        with open(tmp / CSV_INDEX, "w", newline="") as labels_file, \
                open(tmp / LANDMARKS_FILE, "w", newline="") as marks_file:
            labels_csv, marks_csv = csv.writer(labels_file), csv.writer(marks_file)
            labels_csv.writerow(["path", "label", "subject"])
            marks_csv.writerow(["path", *LANDMARK_COLUMNS])
            faces = tqdm(generate(subjects, expressions, images, size, seed), total=subjects * expressions * images,
                         desc="drawing faces", unit="img", disable=not progress)
            for subject, label, index, image, landmarks in faces:
                relative = f"images/{subject}/{subject}_{CLASS_NAMES[label]}_{index:03d}.png"
                (tmp / relative).parent.mkdir(exist_ok=True)
                if not cv2.imwrite(str(tmp / relative), image):
                    raise OSError(f"cannot write {tmp / relative}")
                labels_csv.writerow([relative, CLASS_NAMES[label], subject])
                marks_csv.writerow([relative, *(f"{v:.3f}" for v in landmarks.ravel())])
                count += 1
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


if __name__ == "__main__":
    # The documented `python data_prep/synthetic.py ...`: the command line is tools/synthetic.py.
    from runtime.forward import run_tool_instead
    run_tool_instead("synthetic.py")
