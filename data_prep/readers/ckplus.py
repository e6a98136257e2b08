"""CK+ (extended Cohn-Kanade): the original release and the 48x48 "CK+48" export.

Original release, as unpacked from its archives:
    <root>/cohn-kanade-images/S005/001/S005_001_00000001.png ...
    <root>/Emotion/S005/001/S005_001_00000011_emotion.txt   (one float, e.g. "   3.0000000e+00")
Only 327 of the 593 sequences have an Emotion file. Each labelled sequence
gives its last ``peak_frames`` frames with the sequence's label. Neutral
units (``neutral``), each the first ``neutral_frames`` frames of a sequence:
    subject   (default) one per subject, from the subject's first used labelled
              sequence -- the rule that matches the paper's counts (106 neutral
              units of 106 subjects; docs/data.md, CK+);
    sequence  one per used labelled sequence (309 without contempt);
    none      no neutral class.
``neutral_frames`` 3 (default) gives the paper's 415 units x 3 frames = 1,245
images (x 18 crops = 22,410; docs/recipe.md); 1 gives the 1,033 images of
one neutral frame per subject. A unit is the set of frames that gets one
decision at test time (data_prep.prepared.PreparedDataset.decision_units):
a sequence's peak frames, or one neutral unit's frames. The neutral frames
never overlap the peak frames; a sequence too short for both gives fewer
neutral frames (counted in ``counts["short_neutral_units"]``).
Contempt (code 2) is dropped unless kept.

CK+48 export: <root>/<class>/S010_004_00000017.png, class folders anger,
contempt, disgust, fear, happy, sadness, surprise (and neutral where present).
"""
import re
from pathlib import Path

from data_prep.items import DatasetLayoutError, Item, ReadResult, Skip, image_files, visible_entries
from data_prep.labels import CKPLUS_EMOTION_CODES, CONTEMPT, NEUTRAL, label_from_name

IMAGES_DIR = "cohn-kanade-images"
EMOTION_DIR = "Emotion"
NEUTRAL_MODES = ("subject", "sequence", "none")
NEUTRAL_DEFAULT = "subject"
NEUTRAL_FRAMES_DEFAULT = 3
_SUBJECT = re.compile(r"^S\d+$")
_CKPLUS48_NAME = re.compile(r"^(S\d+)_(\d+)_")


def _find(root, name, parents):
    for parent in parents:
        if (root / parent / name).is_dir():
            return root / parent / name
    return None


def ckplus_layout(root):
    """(images folder, Emotion folder) of a CK+ copy, or DatasetLayoutError saying what is expected."""
    root = Path(root)
    images = _find(root, IMAGES_DIR, (".", "extended-cohn-kanade-images", "CK+"))
    emotion = _find(root, EMOTION_DIR, (".", "Emotion_labels", "CK+"))
    if images is None or emotion is None:
        found = ", ".join(p.name for p in visible_entries(root)) if root.is_dir() else "no such folder"
        missing = [name for name, path in ((IMAGES_DIR, images), (EMOTION_DIR, emotion)) if path is None]
        raise DatasetLayoutError(
            f"CK+ root {root}: missing {' and '.join(missing)}/; expected "
            f"{IMAGES_DIR}/Sxxx/yyy/*.png and {EMOTION_DIR}/Sxxx/yyy/*_emotion.txt "
            f"(as unpacked from the CK+ archives); found: {found or 'an empty folder'}")
    return images, emotion


def parse_emotion_file(path):
    """CK+ emotion code in ``path``; ValueError naming the problem otherwise."""
    text = Path(path).read_text(errors="replace").strip()
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"unreadable emotion label {text[:40]!r} (expected a number like 3.0000000e+00)")
    if value != int(value) or int(value) not in CKPLUS_EMOTION_CODES:
        raise ValueError(f"emotion code {text!r} out of range: CK+ codes are 0..7")
    return int(value)


def read_ckplus(root, keep_contempt=False, neutral=NEUTRAL_DEFAULT, peak_frames=3,
                neutral_frames=NEUTRAL_FRAMES_DEFAULT):
    if neutral not in NEUTRAL_MODES:
        raise ValueError(f"neutral must be one of {NEUTRAL_MODES}, got {neutral!r}")
    if peak_frames < 1:
        raise ValueError(f"peak_frames must be >= 1, got {peak_frames}")
    if neutral_frames < 1:
        raise ValueError(f"neutral_frames must be >= 1, got {neutral_frames}")
    images_dir, emotion_dir = ckplus_layout(root)
    items, skipped = [], []
    subjects_with_neutral = set()
    short_neutral_units = 0
    subject_dirs = [p for p in visible_entries(images_dir) if p.is_dir()]
    if not any(_SUBJECT.match(p.name) for p in subject_dirs):
        raise DatasetLayoutError(f"{images_dir}: no subject folders named like S005")
    seen_sequences = set()
    for subject_dir in subject_dirs:
        if not _SUBJECT.match(subject_dir.name):
            skipped.append(Skip(str(subject_dir), "not a CK+ subject folder (expected a name like S005)"))
            continue
        subject = subject_dir.name
        for sequence_dir in (p for p in visible_entries(subject_dir) if p.is_dir()):
            sequence = f"{subject}_{sequence_dir.name}"
            seen_sequences.add((subject, sequence_dir.name))
            label_dir = emotion_dir / subject / sequence_dir.name
            label_files = sorted(label_dir.glob("*_emotion.txt")) if label_dir.is_dir() else []
            if not label_files:
                skipped.append(Skip(str(sequence_dir), "no Emotion label file (CK+ labels 327 of its "
                                    "593 sequences; unlabelled sequences are not used)"))
                continue
            if len(label_files) > 1:
                skipped.append(Skip(str(label_dir), f"{len(label_files)} emotion files for one sequence"))
                continue
            try:
                code = parse_emotion_file(label_files[0])
            except ValueError as exc:
                skipped.append(Skip(str(label_files[0]), str(exc)))
                continue
            label = CKPLUS_EMOTION_CODES[code]
            if label == NEUTRAL:
                skipped.append(Skip(str(label_files[0]), "emotion code 0 (neutral) names no expression"))
                continue
            if label == CONTEMPT and not keep_contempt:
                skipped.append(Skip(str(sequence_dir), "contempt dropped as in the paper "
                                    "(pass --keep-contempt to keep it as label 7)"))
                continue
            frames = image_files(sequence_dir)
            if len(frames) < 2:
                skipped.append(Skip(str(sequence_dir), f"{len(frames)} frame(s): a labelled sequence "
                                    "needs a neutral first frame and a peak"))
                continue
            take_neutral = neutral == "sequence" or (neutral == "subject"
                                                     and subject not in subjects_with_neutral)
            # The first frame is the neutral onset: never a peak, even in short sequences.
            first_peak = max(1, len(frames) - peak_frames)
            if take_neutral:
                subjects_with_neutral.add(subject)
                onset = frames[:min(neutral_frames, first_peak)]
                short_neutral_units += len(onset) < neutral_frames
                items.extend(Item(str(frame), NEUTRAL, subject, sequence) for frame in onset)
            for frame in frames[first_peak:]:
                items.append(Item(str(frame), label, subject, sequence))
    for subject_dir in (p for p in visible_entries(emotion_dir) if p.is_dir()):
        for label_dir in (p for p in visible_entries(subject_dir) if p.is_dir()):
            if (subject_dir.name, label_dir.name) not in seen_sequences:
                skipped.append(Skip(str(label_dir), f"emotion label without an image sequence in "
                                    f"{images_dir / subject_dir.name / label_dir.name}"))
    num_classes = 8 if keep_contempt else (7 if neutral != "none" else 6)
    # Counts to compare with the paper's (309 sequences, 106 neutral units, 415 units,
    # 1,245 images with three neutral frames a unit).
    neutral_images = sum(item.label == NEUTRAL for item in items)
    units = {(item.sequence, item.label) for item in items}
    counts = {"sequences_used": len({item.sequence for item in items}),
              "subjects_used": len({item.subject for item in items}),
              "neutral_images": neutral_images, "peak_images": len(items) - neutral_images,
              "units": len(units), "neutral_units": sum(label == NEUTRAL for _, label in units),
              "short_neutral_units": short_neutral_units}
    return ReadResult(items, skipped, num_classes,
                      {"format": "CK+", "images": str(images_dir), "emotion": str(emotion_dir),
                       "neutral": neutral, "neutral_frames": neutral_frames, "peak_frames": peak_frames,
                       "keep_contempt": keep_contempt, "counts": counts})


def read_ckplus48(root, keep_contempt=False):
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"CK+48 root {root} is not a folder; expected <root>/<class>/Sxxx_yyy_zzzzzzzz.png")
    class_dirs = [p for p in visible_entries(root) if p.is_dir()]
    unknown = [p.name for p in class_dirs if label_from_name(p.name) is None]
    if not class_dirs or unknown:
        found = ", ".join(p.name for p in visible_entries(root)) or "an empty folder"
        raise DatasetLayoutError(
            f"CK+48 root {root}: expected class folders anger, contempt, disgust, fear, happy, "
            f"sadness, surprise (neutral optional) holding Sxxx_yyy_zzzzzzzz.png; found: {found}")
    items, skipped = [], []
    has_neutral = False
    for class_dir in class_dirs:
        label = label_from_name(class_dir.name)
        for image in image_files(class_dir):
            if label == CONTEMPT and not keep_contempt:
                skipped.append(Skip(str(image), "contempt dropped as in the paper "
                                    "(pass --keep-contempt to keep it as label 7)"))
                continue
            match = _CKPLUS48_NAME.match(image.name)
            if not match:
                skipped.append(Skip(str(image), "file name does not start with Sxxx_yyy_ "
                                    "(subject and sequence are needed for person-independent folds)"))
                continue
            has_neutral |= label == NEUTRAL
            items.append(Item(str(image), label, match.group(1), f"{match.group(1)}_{match.group(2)}"))
    num_classes = 8 if keep_contempt else (7 if has_neutral else 6)
    return ReadResult(items, skipped, num_classes,
                      {"format": "CK+48", "root": str(root), "keep_contempt": keep_contempt})
