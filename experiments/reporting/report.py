"""A Markdown report of run folders, our numbers beside the paper's (command line: tools/report.py).

Reads each run folder's config.json and summary.json (written by
tools/crossval.py or tools/crossdb.py) and the analyses stored when the run
finished, protocol.json and respond_ratio.json (experiments/reporting/common.py
reads them); writing a report computes no check and runs no net. Sections: accuracies (mean ± std over folds) beside
the paper's Tables 3, 5, 6 and 7; sensitivity/specificity and AUC beside
Table 4; the cross-database matrix beside Table 12; RespondRatio beside
Table 2; the statistics of each cell (mean ± std over folds and over seeds,
bootstrap interval, exact McNemar test against its baseline, within-noise
marks: experiments/analysis/statistics.py, docs/statistics.md); the protocol checks of
each prepared dataset and run as stored (experiments/analysis/protocol.py); and the runs' plots.
Every table names the run folder(s) of each row; notes mark the paper's numbers it
prints twice with two values (experiments/paper/paper_results.py).
A run that is not finished is listed as such.
"""
import os
from pathlib import Path

from data_prep.registry import title as dataset_title
from experiments.analysis import statistics
from experiments.paper import paper_results
from experiments.reporting.common import (load_run, paper_number, pct, protocol_section, run_names,
                                          stored_protocol)
from experiments.running.run_folder import PLOTS, read_config
from runtime.files import write_text_atomic

__all__ = ["build_report", "collect_protocol", "collect_statistics", "load_run", "protocol_section"]


def accuracy_section(runs):
    lines = ["## Accuracy", "",
             "Mean ± standard deviation of the fold accuracies (%); pooled: every fold's test "
             "images counted together; units, pooled: one decision per sequence (the softmax of its "
             "frames averaged), pooled over the folds, the form of the paper's CK+, Oulu-CASIA and "
             "MMI figures (docs/recipe.md; FER2013: its private test set).", "",
             "| run | dataset | net | variant | folds | ours | pooled | units, pooled | paper | paper table |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes = []
    for run in runs:
        config, summary = run["config"], run["summary"]
        if config.get("tool") != "crossval":
            continue
        paper, table = paper_results.paper_accuracy(config["dataset"], config["net"], config["variant"])
        pooled = units = "–"
        if summary is None:
            ours, folds = "not finished", "–"
        else:
            ours = f"{pct(summary['mean_accuracy'])} ± {pct(summary['std_accuracy'])}"
            folds = str(len(summary["folds"]))
            pooled = pct(summary.get("pooled_accuracy"))
            if summary.get("units"):
                units = f"{pct(summary['units']['pooled_accuracy'])} of {summary['units']['count']}"
        note = paper_results.printed_twice_note(config["dataset"], config["net"], config["variant"])
        if note and note not in notes:
            notes.append(note)
        lines.append(f"| {run['dir'].name} | {dataset_title(config['dataset'])} | {config['net']} "
                     f"| {config['variant']} | {folds} | {ours} | {pooled} | {units} | {paper_number(paper)} "
                     f"| {table or '–'}"
                     f"{' *' if note else ''} |")
    return lines + ([""] + [f"\\* {note}" for note in notes] if notes else [])


def statistics_section(runs):
    lines = ["## Sensitivity, specificity and AUC", "",
             "Per-class one-vs-rest measures averaged over the classes (pooled over folds), as the "
             "paper's Table 4 and Fig. 8. The balance point is where a class's ROC curve has "
             "sensitivity = specificity, the paper's Table 4 measure; the arg-max columns are the "
             "one-vs-rest rates of the predicted class (one operating point, for reference).", "",
             "| run | dataset | net | variant | balance point sens. = spec. | arg-max sensitivity "
             "| arg-max specificity | mean AUC | paper sens. / spec. |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        config, summary = run["config"], run["summary"]
        if config.get("tool") != "crossval" or summary is None:
            continue
        pooled = summary["pooled"]
        paper = paper_results.TABLE4.get(config["variant"]) if config["dataset"] == "fer2013" else None
        paper_text = f"{paper['sensitivity']:.2f} / {paper['specificity']:.2f}" if paper else "–"
        auc = pooled.get("mean_auc")
        lines.append(f"| {run['dir'].name} | {dataset_title(config['dataset'])} | {config['net']} "
                     f"| {config['variant']} | {pct(pooled.get('balance_sensitivity'))} "
                     f"| {pct(pooled['mean_sensitivity'])} "
                     f"| {pct(pooled['mean_specificity'])} | {'–' if auc is None else f'{auc:.3f}'} "
                     f"| {paper_text} |")
    return lines


def crossdb_section(runs):
    crossdb = [run for run in runs if run["config"].get("tool") == "crossdb" and run["summary"]]
    if not crossdb:
        return []
    lines = ["## Cross-database generalisation", "",
             "Accuracy (%) training on one database and testing on another; paper: Table 12 "
             "(ResNet, L2 sparseness + center loss).", "",
             "| run | training | testing | net | variant | ours | paper |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    notes = []
    for run in crossdb:
        config, summary = run["config"], run["summary"]
        for test_name, result in sorted(summary["tests"].items()):
            paper = paper_results.TABLE12.get(config["dataset"], {}).get(result["dataset"])
            note = paper_results.printed_twice_note(config["dataset"], config["net"], config["variant"],
                                                    result["dataset"])
            if note and note not in notes:
                notes.append(note)
            lines.append(f"| {run['dir'].name} | {dataset_title(config['dataset'])} "
                         f"| {dataset_title(result['dataset'])} "
                         f"| {config['net']} | {config['variant']} | {pct(result['accuracy'])} "
                         f"| {paper_number(paper)}{' *' if note else ''} |")
    return lines + ([""] + [f"\\* {note}" for note in notes] if notes else [])


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


def _spread(mean, std):
    return f"{pct(mean)} ± {pct(std)}" if std is not None else f"{pct(mean)} (one)"


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


def _cell_head(row):
    """A statistics row's first cells: its run folders, dataset, net and variant."""
    config = row["config"]
    return (f"| {run_names(row['runs'])} | {dataset_title(config['dataset'])} | {config['net']} "
            f"| {config['variant']} ")


def significance_section(rows):
    if not rows:
        return []
    lines = ["## Statistics over folds and seeds", "",
             "Accuracy (%) of each cell (one configuration; each seed a separate run folder): mean ± "
             "standard deviation over folds (of the seed-averaged fold accuracies) and over seeds (of "
             "each seed's mean), and the 95 % BCa bootstrap interval of the accuracy, resampling "
             "test images for a single split and folds for K-fold (docs/statistics.md).", "",
             "| runs | dataset | net | variant | seeds | folds | over folds | over seeds | 95 % CI | CI over |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        head = _cell_head(row)
        if "error" in row:
            lines.append(head + f"| {len(row['runs'])} | – | not comparable: {row['error']} | | | |")
            continue
        st = row["statistics"]
        ci = "–" if st["ci_low"] is None else f"{pct(st['ci_low'])} – {pct(st['ci_high'])}"
        lines.append(head + f"| {len(st['runs'])} | {len(st['folds'])} "
                     f"| {_spread(st['mean_over_folds'], st['std_over_folds'])} "
                     f"| {_spread(st['mean_over_seeds'], st['std_over_seeds'])} | {ci} | {st['ci_over']} |")
    compared = [row for row in rows if "comparison" in row or "comparison_error" in row]
    return lines + (["", *_baseline_lines(compared)] if compared else [])


def _baseline_lines(compared):
    """The "Against the baseline" table: each compared cell's McNemar test and noise mark."""
    lines = ["### Against the baseline", "",
             "Exact McNemar test on the same test images (matched by split and item): the images "
             "only this cell gets right against those only the baseline gets right. With several "
             "seeds each seed is tested against the baseline's run of the same seed and the largest "
             "p-value is shown. Within noise: p >= 0.05 (or seeds disagreeing in direction); where "
             "no paired test is possible, overlapping intervals.", "",
             "| runs | dataset | net | variant | baseline | difference (points) | only this / only "
             "baseline right | McNemar p | within noise |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in compared:
        head = _cell_head(row)
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


def collect_protocol(runs, checks=None):
    """The protocol checks the runs stored (protocol.json), gathered for ``protocol_section``.

    ``checks``: {prepared-dataset folder: experiments.analysis.protocol.check_dataset result}
    to show instead of a stored one.
    """
    return stored_protocol(runs, checks if isinstance(checks, dict) else None)


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
    configs differ only in the seed); checks: protocol checks (False: none;
    True: those the runs stored in protocol.json; a dict of
    experiments.analysis.protocol.check_dataset results by prepared-dataset
    folder to show instead of the stored ones).
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
