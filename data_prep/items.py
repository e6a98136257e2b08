"""What a reader hands to the pipeline: one Item per image, and every input it skipped."""
import re
from dataclasses import dataclass, field
from typing import Optional, Tuple

# The five points, in image coordinates, in this order. "left" is the image's
# left (smaller x), not the subject's.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class DatasetLayoutError(ValueError):
    """The folder given does not look like the database it should hold."""


@dataclass(frozen=True)
class Item:
    """One image of a dataset.

    source   the file path, or "<csv file>:line N" for images stored in a CSV
    label    project label (data_prep.labels)
    subject  person identity, None where the database has none (FER2013)
    sequence the recording the image comes from (source where there is none)
    usage    "train" / "val" / "test" for databases with an official split
    pixels   the image itself when it is not a file (FER2013's pixel text)
    landmarks the known five points (LANDMARK_NAMES order) or None: detect them
    """
    source: str
    label: int
    subject: Optional[str]
    sequence: str
    usage: Optional[str] = None
    pixels: Optional[str] = None
    landmarks: Optional[Tuple[Tuple[float, float], ...]] = None


@dataclass(frozen=True)
class Skip:
    """An input left out, and why."""
    source: str
    reason: str

    def as_dict(self):
        return {"source": self.source, "reason": self.reason}


@dataclass
class ReadResult:
    """A reader's answer: the images to prepare, what it skipped, facts for the manifest."""
    items: list
    skipped: list = field(default_factory=list)
    num_classes: int = 7
    info: dict = field(default_factory=dict)


def natural_key(name):
    """Sort key that orders "frame2" before "frame10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name))]


def visible_entries(folder):
    """Entries of ``folder`` in natural order, without hidden files and OS debris."""
    return sorted((p for p in folder.iterdir()
                   if not p.name.startswith(".") and not p.name.startswith("__")
                   and p.name not in ("Thumbs.db", "desktop.ini")),
                  key=lambda p: natural_key(p.name))


# OpenCV decodes them all (WebP too: a lossless WebP copy of FER2013 is 40 % smaller than its PNGs,
# which is how it travels to a GPU machine).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")


def image_files(folder):
    """Image files directly in ``folder``, natural order."""
    return [p for p in visible_entries(folder)
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
