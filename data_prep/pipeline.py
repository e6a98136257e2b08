"""Decode, align, crop and normalise every item, across processes.

Work is cut into chunks of items; a multiprocessing Pool maps
``process_chunk`` over them with imap (results come back in item order, so
the output does not depend on the number of workers). Each worker process
builds dlib's detector and predictor once (``_aligner`` is cached per
process) and is limited to one OpenCV thread, the parallelism being the
processes.
"""
import functools
import hashlib
import multiprocessing
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from tqdm import tqdm

from data_prep.alignment import (FaceAligner, crop_offsets, frame_to_box, known_points, normalise_gray,
                                 points_to_box, warp_crops)
from data_prep.audit import image_figures
from data_prep.face_template import Template

ALIGN_MODES = ("landmarks", "none")
FALLBACK_MODES = ("frame", "skip")
_JPEG_SUFFIXES = (".jpg", ".jpeg")
_MIN_SIDE = 8


class ImageError(ValueError):
    """An input image that cannot be used; the message says why."""


@dataclass(frozen=True)
class PrepConfig:
    """How every image is turned into crops (all recorded in the manifest)."""
    template: Template
    size: int = 48
    crops: int = 1
    crop_shift: float = 0.08
    align: str = "landmarks"
    landmark_model: int = 68
    fallback: str = "frame"
    gray: str = "std"
    detect_min_side: int = 160
    detect_max_side: int = 320

    def __post_init__(self):
        if self.align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {ALIGN_MODES}, got {self.align!r}")
        if self.fallback not in FALLBACK_MODES:
            raise ValueError(f"fallback must be one of {FALLBACK_MODES}, got {self.fallback!r}")
        if self.size < 8:
            raise ValueError(f"size must be >= 8 pixels, got {self.size}")
        if not 0 <= self.crop_shift < 0.5:
            raise ValueError(f"crop_shift must be in [0, 0.5), got {self.crop_shift}")
        crop_offsets(self.crops, self.crop_shift)  # validates the count


@dataclass
class ItemResult:
    """What became of one item: its crops (n, S, S) uint8 or the reason it was skipped.

    ``figures``: the audit's statistics of the image as read (data_prep/audit.py), measured here because
    it is per-image work on the decoded image, which only the worker holds.
    """
    index: int
    crops: Optional[np.ndarray] = None
    digest: Optional[str] = None
    alignment: Optional[str] = None
    skip_reason: Optional[str] = None
    figures: Optional[np.ndarray] = None


def decode_item(item):
    """The item's image as 2-D uint8 gray, or ImageError saying why not."""
    if item.pixels is not None:
        values = item.pixels.split()
        side = int(round(len(values) ** 0.5))
        if not values or side * side != len(values):
            raise ImageError(f"{len(values)} pixel values do not make a square image "
                             f"(FER2013 rows hold 2304 = 48x48)")
        try:
            image = np.array(values, dtype=np.int64)
        except ValueError:
            raise ImageError("pixel values must be integers 0..255") from None
        if image.min() < 0 or image.max() > 255:
            raise ImageError("pixel values must be integers 0..255")
        return image.astype(np.uint8).reshape(side, side)
    try:
        with open(item.source, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ImageError(f"unreadable file ({exc.strerror or exc})") from None
    if not data:
        raise ImageError("empty file")
    # OpenCV decodes a truncated JPEG without complaint, filling the rest with gray.
    if item.source.lower().endswith(_JPEG_SUFFIXES) and b"\xff\xd9" not in data[-4096:]:
        raise ImageError("corrupt image: the JPEG data is truncated (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ImageError("corrupt or unsupported image: OpenCV cannot decode it")
    if min(image.shape) < _MIN_SIDE:
        raise ImageError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small")
    return image


def image_digest(image):
    """Content hash of a decoded image, used to find duplicate files."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(image.shape, np.int64).tobytes())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=2)
def _aligner(landmark_model, detect_min_side, detect_max_side):
    """dlib objects, built once per process and per setting."""
    return FaceAligner(landmark_model, detect_min_side, detect_max_side)


def process_item(index, item, config):
    """Decode, align, crop and normalise one item -> ItemResult."""
    try:
        image = decode_item(item)
    except ImageError as exc:
        return ItemResult(index, skip_reason=str(exc))
    digest = image_digest(image)
    if config.align == "none":
        to_box, kind = frame_to_box(*image.shape), "none"
    elif item.landmarks is not None:
        try:
            to_box, kind = points_to_box(known_points(item.landmarks), config.template), "known"
        except ValueError as exc:
            return ItemResult(index, digest=digest, skip_reason=f"unusable known landmarks: {exc}")
    else:
        points, kind = _aligner(config.landmark_model, config.detect_min_side,
                                config.detect_max_side).locate(image)
        if points is None and config.fallback == "skip":
            return ItemResult(index, digest=digest, alignment=kind,
                              skip_reason="no face found (--fallback skip)")
        to_box = points_to_box(points, config.template) if points is not None else frame_to_box(*image.shape)
    crops = warp_crops(image, to_box, crop_offsets(config.crops, config.crop_shift), config.size)
    return ItemResult(index, normalise_gray(crops, config.gray), digest, kind, figures=image_figures(image))


def process_chunk(config, chunk):
    """process_item over a list of (index, item)."""
    results = []
    for index, item in chunk:
        try:
            results.append(process_item(index, item, config))
        except cv2.error as exc:
            # an image OpenCV decoded but cannot warp (odd depth or layout): that image's problem
            results.append(ItemResult(index, skip_reason=f"OpenCV failed on this image: {str(exc).strip()[-200:]}"))
        except Exception as exc:
            raise RuntimeError(f"preparing {item.source} failed: {exc!r}") from exc
    return results


def measure_chunk(landmark_settings, chunk):
    """(index, face points or None, face rectangle or None, reason) per (index, item): for templates."""
    aligner = _aligner(*landmark_settings)
    measured = []
    for index, item in chunk:
        try:
            image = decode_item(item)
        except ImageError as exc:
            measured.append((index, None, None, str(exc)))
            continue
        rect = aligner.detect(image)
        if rect is None:
            measured.append((index, None, None, "no face found"))
        else:
            measured.append((index, aligner.face_points(image, rect), rect, None))
    return measured


def audit_chunk(chunk):
    """(index, audit figures or None, skip reason or None) per (index, item): the audit alone."""
    measured = []
    for index, item in chunk:
        try:
            measured.append((index, image_figures(decode_item(item)), None))
        except ImageError as exc:
            measured.append((index, None, str(exc)))
    return measured


def _init_worker():
    cv2.setNumThreads(1)


def run_chunks(function, items, workers=1, chunk_size=8, progress=True, description="aligning"):
    """Yield ``function(chunk)``'s results for chunks of (index, item), in item order.

    ``workers`` processes (1 = this process); a tqdm bar counts the items.
    """
    indexed = list(enumerate(items))
    chunks = [indexed[start:start + chunk_size] for start in range(0, len(indexed), chunk_size)]
    bar = tqdm(total=len(indexed), desc=description, unit="img", disable=not progress, smoothing=0.1)
    try:
        if workers <= 1:
            for chunk in chunks:
                results = function(chunk)
                bar.update(len(results))
                yield from results
            return
        # spawn: the parent may run OpenBLAS/OpenCV threads, which fork does not copy safely
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker) as pool:
            for results in pool.imap(function, chunks):
                bar.update(len(results))
                yield from results
    finally:
        bar.close()


def process_items(items, config, workers=1, chunk_size=8, progress=True):
    """Yield an ItemResult per item, in item order (see run_chunks)."""
    return run_chunks(functools.partial(process_chunk, config), items, workers, chunk_size, progress)
