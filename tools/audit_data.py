"""The data-quality audit of a raw database folder or of a prepared folder.

    python tools/audit_data.py PATH [--dataset NAME] [--recompute] [--markdown FILE] [--json FILE]
        [--workers N] [--strict]

PATH holding a manifest.json is a prepared folder: its audit is read from the
manifest (or measured again on its LMDBs with --recompute, or when it was
prepared before the audit existed). Otherwise PATH is a database folder as its
owners distribute it and --dataset names its layout (data_prep/registry.py).
Prints the figures per split part and every warning; --strict exits with
status 1 when there is a warning. See docs/data.md, "Data-quality audit".
"""
import argparse
import os
import sys
from pathlib import Path

from data_prep.audit import audit_summary_markdown, summary_lines
from data_prep.audit_run import audit_database, audit_prepared
from data_prep.items import DatasetLayoutError
from data_prep.prepared import MANIFEST
from data_prep.registry import DATASETS
from runtime.files import write_json_atomic, write_text_atomic


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a prepared folder, or a database folder (with --dataset)")
    parser.add_argument("--dataset", choices=tuple(DATASETS), help="layout of a raw database folder")
    parser.add_argument("--recompute", action="store_true",
                        help="prepared folder: measure again on its LMDBs instead of reading the manifest")
    parser.add_argument("--markdown", type=Path, help="also write the summary as Markdown to this file")
    parser.add_argument("--json", type=Path, help="also write the whole audit as JSON to this file")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="processes decoding a raw folder's images (default: all cores)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if there is a warning")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    skipped = []
    try:
        if (args.path / MANIFEST).is_file():
            if args.dataset:
                parser.error(f"{args.path} is a prepared folder (it has {MANIFEST}); --dataset is for raw folders")
            audit = audit_prepared(args.path, args.recompute)
        elif args.dataset is None:
            parser.error(f"{args.path} has no {MANIFEST}, so it is not a prepared folder: "
                         "name the raw database's layout with --dataset")
        else:
            audit, skipped = audit_database(args.dataset, args.path, args.workers, progress=not args.quiet)
    except (DatasetLayoutError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"audit_data.py: error: {exc}")
    print(f"{args.path}: audit of the {audit['measured_on']}"
          + (f"; {len(skipped)} files unreadable or skipped by the reader" if skipped else ""))
    print("\n".join(summary_lines(audit)))
    if args.markdown:
        write_text_atomic(args.markdown, audit_summary_markdown(audit))
    if args.json:
        write_json_atomic(args.json, {**audit, "skipped": [{"source": s, "reason": r} for s, r in skipped]})
    if args.strict and audit["warnings"]:
        sys.exit(1)
    return audit


if __name__ == "__main__":
    main()
