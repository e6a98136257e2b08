"""One paper table's results beside the paper: Markdown, CSV and JSON, with its plots and checks.

Reads only run folders (experiments/running/run_folder.py), through
experiments/reporting/common.py; the statistics are experiments/analysis/statistics.py's
(mean ± std over folds and seeds, bootstrap interval, exact McNemar against the
cell of the baseline variant with the same net and data). RespondRatio and the
protocol checks (with the data audit) are read from the files each run stored
when it finished (respond_ratio.json, protocol.json): writing a table computes
neither.
"""
import csv
import io
from pathlib import Path

import numpy as np

from experiments.analysis import metrics, statistics
from experiments.paper import paper_results
from experiments.reporting import plots
from experiments.reporting.common import (class_abbreviations, load_run, paper_number, pct,
                                          protocol_section, run_names, stored_protocol)
from experiments.running.run_folder import PREDICTIONS, RESPOND_RATIO, RESULT, TRAINING, read_config, read_summary
from runtime.files import read_json, write_json_atomic, write_text_atomic



def _crossdb_runs(run_dirs, test):
    """A crossdb cell's seeds as statistics.RunPredictions over the one test database."""
    runs = []
    for run_dir in run_dirs:
        folder = Path(run_dir) / f"test_{test}"
        entries = sorted(read_json(folder / PREDICTIONS), key=lambda p: p["item"])
        config = dict(read_config(run_dir), test=test)
        runs.append(statistics.RunPredictions(
            run_dir=Path(run_dir), config=config, folds=(folder.name,),
            fold_accuracies=np.array([read_json(folder / RESULT)["accuracy"]]),
            keys=tuple((folder.name, int(p["item"])) for p in entries),
            labels=np.array([p["label"] for p in entries]),
            predictions=np.array([p["prediction"] for p in entries]),
            sources=tuple(p.get("source") for p in entries)))
    return runs


def _finished(cell, run_dirs):
    if cell.kind == "crossdb":
        return all((Path(d) / f"test_{cell.test}" / RESULT).is_file() for d in run_dirs)
    return all(read_summary(d) is not None for d in run_dirs)


def _runs_of(cell, run_dirs):
    return _crossdb_runs(run_dirs, cell.test) if cell.kind == "crossdb" else list(run_dirs)


def baseline_cell(table, cell, cells):
    """The cell ``cell`` is tested against: the table's baseline variant with the same kind, net and
    data (and test database), wherever the table puts variants (columns in Table 3, rows in
    Table 7); None for the baseline itself or where the table has none."""
    if not table.baseline_variant or cell.variant == table.baseline_variant:
        return None
    return next((other for other in cells if other.variant == table.baseline_variant
                 and (other.kind, other.net, other.data, other.test, other.finetune_from)
                 == (cell.kind, cell.net, cell.data, cell.test, cell.finetune_from)), None)


def pooled_figures(cell, run_dirs):
    """The decisions pooled over every fold, per image and per decision unit (a sequence's
    frames), averaged over seeds: {"pooled_accuracy", "unit_pooled_accuracy", "units"} where known.
    The paper's CK+, Oulu-CASIA and MMI figures are unit decisions pooled over folds
    (docs/recipe.md)."""
    images, units, counts = [], [], []
    for run_dir in run_dirs:
        if cell.kind == "crossdb":
            result = read_json(Path(run_dir) / f"test_{cell.test}" / RESULT)
            images.append(result["accuracy"])
            if "unit_accuracy" in result:
                units.append(result["unit_accuracy"])
                counts.append(result["test_units"])
            continue
        summary = read_summary(run_dir)
        if "pooled_accuracy" in summary:
            images.append(summary["pooled_accuracy"])
        if summary.get("units"):
            units.append(summary["units"]["pooled_accuracy"])
            counts.append(summary["units"]["count"])
    figures = {}
    if len(images) == len(run_dirs):
        figures["pooled_accuracy"] = float(np.mean(images))
    if len(units) == len(run_dirs):
        figures.update(unit_pooled_accuracy=float(np.mean(units)), units=counts[0])
    return figures


def cell_results(table, cells, run_dirs_of, starts_from_of=None):
    """One dict per cell: accuracy with its spreads and interval, the test against its baseline,
    and (``starts_from_of(cell)``) where its runs' weights started."""
    rows = []
    for cell in cells:
        run_dirs = run_dirs_of(cell)
        row = {"row": cell.row, "column": cell.column, "kind": cell.kind, "net": cell.net,
               "variant": cell.variant, "normalization": cell.normalization, "data": cell.data,
               "test": cell.test, "paper": cell.paper,
               "runs": [str(d) for d in run_dirs], "finished": _finished(cell, run_dirs),
               "starts_from": starts_from_of(cell) if starts_from_of else None}
        if row["finished"]:
            row.update(statistics.cell_statistics(_runs_of(cell, run_dirs)))
            row.update(pooled_figures(cell, run_dirs))
            baseline = baseline_cell(table, cell, cells)
            if baseline is not None and _finished(baseline, run_dirs_of(baseline)):
                comparison = statistics.compare_to_baseline(_runs_of(cell, run_dirs),
                                                            _runs_of(baseline, run_dirs_of(baseline)))
                test = comparison["test"] or {}
                row.update({"baseline": baseline.variant, "difference": comparison["difference"],
                            "p_value": test.get("p_value"), "within_noise": comparison["within_noise"],
                            "noise_reason": comparison["reason"]})
        rows.append(row)
    return rows


def _grid_markdown(rows, reference):
    columns = list(dict.fromkeys(r["column"] for r in rows))
    row_names = list(dict.fromkeys(r["row"] for r in rows))
    cell = {(r["row"], r["column"]): r for r in rows}
    lines = ["| | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for name in row_names:
        texts = []
        for column in columns:
            r = cell.get((name, column))
            if r is None:
                texts.append("")
                continue
            ours = pct(r.get("accuracy")) if r["finished"] else "not run"
            mark = " ~" if r.get("within_noise") else ""
            paper = paper_number(r["paper"])
            texts.append(f"{ours}{mark} ({paper})")
        lines.append(f"| {name} | " + " | ".join(texts) + " |")
    return lines + ["", f"Ours (paper{', ' + reference if reference else ''}), accuracy in %; "
                    "`~`: within noise of the row's baseline (see below)."]


def _details_markdown(rows):
    lines = ["| runs | row | column | starts from | seeds | accuracy | ± over seeds | ± over folds | pooled "
             "| units, pooled | 95 % CI | vs baseline | McNemar p | noise |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        runs = run_names(r["runs"])
        start = r.get("starts_from") or "–"
        if not r["finished"]:
            lines.append(f"| {runs} | {r['row']} | {r['column']} | {start} | – | not run | | | | | | | | |")
            continue
        units = (f"{pct(r['unit_pooled_accuracy'])} of {r['units']}" if r.get("unit_pooled_accuracy") is not None
                 else "–")
        ci = (f"{pct(r['ci_low'])}–{pct(r['ci_high'])} ({r['ci_over']})"
              if r.get("ci_low") is not None else "–")
        versus = (f"{100 * r['difference']:+.2f} vs {r['baseline']}" if r.get("baseline") else "–")
        p_value = "–" if r.get("p_value") is None else f"{r['p_value']:.3g}"
        noise = "–" if r.get("within_noise") is None else ("within noise" if r["within_noise"]
                                                          else "significant")
        lines.append(f"| {runs} | {r['row']} | {r['column']} | {start} | {len(r['runs'])} | {pct(r['accuracy'])} | "
                     f"{pct(r.get('std_over_seeds'))} | {pct(r.get('std_over_folds'))} | "
                     f"{pct(r.get('pooled_accuracy'))} | {units} | {ci} | {versus} | {p_value} | {noise} |")
    return lines + ["", "accuracy: the mean of the folds' accuracies (and of the seeds'); pooled: every "
                    "fold's test images counted together; units, pooled: one decision per sequence (its "
                    "frames' softmax averaged), pooled over the folds, the form of the paper's CK+, "
                    "Oulu-CASIA and MMI figures (docs/recipe.md)."]


def _balance_markdown(rows):
    lines = ["| cell | balance-point sens. = spec. | arg-max sensitivity | arg-max specificity | "
             "mean AUC | paper sens. / spec. |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if not r["finished"]:
            continue
        pooled = [read_summary(d)["pooled"] for d in r["runs"]]
        value = {key: float(np.mean([p[key] for p in pooled if p.get(key) is not None] or [np.nan]))
                 for key in ("balance_sensitivity", "mean_sensitivity", "mean_specificity", "mean_auc")}
        paper = paper_results.TABLE4.get(r["variant"])
        paper_text = f"{paper['sensitivity']:.2f} / {paper['specificity']:.2f}" if paper else "–"
        lines.append(f"| {r['row']} {r['column']} | {pct(value['balance_sensitivity'])} | "
                     f"{pct(value['mean_sensitivity'])} | {pct(value['mean_specificity'])} | "
                     f"{value['mean_auc']:.3f} | {paper_text} |")
    return lines + ["", "The paper's figures are the ROC balance points (Section 3.3); the arg-max "
                    "columns are one-vs-rest rates of the predicted class, shown for reference."]


def _respond_ratio_markdown(rows):
    parts = paper_results.TABLE2_PARTS
    lines = ["| run | expression | " + " | ".join(parts) + " | paper |",
             "| --- | --- | " + " | ".join("---" for _ in parts) + " | --- |"]
    for r in rows:
        if not r["finished"]:
            continue
        key = "NM" if r["row"] == "NM" else "SP"
        for run_dir in r["runs"]:
            stored = load_run(run_dir)["respond_ratio"]
            if stored is None:
                lines.append(f"| {Path(run_dir).name} | not computed: {Path(run_dir) / RESPOND_RATIO} is "
                             f"missing (python tools/respond_ratio.py {run_dir} computes it) |"
                             + " |" * len(parts))
                continue
            for expression, values in stored["ratios"].items():
                paper = paper_results.TABLE2.get(expression, {}).get(key)
                lines.append(f"| {Path(run_dir).name} | {expression} | "
                             + " | ".join(f"{values[p]:.2f}" for p in parts)
                             + f" | {', '.join(f'{v:.2f}' for v in paper) if paper else '–'} |")
    return lines


def _confusion_markdown(rows, out_dir, stem):
    lines = []
    for r in rows:
        if not r["finished"]:
            continue
        matrices = [np.array(read_json(Path(d) / f"test_{r['test']}" / RESULT)["confusion"]) for d in r["runs"]]
        pooled = np.sum(matrices, axis=0)
        percent = metrics.normalized_confusion(pooled)
        # The classes of the training database, as the crossdb run recorded them.
        names = read_summary(r["runs"][0])["classes"]
        abbreviations = class_abbreviations(names)
        lines += [f"{r['row']} -> {r['column']} (rows true, %, pooled over {len(matrices)} seed(s)):", "",
                  "| | " + " | ".join(abbreviations) + " |", "| --- |" + " --- |" * len(names)]
        lines += [f"| {abbreviations[i]} | " + " | ".join(f"{100 * v:.2f}" if np.isfinite(v) else "–"
                                                        for v in percent[i]) + " |"
                  for i in range(len(names))]
        plots.plot_confusion(pooled, abbreviations, out_dir / f"{stem}_confusion.png",
                             title=f"{r['row']} -> {r['column']} (%)")
        lines += ["", f"![confusion]({stem}_confusion.png)", ""]
    return lines


def _roc_markdown(rows, out_dir, stem):
    curves = {}
    for r in rows:
        if r["finished"]:
            run_dir = Path(r["runs"][0])
            predictions = [p for fold in read_summary(run_dir)["folds"]
                           for p in read_json(run_dir / fold / PREDICTIONS)]
            curves[f"{r['row']} {r['column']}"] = (np.array([p["probabilities"] for p in predictions]),
                                                   np.array([p["label"] for p in predictions]))
    if not curves:
        return []
    plots.plot_roc(curves, out_dir / f"{stem}_roc.png")
    return [f"![mean ROC]({stem}_roc.png)", "", "First seed of each cell; mean one-vs-rest ROC as Fig. 8."]


def _val_test_markdown(rows):
    lines = ["| cell | validation (PublicTest) | test (PrivateTest) |", "| --- | --- | --- |"]
    for r in rows:
        if not r["finished"]:
            continue
        val = [read_json(Path(d) / fold / RESULT).get("val_accuracy")
               for d in r["runs"] for fold in read_summary(d)["folds"]]
        val = [v for v in val if v is not None]
        lines.append(f"| {r['row']} {r['column']} | {pct(np.mean(val)) if val else '–'} | "
                     f"{pct(r['accuracy'])} |")
    return lines


def table_checks(rows, checks=None):
    """The protocol checks the table's finished runs stored (dataset checks with the data audit, how
    each run chose its model); ``checks``: {prepared-dataset folder: check} shown instead."""
    runs = [load_run(run_dir) for r in rows if r["finished"] for run_dir in dict.fromkeys(r["runs"])]
    return stored_protocol(runs, checks)


def write_table(table, rows, out_dir, commands, scale, checks=None, reference=None):
    """Write ``table_<N>.md/.csv/.json`` (and plots) into ``out_dir``; returns the Markdown path.

    ``checks``: {prepared-dataset folder: protocol check} to show instead of those the runs stored."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"table_{table.number}"
    lines = [f"# Table {table.number}: {table.title}", "",
             f"Scale `{scale.name}`: {scale.note}.", *table.notes,
             *paper_results.printed_twice_notes(table.number), "",
             *_grid_markdown(rows, reference), "", "## Statistics", "",
             *_details_markdown(rows), "",
             "Accuracy: mean over seeds and folds. CI: 95 % BCa bootstrap (scipy) over test images for "
             "one split, over folds for K-fold. McNemar: exact test on the same test images against "
             "the row's baseline (docs/statistics.md).", ""]
    extra = {"balance": lambda: _balance_markdown(rows),
             "respond_ratio": lambda: _respond_ratio_markdown(rows),
             "confusion": lambda: _confusion_markdown(rows, out_dir, stem),
             "roc": lambda: _roc_markdown(rows, out_dir, stem),
             "val_test": lambda: _val_test_markdown(rows)}.get(table.measure)
    if extra:
        lines += [f"## {table.measure.replace('_', ' ')}", "", *extra(), ""]
    checks = table_checks(rows, checks)
    lines += ["## Protocol checks", "", *protocol_section(checks)[2:], "", "## Commands", "",
              "Each run, as the equivalent command line:", "", "```", *commands, "```", ""]
    wall = [read_json(p)["train_seconds"] for r in rows for d in r["runs"]
            for p in Path(d).glob(f"*/{TRAINING}") if p.is_file()]
    if wall:
        lines.append(f"Training wall time: {sum(wall) / 60:.1f} min over {len(wall)} fold trainings.")
    write_text_atomic(out_dir / f"{stem}.md", "\n".join(lines) + "\n")
    write_json_atomic(out_dir / f"{stem}.json", {"table": table.number, "scale": scale.name, "cells": rows,
                                                 "checks": checks})
    columns = ["row", "column", "net", "variant", "data", "test", "paper", "accuracy", "std_over_seeds",
               "std_over_folds", "ci_low", "ci_high", "baseline", "difference", "p_value", "within_noise"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_dir / f"{stem}.csv", buffer.getvalue())
    return out_dir / f"{stem}.md"
