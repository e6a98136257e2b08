"""Write (or check) the committed nets and solvers under prototxt/: the resnet and vgg grids.

    python -m nets.generate            # rewrite prototxt/ from nets/
    python -m nets.generate --check    # exit 1 if prototxt/ differs from what nets/ generates

Files are written atomically; files under prototxt/ that the generator no
longer produces are removed (or, with --check, reported). The toy and cnn48
nets are not committed: the tools write them into each run folder
(nets.write_experiment).
"""
import argparse
import sys
from pathlib import Path

from nets.experiment import COMMITTED_DIR, committed_files
from runtime.caffe_env import REPO_ROOT
from runtime.files import write_text_atomic


def compare(out_dir, files):
    """(differing or missing, stale) file names of out_dir against ``files``."""
    out_dir = Path(out_dir)
    differing = sorted(name for name, text in files.items()
                       if not (out_dir / name).is_file() or (out_dir / name).read_text() != text)
    present = {path.name for path in out_dir.glob("*.prototxt")} if out_dir.is_dir() else set()
    stale = sorted(present - set(files))
    return differing, stale


def generate(out_dir):
    """Write every committed file into out_dir; returns (written, removed) counts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = committed_files()
    differing, stale = compare(out_dir, files)
    for name in differing:
        write_text_atomic(out_dir / name, files[name])
    for name in stale:
        (out_dir / name).unlink()
    return len(differing), len(stale)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / COMMITTED_DIR,
                        help="output folder (default: <repo>/prototxt)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the folder is not what nets/ generates")
    args = parser.parse_args(argv)
    if args.check:
        differing, stale = compare(args.out, committed_files())
        for name in differing:
            print(f"out of date: {args.out / name}")
        for name in stale:
            print(f"not generated any more: {args.out / name}")
        if differing or stale:
            print("run `python -m nets.generate` and commit prototxt/", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0
    written, removed = generate(args.out)
    print(f"{args.out}: {written} files written, {removed} removed, "
          f"{len(committed_files())} generated in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
