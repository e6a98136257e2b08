"""A Markdown report of run folders, our numbers beside the paper's (command line: tools/report.py).

Reads each run folder's config.json and summary.json (written by
tools/crossval.py or tools/crossdb.py) and, where present, respond_ratio.json
(tools/respond_ratio.py). Sections: accuracies (mean ± std over folds) beside
the paper's Tables 3, 5, 6 and 7; sensitivity/specificity and AUC beside
Table 4; the cross-database matrix beside Table 12; RespondRatio beside
Table 2; and the runs' plots. A run that is not finished is listed as such.
"""
import os
from pathlib import Path

from experiments import paper_results
from experiments.run_folder import PLOTS, read_config, read_summary
from runtime.files import read_json, write_text_atomic

_DATASET_NAMES = {"fer2013": "FER2013", "ckplus": "CK+", "ckplus48": "CK+ (48x48)",
                  "oulu": "Oulu-CASIA", "mmi": "MMI", "synthetic": "synthetic"}


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
        lines.append(f"| {_DATASET_NAMES.get(config['dataset'], config['dataset'])} | {config['net']} "
                     f"| {config['variant']} | {folds} | {ours} | {_paper(paper)} | {table or '–'} |")
    return lines


def statistics_section(runs):
    lines = ["## Sensitivity, specificity and AUC", "",
             "Per-class one-vs-rest measures averaged over the classes (pooled over folds), as the "
             "paper's Table 4 and Fig. 8.", "",
             "| dataset | net | variant | sensitivity | specificity | mean AUC | paper sens. / spec. |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        config, summary = run["config"], run["summary"]
        if config.get("tool") != "crossval" or summary is None:
            continue
        pooled = summary["pooled"]
        paper = paper_results.TABLE4.get(config["variant"]) if config["dataset"] == "fer2013" else None
        paper_text = f"{paper['sensitivity']:.2f} / {paper['specificity']:.2f}" if paper else "–"
        auc = pooled.get("mean_auc")
        lines.append(f"| {_DATASET_NAMES.get(config['dataset'], config['dataset'])} | {config['net']} "
                     f"| {config['variant']} | {_pct(pooled['mean_sensitivity'])} "
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
            lines.append(f"| {_DATASET_NAMES.get(config['dataset'], config['dataset'])} "
                         f"| {_DATASET_NAMES.get(result['dataset'], result['dataset'])} "
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


def build_report(run_dirs, out_path, title="Results beside the paper"):
    runs = [load_run(d) for d in run_dirs]
    out_path = Path(out_path)
    sections = [[f"# {title}", "",
                 "Xie et al., \"Sparse deep feature learning for facial expression recognition\", "
                 "Pattern Recognition 2019. Paper numbers are quoted from its tables.", ""]]
    for section in (accuracy_section(runs), statistics_section(runs), crossdb_section(runs),
                    respond_ratio_section(runs), plots_section(runs, out_path.parent)):
        if section:
            sections.append(section + [""])
    text = "\n".join(line for section in sections for line in section)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_path, text)
    return text
