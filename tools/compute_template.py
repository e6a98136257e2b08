"""Measure the face template on a CK+ copy (Section 2.1) and write it as JSON.

    python tools/compute_template.py --root <CK+ folder> --out template.json [--margin 0.15]

(``python data_prep/compute_template.py ...`` runs this command.) The
measurement is data_prep/compute_template.py's ``compute_template``.
"""
import argparse
import os

from data_prep.compute_template import __doc__ as TEMPLATE_DOC
from data_prep.compute_template import compute_template
from data_prep.items import DatasetLayoutError
from tools.command import command_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=TEMPLATE_DOC.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="CK+ folder (cohn-kanade-images/ and Emotion/)")
    parser.add_argument("--out", required=True, help="template JSON file to write (refused if it exists)")
    parser.add_argument("--margin", type=float, default=0.15,
                        help="widening of the mean detector box on each side, as a fraction of its side "
                        "(default 0.15)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="processes (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    with command_errors("compute_template.py", argv, errors=(DatasetLayoutError, FileExistsError, ValueError),
                        kept="nothing"):
        if os.path.exists(args.out):
            raise FileExistsError(f"{args.out} already exists; choose another file name")
        template = compute_template(args.root, args.margin, args.workers, not args.quiet)
        template.save(args.out)
    if not args.quiet:
        geometry = template.geometry()
        print(f"{args.out}: {template.source['faces']} faces; eye distance {geometry['eye_distance']:.3f}, "
              f"eye-mouth {geometry['left_eye_to_mouth']:.3f}/{geometry['right_eye_to_mouth']:.3f} box sides")


if __name__ == "__main__":
    main()
