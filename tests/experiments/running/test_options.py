"""experiments/running/options.py: each training option defined once (flag, check, config.json key),
a run re-created from its own config.json, every input refused before a run folder exists, and
one flag name per meaning with the old spellings still accepted."""
import argparse
import json
import shutil
import re
from dataclasses import fields
from pathlib import Path

import pytest

from data_prep.prepared import PreparedDataset
from experiments.running.crossval import run_config
from experiments.running.options import OptionError, TrainingOptions, option_specs
from experiments.running.training import SNAPSHOT_EVERY_CPU, default_snapshot_every
from nets.catalog import NETS
from tests.prepared_fixture import build_prepared_dataset
from tools import crossdb, crossval, reproduce
from tools.training_args import add_training_arguments, training_options

QUICK = ["--max-folds", "1", "--iters", "10", "--batch-size", "16"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return build_prepared_dataset(tmp_path_factory.mktemp("data") / "tiny")


def refused(capsys, tool, argv, runs):
    """Run ``tool`` expecting a refusal: exit status 2, nothing written under ``runs``; its message."""
    with pytest.raises(SystemExit) as exit_info:
        tool.main(argv + ["--runs-dir", str(runs)])
    assert exit_info.value.code == 2
    assert not runs.exists() or not list(runs.iterdir()), "a refused run left files behind"
    return capsys.readouterr().err


def test_every_field_is_an_option_and_every_option_a_flag_of_the_training_tools(capsys):
    specs = option_specs()
    assert list(specs) == [f.name for f in fields(TrainingOptions)]
    assert len({spec.flag for spec in specs.values()}) == len(specs)      # one flag per option
    for tool in (crossval, crossdb):
        with pytest.raises(SystemExit):
            tool.parse_args(["--help"])
        help_text = capsys.readouterr().out
        for spec in specs.values():
            assert re.search(rf"(^|\s){re.escape(spec.flag)}\b", help_text), (tool.__name__, spec.flag)


def test_options_built_from_flags_equal_those_built_in_code(tmp_path):
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"")
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    args = parser.parse_args(["--net", "resnet", "--variant", "l2_center", "--iters", "30",
                              "--batch-size", "8", "--base-lr", "0.02", "--stepsize", "10",
                              "--weights", str(weights), "--solver-seed", "5", "--transferred-lr-mult",
                              "0.5", "--center-lr-mult", "2", "--center-filler", "gaussian",
                              "--center-filler-std", "0.1", "--center-decay-mult", "0",
                              "--sparseness-normalization", "sum",
                              "--geometry", "public", "--scale-label", "cpu", "--snapshot-every", "7"])
    assert training_options(args) == TrainingOptions(
        net="resnet", variant="l2_center", iters=30, batch_size=8, base_lr=0.02, stepsize=10,
        weights=weights, seed=5, transferred_lr_mult=0.5, center_lr_mult=2.0, center_filler="gaussian",
        center_filler_std=0.1, center_decay_mult=0.0, sparseness_normalization="sum",
        geometry="public", scale="cpu", snapshot_every=7)


def test_a_config_reads_back_into_the_same_options(tmp_path):
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"")
    options = TrainingOptions(net="resnet", variant="l2_center", iters=30, batch_size=8, base_lr=0.02,
                              stepsize=10, weights=weights, seed=5, transferred_lr_mult=0.5,
                              center_lr_mult=2.0, center_filler="gaussian", center_filler_std=0.1,
                              center_decay_mult=0.0, sparseness_normalization="sum", geometry="public",
                              scale="cpu")
    config = json.loads(json.dumps(options.config()))        # through JSON, as config.json
    again = TrainingOptions.from_config(config)
    assert again.config() == options.config() and again == options
    assert set(config) == {name for name, spec in option_specs().items() if spec.in_config}


def test_a_center_loss_config_records_the_centers_as_trained():
    # The center defaults changed (zeros, decay 0 -> xavier, 2): a center-loss run records
    # them resolved, so an older run folder is refused rather than reused at the new defaults.
    config = TrainingOptions(net="toy", variant="l2_center").config()
    assert (config["center_filler"], config["center_decay_mult"]) == ("xavier", 2.0)
    assert TrainingOptions(net="toy", variant="l2").config()["center_filler"] is None
    with pytest.raises(OptionError, match="the std is the gaussian filler's"):
        TrainingOptions(net="toy", variant="center", center_filler_std=0.5)
    # An older config.json without a later option: that option at its default.
    assert TrainingOptions.from_config({"net": "toy", "variant": "l2", "tool": "crossval"}) == \
        TrainingOptions(net="toy", variant="l2")


def test_a_real_run_is_re_created_from_its_own_folder(prepared, tmp_path):
    crossval.main(["--data", str(prepared), "--net", "toy", "--variant", "softmax", *QUICK,
                   "--solver-seed", "3", "--base-lr", "0.02", "--runs-dir", str(tmp_path)])
    run = tmp_path / "tiny_toy_softmax"
    written = json.loads((run / "config.json").read_text())
    options = TrainingOptions.from_config(run)
    assert options == TrainingOptions(net="toy", variant="softmax", iters=10, batch_size=16,
                                      base_lr=0.02, seed=3)
    # The same options on the same data give the same config: the run is reused, not refused.
    assert run_config(PreparedDataset.open(prepared), options) == written


@pytest.mark.parametrize("flags,said", [
    (["--iters", "0"], r"--iters 0: give a positive iteration count"),
    (["--iters", "-5"], r"--iters -5: give a positive iteration count"),
    (["--batch-size", "0"], r"--batch-size 0: give a positive count"),
    (["--batch-size", "500"], r"--batch-size 500: .*fold_0\d holds only \d+ training records.*"
                              r"Give --batch-size \d+ or less"),
    (["--base-lr", "0"], r"--base-lr 0.0: give a learning rate above 0"),
    (["--stepsize", "-1"], r"--stepsize -1: give a positive"),
    (["--solver-seed", "-1"], r"--solver-seed -1: give an integer >= 0"),
    (["--snapshot-every", "0"], r"--snapshot-every 0: give a positive"),
    (["--weights", "/nonexistent/w.caffemodel"], r"--weights /nonexistent/w.caffemodel: give an existing"),
    (["--max-folds", "0"], r"--max-folds 0: .* give a number from 1 to 3"),
])
def test_bad_values_are_refused_before_a_run_folder(prepared, tmp_path, capsys, flags, said):
    base = ["--data", str(prepared), "--net", "toy", "--variant", "l2", "--iters", "10",
            "--batch-size", "16"]
    message = refused(capsys, crossval, base + flags, tmp_path / "runs")
    assert re.search(said, message), message


def test_the_stored_size_must_be_the_nets_input(prepared, tmp_path, capsys):
    message = refused(capsys, crossval, ["--data", str(prepared), "--net", "resnet", "--variant", "l2",
                                         *QUICK], tmp_path / "runs")
    assert "48x48" in message and "resnet net takes 112x112" in message and "--size 112" in message
    big = build_prepared_dataset(tmp_path / "big", folds=2, subjects=2, images_per_class=1, size=112)
    message = refused(capsys, crossval, ["--data", str(big), "--net", "toy", "--variant", "l2", *QUICK],
                      tmp_path / "runs")
    assert "112x112" in message and "toy net takes 48x48" in message and "resnet" in message
    message = refused(capsys, crossdb, ["--train-data", str(prepared), "--test-data", str(big),
                                        "--net", "toy", "--variant", "l2", "--iters", "10"],
                      tmp_path / "runs")
    assert f"--test-data {big}" in message and "toy net takes 48x48" in message


def _relabelled_copy(prepared, out, classes):
    shutil.copytree(prepared, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["classes"] = list(classes)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_a_test_database_sharing_no_class_with_the_training_one_is_refused(prepared, tmp_path, capsys):
    other = _relabelled_copy(prepared, tmp_path / "other", [f"other{i}" for i in range(6)])
    message = refused(capsys, crossdb, ["--train-data", str(prepared), "--test-data", str(other),
                                        "--net", "toy", "--variant", "l2", "--iters", "10",
                                        "--batch-size", "16"], tmp_path / "runs")
    assert "none of its classes" in message and "anger" in message


def test_a_database_of_one_class_is_refused(prepared, tmp_path, capsys):
    one = _relabelled_copy(prepared, tmp_path / "one", ["anger"])
    manifest = json.loads((one / "manifest.json").read_text())
    (one / "manifest.json").write_text(json.dumps(dict(manifest, num_classes=1)))
    message = refused(capsys, crossval, ["--data", str(one), "--net", "toy", "--variant", "l2", *QUICK],
                      tmp_path / "runs")
    assert "1 class(es)" in message and "two or more" in message


def test_reproduce_refuses_a_folder_of_another_database(prepared, tmp_path, capsys):
    message = refused(capsys, reproduce, ["--table", "3", "--data", f"fer2013={prepared}", "--scale",
                                          "smoke", "--nets", "toy", "--variants", "l2"], tmp_path / "runs")
    assert f"--data fer2013={prepared}" in message and "holds the tiny database" in message
    message = refused(capsys, reproduce, ["--table", "3", "--data", f"fer={prepared}", "--dry-run"],
                      tmp_path / "runs")
    assert "'fer' is not one of the paper's databases" in message


def test_reproduce_refuses_a_table_whose_net_does_not_fit_the_data_before_any_run(tmp_path, capsys):
    fer = build_prepared_dataset(tmp_path / "fer", subjects=3, official=True, dataset="fer2013")
    # Table 3's own nets (ResNet 112, VGG 224) on a 48-pixel FER2013 folder.
    message = refused(capsys, reproduce, ["--table", "3", "--data", f"fer2013={fer}", "--scale", "smoke",
                                          "--variants", "softmax"], tmp_path / "runs")
    assert "needs fer2013 prepared at 224x224" in message or "needs fer2013 prepared at 112x112" in message


def test_every_net_has_its_own_snapshot_interval():
    assert set(SNAPSHOT_EVERY_CPU) == set(NETS)
    assert default_snapshot_every("cnn48") == SNAPSHOT_EVERY_CPU["cnn48"] != 50
    assert default_snapshot_every("cnn48", gpu=0) == default_snapshot_every("toy", gpu=0)


@pytest.mark.parametrize("old,new,dest,value", [
    ("--folds", "--max-folds", "max_folds", 2),
    ("--seed", "--solver-seed", "seed", 4),
    ("--scale", "--scale-label", "scale", "cpu"),
])
def test_old_flag_names_still_work_and_say_what_replaced_them(capsys, old, new, dest, value):
    base = ["--data", "d", "--net", "toy", "--variant", "l2"]
    assert getattr(crossval.parse_args(base + [old, str(value)]), dest) == value
    assert f"warning: {old} is now {new}" in capsys.readouterr().err
    assert getattr(crossval.parse_args(base + [new, str(value)]), dest) == value
    assert capsys.readouterr().err == ""


def test_reproduce_writes_commands_with_the_current_flag_names(capsys):
    reproduce.main(["--table", "9", "--dry-run"])
    commands = [line for line in capsys.readouterr().out.splitlines() if "tools/crossval.py" in line]
    assert commands and all("--solver-seed 1" in c and "--scale-label paper" in c for c in commands)
    assert not any(re.search(r"--seed |--scale ", c) for c in commands)


def test_a_refusal_is_a_typed_error_in_the_library():
    with pytest.raises(OptionError, match="--iters 0"):
        TrainingOptions(net="toy", variant="l2", iters=0)
    with pytest.raises(OptionError, match="--net 'lenet'"):
        TrainingOptions(net="lenet", variant="l2")
    assert issubclass(OptionError, ValueError)
    assert not Path(__file__).with_name("runs").exists()


def test_the_main_job_refuses_bad_options_before_preparing_anything(tmp_path, capsys):
    from tools import main_job
    with pytest.raises(SystemExit) as exit_info:
        main_job.main(["--out", str(tmp_path / "main"), "--iters", "0"])
    assert exit_info.value.code == 2 and "--iters 0" in capsys.readouterr().err
    assert not (tmp_path / "main").exists()
