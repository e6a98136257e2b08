"""tools/crossval.py and tools/crossdb.py end to end on a tiny prepared dataset, with
real `caffe train` runs; tools/report.py on their run folders."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from runtime.caffe_env import REPO_ROOT
from tests.prepared_fixture import SEVEN_CLASSES, build_prepared_dataset
from experiments.analysis import metrics
from experiments.reporting import report
from tools import crossdb, crossval

ITERS = ["--iters", "40", "--batch-size", "16", "--base-lr", "0.01"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return build_prepared_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def finished_run(prepared, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    summary = crossval.main(["--data", str(prepared), "--net", "toy", "--variant", "l2_center",
                             "--runs-dir", str(runs), *ITERS])
    return runs / "tiny_toy_l2_center", summary


def test_crossval_writes_every_fold_and_the_summary(finished_run):
    run_dir, summary = finished_run
    for fold in ("fold_00", "fold_01", "fold_02"):
        for name in ("toy_l2_center_train_val.prototxt", "toy_l2_center_solver.prototxt",
                     "toy_l2_center_deploy.prototxt", "train.log", "snapshot_iter_40.caffemodel",
                     "predictions.json", "result.json", "training.json"):
            assert (run_dir / fold / name).is_file(), (fold, name)
    for name in ("config.json", "summary.json", "confusion.png", "roc.png", "training.png"):
        assert (run_dir / name).is_file(), name
    assert summary["folds"] == ["fold_00", "fold_01", "fold_02"]


def test_accuracy_equals_what_the_saved_predictions_give(finished_run):
    run_dir, summary = finished_run
    accuracies, pooled = [], np.zeros((6, 6), int)
    for fold in summary["folds"]:
        predictions = json.loads((run_dir / fold / "predictions.json").read_text())
        result = json.loads((run_dir / fold / "result.json").read_text())
        # Each prediction is the arg-max of the stored crop-averaged probabilities.
        for p in predictions:
            assert p["prediction"] == int(np.argmax(p["probabilities"]))
            assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        correct = sum(p["prediction"] == p["label"] for p in predictions)
        assert result["accuracy"] == pytest.approx(correct / len(predictions))
        accuracies.append(correct / len(predictions))
        pooled += metrics.confusion_matrix([p["label"] for p in predictions],
                                           [p["prediction"] for p in predictions], 6)
    assert summary["mean_accuracy"] == pytest.approx(np.mean(accuracies))
    assert summary["std_accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
    assert summary["pooled"]["confusion"] == pooled.tolist()


def test_unit_decisions_pool_over_every_fold(finished_run, prepared):
    # One decision per unit (a subject's images of one class, the fixture's "sequence"):
    # the mean of its images' probabilities; the pooled figure counts every fold's
    # decisions together, as the paper's k / 415 CK+ figures do (issue 22, item 3).
    run_dir, summary = finished_run
    correct = total = 0
    fold_accuracies = []
    for fold in summary["folds"]:
        by_unit = {}
        for p in json.loads((run_dir / fold / "predictions.json").read_text()):
            by_unit.setdefault(p["unit"], []).append(p)
        hits = sum(int(np.argmax(np.mean([p["probabilities"] for p in members], axis=0)))
                   == members[0]["label"] for members in by_unit.values())
        result = json.loads((run_dir / fold / "result.json").read_text())
        assert result["test_units"] == len(by_unit) == 2 * 6   # 2 subjects x 6 classes a fold
        assert result["unit_accuracy"] == pytest.approx(hits / len(by_unit))
        fold_accuracies.append(hits / len(by_unit))
        correct, total = correct + hits, total + len(by_unit)
    units = summary["units"]
    assert units["count"] == total == 36
    assert units["pooled_accuracy"] == pytest.approx(correct / total)
    assert units["mean_accuracy"] == pytest.approx(np.mean(fold_accuracies))
    assert summary["pooled_accuracy"] == pytest.approx(
        np.trace(summary["pooled"]["confusion"]) / np.sum(summary["pooled"]["confusion"]))


def test_the_toy_net_learns_the_tiny_dataset(finished_run):
    _, summary = finished_run
    assert summary["mean_accuracy"] > 0.6  # chance is 1/6


def test_test_items_are_person_independent_of_training(prepared, finished_run):
    run_dir, summary = finished_run
    for fold in summary["folds"]:
        test_subjects = {p["subject"] for p in json.loads((run_dir / fold / "predictions.json").read_text())}
        train_subjects = {f"S{s:03d}" for s in range(6)} - test_subjects
        assert test_subjects and train_subjects and not test_subjects & train_subjects


def test_a_killed_fold_restarts_and_finished_folds_are_not_redone(prepared, tmp_path):
    cmd = [sys.executable, str(REPO_ROOT / "tools" / "crossval.py"), "--data", str(prepared),
           "--net", "toy", "--variant", "softmax", "--runs-dir", str(tmp_path), *ITERS]
    run_dir = tmp_path / "tiny_toy_softmax"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while not ((run_dir / "fold_00" / "result.json").is_file()
               and (run_dir / "fold_01" / "train.log").is_file()):
        assert proc.poll() is None and time.time() < deadline, "crossval ended before the kill"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)   # the tool and its caffe train child
    proc.wait()
    assert not (run_dir / "fold_01" / "result.json").is_file()
    finished = (run_dir / "fold_00" / "result.json").stat().st_mtime_ns
    (run_dir / "fold_01" / "leftover.tmp").write_text("from the killed run")

    summary = crossval.main(cmd[2:])
    assert (run_dir / "fold_00" / "result.json").stat().st_mtime_ns == finished
    assert not (run_dir / "fold_01" / "leftover.tmp").exists()
    assert summary["folds"] == ["fold_00", "fold_01", "fold_02"]
    assert all((run_dir / f / "result.json").is_file() for f in summary["folds"])


def test_a_run_folder_with_another_config_is_never_overwritten(finished_run, prepared):
    run_dir, _ = finished_run
    before = (run_dir / "config.json").read_text()
    with pytest.raises(SystemExit, match="different configuration.*iters"):
        crossval.main(["--data", str(prepared), "--net", "toy", "--variant", "l2_center",
                       "--runs-dir", str(run_dir.parent), "--iters", "41", "--batch-size", "16",
                       "--base-lr", "0.01"])
    assert (run_dir / "config.json").read_text() == before


def test_bad_inputs_give_clear_errors(tmp_path, prepared, capsys):
    with pytest.raises(SystemExit, match="not a prepared dataset.*data_prep/prepare.py"):
        crossval.main(["--data", str(tmp_path), "--net", "toy", "--variant", "l2"])
    with pytest.raises(SystemExit) as refused:
        crossval.main(["--data", str(prepared), "--net", "toy", "--variant", "l2", "--max-folds", "4",
                       "--runs-dir", str(tmp_path)])
    assert refused.value.code == 2
    assert re.search(r"--max-folds 4: .* was prepared with 3 fold\(s\)", capsys.readouterr().err)
    with pytest.raises(SystemExit):  # argparse: unknown variant
        crossval.main(["--data", str(prepared), "--net", "toy", "--variant", "l3"])


def test_crossdb_trains_once_and_tests_on_the_other_database(prepared, tmp_path):
    other = build_prepared_dataset(tmp_path / "other", folds=2, subjects=4, seed=7, dataset="other")
    tests = crossdb.main(["--train-data", str(prepared), "--test-data", str(other), "--net", "toy",
                          "--variant", "l2", "--runs-dir", str(tmp_path), *ITERS])
    result = tests["test_other"]
    predictions = json.loads((tmp_path / "crossdb_tiny_toy_l2" / "test_other" / "predictions.json").read_text())
    assert len(predictions) == 4 * 6 * 2            # every image of the other database once
    assert result["accuracy"] == pytest.approx(np.mean([p["label"] == p["prediction"] for p in predictions]))
    assert result["accuracy"] > 0.6


def test_report_puts_paper_numbers_beside_ours(finished_run, tmp_path):
    run_dir, summary = finished_run
    config = json.loads((run_dir / "config.json").read_text())
    # The paper column: the same numbers filed as a CK+ ResNet run must sit beside Table 7.
    ck_run = tmp_path / "ckplus_resnet_l2_center"
    ck_run.mkdir()
    (ck_run / "config.json").write_text(json.dumps(dict(config, dataset="ckplus", net="resnet")))
    (ck_run / "summary.json").write_text((run_dir / "summary.json").read_text())
    text = report.build_report([run_dir, ck_run], tmp_path / "report.md")
    ours = f"{100 * summary['mean_accuracy']:.2f} ± {100 * summary['std_accuracy']:.2f}"
    # Beside the mean of the folds: every fold pooled, per image and per unit (issue 22, item 3).
    pooled = f"{100 * summary['pooled_accuracy']:.2f}"
    units = f"{100 * summary['units']['pooled_accuracy']:.2f} of {summary['units']['count']}"
    assert f"| tiny | toy | l2_center | 3 | {ours} | {pooled} | {units} | – | – |" in text
    assert f"| CK+ | resnet | l2_center | 3 | {ours} | {pooled} | {units} | 97.59 | Table 7 |" in text
    assert "![tiny_toy_l2_center confusion]" in text


def test_an_official_split_trains_watches_validation_and_tests_once(tmp_path):
    data = build_prepared_dataset(tmp_path / "fer", subjects=6, official=True, dataset="fer2013")
    summary = crossval.main(["--data", str(data), "--net", "toy", "--variant", "l2",
                             "--runs-dir", str(tmp_path), *ITERS])
    run = tmp_path / "fer2013_toy_l2" / "official"
    result = json.loads((run / "result.json").read_text())
    test_items = {e["item"] for e in json.loads((data / "official" / "test_items.json").read_text())}
    assert {p["item"] for p in json.loads((run / "predictions.json").read_text())} == test_items
    val = json.loads((run / "validation" / "result.json").read_text())
    assert result["val_accuracy"] == val["accuracy"]
    assert summary["folds"] == ["official"] and summary["std_accuracy"] == 0.0


@pytest.fixture(scope="module")
def fer2013(tmp_path_factory):
    return build_prepared_dataset(tmp_path_factory.mktemp("fer") / "fer", official=True,
                                  dataset="fer2013")


def test_crossdb_scores_a_seven_class_model_over_the_test_databases_six(tmp_path):
    # A model that can answer neutral, tested on a six-class database: its arg-max is taken
    # over the six classes that database has, so no neutral answer counts as an error
    # (issue 22, item 4). The decision per unit is scored the same way.
    seven = build_prepared_dataset(tmp_path / "seven", official=True, dataset="fer2013",
                                   classes=SEVEN_CLASSES)
    six = build_prepared_dataset(tmp_path / "six", dataset="tiny")
    crossdb.main(["--train-data", str(seven), "--test-data", str(six), "--net", "toy",
                  "--variant", "softmax", "--runs-dir", str(tmp_path / "runs"), "--iters", "10",
                  "--batch-size", "16"])
    test_dir = tmp_path / "runs" / "crossdb_fer2013_toy_softmax" / "test_tiny"
    result = json.loads((test_dir / "result.json").read_text())
    predictions = json.loads((test_dir / "predictions.json").read_text())
    assert result["scored_classes"] == [0, 1, 2, 3, 4, 5]
    for p in predictions:
        assert len(p["probabilities"]) == 7
        assert p["prediction"] == int(np.argmax(p["probabilities"][:6]))
    correct = sum(p["prediction"] == p["label"] for p in predictions)
    assert result["accuracy"] == pytest.approx(correct / len(predictions))
    assert result["test_units"] == 6 * 6


def _printed_confusion(out, dataset):
    """The rows crossdb.py printed for ``dataset``: {class abbreviation: (percentages, n)}."""
    lines = out[out.index(f"{dataset}: confusion (%, rows true, columns predicted)"):].splitlines()
    rows = {}
    for line in lines[2:]:
        fields = line.split()
        if len(fields) != 8 or not fields[-1].isdigit():
            break
        rows[fields[0]] = ([float(v) for v in fields[1:7]], int(fields[7]))
    return rows


def test_crossdb_trains_on_fer2013_training_watching_publictest(fer2013, prepared, tmp_path, capsys):
    tests = crossdb.main(["--train-data", str(fer2013), "--test-data", str(prepared), "--net", "toy",
                          "--variant", "l2", "--runs-dir", str(tmp_path), *ITERS])
    run = tmp_path / "crossdb_fer2013_toy_l2"
    train_val = (run / "train" / "toy_l2_train_val.prototxt").read_text()
    assert f'source: "{fer2013 / "official" / "train_lmdb"}"' in train_val
    assert f'source: "{fer2013 / "official" / "val_lmdb"}"' in train_val   # PublicTest watched
    predictions = json.loads((run / "test_tiny" / "predictions.json").read_text())
    assert len(predictions) == 6 * 6 * 2       # a database with folds: every image
    result = tests["test_tiny"]
    assert result["accuracy"] > 0.5
    # Table 13's form: rows true, % of each row, as the saved predictions give.
    rows = _printed_confusion(capsys.readouterr().out, "tiny")
    assert list(rows) == ["An", "Di", "Fe", "Ha", "Sa", "Su"]
    for label, (percentages, count) in enumerate(rows.values()):
        mine = [p["prediction"] for p in predictions if p["label"] == label]
        assert count == len(mine) == 12
        assert percentages == pytest.approx([100 * mine.count(c) / count for c in range(6)], abs=0.01)


def test_crossdb_tests_fer2013_on_all_its_images_or_privatetest(fer2013, prepared, tmp_path, capsys):
    # Default: every FER2013 image (Training, PublicTest, PrivateTest), the only test set the
    # paper's cross-database figures fit (docs/recipe.md); --fer2013-test private: PrivateTest.
    tests = crossdb.main(["--train-data", str(prepared), "--test-data", str(fer2013), "--net", "toy",
                          "--variant", "l2", "--runs-dir", str(tmp_path), *ITERS])
    run = tmp_path / "crossdb_tiny_toy_l2"
    predictions = json.loads((run / "test_fer2013" / "predictions.json").read_text())
    everything = json.loads((fer2013 / "items.json").read_text())
    assert sorted(p["item"] for p in predictions) == [e["item"] for e in everything]
    assert tests["test_fer2013"]["test_images"] == len(everything) == 6 * 6 * 2
    assert json.loads((run / "config.json").read_text())["official_test"] == "all"
    by_item = {e["item"]: e for e in everything}
    assert all(p["label"] == by_item[p["item"]]["label"] for p in predictions)
    assert sum(n for _, n in _printed_confusion(capsys.readouterr().out, "fer2013").values()) == len(everything)

    tests = crossdb.main(["--train-data", str(prepared), "--test-data", str(fer2013), "--net", "toy",
                          "--variant", "l2", "--runs-dir", str(tmp_path), "--name", "private",
                          "--fer2013-test", "private", *ITERS])
    predictions = json.loads((tmp_path / "private" / "test_fer2013" / "predictions.json").read_text())
    private = json.loads((fer2013 / "official" / "test_items.json").read_text())
    assert sorted(p["item"] for p in predictions) == sorted(e["item"] for e in private)
    assert tests["test_fer2013"]["test_images"] == len(private)


def test_seed_and_transferred_lr_mult_reach_the_solver_the_nets_and_config(prepared, tmp_path):
    crossval.main(["--data", str(prepared), "--net", "toy", "--variant", "softmax", "--folds", "1",
                   "--iters", "10", "--batch-size", "16", "--seed", "7",
                   "--transferred-lr-mult", "0.25", "--runs-dir", str(tmp_path)])
    run = tmp_path / "tiny_toy_softmax"
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 7 and config["transferred_lr_mult"] == 0.25
    assert "random_seed: 7\n" in (run / "fold_00" / "toy_softmax_solver.prototxt").read_text()
    train_val = (run / "fold_00" / "toy_softmax_train_val.prototxt").read_text()
    conv = train_val[train_val.index('name: "conv1"'):]
    assert re.search(r"lr_mult: 0\.25\b", conv[:conv.index("layer {")])


def test_center_options_reach_the_center_loss_layer_and_config(prepared, tmp_path):
    crossval.main(["--data", str(prepared), "--net", "toy", "--variant", "l2_center", "--folds", "1",
                   "--iters", "10", "--batch-size", "16", "--center-lr-mult", "50",
                   "--center-filler", "gaussian", "--center-filler-std", "0.1",
                   "--center-decay-mult", "0", "--runs-dir", str(tmp_path)])
    run = tmp_path / "tiny_toy_l2_center"
    config = json.loads((run / "config.json").read_text())
    assert config["center_lr_mult"] == 50 and config["center_filler_std"] == 0.1
    assert config["center_filler"] == "gaussian" and config["center_decay_mult"] == 0
    train_val = (run / "fold_00" / "toy_l2_center_train_val.prototxt").read_text()
    layer = train_val[train_val.index('name: "center_loss_6cls"'):]
    layer = layer[:layer.index("\n}\n")]
    assert "lr_mult: 50.0" in layer and '\\"center_filler_std\\": 0.1' in layer
    assert "decay_mult: 0.0" in layer and '\\"center_filler\\": \\"gaussian\\"' in layer


def test_the_public_geometry_is_an_option_of_the_resnet_only(prepared, tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        crossval.main(["--data", str(prepared), "--net", "toy", "--variant", "softmax", "--max-folds", "1",
                       "--iters", "10", "--geometry", "public", "--runs-dir", str(tmp_path)])
    assert refused.value.code == 2 and "--geometry public" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())             # refused before a run folder was made


def test_a_run_folder_from_before_an_option_existed_is_reused_at_its_default(prepared, tmp_path):
    from experiments.running.run_folder import RunFolderError, prepare_run_dir
    from experiments.running.training import TrainingOptions
    config = {"tool": "crossval", **TrainingOptions(net="toy", variant="l2").config()}
    assert config["seed"] is None and config["transferred_lr_mult"] is None
    added = ("seed", "transferred_lr_mult", "scale")
    old = {key: value for key, value in config.items() if key not in added}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(old))
    prepare_run_dir(tmp_path / "run", config)
    with pytest.raises(RunFolderError, match="different configuration.*seed"):
        prepare_run_dir(tmp_path / "run", dict(config, seed=3))
