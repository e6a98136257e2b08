"""Predict over many inputs (tools/predict.py): images and video frames in groups, records in input order.

Images and sampled video frames are gathered into groups of ``group_size``;
the crops of every face in a group go through the net in the same forward
passes (Predictor.classify). With ``workers`` > 1 the faces of a group are
found and cropped (dlib, the CPU-bound part) in that many processes, each
with its own FaceCropper, as data_prep.pipeline spreads prepare's work. Nothing is dropped: every unreadable input,
every image or frame without a classified face and every face too small to
classify gets its record (inference.records), and ``Counts`` adds them up.
"""
import functools
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from inference.media import ImageError, VideoError, read_colour, read_gray, video_frames
from inference.preprocessing import FaceCropper
from inference.records import annotate, face_record, issue_record


@dataclass
class Counts:
    inputs: int = 0
    images: int = 0
    frames: int = 0
    faces: int = 0
    small_faces: int = 0
    no_face: int = 0
    unreadable: int = 0

    def as_dict(self):
        return asdict(self)

    def summary(self):
        return (f"{self.faces} faces classified in {self.images} images and {self.frames} video frames "
                f"of {self.inputs} inputs; {self.no_face} images/frames without a classified face, "
                f"{self.small_faces} faces too small, {self.unreadable} unreadable inputs")


@dataclass
class _Unit:
    """An image or frame to predict, or an input that could not be read (``reason``)."""
    number: int
    source: Path
    frame: object = None
    gray: object = None
    colour: object = None
    landmarks: object = None
    reason: str = None


def _units(inputs, every, landmarks, want_colour, bar):
    for number, item in enumerate(inputs):
        bar.update(1)
        if item.kind == "missing":
            yield _Unit(number, item.path, reason=item.reason)
        elif item.kind == "video":
            try:
                for frame, bgr in video_frames(item.path, every):
                    yield _Unit(number, item.path, frame, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
                                bgr if want_colour else None)
            except VideoError as exc:
                yield _Unit(number, item.path, reason=str(exc))
        else:
            try:
                gray = read_gray(item.path)
            except ImageError as exc:
                yield _Unit(number, item.path, reason=str(exc))
                continue
            marks = landmarks.get(str(Path(item.path).resolve())) if landmarks else None
            yield _Unit(number, item.path, None, gray, read_colour(item.path) if want_colour else None, marks)


@functools.lru_cache(maxsize=2)
def _worker_cropper(config, min_face, fallback, framing):
    """A worker process's FaceCropper, built once per process and setting (dlib's models load once)."""
    return FaceCropper(config, min_face=min_face, fallback=fallback, framing=framing)


def _crop_in_worker(settings, image):
    gray, marks = image
    return _worker_cropper(*settings).faces(gray, marks)


def _init_worker():
    cv2.setNumThreads(1)   # the parallelism is the processes


def predict_inputs(predictor, inputs, write, every=1, landmarks=None, annotate_dir=None, group_size=16,
                   progress=True, workers=1):
    """Predict every input (media.Input list), calling ``write(record)`` in input order; returns Counts.

    landmarks: {resolved image path: five known points} (data_prep's landmarks
    CSV) for images whose faces are not to be detected.
    annotate_dir: folder for copies of the images/frames with boxes and labels drawn.
    workers: processes that find and crop the faces (1: this process).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        return _predict_inputs(predictor, inputs, write, every, landmarks, annotate_dir, group_size, progress,
                               lambda images: [predictor.cropper.faces(gray, marks) for gray, marks in images])
    cropper = predictor.cropper
    crop = functools.partial(_crop_in_worker, (cropper.config, cropper.min_face, cropper.fallback,
                                               cropper.framing))
    # spawn: the parent runs OpenBLAS / onnxruntime threads, which fork does not copy safely
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        return _predict_inputs(predictor, inputs, write, every, landmarks, annotate_dir, group_size * workers,
                               progress, lambda images: pool.map(crop, images))


def _predict_inputs(predictor, inputs, write, every, landmarks, annotate_dir, group_size, progress, find_faces):
    counts = Counts(inputs=len(inputs))
    annotate_dir = None if annotate_dir is None else Path(annotate_dir)
    if annotate_dir is not None:
        annotate_dir.mkdir(parents=True, exist_ok=True)

    def flush(group):
        images = [unit for unit in group if unit.reason is None]
        results = iter(predictor.classify(find_faces([(u.gray, u.landmarks) for u in images])))
        for unit in group:
            if unit.reason is not None:
                counts.unreadable += 1
                write(issue_record(unit.source, unit.frame, "unreadable", unit.reason))
                continue
            result = next(results)
            if unit.frame is None:
                counts.images += 1
            else:
                counts.frames += 1
            for number, face in enumerate(result.faces):
                write(face_record(unit.source, unit.frame, number, face, predictor.class_names))
            for small in result.small:
                write(issue_record(unit.source, unit.frame, "small_face", small.reason, small.box))
            counts.faces += len(result.faces)
            counts.small_faces += len(result.small)
            if not result.faces:
                counts.no_face += 1
                reason = (f"only faces too small to classify ({len(result.small)})" if result.small
                          else "no face found")
                write(issue_record(unit.source, unit.frame, "no_face", reason))
            if annotate_dir is not None:
                _write_annotation(annotate_dir, unit, result)

    with tqdm(total=len(inputs), desc="predicting", unit="input", disable=not progress) as bar:
        group = []
        for unit in _units(inputs, every, landmarks, annotate_dir is not None, bar):
            group.append(unit)
            if len(group) >= group_size:
                flush(group)
                group = []
                bar.set_postfix(faces=counts.faces)
        flush(group)
    return counts


def _write_annotation(folder, unit, result):
    image = unit.colour if unit.colour is not None else unit.gray
    stem = f"{unit.number:05d}_{unit.source.stem}" + ("" if unit.frame is None else f"_frame{unit.frame:06d}")
    path = folder / f"{stem}.png"
    if not cv2.imwrite(str(path), annotate(image, result)):
        raise OSError(f"cannot write {path}")
