"""Oulu-CASIA NIR&VIS: <root>/<camera>/<light>/Pxxx/<Expression>/<frames>.

camera is NIR or VIS (the release names the folders NI and VL; both
spellings are accepted, also under an OriginalImg/ folder), light is Strong,
Weak or Dark, Expression is Anger, Disgust, Fear, Happiness, Sadness or
Surprise. Each sequence ends at the expression's peak: its last
``peak_frames`` frames are used (the paper: NIR, Strong, 3 peak frames).
"""
import re
from pathlib import Path

from data_prep.items import DatasetLayoutError, Item, ReadResult, Skip, image_files, visible_entries
from data_prep.labels import OULU_FOLDERS, SIX_CLASSES

CAMERAS = {"NIR": ("NIR", "NI"), "VIS": ("VIS", "VL")}
LIGHTS = ("Strong", "Weak", "Dark")
_SUBJECT = re.compile(r"^P\d+$")


def oulu_folder(root, camera, light):
    """The <camera>/<light> folder of an Oulu-CASIA copy, or DatasetLayoutError."""
    if camera not in CAMERAS:
        raise ValueError(f"camera must be one of {sorted(CAMERAS)}, got {camera!r}")
    if light not in LIGHTS:
        raise ValueError(f"light must be one of {LIGHTS}, got {light!r}")
    root = Path(root)
    candidates = [base / name / light for base in (root, root / "OriginalImg") for name in CAMERAS[camera]]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    found = ", ".join(p.name for p in visible_entries(root)) if root.is_dir() else "no such folder"
    raise DatasetLayoutError(
        f"Oulu-CASIA root {root}: expected {camera} ({' or '.join(CAMERAS[camera])})/{light}/Pxxx/"
        f"<Expression>/ frames, e.g. {candidates[1].relative_to(root)}; found: {found or 'an empty folder'}")


def read_oulu(root, camera="NIR", light="Strong", peak_frames=3):
    if peak_frames < 1:
        raise ValueError(f"peak_frames must be >= 1, got {peak_frames}")
    folder = oulu_folder(root, camera, light)
    subject_dirs = [p for p in visible_entries(folder) if p.is_dir()]
    if not any(_SUBJECT.match(p.name) for p in subject_dirs):
        raise DatasetLayoutError(f"{folder}: no subject folders named like P001")
    items, skipped = [], []
    for subject_dir in subject_dirs:
        if not _SUBJECT.match(subject_dir.name):
            skipped.append(Skip(str(subject_dir), "not an Oulu-CASIA subject folder (expected a name like P001)"))
            continue
        for expression_dir in (p for p in visible_entries(subject_dir) if p.is_dir()):
            label = OULU_FOLDERS.get(expression_dir.name)
            if label is None:
                skipped.append(Skip(str(expression_dir), f"unknown expression folder; expected one of "
                                    f"{', '.join(OULU_FOLDERS)}"))
                continue
            frames = image_files(expression_dir)
            if not frames:
                skipped.append(Skip(str(expression_dir), "no image frames in the sequence"))
                continue
            sequence = f"{subject_dir.name}_{expression_dir.name}"
            for frame in frames[-peak_frames:]:
                items.append(Item(str(frame), label, subject_dir.name, sequence))
    return ReadResult(items, skipped, SIX_CLASSES,
                      {"format": "Oulu-CASIA", "folder": str(folder), "camera": camera, "light": light,
                       "peak_frames": peak_frames})
