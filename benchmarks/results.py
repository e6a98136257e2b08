"""The benchmarks' one way to record figures: rows appended to a CSV beside the scripts."""
import csv


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
