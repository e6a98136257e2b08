"""Download a public pretrained face model, verify it, print the ``-weights`` argument.

    python tools/fetch_pretrained.py face_resnet      # center-loss face ResNet (Wen et al. 2016)
    python tools/fetch_pretrained.py vgg_face         # VGG-Face (Parkhi et al. 2015)
    python tools/fetch_pretrained.py face_resnet --file ~/Downloads/face_model.caffemodel

Needs internet (or --file); never run by the tests or CI. The registry, the
download into --dest through a ``.part`` file, the SHA-256 check (--sha256, else
trust on first use recorded in ``<dest>/SHA256SUMS``), the unpacking and the
comparison with the project's net are nets/pretrained.py's (its docstring
lists the steps); this command then prints ``-weights <path>``.
"""
import argparse
import sys
from pathlib import Path

from nets.pretrained import MODELS, FetchError, default_dest, fetch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(MODELS), help="which pretrained model")
    parser.add_argument("--dest", type=Path, default=None,
                        help="download folder (default $FER_CACHE_DIR/pretrained, "
                             "~/.cache/fer-sparse/pretrained)")
    parser.add_argument("--url", default=None, help="download from this URL instead")
    parser.add_argument("--file", type=Path, default=None,
                        help="use this already downloaded file instead of downloading")
    parser.add_argument("--sha256", default=None, help="expected SHA-256 of the download")
    parser.add_argument("--no-check", action="store_true",
                        help="skip comparing the weights with the project's net")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = MODELS[args.model]
    print(model.description)
    try:
        weights = fetch(model, args.dest or default_dest(), url=args.url, local_file=args.file,
                        sha256=args.sha256, check=not args.no_check)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"-weights {weights.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
