"""Measure the face template on a CK+ copy (Section 2.1: CK+'s face geometry scales every database).

    python data_prep/compute_template.py --root <CK+ folder> --out template.json [--margin 0.15]

Detects the faces of the CK+ images prepare.py would use (each labelled
sequence's neutral first frame and three peak frames), places dlib's 68
landmarks and averages, in eye-distance units, the triangle of the eye centres
and the mouth and the detector's face box widened by --margin on each side.
Images without a detected face are left out (and counted). Pass the result to
prepare.py with --template.
"""
import argparse
import functools
import os
import sys

from data_prep.face_template import template_from_faces
from data_prep.items import DatasetLayoutError
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="compute_template.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="CK+ folder (cohn-kanade-images/ and Emotion/)")
    parser.add_argument("--out", required=True, help="template JSON file to write (refused if it exists)")
    parser.add_argument("--margin", type=float, default=0.15,
                        help="widening of the mean detector box on each side, as a fraction of its side "
                        "(default 0.15)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="processes (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        if os.path.exists(args.out):
            raise FileExistsError(f"{args.out} already exists; choose another file name")
        template = compute_template(args.root, args.margin, args.workers, not args.quiet)
        template.save(args.out)
    except (DatasetLayoutError, FileExistsError, ValueError) as exc:
        sys.exit(f"compute_template.py: error: {exc}")
    if not args.quiet:
        geometry = template.geometry()
        print(f"{args.out}: {template.source['faces']} faces; eye distance {geometry['eye_distance']:.3f}, "
              f"eye-mouth {geometry['left_eye_to_mouth']:.3f}/{geometry['right_eye_to_mouth']:.3f} box sides")


if __name__ == "__main__":
    main()
