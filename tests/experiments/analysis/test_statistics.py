"""experiments/analysis/statistics.py on run folders written in the run-folder layout: exact McNemar,
bootstrap intervals, spreads over folds and seeds, pairing rules; and the report's sections."""
import json
from math import comb

import numpy as np
import pytest

from experiments.reporting import report
from experiments.analysis import statistics
from experiments.analysis.statistics import StatisticsError
from tests.prepared_fixture import build_prepared_dataset


def write_run(run_dir, folds, variant="l2", seed=None, dataset="tiny", data="/nowhere"):
    """A finished crossval run folder: folds = {fold: (labels, predictions)}; sources name the items."""
    config = {"tool": "crossval", "data": data, "dataset": dataset, "num_classes": 2, "image_size": 8,
              "net": "toy", "variant": variant, "iters": 10}
    if seed is not None:
        config["seed"] = seed
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    accuracies = []
    for fold, (labels, predictions) in folds.items():
        (run_dir / fold).mkdir()
        entries = [{"item": i, "label": int(label), "subject": None, "source": f"{fold}/img{i}.png",
                    "probabilities": [0.5, 0.5], "prediction": int(prediction)}
                   for i, (label, prediction) in enumerate(zip(labels, predictions))]
        (run_dir / fold / "predictions.json").write_text(json.dumps(entries))
        accuracies.append(float(np.mean(np.asarray(labels) == np.asarray(predictions))))
    (run_dir / "summary.json").write_text(json.dumps({
        "folds": list(folds), "fold_accuracies": accuracies, "mean_accuracy": float(np.mean(accuracies)),
        "std_accuracy": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
        "pooled": {"mean_sensitivity": 0.5, "mean_specificity": 0.5, "confusion": [[1, 0], [0, 1]]},
        "classes": ["a", "b"]}))
    return run_dir


def outcomes(correct):
    """Labels all 0 and predictions right where ``correct``."""
    correct = np.asarray(correct, dtype=bool)
    return np.zeros(correct.size, int), np.where(correct, 0, 1)


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_pairs():
    # 3 images only the cell gets right, 17 only the baseline: two-sided exact binomial, by hand.
    correct = np.r_[np.ones(3, bool), np.zeros(17, bool), np.ones(30, bool), np.zeros(10, bool)]
    baseline = np.r_[np.zeros(3, bool), np.ones(17, bool), np.ones(30, bool), np.zeros(10, bool)]
    b, c, p = statistics.mcnemar_exact(correct, baseline)
    assert (b, c) == (3, 17)
    assert p == pytest.approx(2 * sum(comb(20, k) for k in range(4)) / 2 ** 20, rel=1e-12)
    assert statistics.mcnemar_exact(baseline, correct)[2] == pytest.approx(p)
    assert statistics.mcnemar_exact(correct, correct) == (0, 0, 1.0)


def test_bootstrap_interval_contains_the_estimate_is_seeded_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small = (rng.random(200) < 0.6).astype(float)
    large = (rng.random(5000) < 0.6).astype(float)
    low, high = statistics.bootstrap_ci(small, seed=3)
    assert low < small.mean() < high
    assert statistics.bootstrap_ci(small, seed=3) == (low, high)
    assert statistics.bootstrap_ci(small, seed=4) != (low, high)
    large_low, large_high = statistics.bootstrap_ci(large, seed=3)
    assert large_low < large.mean() < large_high
    assert large_high - large_low < (high - low) / 3       # width ~ 1/sqrt(n): 5x narrower
    assert statistics.bootstrap_ci(np.ones(10)) == (1.0, 1.0)
    with pytest.raises(StatisticsError, match="at least 2"):
        statistics.bootstrap_ci([0.5])


def test_spreads_over_folds_and_seeds(tmp_path):
    # Accuracies A[seed, fold] of 10-image folds; hand-computed spreads.
    table = np.array([[0.5, 0.7, 0.9], [0.6, 0.7, 1.0]])
    cell = []
    for s, row in enumerate(table):
        folds = {f"fold_{f:02d}": outcomes(np.arange(10) < round(10 * a)) for f, a in enumerate(row)}
        cell.append(write_run(tmp_path / f"run_seed{s}", folds, seed=s))
    st = statistics.cell_statistics(cell)
    assert st["accuracy"] == pytest.approx(table.mean())
    assert st["std_over_folds"] == pytest.approx(np.std(table.mean(axis=0), ddof=1))
    assert st["std_over_seeds"] == pytest.approx(np.std(table.mean(axis=1), ddof=1))
    assert st["ci_over"] == "folds" and st["seeds"] == [0, 1]
    assert st["ci_low"] <= st["accuracy"] <= st["ci_high"]
    assert statistics.cell_statistics(cell) == st                       # reproducible


def test_a_single_split_resamples_test_images(tmp_path):
    run = write_run(tmp_path / "fer", {"official": outcomes(np.arange(400) % 5 < 3)})
    st = statistics.cell_statistics([run])
    assert st["ci_over"] == "test images" and st["test_images"] == 400
    assert st["std_over_folds"] is None and st["std_over_seeds"] is None
    assert st["ci_low"] < 0.6 < st["ci_high"] and st["ci_high"] - st["ci_low"] < 0.12


def test_seeds_are_grouped_into_cells_by_config(tmp_path):
    folds = {"official": outcomes(np.arange(20) < 12)}
    a0 = write_run(tmp_path / "a0", folds, seed=0)
    b0 = write_run(tmp_path / "b0", folds, variant="softmax", seed=0)
    a1 = write_run(tmp_path / "a1", folds, seed=1)
    assert statistics.group_seeds([a0, b0, a1]) == [[a0, a1], [b0]]
    with pytest.raises(StatisticsError, match="not seeds of one cell"):
        statistics.cell_statistics([a0, b0])


def test_the_paired_test_refuses_runs_on_different_images(tmp_path):
    run = write_run(tmp_path / "a", {"official": outcomes(np.arange(20) < 12)})
    fewer = write_run(tmp_path / "b", {"official": outcomes(np.arange(18) < 12)}, variant="softmax")
    with pytest.raises(StatisticsError, match="not tested on the same images.*20 vs 18"):
        statistics.paired_test([run], [fewer])
    other_data = write_run(tmp_path / "c", {"official": outcomes(np.arange(20) < 12)}, variant="softmax")
    entries = json.loads((other_data / "official" / "predictions.json").read_text())
    entries[5]["source"] = "elsewhere.png"
    (other_data / "official" / "predictions.json").write_text(json.dumps(entries))
    with pytest.raises(StatisticsError, match="differ in label or source.*item 5"):
        statistics.paired_test([run], [other_data])
    # The report's comparison falls back to the intervals and says why.
    comparison = statistics.compare_to_baseline([run], [fewer])
    assert comparison["test"] is None and "not tested on the same images" in comparison["unpaired_reason"]
    assert comparison["within_noise"] is True and "intervals overlap" in comparison["reason"]


def test_seeds_are_paired_with_seeds_and_the_largest_p_decides(tmp_path):
    n = 300
    base_correct = np.arange(n) < 150
    strong = base_correct | (np.arange(n) < 220)           # 70 more right, none lost
    weak = base_correct | (np.arange(n) < 154)              # 4 more right
    base = [write_run(tmp_path / f"base{s}", {"official": outcomes(base_correct)}, "softmax", seed=s)
            for s in (0, 1)]
    cell = [write_run(tmp_path / "cell0", {"official": outcomes(strong)}, seed=0),
            write_run(tmp_path / "cell1", {"official": outcomes(weak)}, seed=1)]
    test = statistics.paired_test(cell, base)
    assert [(p["seed"], p["baseline_seed"]) for p in test["pairs"]] == [(0, 0), (1, 1)]
    assert [(p["only_run_correct"], p["only_baseline_correct"]) for p in test["pairs"]] == [(70, 0), (4, 0)]
    assert test["p_value"] == pytest.approx(2 * 0.5 ** 4)  # the weak seed's exact p
    assert not test["significant"]
    assert statistics.paired_test(cell[:1], base[:1])["significant"]
    with pytest.raises(StatisticsError, match="2 seeds and its baseline 3"):
        statistics.paired_test(cell, base + [write_run(tmp_path / "base2", {"official": outcomes(base_correct)},
                                                       "softmax", seed=2)])


def test_within_noise_marks():
    assert statistics.within_noise({"p_value": 0.2, "same_direction": True}) == (True, "McNemar p = 0.2 >= 0.05")
    assert statistics.within_noise({"p_value": 0.001, "same_direction": True})[0] is False
    assert statistics.within_noise({"p_value": 0.001, "same_direction": False})[0] is True
    assert statistics.within_noise(None, (0.5, 0.6), (0.55, 0.7))[0] is True
    assert statistics.within_noise(None, (0.5, 0.6), (0.61, 0.7))[0] is False
    with pytest.raises(StatisticsError):
        statistics.within_noise(None, (None, None), (0.5, 0.6))


def test_a_clear_gain_is_not_marked_as_noise(tmp_path):
    n = 500
    base = write_run(tmp_path / "tiny_toy_softmax", {"official": outcomes(np.arange(n) < 250)}, "softmax")
    cell = write_run(tmp_path / "tiny_toy_l2", {"official": outcomes(np.arange(n) < 320)})
    comparison = statistics.compare_to_baseline([cell], [base])
    assert comparison["difference"] == pytest.approx(0.14)
    assert comparison["within_noise"] is False and comparison["test"]["p_value"] < 1e-15


def test_report_shows_statistics_and_protocol_checks(tmp_path):
    data = build_prepared_dataset(tmp_path / "tiny", folds=2, subjects=4)
    items = {f: json.loads((data / f / "test_items.json").read_text()) for f in ("fold_00", "fold_01")}
    rng = np.random.default_rng(0)
    runs = []
    for variant, rate in (("softmax", 0.5), ("l2", 0.95)):
        folds = {}
        for fold, entries in items.items():
            labels = np.array([e["label"] for e in entries])
            right = rng.random(labels.size) < rate
            folds[fold] = (labels, np.where(right, labels, (labels + 1) % 6))
        run = write_run(tmp_path / "runs" / f"tiny_toy_{variant}", folds, variant, data=str(data))
        for fold, entries in items.items():   # the real items' numbers and sources
            predictions = json.loads((run / fold / "predictions.json").read_text())
            for p, e in zip(predictions, entries):
                p.update(item=e["item"], source=e["source"])
            (run / fold / "predictions.json").write_text(json.dumps(predictions))
        runs.append(run)
    summary = json.loads((runs[1] / "summary.json").read_text())
    summary["pooled"]["balance_sensitivity"] = 0.8
    (runs[1] / "summary.json").write_text(json.dumps(summary))
    text = report.build_report(runs, tmp_path / "report.md", checks=False)
    # Table 4: the balance point beside the arg-max rates, each labelled.
    assert "| balance point sens. = spec. | arg-max sensitivity | arg-max specificity |" in text
    assert "| tiny | toy | l2 | 80.00 | 50.00 | 50.00 |" in text and "| tiny | toy | softmax | – | 50.00 |" in text
    assert "## Statistics over folds and seeds" in text and "## Protocol checks" not in text
    assert "| tiny | toy | l2 | 1 | 2 |" in text
    comparison = statistics.compare_to_baseline([runs[1]], [runs[0]])
    assert (f"| tiny | toy | l2 | softmax | {100 * comparison['difference']:+.2f} | "
            f"{comparison['test']['pairs'][0]['only_run_correct']} / "
            f"{comparison['test']['pairs'][0]['only_baseline_correct']} | "
            f"{comparison['test']['p_value']:.3g} | **no**") in text
    assert report.build_report(runs, tmp_path / "r.md", baseline=None, checks=False).count("McNemar p |") == 0


def test_report_groups_seeds_into_cells(tmp_path):
    n = 200
    runs = [write_run(tmp_path / f"{variant}_seed{s}", {"official": outcomes(np.arange(n) < right + 4 * s)},
                      variant, seed=s)
            for variant, right in (("softmax", 100), ("l2", 160)) for s in (0, 1, 2)]
    text = report.build_report(runs, tmp_path / "report.md", checks=False)
    l2 = statistics.cell_statistics(runs[3:])
    assert l2["std_over_seeds"] == pytest.approx(np.std([0.80, 0.82, 0.84], ddof=1))
    assert (f"| tiny | toy | l2 | 3 | 1 | {100 * l2['mean_over_folds']:.2f} (one) "
            f"| {100 * l2['mean_over_seeds']:.2f} ± {100 * l2['std_over_seeds']:.2f} |") in text
    assert "| tiny | toy | l2 | softmax | +30.00 | 60 / 0, 60 / 0, 60 / 0 |" in text
    # Explicit groups: every run its own cell, so no seeds and no pairing of seeds.
    text = report.build_report(runs, tmp_path / "each.md", seeds_groups=[[r] for r in runs], checks=False)
    assert text.count("| tiny | toy | l2 | 1 | 1 |") == 3
