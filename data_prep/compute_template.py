"""Measure the face template on a CK+ copy (Section 2.1: CK+'s face geometry scales every database).

    python data_prep/compute_template.py --root <CK+ folder> --out template.json [--margin 0.15]

Detects the faces of the CK+ images prepare.py would use (each labelled
sequence's neutral first frame and three peak frames), places dlib's 68
landmarks and averages, in eye-distance units, the triangle of the eye centres
and the mouth and the detector's face box widened by --margin on each side.
Images without a detected face are left out (and counted). Pass the result to
prepare.py with --template. ``python data_prep/compute_template.py`` runs
tools/compute_template.py, the command line (runtime/forward.py).
"""
import functools

from data_prep.face_template import template_from_faces
from data_prep.pipeline import measure_chunk, run_chunks
from data_prep.readers.ckplus import read_ckplus


def compute_template(root, margin=0.15, workers=1, progress=True, detect_min_side=160, detect_max_side=320):
    """Template measured on the CK+ copy at ``root``."""
    read = read_ckplus(root, keep_contempt=True)
    if not read.items:
        raise ValueError(f"no labelled CK+ images under {root}")
    faces, missed = [], []
    settings = (68, detect_min_side, detect_max_side)
    for index, points, rect, reason in run_chunks(functools.partial(measure_chunk, settings), read.items,
                                                  workers, progress=progress, description="measuring"):
        if points is None:
            missed.append({"source": read.items[index].source, "reason": reason})
        else:
            faces.append((points, rect))
    if not faces:
        raise ValueError(f"no face was detected in the {len(read.items)} CK+ images under {root}")
    return template_from_faces(faces, margin, name="ckplus",
                               source={"root": str(root), "images": len(read.items),
                                       "left_out": len(missed), "left_out_examples": missed[:20]})


if __name__ == "__main__":
    # The documented `python data_prep/compute_template.py ...`: the command line is
    # tools/compute_template.py.
    from runtime.forward import run_tool_instead
    run_tool_instead("compute_template.py")
