"""Face alignment (Section 2.1 of the paper): landmarks -> similarity transform -> crops.

Landmarks come from dlib: the frontal face detector (HOG) finds the face,
upsampling small images so that faces of pre-cropped 48x48 images are found
too, then a shape predictor places the landmarks. The paper aligns with the
triangle of the two eye centres and the mouth, so the default predictor is
dlib's 68-point model (shipped by face-recognition-models like the 5-point
one): eye centre = mean of the eye's six contour points, mouth = midpoint of
the two mouth corners (points 48 and 54), the paper's five points being the
two eye centres, the nose tip and the two mouth corners. dlib's 5-point model
marks only the eye corners and the base of the nose; with it (landmark_model=5)
the mouth is not measured and the similarity is fitted to the eye centres and
the base of the nose instead, the template placing the mouth.

The similarity (rotation, uniform scale, translation) is the least-squares fit
of the three points to the template's, in face-box fractions; one affine warp
per crop then produces size x size pixels directly from the source image.
When no face is found (also after one more upsampling) the whole frame is
taken as the face, as for a pre-cropped face: the image, centred, is mapped
onto the face box (its longer side = the box side). Such whole-frame
fallbacks are counted and listed in the manifest. (Running the predictor
inside the frame instead was tried: on noise or a blank image it still
returns a plausible mean face, so it cannot tell a face from no face.)
"""
import math

import cv2
import numpy as np

LANDMARK_MODELS = (68, 5)
GRAY_MODES = ("std", "hist", "none")
# Output gray levels of the "std" normalisation: mean 127.5, one standard
# deviation = 42.5 levels, so +-3 sigma spans 0..255.
_STD_CENTRE, _STD_SCALE = 127.5, 42.5
# Downscaling by more than this factor is done with INTER_AREA first:
# warpAffine's bilinear sampling would alias.
_MIN_WARP_SCALE = 0.8


def similarity_transform(src, dst):
    """2x3 least-squares similarity (no reflection) mapping points ``src`` (n, 2) onto ``dst``.

    Umeyama's closed form: the rotation comes from the SVD of the points'
    cross-covariance, the scale from the ratio of their spreads.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (n >= 2, 2) point arrays, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c ** 2).sum() / len(src)
    if src_var <= 1e-12:
        raise ValueError("the source points coincide: no transform fits them")
    u, singular, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    scale = (singular * sign).sum() / src_var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def apply_affine(matrix, points):
    """Map (n, 2) points with a 2x3 affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def frame_to_box(height, width):
    """2x3 transform putting a whole image (centred, longer side = box side) onto the face box."""
    side = float(max(height, width))
    # pixel index p covers [p, p + 1): its centre is p + 0.5
    return np.array([[1 / side, 0, (0.5 - width / 2) / side + 0.5],
                     [0, 1 / side, (0.5 - height / 2) / side + 0.5]])


def points_to_box(points, template):
    """2x3 transform from image pixels to face-box fractions for a face's points.

    ``points`` is a dict with left_eye, right_eye and mouth (or, without a
    mouth, nose_base): the triangle the paper aligns with.
    """
    if points.get("mouth") is not None:
        src = [points["left_eye"], points["right_eye"], points["mouth"]]
        dst = template.triangle()
    else:
        src = [points["left_eye"], points["right_eye"], points["nose_base"]]
        dst = template.points()[:3]
    return similarity_transform(src, dst)


def crop_offsets(count, shift):
    """(count, 2) offsets of the crop windows, in face-box sides.

    Every crop is a box-sized window; the windows' offsets lie on the k x k
    grid spanning [-shift, shift] (k = ceil(sqrt(count))), taken nearest to
    the centre first: 1 -> the box itself, 5 -> centre and its four
    neighbours, 9 -> 3x3, 16 -> 4x4 (the paper's Oulu-CASIA count), 25 -> 5x5.
    """
    if count < 1:
        raise ValueError(f"the crop count must be >= 1, got {count}")
    side = math.ceil(math.sqrt(count))
    steps = np.linspace(-shift, shift, side) if side > 1 else np.zeros(1)
    grid = [(x, y) for y in steps for x in steps]
    grid.sort(key=lambda xy: round(xy[0] ** 2 + xy[1] ** 2, 12))  # stable: row-major among equals
    return np.array(grid[:count], dtype=np.float64)


def crop_matrices(to_box, offsets, size):
    """(n, 2, 3) transforms from image pixels to the pixels of each size x size crop."""
    matrices = np.repeat(np.asarray(to_box, np.float64)[np.newaxis] * size, len(offsets), axis=0)
    matrices[:, :, 2] -= np.asarray(offsets) * size + 0.5
    return matrices


def warp_crops(image, to_box, offsets, size):
    """The (n, size, size) uint8 crops of ``image`` (2-D uint8) for the face-box transform ``to_box``."""
    matrices = crop_matrices(to_box, offsets, size)
    scale = math.sqrt(abs(np.linalg.det(matrices[0, :, :2])))
    if scale < _MIN_WARP_SCALE:
        height, width = image.shape
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        ratio_x, ratio_y = new_w / width, new_h / height
        # shrunk pixel q is source pixel (q + 0.5) / ratio - 0.5
        unshrink = np.array([[1 / ratio_x, 0, 0.5 / ratio_x - 0.5],
                             [0, 1 / ratio_y, 0.5 / ratio_y - 0.5]])
        matrices = np.array([compose(m, unshrink) for m in matrices])
    return np.stack([cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE) for m in matrices])


def compose(outer, inner):
    """2x3 affine ``outer`` after ``inner``."""
    linear = outer[:, :2] @ inner[:, :2]
    offset = outer[:, :2] @ inner[:, 2] + outer[:, 2]
    return np.hstack([linear, offset[:, np.newaxis]])


def normalise_gray(crops, mode):
    """Gray-level normalisation of each crop (n, S, S) uint8.

    std:  per crop, zero mean and unit variance, stored as 127.5 + 42.5 z
          (clipped): lighting and contrast differences between databases and
          subjects are removed while the face's own shading is kept.
    hist: per crop histogram equalisation (cv2.equalizeHist).
    none: unchanged.
    """
    if mode == "none":
        return crops
    if mode == "hist":
        return np.stack([cv2.equalizeHist(crop) for crop in crops])
    if mode != "std":
        raise ValueError(f"gray normalisation must be one of {GRAY_MODES}, got {mode!r}")
    values = crops.astype(np.float32)
    mean = values.mean(axis=(1, 2), keepdims=True)
    std = values.std(axis=(1, 2), keepdims=True)
    z = np.where(std > 1e-3, (values - mean) / np.maximum(std, 1e-3), 0.0)
    return np.clip(np.rint(_STD_CENTRE + _STD_SCALE * z), 0, 255).astype(np.uint8)


class FaceAligner:
    """dlib's face detector and shape predictor; build one per process (loading takes ~0.7 s).

    detect_min_side: images whose shorter side is below this are upsampled
        (doubled) for detection until it is reached; the HOG detector finds
        faces of about 80 pixels and larger.
    detect_max_side: images whose shorter side is above this are detected at
        reduced size (landmarks are still placed at full resolution).
    """

    def __init__(self, landmark_model=68, detect_min_side=160, detect_max_side=320):
        import dlib
        import face_recognition_models

        if landmark_model not in LANDMARK_MODELS:
            raise ValueError(f"landmark_model must be one of {LANDMARK_MODELS}, got {landmark_model!r}")
        self._dlib = dlib
        self.landmark_model = landmark_model
        self.detect_min_side = detect_min_side
        self.detect_max_side = detect_max_side
        self._detector = dlib.get_frontal_face_detector()
        model_path = (face_recognition_models.pose_predictor_model_location() if landmark_model == 68
                      else face_recognition_models.pose_predictor_five_point_model_location())
        self._predictor = dlib.shape_predictor(model_path)

    def detect(self, gray):
        """Largest face rectangle (left, top, right, bottom) in image pixels, or None."""
        rects = self.detect_all(gray)
        return rects[0] if rects else None

    def detect_all(self, gray):
        """Every face rectangle (left, top, right, bottom) in image pixels, largest first; [] if none."""
        height, width = gray.shape
        shorter = min(height, width)
        scale = 1.0
        if shorter > self.detect_max_side:
            scale = self.detect_max_side / shorter
            gray = cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))),
                              interpolation=cv2.INTER_AREA)
            shorter = min(gray.shape)
        upsample = 0
        while shorter * 2 ** upsample < self.detect_min_side and upsample < 4:
            upsample += 1
        rects = self._detector(gray, upsample)
        if not rects and shorter * 2 ** (upsample + 1) <= 1024:
            rects = self._detector(gray, upsample + 1)
        # sorted() is stable: among equal areas the detector's order stays, as max() picked the first
        rects = sorted(rects, key=lambda r: r.width() * r.height(), reverse=True)
        return [tuple(v / scale for v in (r.left(), r.top(), r.right(), r.bottom())) for r in rects]

    def landmarks(self, gray, rect):
        """The predictor's points (n, 2) inside ``rect`` (left, top, right, bottom)."""
        box = self._dlib.rectangle(*(int(round(v)) for v in rect))
        shape = self._predictor(gray, box)
        return np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)],
                        dtype=np.float64)

    def face_points(self, gray, rect):
        """dict of left_eye, right_eye, mouth (None for the 5-point model), nose_base."""
        marks = self.landmarks(gray, rect)
        if self.landmark_model == 68:
            eyes = [marks[36:42].mean(axis=0), marks[42:48].mean(axis=0)]
            mouth, nose_base = (marks[48] + marks[54]) / 2, marks[33]
        else:
            # points 0-1: corners of the eye on the image's right, 2-3: on its left; 4: nose base
            eyes = [marks[2:4].mean(axis=0), marks[0:2].mean(axis=0)]
            mouth, nose_base = None, marks[4]
        eyes.sort(key=lambda p: p[0])
        return {"left_eye": eyes[0], "right_eye": eyes[1], "mouth": mouth, "nose_base": nose_base}

    def locate(self, gray):
        """(points, "detected") for the largest face, or (None, "frame") when none is found."""
        gray = np.ascontiguousarray(gray)
        rect = self.detect(gray)
        if rect is None:
            return None, "frame"
        return self.face_points(gray, rect), "detected"


def known_points(landmarks):
    """The alignment points of five known landmarks (items.LANDMARK_NAMES order)."""
    marks = np.asarray(landmarks, np.float64)
    return {"left_eye": marks[0], "right_eye": marks[1], "mouth": (marks[3] + marks[4]) / 2,
            "nose_base": None}
