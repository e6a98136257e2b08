"""Measure how a database of ready-cut faces (FER2013) frames its faces, for inference on photos.

    python tools/measure_framing.py --root ~/data/fer2013 [--sample 3000] [--seed 0] \
        [--out data_prep/fer2013_framing.json]

Runs dlib's detector (data_prep.alignment.FaceAligner, prepare's settings) on a
seeded random sample of the database's images and writes the median
box-to-frame relation (data_prep/framing.py). The committed
data_prep/fer2013_framing.json was made with this command (docs/data.md).
"""
import argparse
import json
import random
import sys
from pathlib import Path

from tqdm import tqdm

from data_prep.alignment import FaceAligner
from data_prep.framing import FramingError, measure_framing
from data_prep.items import DatasetLayoutError
from data_prep.pipeline import ImageError, decode_item
from data_prep.readers.fer2013 import read_fer2013
from runtime.files import write_text_atomic


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True,
                        help="FER2013: fer2013.csv or the train/ test/ image-folder export")
    parser.add_argument("--sample", type=int, default=3000, help="images measured (default 3000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write (default: print)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.sample < 1:
        sys.exit(f"error: --sample {args.sample}: give at least 1 image")
    try:
        items = read_fer2013(args.root).items
    except (DatasetLayoutError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: --root {args.root}: {exc}")
    chosen = random.Random(args.seed).sample(items, min(args.sample, len(items)))
    aligner = FaceAligner(68)
    images = []
    for item in chosen:
        try:
            images.append(decode_item(item))
        except ImageError as exc:
            print(f"skipped {item.source}: {exc}", file=sys.stderr)
    try:
        framing = measure_framing(tqdm(images, desc="detecting", unit="img"), aligner.detect,
                                  source=f"FER2013, {len(images)} images sampled with seed {args.seed}")
    except FramingError as exc:
        sys.exit(f"error: {exc}")
    text = json.dumps(framing.as_dict(), indent=1) + "\n"
    if args.out:
        write_text_atomic(args.out, text)
        print(f"wrote {args.out}")
    print(text, end="")
    return framing


if __name__ == "__main__":
    main()
