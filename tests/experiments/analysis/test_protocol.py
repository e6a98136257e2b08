"""experiments/analysis/protocol.py on prepared datasets written by data_prep's own writer: a leaked subject,
exact and near-duplicate images (a copy; a brightened, JPEG-recompressed copy), a clean dataset, the
fold manifest's hash; and the model-selection statement read from run folders."""
import functools
import io
import json

import numpy as np
import pytest
from PIL import Image

from data_prep.folds import Split
from data_prep.prepared import ITEMS, MANIFEST, PreparedDataset, fold_name
from data_prep.writer import write_split
from experiments.analysis import protocol
from experiments.reporting import report
from nets.experiment import write_experiment
from tests.prepared_fixture import build_prepared_dataset

SIZE = 48


class _NoBar:
    def update(self, _):
        pass


def smooth_images(count, seed=0):
    """Distinct face-sized images: random 6x6 fields smoothly enlarged (pHash needs structure)."""
    rng = np.random.default_rng(seed)
    fields = rng.integers(0, 256, (count, 6, 6)).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(f).resize((SIZE, SIZE), Image.BICUBIC)) for f in fields])


def brightened_jpeg(image):
    """The image 12 levels brighter, saved as JPEG (quality 90) and decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image.astype(int) + 12, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


def build_dataset(out, images, subjects, folds, sources=None):
    """A K-fold prepared dataset of ``images`` (N, S, S) with the given subject per image and
    ``folds`` = [(train items, test items)], written by data_prep.writer (one crop per image)."""
    out.mkdir(parents=True)
    labels = [i % 2 for i in range(len(images))]
    sources = sources or [f"image{i}.png" for i in range(len(images))]
    store = np.asarray(images)[:, np.newaxis]
    splits = {fold_name(k): write_split(out / fold_name(k), Split(fold_name(k), train, test), k, store,
                                        labels, subjects, sources, 0, _NoBar())
              for k, (train, test) in enumerate(folds)}
    (out / ITEMS).write_text(json.dumps([{"item": i, "source": s, "label": l, "subject": subject}
                                         for i, (s, l, subject) in enumerate(zip(sources, labels, subjects))]))
    (out / MANIFEST).write_text(json.dumps({"dataset": "tiny", "classes": ["a", "b"], "num_classes": 2,
                                            "image_size": SIZE, "channels": 1, "crops": 1, "seed": 0,
                                            "splits": splits}))
    return out


def two_folds(n, per_subject=4):
    """Subjects of ``per_subject`` images; even subjects test in fold 0, odd ones in fold 1."""
    subjects = [f"S{i // per_subject}" for i in range(n)]
    even = [i for i in range(n) if (i // per_subject) % 2 == 0]
    odd = [i for i in range(n) if (i // per_subject) % 2 == 1]
    return subjects, [(odd, even), (even, odd)]


def test_a_clean_dataset_is_subject_disjoint_without_duplicates(tmp_path):
    subjects, folds = two_folds(24)
    root = build_dataset(tmp_path / "clean", smooth_images(24), subjects, folds)
    check = protocol.check_dataset(root, progress=False)
    for split in ("fold_00", "fold_01"):
        assert check["subjects"][split]["disjoint"] is True
        assert check["subjects"][split]["matches_manifest"] is True
        assert check["subjects"][split]["parts"] == {"train": {"items": 12, "subjects": 3},
                                                     "test": {"items": 12, "subjects": 3}}
        pair = check["duplicates"]["splits"][split]["train/test"]
        assert (pair["images"], pair["exact"], pair["near"]) == (12, 0, 0)
    assert check["duplicates"]["hashed"] == "lmdb"      # the fixture's sources are not files


def test_a_leaked_subject_is_found_even_when_the_manifest_denies_it(tmp_path):
    subjects, folds = two_folds(24)
    subjects[4] = "S0"      # an image of S0 (the test subject of fold 0) among S1's, in fold 0's train
    root = build_dataset(tmp_path / "leak", smooth_images(24), subjects, folds)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["splits"]["fold_00"]["train"]["subjects"] = ["S1", "S3", "S5"]   # what a bad prepare claimed
    (root / MANIFEST).write_text(json.dumps(manifest))
    report_ = protocol.subject_disjointness(root)
    assert report_["fold_00"]["disjoint"] is False
    assert report_["fold_00"]["overlaps"] == {"train/test": ["S0"]}
    assert report_["fold_00"]["matches_manifest"] is False
    # Two folds are each other's complement: S0 leaks into fold 1 the other way round.
    assert report_["fold_01"]["overlaps"] == {"train/test": ["S0"]}
    assert report_["fold_01"]["matches_manifest"] is True


@pytest.mark.parametrize("hashed", ["lmdb", "sources"])
def test_exact_and_near_duplicates_across_train_and_test_are_found(tmp_path, hashed):
    images = smooth_images(24)
    subjects, folds = two_folds(24)
    train0, test0 = folds[0]
    images[test0[0]] = images[train0[0]]                    # byte-identical copy
    images[test0[1]] = brightened_jpeg(images[train0[1]])   # brighter, re-encoded copy
    assert not np.array_equal(images[test0[1]], images[train0[1]])
    sources = None
    if hashed == "sources":
        (tmp_path / "src").mkdir()
        sources = [str(tmp_path / "src" / f"face{i}.png") for i in range(24)]
        for image, path in zip(images, sources):
            Image.fromarray(image).save(path)
    root = build_dataset(tmp_path / "dup", images, subjects, folds, sources)
    check = protocol.duplicates(root, progress=False)
    assert check["hashed"] == hashed
    name = (lambda i: sources[i]) if sources else (lambda i: f"image{i}.png")
    for split in ("fold_00", "fold_01"):
        pair = check["splits"][split]["train/test"]
        assert (pair["exact"], pair["exact_pairs"], pair["near"]) == (1, 1, 1)
    fold0 = check["splits"]["fold_00"]["train/test"]
    assert fold0["exact_examples"] == [[name(test0[0]), name(train0[0])]]
    assert fold0["near_examples"][0][:2] == [name(test0[1]), name(train0[1])]
    assert fold0["near_examples"][0][2] <= protocol.NEAR_DUPLICATE_BITS
    # Fold 1 swaps the parts: the same pairs, seen from the other side.
    assert check["splits"]["fold_01"]["train/test"]["exact_examples"] == [[name(train0[0]), name(test0[0])]]


def test_hamming_nearest_counts_bits():
    high = 2 ** 63 + 2 ** 62
    distances, nearest = protocol.hamming_nearest([0b1011, high], [0, 0b1111, high + 1])
    assert distances.tolist() == [1, 1] and nearest.tolist() == [1, 2]


def test_the_fold_manifest_hash_changes_when_a_split_changes(tmp_path):
    subjects, folds = two_folds(24)
    images = smooth_images(24)
    first = protocol.manifest_hashes(build_dataset(tmp_path / "a", images, subjects, folds))
    again = protocol.manifest_hashes(build_dataset(tmp_path / "b", images, subjects, folds))
    assert again["splits"] == first["splits"] and again["folds"] == first["folds"]
    moved = [(list(train), list(test)) for train, test in folds]
    moved[1][0].remove(0)                                # item 0 from fold 1's train to its test
    moved[1][1].append(0)
    changed = protocol.manifest_hashes(build_dataset(tmp_path / "c", images, subjects, moved))
    assert changed["splits"]["fold_00"] == first["splits"]["fold_00"]
    assert changed["splits"]["fold_01"] != first["splits"]["fold_01"]
    assert changed["folds"] != first["folds"] and changed["manifest"] != first["manifest"]


def write_trained_fold(fold_dir, data, split, watched, iterations=20, scored=None, validation=False,
                       test_records=None):
    """A fold folder as experiments.running.crossval leaves it, without training: real nets, result files.
    ``test_records``: size test_iter from the watched part's size, as training does (default: 1)."""
    write_experiment(fold_dir, net="toy", variant="softmax", num_classes=6, input_size=24,
                     train_source=data / split / "train_lmdb", test_source=data / split / f"{watched}_lmdb",
                     test_iter=None if test_records else 1, test_records=test_records,
                     snapshot_prefix=fold_dir / "snapshot", max_iter=iterations)
    (fold_dir / "training.json").write_text(json.dumps({"iterations": iterations, "train_seconds": 1.0}))
    (fold_dir / "result.json").write_text(json.dumps(
        {"accuracy": 0.5, "snapshot": f"snapshot_iter_{scored or iterations}.caffemodel"}))
    if validation:
        (fold_dir / "validation").mkdir()
        (fold_dir / "validation" / "result.json").write_text(json.dumps({"accuracy": 0.4}))


def write_run_config(run_dir, data, folds):
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"tool": "crossval", "data": str(data), "dataset": "tiny",
                                                     "net": "toy", "variant": "softmax", "iters": 20}))
    (run_dir / "summary.json").write_text(json.dumps({"folds": folds}))


def test_model_selection_is_read_from_the_run_folder(tmp_path):
    kfold = build_prepared_dataset(tmp_path / "tiny", folds=2, subjects=4)
    run = tmp_path / "kfold_run"
    write_run_config(run, kfold, ["fold_00", "fold_01"])
    for fold in ("fold_00", "fold_01"):
        write_trained_fold(run / fold, kfold, fold, "test")
    selection = protocol.model_selection(run)
    assert not selection["selection_on_test"] and selection["same_solver"]
    assert [f["watched"] for f in selection["folds"]] == ["test", "test"]
    assert "final snapshot (iteration 20)" in selection["statement"]

    # A fold that scored an earlier snapshot while watching its test part is flagged.
    write_trained_fold(run / "fold_01", kfold, "fold_01", "test", scored=10)
    selection = protocol.model_selection(run)
    assert selection["selection_on_test"] and "fold_01 scored a snapshot other than the final" in selection["statement"]

    official = build_prepared_dataset(tmp_path / "fer", subjects=6, official=True, dataset="fer2013")
    fer_run = tmp_path / "fer_run"
    write_run_config(fer_run, official, ["official"])
    write_trained_fold(fer_run / "official", official, "official", "val", validation=True)
    selection = protocol.model_selection(fer_run)
    assert selection["folds"][0]["watched"] == "val" and selection["folds"][0]["validation_scored"]
    assert selection["statement"].startswith("validation on the val part (FER2013: PublicTest)")


def test_folds_of_different_test_sizes_are_no_alarm_but_a_changed_base_lr_is(tmp_path):
    # The main job's folds: subjects split unevenly, so each fold's test part has its own size and
    # its solver its own test_iter. That cannot select on test; another base_lr in one fold can.
    data = build_prepared_dataset(tmp_path / "tiny", folds=2, subjects=5)
    run = tmp_path / "tiny_toy_softmax"
    write_run_config(run, data, ["fold_00", "fold_01"])
    dataset = PreparedDataset.open(data)
    for fold in ("fold_00", "fold_01"):
        write_trained_fold(run / fold, data, fold, "test", test_records=dataset.record_count(fold, "test"))
    solvers = [(run / fold / "toy_softmax_solver.prototxt").read_text() for fold in ("fold_00", "fold_01")]
    test_iters = [line for text in solvers for line in text.splitlines() if line.startswith("test_iter")]
    assert len(set(test_iters)) == 2                     # the folds' solvers do differ, in test_iter
    selection = protocol.model_selection(run)
    assert selection["same_solver"] and not selection["selection_on_test"]
    assert "DIFFER" not in selection["statement"]

    solver = run / "fold_01" / "toy_softmax_solver.prototxt"
    text = solver.read_text()
    base_lr = next(line for line in text.splitlines() if line.startswith("base_lr"))
    solver.write_text(text.replace(base_lr, "base_lr: 0.5"))
    selection = protocol.model_selection(run)
    assert selection["selection_on_test"] and selection["differing_solver_fields"] == ["base_lr"]
    assert "the solver settings DIFFER between folds (base_lr)" in selection["statement"]


def test_the_report_writes_the_protocol_checks(tmp_path):
    data = build_prepared_dataset(tmp_path / "tiny", folds=2, subjects=4)
    run = tmp_path / "tiny_toy_softmax"
    write_run_config(run, data, ["fold_00", "fold_01"])
    for fold in ("fold_00", "fold_01"):
        write_trained_fold(run / fold, data, fold, "test")
    protocol.write_run_checks(run)          # what crossval does when a run finishes
    runs = [report.load_run(run)]
    checks = report.collect_protocol(runs)
    text = "\n".join(report.protocol_section(checks))
    hashes = checks["datasets"][str(data)]["hashes"]
    assert f"fold manifest sha256 (every split's parts: items, labels, subjects, source names) `{hashes['folds']}`" in text
    assert "| fold_00 | `" in text and "| train 24, test 24 | train 2, test 2 | train/test: none |" in text
    assert "| fold_00 | train/test | 24 | 0 (0) | 0 |" in text
    assert "- tiny_toy_softmax: the final snapshot (iteration 20) of every fold was scored" in text
    (run / "fold_01" / "training.json").unlink()
    protocol.write_run_checks(run)
    text = "\n".join(report.protocol_section(report.collect_protocol([report.load_run(run)])))
    assert "- tiny_toy_softmax: not checked: " in text and "fold_01/training.json is missing" in text
    # A cross-database run's training and test databases are both checked.
    other = build_prepared_dataset(tmp_path / "other", folds=2, subjects=4, dataset="other")
    crossdb = tmp_path / "crossdb_tiny_toy_l2"
    crossdb.mkdir()
    (crossdb / "config.json").write_text(json.dumps({"tool": "crossdb", "data": str(data), "dataset": "tiny",
                                                     "test_data": [str(other)], "net": "toy", "variant": "l2"}))
    assert list(report.collect_protocol([report.load_run(crossdb)], checks={str(data): {"missing": "x"}})
                ["datasets"]) == [str(data), str(other)]
    moved = tmp_path / "moved_run"
    write_run_config(moved, tmp_path / "gone", [])
    assert "Not checked:" in "\n".join(report.protocol_section(report.collect_protocol([report.load_run(moved)])))


def test_the_progress_bar_does_not_change_the_hashes(tmp_path, monkeypatch):
    # Shown or not, the bar must not stand in for a hash. A bar that redraws at every
    # update (as a long run's does now and then) returns True from update().
    subjects, folds = two_folds(24)
    root = build_dataset(tmp_path / "clean", smooth_images(24), subjects, folds)
    quiet = protocol.item_hashes(root, progress=False)
    monkeypatch.setattr(protocol, "tqdm", functools.partial(protocol.tqdm, mininterval=0, miniters=1))
    shown = protocol.item_hashes(root, progress=True)
    assert shown == quiet and all(isinstance(value, tuple) for value in shown[0].values())
