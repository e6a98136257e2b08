"""Datasets listed in an index CSV: MMI, and the generic path,label,subject layout.

MMI's own exports vary (videos, per-session folders, several label files), so
the project reads MMI through an index the user writes once:
    sequence,frame,label,subject
    S001_1,frames/S001/1/frame_0042.png,happy,S001
one row per peak frame to use. The index must follow the paper's selection
(docs/data.md, MMI): 205 sequences of the six basic emotions, the three
consecutive frames at each sequence's apex, 615 rows; read_mmi checks an index
against it (check_mmi_index) and reports each mismatch, or fails with
strict=True. Generic datasets use
    path,label,subject
Paths are relative to the CSV's folder (or absolute). Labels are a project
label id 0..7 or a name (anger, angry, An, ...; see data_prep.labels).

Known landmarks (the synthetic generator writes them) come in a second CSV:
    path,left_eye_x,left_eye_y,right_eye_x,right_eye_y,nose_x,nose_y,
    mouth_left_x,mouth_left_y,mouth_right_x,mouth_right_y
in image pixel coordinates, "left" meaning the image's left. Images listed
there skip face detection.
"""
import csv
import re
from collections import Counter, defaultdict
from pathlib import Path

from data_prep.items import LANDMARK_NAMES, DatasetLayoutError, Item, ReadResult, Skip
from data_prep.labels import CLASS_NAMES, CONTEMPT, NEUTRAL, SIX_CLASSES, parse_label

MMI_INDEX = "mmi_index.csv"
CSV_INDEX = "labels.csv"
# The paper's MMI selection: 205 sequences x 3 peak frames = 615 images, six classes.
MMI_SEQUENCES = 205
MMI_PEAK_FRAMES = 3
_TRAILING_NUMBER = re.compile(r"(\d+)$")
LANDMARK_COLUMNS = tuple(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y"))


def _index_path(root, index, default_name, what):
    if index is not None:
        path = Path(index)
    elif root is not None and Path(root).is_file():
        path = Path(root)
    elif root is not None:
        path = Path(root) / default_name
    else:
        raise ValueError(f"{what}: give --root (a folder holding {default_name}) or --index")
    if not path.is_file():
        raise DatasetLayoutError(f"{what}: index file {path} not found; expected a CSV named {default_name} "
                                 f"in --root, or pass --index PATH")
    return path


def _read_rows(path, required):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [name for name in required if name not in header]
        if missing:
            raise DatasetLayoutError(f"{path}: the header must name the columns {', '.join(required)}; "
                                     f"missing {missing} in {header}")
        return [(line, {key: (value or "").strip() for key, value in row.items() if key is not None})
                for line, row in enumerate(reader, start=2)]


def _resolve(base, relative):
    path = Path(relative)
    return (path if path.is_absolute() else base / path).resolve()


def read_landmarks_csv(path):
    """{resolved image path: five (x, y) points} from a landmarks CSV."""
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"landmarks file {path} not found")
    landmarks = {}
    for line, row in _read_rows(path, ("path",) + LANDMARK_COLUMNS):
        try:
            values = [float(row[name]) for name in LANDMARK_COLUMNS]
        except ValueError:
            raise DatasetLayoutError(f"{path}:line {line}: landmark coordinates must be numbers")
        points = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
        landmarks[str(_resolve(path.parent, row["path"]))] = points
    return landmarks


def _read_index(path, path_column, keep_contempt, allowed_labels, landmarks, sequence_column=None):
    items, skipped = [], []
    first_line = {}
    for line, row in _read_rows(path, (path_column, "label", "subject")
                                + ((sequence_column,) if sequence_column else ())):
        source = f"{path}:line {line}"
        if not row[path_column]:
            skipped.append(Skip(source, f"empty {path_column}"))
            continue
        image = _resolve(path.parent, row[path_column])
        if str(image) in first_line:
            skipped.append(Skip(str(image), f"duplicate path: listed already at line {first_line[str(image)]}"))
            continue
        first_line[str(image)] = line
        if not image.is_file():
            skipped.append(Skip(str(image), f"file not found (listed at {source})"))
            continue
        try:
            label = parse_label(row["label"])
        except ValueError as exc:
            skipped.append(Skip(str(image), f"{exc} (at {source})"))
            continue
        if label == CONTEMPT and not keep_contempt:
            skipped.append(Skip(str(image), "contempt dropped (pass --keep-contempt to keep it as label 7)"))
            continue
        if allowed_labels is not None and label not in allowed_labels:
            skipped.append(Skip(str(image), f"label {row['label']!r} is not one of the dataset's "
                                f"{len(allowed_labels)} classes"))
            continue
        if not row["subject"]:
            skipped.append(Skip(str(image), f"missing subject (needed for person-independent folds; at {source})"))
            continue
        sequence = row[sequence_column] if sequence_column else str(image)
        items.append(Item(str(image), label, row["subject"], sequence or str(image),
                          landmarks=landmarks.get(str(image))))
    return items, skipped


class MmiIndexMismatch(DatasetLayoutError):
    """An MMI index that does not follow the paper's selection (raised with strict=True)."""


def _frame_number(frame):
    match = _TRAILING_NUMBER.search(Path(frame).stem)
    return int(match.group(1)) if match else None


def check_mmi_index(path, items, skipped):
    """Compare an MMI index with the paper's selection; a JSON-ready report.

    ``items``/``skipped`` are what read_mmi kept and left out of ``path``.
    Returns {"matches", "expected", "found", "mismatches"}: each mismatch is one
    sentence naming the sequence, frame or count that differs.
    """
    mismatches = []
    rows = _read_rows(path, ("sequence", "frame", "label", "subject"))
    lines_of_frame = defaultdict(list)
    for line, row in rows:
        if row["frame"]:
            lines_of_frame[str(_resolve(path.parent, row["frame"]))].append(line)
    for frame, lines in lines_of_frame.items():
        if len(lines) > 1:
            mismatches.append(f"frame {frame} listed {len(lines)} times (lines {', '.join(map(str, lines))})")
    if skipped:
        mismatches.append(f"{len(skipped)} row(s) left out (listed in skipped: missing files, labels outside "
                          f"the six classes, missing subjects, duplicates); every row should be usable")
    by_sequence = defaultdict(list)
    for item in items:
        by_sequence[item.sequence].append(item)
    for sequence, frames in by_sequence.items():
        if len(frames) != MMI_PEAK_FRAMES:
            mismatches.append(f"sequence {sequence}: {len(frames)} frame(s), expected {MMI_PEAK_FRAMES} peak frames")
        labels = sorted({CLASS_NAMES[item.label] for item in frames})
        if len(labels) > 1:
            mismatches.append(f"sequence {sequence}: frames with different labels ({', '.join(labels)})")
        subjects = sorted({item.subject for item in frames})
        if len(subjects) > 1:
            mismatches.append(f"sequence {sequence}: frames of different subjects ({', '.join(subjects)})")
        numbers = [_frame_number(item.source) for item in frames]
        numbers = sorted(numbers) if None not in numbers else []  # frame order known only from numbered names
        if len(numbers) > 1 and numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            mismatches.append(f"sequence {sequence}: frames {', '.join(map(str, numbers))} are not consecutive "
                              f"(the peak frames are the apex and its neighbours)")
    if len(by_sequence) != MMI_SEQUENCES:
        mismatches.append(f"{len(by_sequence)} sequences, the paper uses {MMI_SEQUENCES}")
    expected_frames = MMI_SEQUENCES * MMI_PEAK_FRAMES
    if len(items) != expected_frames:
        mismatches.append(f"{len(items)} frames, the paper uses {expected_frames} "
                          f"({MMI_SEQUENCES} sequences x {MMI_PEAK_FRAMES} peak frames)")
    sequence_label = {sequence: Counter(item.label for item in frames).most_common(1)[0][0]
                      for sequence, frames in by_sequence.items()}
    per_class = Counter(sequence_label.values())
    missing = [CLASS_NAMES[label] for label in range(SIX_CLASSES) if not per_class[label]]
    if missing:
        mismatches.append(f"no sequence of {', '.join(missing)}: the paper uses all six classes")
    return {
        "matches": not mismatches,
        "expected": {"sequences": MMI_SEQUENCES, "frames_per_sequence": MMI_PEAK_FRAMES,
                     "frames": expected_frames, "classes": SIX_CLASSES},
        "found": {"sequences": len(by_sequence), "frames": len(items), "rows_left_out": len(skipped),
                  "subjects": len({item.subject for item in items}),
                  "sequences_per_class": {CLASS_NAMES[label]: per_class[label] for label in range(SIX_CLASSES)}},
        "mismatches": mismatches,
    }


def mmi_check_text(path, report):
    """The check as lines for a terminal: one summary line, then one line per mismatch."""
    found = report["found"]
    head = (f"MMI index {path}: {found['sequences']} sequences, {found['frames']} frames, "
            f"{found['subjects']} subjects; ")
    if report["matches"]:
        return head + "follows the paper's selection (205 sequences x 3 peak frames, six classes)"
    return head + f"{len(report['mismatches'])} mismatch(es) with the paper's selection " \
        "(docs/data.md, MMI):\n" + "\n".join(f"  - {line}" for line in report["mismatches"])


def read_mmi(root, index=None, landmarks_csv=None, strict=False):
    """MMI frames listed in an index CSV, checked against the paper's selection.

    The check's report is in ``info["index_check"]``; with ``strict`` a
    mismatch raises MmiIndexMismatch listing every one.
    """
    path = _index_path(root, index, MMI_INDEX, "MMI")
    landmarks = read_landmarks_csv(landmarks_csv) if landmarks_csv else {}
    items, skipped = _read_index(path, "frame", False, set(range(SIX_CLASSES)), landmarks,
                                 sequence_column="sequence")
    report = check_mmi_index(path, items, skipped)
    if strict and not report["matches"]:
        raise MmiIndexMismatch(mmi_check_text(path, report) + "\nFix the index (or read it without strict).")
    return ReadResult(items, skipped, SIX_CLASSES,
                      {"format": "MMI index", "index": str(path), "index_check": report})


def read_csv_dataset(root, index=None, landmarks_csv=None, keep_contempt=False):
    path = _index_path(root, index, CSV_INDEX, "CSV dataset")
    landmarks = read_landmarks_csv(landmarks_csv) if landmarks_csv else {}
    items, skipped = _read_index(path, "path", keep_contempt, None, landmarks)
    labels = {item.label for item in items}
    num_classes = 8 if CONTEMPT in labels else (7 if NEUTRAL in labels else SIX_CLASSES)
    return ReadResult(items, skipped, num_classes,
                      {"format": "generic CSV", "index": str(path),
                       "landmarks_csv": str(landmarks_csv) if landmarks_csv else None})
