"""experiments/reporting: reports render the analyses a run stored (protocol.json,
respond_ratio.json) without computing them; run-name columns; the paper's numbers it prints twice;
tools/report.py on a glob that also matches folders that are not runs."""
import json
import shutil

import imagehash
import numpy as np
import pytest

from experiments.analysis import protocol
from experiments.paper import paper_results
from experiments.reporting import common, report
from tests.experiments.analysis.test_protocol import write_run_config, write_trained_fold
from tests.experiments.analysis.test_statistics import write_run
from tests.prepared_fixture import build_prepared_dataset
from tools import report as report_tool

RATIOS = {"anger": {"nose_root": 1.25, "eyes_brows": 0.75, "cheek": 0.5, "mouth": 1.5}}


def _impossible(*_, **__):
    raise AssertionError("a report computed an analysis instead of reading the stored file")


def test_a_report_renders_the_stored_checks_when_nothing_can_be_recomputed(tmp_path, monkeypatch):
    data = build_prepared_dataset(tmp_path / "tiny", folds=2, subjects=4)
    run = tmp_path / "runs" / "tiny_toy_softmax"
    run.parent.mkdir()
    write_run_config(run, data, ["fold_00", "fold_01"])
    for fold in ("fold_00", "fold_01"):
        write_trained_fold(run / fold, data, fold, "test")
    stored = protocol.write_run_checks(run)              # as crossval does when the run finishes
    (run / "respond_ratio.json").write_text(json.dumps({"ratios": RATIOS}))
    (run / "summary.json").write_text(json.dumps({
        "folds": ["fold_00", "fold_01"], "fold_accuracies": [0.5, 0.5], "mean_accuracy": 0.5,
        "std_accuracy": 0.0, "pooled": {"mean_sensitivity": 0.5, "mean_specificity": 0.5}, "classes": ["a"]}))
    # The images and the prepared dataset are gone, and every computation would fail.
    shutil.rmtree(data)
    for name in ("check_dataset", "manifest_hashes", "duplicates", "model_selection", "run_checks"):
        monkeypatch.setattr(protocol, name, _impossible)
    monkeypatch.setattr(imagehash, "phash", _impossible)

    text = report.build_report([run], tmp_path / "report.md")
    hashes = stored["datasets"][str(data)]["hashes"]
    assert f"`{hashes['folds']}`" in text and "Not checked" not in text
    assert "| fold_00 | `" in text and "| train 24, test 24 | train 2, test 2 | train/test: none |" in text
    assert "- tiny_toy_softmax: the final snapshot (iteration 20) of every fold was scored" in text
    assert "| tiny_toy_softmax | anger | 1.25 | 0.75 | 0.50 | 1.50 |" in text


def test_a_run_without_stored_checks_is_named_with_the_command_that_stores_them(tmp_path):
    run = write_run(tmp_path / "old_run", {"fold_00": ([0, 1], [0, 1])}, data=str(tmp_path / "data"))
    text = "\n".join(report.protocol_section(report.collect_protocol([report.load_run(run)])))
    assert f"Not checked: {run / 'protocol.json'} is missing" in text and "tools/crossval.py" in text
    assert f"- old_run: not checked: {run / 'protocol.json'} is missing." in text


def test_report_tables_name_each_run(tmp_path):
    # Two runs of the same dataset, net and variant: only their names tell the rows apart.
    runs = [write_run(tmp_path / name, {"fold_00": ([0, 1, 0, 1], [0, 1, 0, 0])})
            for name in ("tiny_toy_l2_first", "tiny_toy_l2_second")]
    text = report.build_report(runs, tmp_path / "report.md", checks=False)
    assert ("| run | dataset | net | variant | folds | ours | pooled | units, pooled | paper "
            "| paper table |") in text
    for name in ("tiny_toy_l2_first", "tiny_toy_l2_second"):
        assert f"| {name} | tiny | toy | l2 | 1 | 75.00 ± 0.00 |" in text      # accuracy
        assert f"| {name} | tiny | toy | l2 | – | 50.00 | 50.00 |" in text       # sensitivity
    assert "| tiny_toy_l2_first, tiny_toy_l2_second | tiny | toy | l2 | 2 | 1 |" in text  # one cell, 2 seeds


def test_the_paper_numbers_printed_twice_are_noted(tmp_path):
    for entry in paper_results.PRINTED_TWICE.values():
        fractions = [value for value in entry["values"].values()
                     if any(round(100 * k / paper_results.MMI_SEQUENCES, 2) == value
                            for k in range(paper_results.MMI_SEQUENCES + 1))]
        assert len(fractions) == 1 and str(fractions[0]) in entry["note"]
    assert paper_results.PRINTED_TWICE[("mmi", "resnet", "l2_center", None)]["values"] == {"7": 78.54, "11": 78.53}
    assert paper_results.PRINTED_TWICE[("ckplus", "resnet", "l2_center", "mmi")]["values"] == {"12": 60.48,
                                                                                               "16": 60.0}
    run = write_run(tmp_path / "mmi_resnet_l2_center", {"fold_00": ([0, 1], [0, 1])}, dataset="mmi")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(dict(config, net="resnet", variant="l2_center")))
    text = report.build_report([run], tmp_path / "report.md", checks=False)
    assert "| 78.54 | Table 7 * |" in text and "78.53 in Table 11" in text


def test_the_printed_confusion_matrix_has_class_headers():
    lines = common.confusion_text(["anger", "happiness", "calm"], np.array([[5, 1, 0], [0, 7, 2], [1, 0, 3]]))
    assert lines[0].strip() == "true \\ predicted"
    assert lines[1].split() == ["An", "Ha", "calm"]
    assert [line.split() for line in lines[2:]] == [["An", "5", "1", "0"], ["Ha", "0", "7", "2"],
                                                    ["calm", "1", "0", "3"]]
    # The columns line up under their headers.
    assert {len(line) for line in lines[1:]} == {len(lines[1])}


def test_print_summary_prints_the_confusion_with_headers(capsys):
    from experiments.running.crossval import print_summary
    print_summary("run", "runs/run", {"mean_accuracy": 0.5, "std_accuracy": 0.0, "pooled_accuracy": 0.5, "folds": ["fold_00"],
                                      "classes": ["anger", "fear"], "pooled": {"confusion": [[3, 1], [2, 2]]}})
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.split() == ["An", "Fe"])
    assert out[header + 1].split() == ["An", "3", "1"] and out[header + 2].split() == ["Fe", "2", "2"]


def test_tools_report_on_runs_star_reports_the_main_job_and_skips_what_is_not_a_run(tmp_path, capsys):
    runs = tmp_path / "runs"
    run = write_run(runs / "tiny_toy_l2", {"fold_00": ([0, 1], [0, 1])})
    main_job_run = write_run(runs / "main" / "runs" / "synthetic_toy_l2", {"fold_00": ([0, 1], [1, 1])})
    (runs / "main" / "synthetic").mkdir()                                # the main job's prepared data
    reproduced = write_run(runs / "reproduce" / "tiny_toy_l2_smoke_s1", {"fold_00": ([0, 1], [1, 1])})
    (runs / "reproduce" / "table_3").mkdir()
    (runs / "table_3").mkdir()
    (runs / "notes.txt").write_text("x")
    out = report_tool.main([str(p) for p in sorted(runs.iterdir())])   # what the shell makes of runs/*
    text = out.read_text()
    assert out == runs / "report.md"
    for name in (run.name, main_job_run.name, reproduced.name):
        assert f"| {name} | tiny | toy | l2 |" in text
    printed = capsys.readouterr().out
    assert (f"{runs / 'main'}: not a run folder; reporting the 1 run folder(s) it holds "
            f"({main_job_run})") in printed
    assert f"{runs / 'reproduce'}: not a run folder; reporting the 1 run folder(s) it holds" in printed
    assert "skipped 2 of 5 path(s), neither run folders nor folders of runs:" in printed
    assert f"  {runs / 'table_3'}: no config.json and no run folders in it" in printed
    assert f"  {runs / 'notes.txt'}: not a folder" in printed

    # Only the main job has run: runs/* reports its runs.
    only_main = tmp_path / "only"
    write_run(only_main / "main" / "runs" / "synthetic_toy_softmax", {"fold_00": ([0, 1], [1, 1])})
    assert "| synthetic_toy_softmax |" in report_tool.main([str(only_main / "main")]).read_text()
    with pytest.raises(SystemExit) as stopped:
        report_tool.main([str(runs / "table_3")])
    assert stopped.value.code == 2
    assert "none of the paths is or holds a run folder" in capsys.readouterr().err
