"""The inputs of a prediction run: image files, folders of them (recursive) and video files.

Images are decoded by data_prep.pipeline.decode_item, the decoder prepare.py
uses (gray, with its checks for empty, truncated and undecodable files);
videos are read frame by frame with OpenCV's VideoCapture. A file that is not
a video makes FFmpeg, GStreamer and OpenCV's own log write lines of noise
straight to file descriptor 2, past Python's sys.stderr; VideoCapture's calls
run with that descriptor pointed at /dev/null, and the caller gets one
VideoError instead, reported against the file's name.
"""
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2

from data_prep.items import IMAGE_SUFFIXES, Item, natural_key
from data_prep.pipeline import ImageError, decode_item

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


class VideoError(ValueError):
    """A video that cannot be read; the message says why."""


@dataclass(frozen=True)
class Input:
    """One input: ``kind`` is "image", "video" or "missing" (``reason`` then says what is wrong)."""
    path: Path
    kind: str
    reason: str = ""


def media_kind(path):
    return "video" if Path(path).suffix.lower() in VIDEO_SUFFIXES else "image"


def expand_inputs(paths):
    """Input per image or video: files as given, folders searched recursively (natural order).

    Inside folders only files with an image or video suffix are taken; a
    folder with none, and a path that does not exist, become "missing" inputs.
    """
    inputs = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted((p for p in path.rglob("*") if p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(path).parts)
                            and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES),
                           key=lambda p: natural_key(str(p.relative_to(path))))
            if not found:
                inputs.append(Input(path, "missing", "the folder holds no image or video files "
                                                     f"({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})"))
            inputs.extend(Input(p, media_kind(p)) for p in found)
        elif path.is_file():
            inputs.append(Input(path, media_kind(path)))
        else:
            inputs.append(Input(path, "missing", "no such file or folder"))
    return inputs


def read_gray(path):
    """The image at ``path`` as 2-D uint8 gray, decoded as prepare.py decodes; ImageError saying why not."""
    return decode_item(Item(source=str(path), label=0, subject=None, sequence=str(path)))


def read_colour(path):
    """The image as BGR for drawing on (None if OpenCV cannot read it in colour)."""
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


@contextmanager
def native_stderr_silenced():
    """File descriptor 2 pointed at /dev/null for the block: C libraries' messages are dropped.

    Only VideoCapture's own calls run inside it (never a yield), so Python's
    messages and the progress bar between frames are untouched.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def video_frames(path, every=1):
    """Yield (frame number, BGR frame) of every ``every``-th frame; VideoError if none can be read."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    with native_stderr_silenced():
        capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError("OpenCV cannot open it as a video (unknown container or codec, or not a video)")
        number, read = 0, 0
        while True:
            if number % every == 0:
                with native_stderr_silenced():
                    ok, frame = capture.read()
                if not ok:
                    break
                read += 1
                yield number, frame
            else:
                with native_stderr_silenced():
                    grabbed = capture.grab()
                if not grabbed:
                    break
            number += 1
        if read == 0:
            raise VideoError("OpenCV opened it but could not decode a single frame")
    finally:
        with native_stderr_silenced():
            capture.release()


__all__ = ["ImageError", "Input", "VideoError", "VIDEO_SUFFIXES", "expand_inputs", "read_colour",
           "read_gray", "video_frames"]
