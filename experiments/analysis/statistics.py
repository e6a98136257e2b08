"""Statistics of run folders a reviewer can check: spread over folds and seeds, bootstrap
confidence intervals, and exact McNemar tests against a baseline cell (docs/statistics.md).

A *cell* is one configuration (dataset, net, variant, solver settings); each
seed of a cell is its own run folder, so a cell is a list of run folders whose
configs differ only in the seed. Everything is read from the run folders'
config.json, summary.json and each fold's predictions.json; nothing is
recomputed from models.

scipy computes the statistics (scipy.stats.bootstrap, scipy.stats.binomtest);
this module only decides what is resampled and what is paired.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from experiments.running.run_folder import PREDICTIONS, read_config, read_summary
from runtime.files import read_json

# Config keys that tell seeds of one cell apart; every other key defines the cell.
SEED_KEYS = ("seed",)
ALPHA = 0.05
CONFIDENCE = 0.95
RESAMPLES = 9999
BOOTSTRAP_SEED = 0


class StatisticsError(ValueError):
    """Run folders that cannot be compared or summarised as asked; the message says why."""


@dataclass(frozen=True)
class RunPredictions:
    """One finished run folder: its folds' accuracies and every test image's outcome.

    ``keys`` are (split, item) pairs, sorted; ``labels``, ``predictions`` and
    ``sources`` follow the same order.
    """
    run_dir: Path
    config: dict
    folds: tuple
    fold_accuracies: np.ndarray
    keys: tuple
    labels: np.ndarray
    predictions: np.ndarray
    sources: tuple

    @property
    def correct(self):
        return self.predictions == self.labels

    @property
    def seed(self):
        return self.config.get("seed")


def load_predictions(run_dir):
    """The predictions of a finished crossval run folder (its summary.json lists the folds)."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    summary = read_summary(run_dir)
    if summary is None:
        raise StatisticsError(f"{run_dir} is not finished (no summary.json); finish the run "
                              "(tools/crossval.py resumes it) before computing its statistics")
    entries = []
    for fold in summary["folds"]:
        path = run_dir / fold / PREDICTIONS
        if not path.is_file():
            raise StatisticsError(f"{path} is missing although {run_dir}/summary.json lists fold "
                                  f"{fold}; the run folder is damaged: rerun that fold")
        entries.extend((fold, p) for p in read_json(path))
    entries.sort(key=lambda e: (e[0], e[1]["item"]))
    keys = tuple((fold, int(p["item"])) for fold, p in entries)
    if len(set(keys)) != len(keys):
        raise StatisticsError(f"{run_dir}: a test image is listed twice in one fold's {PREDICTIONS}")
    return RunPredictions(
        run_dir=run_dir, config=config, folds=tuple(summary["folds"]),
        fold_accuracies=np.asarray(summary["fold_accuracies"], dtype=np.float64),
        keys=keys,
        labels=np.array([p["label"] for _, p in entries], dtype=np.int64),
        predictions=np.array([p["prediction"] for _, p in entries], dtype=np.int64),
        sources=tuple(p.get("source") for _, p in entries))


def cell_key(config):
    """What defines a cell: the config without its seed."""
    return tuple(sorted((k, repr(v)) for k, v in config.items() if k not in SEED_KEYS))


def group_seeds(run_dirs):
    """Run folders grouped into cells (same config up to the seed), in order of first appearance."""
    groups = {}
    for run_dir in run_dirs:
        groups.setdefault(cell_key(read_config(run_dir)), []).append(Path(run_dir))
    return list(groups.values())


def _as_runs(cell):
    runs = [run if isinstance(run, RunPredictions) else load_predictions(run) for run in cell]
    if not runs:
        raise StatisticsError("a cell needs at least one run folder")
    keys = {cell_key(run.config) for run in runs}
    if len(keys) > 1:
        raise StatisticsError("the run folders " + ", ".join(str(r.run_dir) for r in runs)
                              + " are not seeds of one cell: their configs differ in more than "
                              f"{'/'.join(SEED_KEYS)}")
    first = runs[0]
    for run in runs[1:]:
        if run.folds != first.folds or run.keys != first.keys:
            raise StatisticsError(f"{run.run_dir} and {first.run_dir} are seeds of one cell but were "
                                  "tested on different folds or images; rerun them on the same "
                                  "prepared dataset")
    return sorted(runs, key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0))


def single_split(runs):
    """True where the cell has one test split (FER2013's official): resample images, not folds."""
    return len(runs[0].folds) == 1


def bootstrap_ci(values, confidence=CONFIDENCE, n_resamples=RESAMPLES, seed=BOOTSTRAP_SEED):
    """BCa bootstrap interval of the mean of ``values`` (scipy.stats.bootstrap), seeded.

    All-equal values (every image right, or identical folds) have no spread to
    resample: the interval is that value itself.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise StatisticsError(f"a bootstrap interval needs at least 2 values, got {values.size}")
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="BCa", random_state=np.random.default_rng(seed),
                             vectorized=True, batch=max(1, 4_000_000 // values.size))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def cell_statistics(cell, confidence=CONFIDENCE, n_resamples=RESAMPLES, seed=BOOTSTRAP_SEED):
    """Mean ± std over folds and over seeds, and the bootstrap interval of a cell's accuracy.

    With A[s, f] the accuracy of seed s on fold f: over folds, the spread of
    the seed-averaged fold accuracies; over seeds, the spread of each seed's
    mean over folds. The interval resamples test images for a single split
    (each image's correctness averaged over seeds) and folds for K-fold (each
    fold's accuracy averaged over seeds): the units drawn independently.
    """
    runs = _as_runs(cell)
    table = np.stack([run.fold_accuracies for run in runs])          # seeds x folds
    per_fold, per_seed = table.mean(axis=0), table.mean(axis=1)
    if single_split(runs):
        units = np.mean([run.correct for run in runs], axis=0)
        over = "test images"
    else:
        units = per_fold
        over = "folds"
    low, high = bootstrap_ci(units, confidence, n_resamples, seed) if units.size > 1 else (None, None)
    return {
        "runs": [str(run.run_dir) for run in runs],
        "seeds": [run.seed for run in runs],
        "folds": list(runs[0].folds),
        "test_images": len(runs[0].keys),
        "accuracy": float(table.mean()),
        "mean_over_folds": float(per_fold.mean()),
        "std_over_folds": float(per_fold.std(ddof=1)) if per_fold.size > 1 else None,
        "mean_over_seeds": float(per_seed.mean()),
        "std_over_seeds": float(per_seed.std(ddof=1)) if per_seed.size > 1 else None,
        "ci_low": low, "ci_high": high, "ci_confidence": confidence, "ci_over": over,
        "ci_resamples": n_resamples, "ci_seed": seed,
    }


def matched_outcomes(run, baseline):
    """Per test image: (run correct, baseline correct), after checking both saw the same images.

    Images are matched by (split, item); the two runs must list the same ones,
    with the same labels and sources (two prepared copies can number items alike).
    """
    if run.keys != baseline.keys:
        only_run = sorted(set(run.keys) - set(baseline.keys))
        only_base = sorted(set(baseline.keys) - set(run.keys))
        raise StatisticsError(
            f"{run.run_dir} and {baseline.run_dir} were not tested on the same images "
            f"({len(run.keys)} vs {len(baseline.keys)}; only in the first: {len(only_run)}, e.g. "
            f"{only_run[:3]}; only in the second: {len(only_base)}, e.g. {only_base[:3]}). A paired "
            "test needs both cells run on the same prepared dataset and folds.")
    differs = np.nonzero((run.labels != baseline.labels)
                         | np.array([a != b for a, b in zip(run.sources, baseline.sources)]))[0]
    if differs.size:
        key = run.keys[differs[0]]
        raise StatisticsError(
            f"{run.run_dir} and {baseline.run_dir} number their test images alike but {differs.size} "
            f"of them differ in label or source (first: split {key[0]} item {key[1]}); they were "
            "tested on different prepared datasets: rerun one of them on the other's data")
    return run.correct, baseline.correct


def mcnemar_exact(correct, baseline_correct):
    """Exact McNemar test: the discordant pairs against Binomial(n, 1/2), two-sided (scipy).

    Returns (b, c, p): b images only ``correct`` gets right, c images only the baseline gets
    right, and the p-value (1 when there is no discordant pair).
    """
    correct = np.asarray(correct, dtype=bool)
    baseline_correct = np.asarray(baseline_correct, dtype=bool)
    if correct.shape != baseline_correct.shape:
        raise StatisticsError(f"paired outcomes differ in shape: {correct.shape} vs {baseline_correct.shape}")
    b = int(np.sum(correct & ~baseline_correct))
    c = int(np.sum(~correct & baseline_correct))
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return b, c, p


def _seed_pairs(runs, baselines):
    """Which seed of the cell is tested against which seed of the baseline."""
    if len(baselines) == 1:
        return [(run, baselines[0]) for run in runs]
    seeds, base_seeds = [r.seed for r in runs], [r.seed for r in baselines]
    if None not in seeds and None not in base_seeds and sorted(seeds) == sorted(base_seeds):
        by_seed = {r.seed: r for r in baselines}
        return [(run, by_seed[run.seed]) for run in runs]
    if len(runs) == len(baselines):
        return list(zip(runs, baselines))
    raise StatisticsError(f"the cell has {len(runs)} seeds and its baseline {len(baselines)}; a paired "
                          "test pairs seed with seed: run both with the same seeds")


def paired_test(cell, baseline, alpha=ALPHA):
    """Exact McNemar test of a cell against its baseline on the same test images, seed by seed.

    Each seed of the cell is paired with the baseline's run of the same seed
    (or the baseline's only run). The cell differs from the baseline only if
    every seed's test rejects at ``alpha`` in the same direction; the reported
    p-value is the largest of the seeds' (an intersection-union test, valid at
    ``alpha`` without a multiplicity correction).
    """
    runs, baselines = _as_runs(cell), _as_runs(baseline)
    pairs = []
    for run, base in _seed_pairs(runs, baselines):
        b, c, p = mcnemar_exact(*matched_outcomes(run, base))
        pairs.append({"run": str(run.run_dir), "baseline": str(base.run_dir), "seed": run.seed,
                      "baseline_seed": base.seed, "images": len(run.keys),
                      "only_run_correct": b, "only_baseline_correct": c, "p_value": p,
                      "difference": float(run.correct.mean() - base.correct.mean())})
    signs = {np.sign(pair["only_run_correct"] - pair["only_baseline_correct"]) for pair in pairs}
    p_value = max(pair["p_value"] for pair in pairs)
    return {"pairs": pairs, "p_value": p_value, "same_direction": len(signs) == 1 and 0 not in signs,
            "significant": p_value < alpha and len(signs) == 1 and 0 not in signs, "alpha": alpha,
            "difference": float(np.mean([pair["difference"] for pair in pairs]))}


def intervals_overlap(a, b):
    """Whether two (low, high) intervals share a point."""
    return a[0] <= b[1] and b[0] <= a[1]


def within_noise(test=None, interval=None, baseline_interval=None, alpha=ALPHA):
    """Whether a difference from the baseline is within noise, and why: (bool, reason).

    The paired test decides where there is one: p >= alpha (or seeds that
    disagree in direction) is noise. Without a paired test (no common test
    images), overlapping confidence intervals count as noise.
    """
    if test is not None:
        if test["p_value"] >= alpha:
            return True, f"McNemar p = {test['p_value']:.3g} >= {alpha}"
        if not test["same_direction"]:
            return True, "the seeds' differences point in opposite directions"
        return False, f"McNemar p = {test['p_value']:.3g} < {alpha}"
    if interval is None or baseline_interval is None or None in (*interval, *baseline_interval):
        raise StatisticsError("within_noise needs a paired test or two confidence intervals")
    if intervals_overlap(interval, baseline_interval):
        return True, "no paired test; the confidence intervals overlap"
    return False, "no paired test; the confidence intervals are disjoint"


def compare_to_baseline(cell, baseline, alpha=ALPHA, **ci_options):
    """Statistics of a cell and its baseline, their paired test and the within-noise mark."""
    cell_runs, base_runs = _as_runs(cell), _as_runs(baseline)
    ours, theirs = cell_statistics(cell_runs, **ci_options), cell_statistics(base_runs, **ci_options)
    try:
        test = paired_test(cell_runs, base_runs, alpha)
        unpaired = None
    except StatisticsError as error:
        test, unpaired = None, str(error)
    noise, reason = within_noise(test, (ours["ci_low"], ours["ci_high"]),
                                 (theirs["ci_low"], theirs["ci_high"]), alpha) \
        if test is not None or None not in (ours["ci_low"], theirs["ci_low"]) else (None, unpaired)
    return {"cell": ours, "baseline": theirs, "test": test, "unpaired_reason": unpaired,
            "difference": ours["accuracy"] - theirs["accuracy"], "within_noise": noise, "reason": reason}
