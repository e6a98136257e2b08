"""The benchmarks' one way to record figures: rows appended to a CSV beside the scripts, each with
the commit it measured."""
import csv
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def append_rows(path, fields, rows):
    """Append ``rows`` (dicts) to the CSV at ``path``, writing the header when the file is new."""
    new = not path.is_file()
    path.parent.mkdir(exist_ok=True)
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"appended to {path}")


def git_commit():
    """The short hash of the checked-out commit, or "unknown" outside a git checkout."""
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
