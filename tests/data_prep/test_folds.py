"""Person-independent, class-stratified folds; CK+'s standard split; the official split."""
import numpy as np
import pytest

from data_prep.folds import (Split, check_subject_disjoint, ckplus_standard_folds, fold_splits,
                             official_split, stratified_subject_folds)


def _uneven_dataset(rng, subjects=40, classes=7):
    """Subjects with different numbers of images and different classes, like CK+."""
    subject_ids, labels = [], []
    for number in range(subjects):
        shown = rng.choice(classes, size=rng.integers(1, 5), replace=False)
        for label in shown:
            for _ in range(rng.integers(1, 5)):
                subject_ids.append(f"S{number:03d}")
                labels.append(int(label))
    return subject_ids, np.array(labels)


def test_folds_are_person_independent_and_cover_every_item(rng):
    subjects, labels = _uneven_dataset(rng)
    assignment = stratified_subject_folds(subjects, labels, 10, seed=3)
    splits = fold_splits(subjects, assignment, 10)
    assert [s.name for s in splits] == [f"fold_{k:02d}" for k in range(10)]
    tested = []
    for split in splits:
        train_subjects = {subjects[i] for i in split.train}
        test_subjects = {subjects[i] for i in split.test}
        assert not train_subjects & test_subjects
        assert sorted(split.train + split.test) == list(range(len(subjects)))
        tested += split.test
    assert sorted(tested) == list(range(len(subjects)))


def test_folds_are_stratified_by_class(rng):
    subjects, labels = _uneven_dataset(rng, subjects=60)
    k = 5
    assignment = stratified_subject_folds(subjects, labels, k, seed=0)
    per_fold = np.zeros((k, 7))
    np.add.at(per_fold, ([assignment[s] for s in subjects], labels), 1)
    target = np.bincount(labels, minlength=7) / k
    # largest number of images one subject has of each class: the granularity subjects allow
    largest = np.zeros(7)
    for subject in set(subjects):
        mask = np.array([s == subject for s in subjects])
        largest = np.maximum(largest, np.bincount(labels[mask], minlength=7))
    assert np.all(np.abs(per_fold - target) <= largest)
    # and clearly better than dealing subjects to folds without looking at classes
    naive = {s: i % k for i, s in enumerate(sorted(set(subjects)))}
    naive_per_fold = np.zeros((k, 7))
    np.add.at(naive_per_fold, ([naive[s] for s in subjects], labels), 1)
    assert ((per_fold - target) ** 2).sum() < 0.5 * ((naive_per_fold - target) ** 2).sum()


def test_balanced_subjects_give_exactly_balanced_folds():
    subjects = [f"P{s:03d}" for s in range(20) for _ in range(6)]
    labels = [label for _ in range(20) for label in range(6)]
    assignment = stratified_subject_folds(subjects, labels, 10, seed=1)
    assert sorted(np.bincount(list(assignment.values()))) == [2] * 10


def test_folds_are_deterministic_by_seed(rng):
    subjects, labels = _uneven_dataset(rng)
    first = stratified_subject_folds(subjects, labels, 10, seed=7)
    assert stratified_subject_folds(list(subjects), labels.copy(), 10, seed=7) == first
    others = [stratified_subject_folds(subjects, labels, 10, seed=seed) for seed in range(8, 12)]
    assert any(other != first for other in others)


def test_ckplus_standard_split_deals_ascending_ids_in_steps_of_ten():
    ids = [5, 10, 11, 14, 22, 26, 28, 32, 34, 35, 37, 42, 44, 45, 46, 50, 51, 52, 53, 54, 55, 56, 57]
    subjects = [f"S{n:03d}" for n in reversed(ids) for _ in range(2)]
    assignment = ckplus_standard_folds(subjects, 10)
    for rank, number in enumerate(ids):
        assert assignment[f"S{number:03d}"] == rank % 10
    # natural order: S99 sorts before S100
    assert ckplus_standard_folds(["S100", "S99", "S7"], 3) == {"S7": 0, "S99": 1, "S100": 2}


def test_too_few_subjects_is_a_clear_error():
    with pytest.raises(ValueError, match="3 subjects cannot fill 5 person-independent folds"):
        stratified_subject_folds(["a", "b", "c"], [0, 1, 2], 5, seed=0)
    with pytest.raises(ValueError, match="must be >= 2"):
        ckplus_standard_folds(["a", "b"], 1)


def test_subject_leak_is_caught():
    subjects = ["A", "B", "A", "C"]
    with pytest.raises(AssertionError, match=r"\['A'\] are in both train and test"):
        check_subject_disjoint(Split("fold_00", train=[0, 1], test=[2, 3]), subjects)


def test_official_split():
    [split] = official_split(["train", "test", "val", "train", "test"])
    assert (split.name, split.train, split.val, split.test) == ("official", [0, 3], [2], [1, 4])
    with pytest.raises(ValueError, match="no official split"):
        official_split(["train", None])
