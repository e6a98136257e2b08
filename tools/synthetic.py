"""Draw the licence-free synthetic expression dataset into a new folder.

    python tools/synthetic.py --out DIR [--subjects 10] [--expressions 6] [--images 8] [--size 96] [--seed 0]

(``python data_prep/synthetic.py ...`` runs this command.) The drawing is
data_prep/synthetic.py's ``write_dataset``; see docs/data.md.
"""
import argparse

from data_prep.synthetic import CSV_INDEX, LANDMARKS_FILE, write_dataset
from data_prep.synthetic import __doc__ as SYNTHETIC_DOC
from tools.command import command_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=SYNTHETIC_DOC.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="new folder to write (refused if it exists)")
    parser.add_argument("--subjects", type=int, default=10, help="number of subjects")
    parser.add_argument("--expressions", type=int, default=6, choices=(6, 7),
                        help="6 = An Di Fe Ha Sa Su, 7 = with neutral")
    parser.add_argument("--images", type=int, default=8, help="images per subject and expression")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    args = parser.parse_args(argv)
    with command_errors("synthetic.py", argv, errors=(FileExistsError, ValueError),
                        kept="nothing (the images are drawn in a temporary folder and deleted)"):
        count = write_dataset(args.out, args.subjects, args.expressions, args.images, args.size, args.seed,
                              progress=True)
    print(f"wrote {count} images of {args.subjects} subjects to {args.out} "
          f"({CSV_INDEX}, {LANDMARKS_FILE}, images/)")


if __name__ == "__main__":
    main()
