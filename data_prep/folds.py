"""Splits of a dataset: person-independent folds, CK+'s standard split, official splits.

Person-independent K-fold cross-validation puts every subject in exactly one
test fold, so no face is tested on a net that saw the same person. Folds are
stratified by class as far as subjects allow: subjects, largest first (ties
in a seeded random order), go to the fold where their class counts bring the
fold's per-class counts closest to the ideal (class total / K), by squared
difference. The literature's standard CK+ split instead sorts subject IDs in
ascending order and deals them to the folds in turn (fold f holds the f-th,
(f+K)-th, (f+2K)-th... subject: steps of K = 10).
"""
from dataclasses import dataclass, field

import numpy as np

from data_prep.items import natural_key

SPLIT_METHODS = ("folds", "ckplus-standard", "official")


@dataclass
class Split:
    """One train/test (/val) partition, as item indices."""
    name: str
    train: list
    test: list
    val: list = field(default_factory=list)


def _class_matrix(subjects, labels, num_classes):
    names = sorted(set(subjects), key=natural_key)
    position = {name: i for i, name in enumerate(names)}
    counts = np.zeros((len(names), num_classes), dtype=np.int64)
    np.add.at(counts, ([position[s] for s in subjects], list(labels)), 1)
    return names, counts


def _check_enough_subjects(names, k):
    if k < 2:
        raise ValueError(f"the number of folds must be >= 2, got {k}")
    if len(names) < k:
        raise ValueError(f"{len(names)} subjects cannot fill {k} person-independent folds; "
                         f"use --folds {max(2, len(names))} or fewer")


def stratified_subject_folds(subjects, labels, k, seed, num_classes=None):
    """{subject: fold} with every subject in one fold and class counts balanced across folds."""
    if len(subjects) != len(labels):
        raise ValueError("subjects and labels must have the same length")
    num_classes = num_classes or (max(labels) + 1)
    names, counts = _class_matrix(subjects, labels, num_classes)
    _check_enough_subjects(names, k)
    tie_break = np.random.default_rng(seed).permutation(len(names))
    order = sorted(range(len(names)), key=lambda i: (-counts[i].sum(), tie_break[i]))
    target = counts.sum(axis=0) / k
    fold_counts = np.zeros((k, num_classes))
    fold_sizes = np.zeros(k, dtype=np.int64)
    assignment = {}
    for i in order:
        before = ((fold_counts - target) ** 2).sum(axis=1)
        after = ((fold_counts + counts[i] - target) ** 2).sum(axis=1)
        # the cheapest fold; among equals the one with fewest subjects, then the lowest index
        fold = int(np.lexsort((np.arange(k), fold_sizes, np.round(after - before, 9)))[0])
        assignment[names[i]] = fold
        fold_counts[fold] += counts[i]
        fold_sizes[fold] += 1
    return assignment


def ckplus_standard_folds(subjects, k=10):
    """{subject: fold}: subject IDs in ascending (natural) order, dealt to the folds in steps of k."""
    names = sorted(set(subjects), key=natural_key)
    _check_enough_subjects(names, k)
    return {name: rank % k for rank, name in enumerate(names)}


def check_subject_disjoint(split, subjects):
    """Raise AssertionError if a subject of ``split``'s test (or val) items is also in its train items."""
    train = {subjects[i] for i in split.train}
    for part in ("test", "val"):
        shared = train & {subjects[i] for i in getattr(split, part)}
        if shared:
            raise AssertionError(f"{split.name}: subjects {sorted(shared)[:5]} are in both train and {part}; "
                                 "the folds are not person-independent")


def fold_splits(subjects, assignment, k):
    """Splits fold_00..fold_{k-1}: fold f tests its subjects' items and trains on all others.

    Every split is checked for subject-disjointness, and every item is tested
    exactly once across the folds.
    """
    folds = [assignment[s] for s in subjects]
    splits = []
    for fold in range(k):
        test = [i for i, f in enumerate(folds) if f == fold]
        if not test:
            raise ValueError(f"fold {fold} has no test items; use fewer folds")
        train = [i for i, f in enumerate(folds) if f != fold]
        split = Split(f"fold_{fold:02d}", train, test)
        check_subject_disjoint(split, subjects)
        splits.append(split)
    tested = sorted(i for split in splits for i in split.test)
    assert tested == list(range(len(subjects))), "every item must be tested exactly once"
    return splits


def official_split(usages):
    """The single split "official" from each item's usage (train / val / test)."""
    parts = {"train": [], "val": [], "test": []}
    for i, usage in enumerate(usages):
        if usage not in parts:
            raise ValueError(f"item {i} has no official split (usage {usage!r})")
        parts[usage].append(i)
    if not parts["train"] or not parts["test"]:
        raise ValueError("the official split needs train and test items")
    return [Split("official", parts["train"], parts["test"], parts["val"])]
