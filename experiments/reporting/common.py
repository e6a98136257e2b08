"""What the run report (report.py) and the table report (table_report.py) share.

Both only read files: a run folder's config.json and summary.json, and the
analyses stored beside them when the run finished (protocol.json,
respond_ratio.json; experiments/running/run_folder.py). Nothing here trains,
hashes an image or runs a net.
"""
from pathlib import Path

from data_prep.audit import audit_summary_markdown
from data_prep.labels import CLASS_ABBREVIATIONS, CLASS_NAMES
from data_prep.registry import title as dataset_title
from experiments.running.run_folder import CONFIG, PROTOCOL, RESPOND_RATIO, read_config, read_summary
from runtime.files import read_json


def pct(value, digits=2):
    """A fraction as a percentage with ``digits`` decimals; "–" for None."""
    return "–" if value is None else f"{100 * value:.{digits}f}"


def paper_number(value):
    """A paper percentage as printed; "–" where the paper has none."""
    return "–" if value is None else f"{value:.2f}"


def _stored(run_dir, name):
    path = run_dir / name
    return read_json(path) if path.is_file() else None


def load_run(run_dir):
    """A run folder's files as the reports read them: {"dir", "config", "summary" (None while
    unfinished), "respond_ratio", "protocol" (None where not stored)}."""
    run_dir = Path(run_dir)
    return {"dir": run_dir, "config": read_config(run_dir), "summary": read_summary(run_dir),
            "respond_ratio": _stored(run_dir, RESPOND_RATIO), "protocol": _stored(run_dir, PROTOCOL)}


def _run_folders_in(folder):
    return sorted(child for child in folder.glob("*") if (child / CONFIG).is_file())


def split_run_folders(paths):
    """The run folders ``paths`` name: (run folders, [(folder, the run folders found in it)],
    [(path, why it was skipped)]).

    A shell glob such as ``runs/*`` also matches folders that are not runs.
    The main job's folder (its runs in ``<folder>/runs/``) and a folder of run
    folders (tools/reproduce.py's ``--runs-dir``) stand for the runs they hold;
    anything else (a table's output folder, a file) is skipped with the reason.
    """
    runs, expanded, skipped = [], [], []
    for path in map(Path, paths):
        if (path / CONFIG).is_file():
            runs.append(path)
        elif not path.is_dir():
            skipped.append((path, "not a folder"))
        elif _run_folders_in(path / "runs") or _run_folders_in(path):
            found = _run_folders_in(path / "runs") or _run_folders_in(path)
            expanded.append((path, found))
            runs.extend(found)
        else:
            skipped.append((path, f"no {CONFIG} and no run folders in it"))
    return list(dict.fromkeys(runs)), expanded, skipped


def class_abbreviations(names):
    """The paper's two-letter class names (An, Di, ...) for ``names``; other names as they are."""
    abbreviations = dict(zip(CLASS_NAMES, CLASS_ABBREVIATIONS))
    return [abbreviations.get(name, name) for name in names]


def confusion_text(class_names, confusion):
    """A confusion matrix of counts as aligned text, rows true and columns predicted, each
    labelled with its class."""
    labels = class_abbreviations(class_names)
    width = max(5, *(len(label) for label in labels))
    indent = " " * (width + 3)      # under the row labels
    lines = [indent + "true \\ predicted", indent + " ".join(f"{label:>{width}}" for label in labels)]
    lines += [f"  {label:>{width}} " + " ".join(f"{int(v):{width}d}" for v in row)
              for label, row in zip(labels, confusion)]
    return lines


def run_names(run_dirs):
    return ", ".join(Path(d).name for d in run_dirs)


_PART_ORDER = ("train", "test", "val")


def _short(source):
    return Path(str(source)).name


def _dataset_lines(root, check):
    if "missing" in check:
        return [f"### {root}", "", f"Not checked: {check['missing']}.", ""]
    hashes = check["hashes"]
    lines = [f"### {dataset_title(check['dataset'])} ({root})", "",
             f"- manifest.json sha256 `{hashes['manifest']}`",
             f"- items.json sha256 `{hashes['items']}`",
             f"- fold manifest sha256 (every split's parts: items, labels, subjects, source names) "
             f"`{hashes['folds']}`", "",
             "| split | split sha256 | items per part | subjects per part | shared subjects | "
             "shared items | as prepare recorded |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for split, report in check["subjects"].items():
        # Stored JSON sorts its keys: show the parts in the dataset's order again.
        parts = dict(sorted(report["parts"].items(), key=lambda part: _PART_ORDER.index(part[0])
                            if part[0] in _PART_ORDER else len(_PART_ORDER)))
        shared = "; ".join(f"{pair}: {', '.join(names) if names else 'none'}"
                           for pair, names in report["overlaps"].items())
        if report["disjoint"] is None:
            shared = "no subject identities"
        items = "; ".join(f"{pair}: {n}" for pair, n in report["shared_items"].items())
        recorded = "yes" if report["matches_manifest"] and not report["mismatched_entries"] else (
            f"**no** ({report['mismatched_entries']} item list entries differ from items.json)"
            if report["mismatched_entries"] else "**no** (manifest.json's subjects differ)")
        item_counts = ", ".join(f"{part} {value['items']}" for part, value in parts.items())
        subject_counts = ("–" if report["disjoint"] is None else
                          ", ".join(f"{part} {value['subjects']}" for part, value in parts.items()))
        lines.append(f"| {split} | `{hashes['splits'][split][:16]}…` | {item_counts} | {subject_counts} "
                     f"| {shared} | {items} | {recorded} |")
    duplicates = check["duplicates"]
    hashed = "original image files" if duplicates["hashed"] == "sources" else "first crop in the LMDBs"
    lines += ["", f"Duplicates (hashed: {hashed}): images of the second part with an identical image "
              "(same pixels) in the first, and the others with one within "
              f"{duplicates['near_bits']} of 64 pHash bits (imagehash).", "",
              "| split | parts | images | exact (pairs) | near | nearest image at (bits: images) | examples |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for split, pairs in duplicates["splits"].items():
        for pair, d in pairs.items():
            examples = [f"{_short(a)} = {_short(b)}" for a, b in d["exact_examples"][:2]]
            examples += [f"{_short(a)} ~ {_short(b)} ({bits} bits)" for a, b, bits in d["near_examples"][:2]]
            nearest = " ".join(f"{bits}: {n}" for bits, n in enumerate(d["distance_counts"]) if n)
            lines.append(f"| {split} | {pair} | {d['images']} | {d['exact']} ({d['exact_pairs']}) "
                         f"| {d['near']} | {nearest or '–'} | {'; '.join(examples) or '–'} |")
    lines.append("")
    if check.get("audit"):
        lines += ["Data-quality audit at prepare time (data_prep/audit.py):", "",
                  audit_summary_markdown(check["audit"]), ""]
    return lines


def protocol_section(checks):
    """The protocol checks as Markdown: {"datasets": {root: check}, "model_selection": {run: selection}},
    as experiments/analysis/protocol.py stored them."""
    if not checks["datasets"] and not checks["model_selection"]:
        return []
    lines = ["## Protocol checks", "",
             "Computed when each run finished and stored in its protocol.json "
             "(experiments/analysis/protocol.py, docs/statistics.md).", ""]
    for root, check in checks["datasets"].items():
        lines += _dataset_lines(root, check)
    if checks["model_selection"]:
        lines += ["### Model selection", "",
                  "Read from each run's fold files (the net each training watched, the snapshot scored):", ""]
        for run_dir, selection in checks["model_selection"].items():
            if "error" in selection:
                lines.append(f"- {Path(run_dir).name}: not checked: {selection['error']}.")
                continue
            flag = " **(check: selection on test possible)**" if selection["selection_on_test"] else ""
            lines.append(f"- {Path(run_dir).name}: {selection['statement']}{flag}.")
    return lines


def stored_protocol(runs, checks=None):
    """The protocol checks the ``runs`` (load_run dicts) stored, gathered for protocol_section.

    ``checks``: {prepared-dataset folder: check} given by the caller, used
    before the stored ones. A run without protocol.json is listed as not checked.
    """
    checks = checks or {}
    datasets, selection = {}, {}
    for run in runs:
        config, stored = run["config"], run["protocol"] or {"datasets": {}, "model_selection": None}
        if config.get("tool") not in ("crossval", "crossdb"):
            continue
        for root in [config["data"], *config.get("test_data", [])]:
            if root in checks:
                datasets[root] = checks[root]
            elif "hashes" in stored["datasets"].get(root, {}) or root not in datasets:
                datasets[root] = stored["datasets"].get(root) or {"missing": (
                    f"{run['dir'] / PROTOCOL} is missing, so the checks of {root} were not stored; "
                    "rerun the run's command (tools/crossval.py or tools/reproduce.py reuse its "
                    "finished folds and store them)")}
        if config.get("tool") == "crossval" and run["summary"] is not None:
            selection[str(run["dir"])] = stored["model_selection"] or {
                "error": f"{run['dir'] / PROTOCOL} is missing"}
    return {"datasets": datasets, "model_selection": selection}
