"""A Markdown report of run folders, our numbers beside the paper's (command line: tools/report.py).

Reads each run folder's config.json and summary.json (written by
tools/crossval.py or tools/crossdb.py) and, where present, respond_ratio.json
(tools/respond_ratio.py). Sections: accuracies (mean ± std over folds) beside
the paper's Tables 3, 5, 6 and 7; sensitivity/specificity and AUC beside
Table 4; the cross-database matrix beside Table 12; RespondRatio beside
Table 2; the statistics of each cell (mean ± std over folds and over seeds,
bootstrap interval, exact McNemar test against its baseline, within-noise
marks: experiments/analysis/statistics.py, docs/statistics.md); the protocol checks of
each prepared dataset and run (experiments/analysis/protocol.py); and the runs' plots.
A run that is not finished is listed as such.
"""
import os
from pathlib import Path

from data_prep.audit import audit_summary_markdown
from data_prep.prepared import PreparedDataset
from data_prep.registry import title as dataset_title
from experiments.paper import paper_results
from experiments.analysis import protocol, statistics
from experiments.running.run_folder import PLOTS, read_config, read_summary
from runtime.files import read_json, write_text_atomic

def _pct(value):
    return "–" if value is None else f"{100 * value:.2f}"


def _paper(value):
    return "–" if value is None else f"{value:.2f}"


def load_run(run_dir):
    run_dir = Path(run_dir)
    run = {"dir": run_dir, "config": read_config(run_dir), "summary": read_summary(run_dir)}
    ratio = run_dir / "respond_ratio.json"
    run["respond_ratio"] = read_json(ratio) if ratio.is_file() else None
    return run


def accuracy_section(runs):
    lines = ["## Accuracy", "",
             "Mean ± standard deviation of the fold accuracies (%); the paper reports the mean "
             "of ten folds (FER2013: its private test set).", "",
             "| dataset | net | variant | folds | ours | paper | paper table |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        config, summary = run["config"], run["summary"]
        if config.get("tool") != "crossval":
            continue
        paper, table = paper_results.paper_accuracy(config["dataset"], config["net"], config["variant"])
        if summary is None:
            ours, folds = "not finished", "–"
        else:
            ours = f"{_pct(summary['mean_accuracy'])} ± {_pct(summary['std_accuracy'])}"
            folds = str(len(summary["folds"]))
        lines.append(f"| {dataset_title(config['dataset'])} | {config['net']} "
                     f"| {config['variant']} | {folds} | {ours} | {_paper(paper)} | {table or '–'} |")
    return lines


def statistics_section(runs):
    lines = ["## Sensitivity, specificity and AUC", "",
             "Per-class one-vs-rest measures averaged over the classes (pooled over folds), as the "
             "paper's Table 4 and Fig. 8. The balance point is where a class's ROC curve has "
             "sensitivity = specificity, the paper's Table 4 measure; the arg-max columns are the "
             "one-vs-rest rates of the predicted class (one operating point, for reference).", "",
             "| dataset | net | variant | balance point sens. = spec. | arg-max sensitivity "
             "| arg-max specificity | mean AUC | paper sens. / spec. |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        config, summary = run["config"], run["summary"]
        if config.get("tool") != "crossval" or summary is None:
            continue
        pooled = summary["pooled"]
        paper = paper_results.TABLE4.get(config["variant"]) if config["dataset"] == "fer2013" else None
        paper_text = f"{paper['sensitivity']:.2f} / {paper['specificity']:.2f}" if paper else "–"
        auc = pooled.get("mean_auc")
        lines.append(f"| {dataset_title(config['dataset'])} | {config['net']} "
                     f"| {config['variant']} | {_pct(pooled.get('balance_sensitivity'))} "
                     f"| {_pct(pooled['mean_sensitivity'])} "
                     f"| {_pct(pooled['mean_specificity'])} | {'–' if auc is None else f'{auc:.3f}'} "
                     f"| {paper_text} |")
    return lines


def crossdb_section(runs):
    crossdb = [run for run in runs if run["config"].get("tool") == "crossdb" and run["summary"]]
    if not crossdb:
        return []
    lines = ["## Cross-database generalisation", "",
             "Accuracy (%) training on one database and testing on another; paper: Table 12 "
             "(ResNet, L2 sparseness + center loss).", "",
             "| training | testing | net | variant | ours | paper |", "| --- | --- | --- | --- | --- | --- |"]
    for run in crossdb:
        config, summary = run["config"], run["summary"]
        for test_name, result in sorted(summary["tests"].items()):
            paper = paper_results.TABLE12.get(config["dataset"], {}).get(result["dataset"])
            lines.append(f"| {dataset_title(config['dataset'])} "
                         f"| {dataset_title(result['dataset'])} "
                         f"| {config['net']} | {config['variant']} | {_pct(result['accuracy'])} "
                         f"| {_paper(paper)} |")
    return lines


def respond_ratio_section(runs):
    rows = [run for run in runs if run["respond_ratio"]]
    if not rows:
        return []
    parts = paper_results.TABLE2_PARTS
    lines = ["## RespondRatio (Eq. 13) of the toy network", "",
             "Ours per run, then the paper's Table 2 (MMI; NM = L2-norm, SP = L2 sparseness).", "",
             "| run | expression | " + " | ".join(parts) + " | paper NM | paper SP |",
             "| --- | --- | " + " | ".join("---" for _ in parts) + " | --- | --- |"]
    for run in rows:
        for expression, values in run["respond_ratio"]["ratios"].items():
            paper = paper_results.TABLE2.get(expression)
            nm = ", ".join(f"{v:.2f}" for v in paper["NM"]) if paper else "–"
            sp = ", ".join(f"{v:.2f}" for v in paper["SP"]) if paper else "–"
            cells = " | ".join("–" if values.get(p) is None else f"{values[p]:.2f}" for p in parts)
            lines.append(f"| {run['dir'].name} | {expression} | {cells} | {nm} | {sp} |")
    return lines


def _name(dataset):
    return dataset_title(dataset)


def _spread(mean, std):
    return f"{_pct(mean)} ± {_pct(std)}" if std is not None else f"{_pct(mean)} (one)"


def _baseline_variant(variant, baseline):
    """The variant a cell is compared to: ``baseline`` is one variant for all, or {variant: baseline}."""
    if isinstance(baseline, dict):
        return baseline.get(variant)
    return baseline


def _cells(runs, seeds_groups):
    """Finished crossval cells as lists of run folders (seeds), in the order the runs were given."""
    if seeds_groups is not None:
        return [[Path(d) for d in group] for group in seeds_groups]
    finished = [run["dir"] for run in runs
                if run["config"].get("tool") == "crossval" and run["summary"] is not None]
    return statistics.group_seeds(finished)


def collect_statistics(runs, baseline="softmax", seeds_groups=None, bootstrap_seed=statistics.BOOTSTRAP_SEED):
    """Per cell: its statistics and its comparison with the baseline cell (plain values)."""
    cells = _cells(runs, seeds_groups)
    configs = [read_config(cell[0]) for cell in cells]

    def without(config, *keys):
        return {k: v for k, v in config.items() if k not in (*keys, *statistics.SEED_KEYS)}

    rows = []
    for cell, config in zip(cells, configs):
        row = {"config": config, "runs": [str(d) for d in cell]}
        try:
            row["statistics"] = statistics.cell_statistics(cell, seed=bootstrap_seed)
        except statistics.StatisticsError as error:
            row["error"] = str(error)
            rows.append(row)
            continue
        target = _baseline_variant(config["variant"], baseline)
        partner = next((other for other, other_config in zip(cells, configs)
                        if target and target != config["variant"] and other_config["variant"] == target
                        and without(other_config, "variant") == without(config, "variant")), None)
        if partner is not None:
            try:
                row["comparison"] = statistics.compare_to_baseline(cell, partner, seed=bootstrap_seed)
            except statistics.StatisticsError as error:
                row["comparison_error"] = str(error)
        rows.append(row)
    return rows


def significance_section(rows):
    if not rows:
        return []
    lines = ["## Statistics over folds and seeds", "",
             "Accuracy (%) of each cell (one configuration; each seed a separate run folder): mean ± "
             "standard deviation over folds (of the seed-averaged fold accuracies) and over seeds (of "
             "each seed's mean), and the 95 % BCa bootstrap interval of the accuracy, resampling "
             "test images for a single split and folds for K-fold (docs/statistics.md).", "",
             "| dataset | net | variant | seeds | folds | over folds | over seeds | 95 % CI | CI over |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        config = row["config"]
        head = f"| {_name(config['dataset'])} | {config['net']} | {config['variant']} "
        if "error" in row:
            lines.append(head + f"| {len(row['runs'])} | – | not comparable: {row['error']} | | | |")
            continue
        st = row["statistics"]
        ci = "–" if st["ci_low"] is None else f"{_pct(st['ci_low'])} – {_pct(st['ci_high'])}"
        lines.append(head + f"| {len(st['runs'])} | {len(st['folds'])} "
                     f"| {_spread(st['mean_over_folds'], st['std_over_folds'])} "
                     f"| {_spread(st['mean_over_seeds'], st['std_over_seeds'])} | {ci} | {st['ci_over']} |")
    compared = [row for row in rows if "comparison" in row or "comparison_error" in row]
    if compared:
        lines += ["", "### Against the baseline", "",
                  "Exact McNemar test on the same test images (matched by split and item): the images "
                  "only this cell gets right against those only the baseline gets right. With several "
                  "seeds each seed is tested against the baseline's run of the same seed and the largest "
                  "p-value is shown. Within noise: p >= 0.05 (or seeds disagreeing in direction); where "
                  "no paired test is possible, overlapping intervals.", "",
                  "| dataset | net | variant | baseline | difference (points) | only this / only baseline "
                  "right | McNemar p | within noise |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in compared:
            config = row["config"]
            head = f"| {_name(config['dataset'])} | {config['net']} | {config['variant']} "
            if "comparison_error" in row:
                lines.append(head + f"| – | – | – | – | not comparable: {row['comparison_error']} |")
                continue
            comparison = row["comparison"]
            test = comparison["test"]
            base = read_config(comparison["baseline"]["runs"][0])["variant"]
            discordant = ("–" if test is None else ", ".join(
                f"{pair['only_run_correct']} / {pair['only_baseline_correct']}" for pair in test["pairs"]))
            p_value = "–" if test is None else f"{test['p_value']:.3g}"
            mark = ("–" if comparison["within_noise"] is None
                    else f"yes ({comparison['reason']})" if comparison["within_noise"]
                    else f"**no** ({comparison['reason']})")
            lines.append(head + f"| {base} | {100 * comparison['difference']:+.2f} | {discordant} "
                         f"| {p_value} | {mark} |")
    return lines


def collect_protocol(runs, checks=True):
    """Protocol checks of every prepared dataset the runs used, and of each crossval run.

    ``checks``: True computes them (experiments.analysis.protocol.check_dataset), or a
    dict {prepared-dataset folder: check_dataset result} computed before.
    """
    crossval = [run for run in runs if run["config"].get("tool") == "crossval"]
    roots = [root for run in runs if run["config"].get("tool") in ("crossval", "crossdb")
             for root in [run["config"]["data"], *run["config"].get("test_data", [])]]
    datasets = {}
    for root in dict.fromkeys(roots):
        if isinstance(checks, dict) and root in checks:
            datasets[root] = checks[root]
        elif not (Path(root) / "manifest.json").is_file():
            datasets[root] = {"missing": f"{root} is not here (moved or removed); its data checks are not shown"}
        else:
            datasets[root] = protocol.check_dataset(root)
    selection = {}
    for run in crossval:
        if run["summary"] is not None:
            try:
                selection[str(run["dir"])] = protocol.model_selection(run["dir"])
            except protocol.ProtocolError as error:
                selection[str(run["dir"])] = {"error": str(error)}
    return {"datasets": datasets, "model_selection": selection}


def _short(source):
    return Path(str(source)).name


def protocol_section(checks):
    if not checks["datasets"] and not checks["model_selection"]:
        return []
    lines = ["## Protocol checks", "",
             "Recomputed from each prepared dataset and run folder when this report was written "
             "(experiments/analysis/protocol.py, docs/statistics.md).", ""]
    for root, check in checks["datasets"].items():
        if "missing" in check:
            lines += [f"### {root}", "", f"Not checked: {check['missing']}.", ""]
            continue
        hashes = check["hashes"]
        lines += [f"### {_name(check['dataset'])} ({root})", "",
                  f"- manifest.json sha256 `{hashes['manifest']}`",
                  f"- items.json sha256 `{hashes['items']}`",
                  f"- fold manifest sha256 (every split's parts: items, labels, subjects, source names) "
                  f"`{hashes['folds']}`", "",
                  "| split | split sha256 | items per part | subjects per part | shared subjects | "
                  "shared items | as prepare recorded |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for split, report in check["subjects"].items():
            parts = report["parts"]
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
        lines += ["", f"Duplicates (hashed: {'original image files' if duplicates['hashed'] == 'sources' else 'first crop in the LMDBs'}): "
                  "images of the second part with an identical image (same pixels) in the first, and "
                  f"the others with one within {duplicates['near_bits']} of 64 pHash bits (imagehash).", "",
                  "| split | parts | images | exact (pairs) | near | nearest image at (bits: images) "
                  "| examples |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for split, pairs in duplicates["splits"].items():
            for pair, d in pairs.items():
                examples = [f"{_short(a)} = {_short(b)}" for a, b in d["exact_examples"][:2]]
                examples += [f"{_short(a)} ~ {_short(b)} ({bits} bits)" for a, b, bits in d["near_examples"][:2]]
                nearest = " ".join(f"{bits}: {n}" for bits, n in enumerate(d["distance_counts"]) if n)
                lines.append(f"| {split} | {pair} | {d['images']} | {d['exact']} ({d['exact_pairs']}) "
                             f"| {d['near']} | {nearest or '–'} | {'; '.join(examples) or '–'} |")
        lines.append("")
        audit = PreparedDataset.open(root).manifest.get("audit")
        if audit:
            lines += ["Data-quality audit at prepare time (data_prep/audit.py):", "",
                      audit_summary_markdown(audit), ""]
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


def plots_section(runs, out_dir):
    lines = ["## Plots", ""]
    for run in runs:
        images = [name for name in PLOTS
                  if (run["dir"] / name).is_file()]
        if not images:
            continue
        lines.append(f"### {run['dir'].name}")
        lines.append("")
        for name in images:
            rel = os.path.relpath(run["dir"] / name, out_dir)
            lines.append(f"![{run['dir'].name} {name[:-4]}]({rel})")
        lines.append("")
    return lines


def build_report(run_dirs, out_path, title="Results beside the paper", baseline="softmax", seeds_groups=None,
                 checks=True, bootstrap_seed=statistics.BOOTSTRAP_SEED):
    """Write the Markdown report of ``run_dirs`` to ``out_path``; returns its text.

    baseline: the variant each cell is tested against (one name, a dict
    {variant: baseline variant}, or None for no tests); seeds_groups: the
    cells as lists of run folders (default: finished crossval runs whose
    configs differ only in the seed); checks: protocol checks (False: none; a
    dict of experiments.analysis.protocol.check_dataset results by prepared-dataset
    folder to reuse them).
    """
    runs = [load_run(d) for d in run_dirs]
    out_path = Path(out_path)
    extra = [significance_section(collect_statistics(runs, baseline, seeds_groups, bootstrap_seed))]
    if checks is not False:
        extra.append(protocol_section(collect_protocol(runs, checks)))
    sections = [[f"# {title}", "",
                 "Xie et al., \"Sparse deep feature learning for facial expression recognition\", "
                 "Pattern Recognition 2019. Paper numbers are quoted from its tables.", ""]]
    for section in (accuracy_section(runs), statistics_section(runs), crossdb_section(runs),
                    respond_ratio_section(runs), *extra, plots_section(runs, out_path.parent)):
        if section:
            sections.append(section + [""])
    text = "\n".join(line for section in sections for line in section)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_path, text)
    return text
