"""prototxt/ is exactly what nets/ generates; the Python API other tools call."""
import math

import pytest
from google.protobuf import text_format

from nets import (VARIANTS, deploy_net, file_names, roles, solver, train_val_net,
                  write_experiment)
from nets.experiment import COMMITTED_NETS, committed_files
from nets.generate import main as generate_main
from runtime.caffe_env import REPO_ROOT

PROTOTXT = REPO_ROOT / "prototxt"


def test_committed_prototxt_equal_the_generator_output_byte_for_byte():
    files = committed_files()
    assert set(COMMITTED_NETS) == {"resnet", "vgg"}
    assert len(files) == 3 * len(COMMITTED_NETS) * len(VARIANTS)
    assert "resnet_l2_solver.prototxt" in files   # the design card's command
    assert not any(name.startswith(("toy_", "cnn48_")) for name in files)
    committed = {path.name for path in PROTOTXT.glob("*")}
    assert committed == set(files), "run `python -m nets.generate` and commit prototxt/"
    for name, text in files.items():
        assert (PROTOTXT / name).read_bytes() == text.encode(), \
            f"prototxt/{name} is out of date: run `python -m nets.generate` and commit it"


def test_generate_cli_writes_identical_files_and_check_finds_drift(tmp_path, capsys):
    out = tmp_path / "prototxt"
    assert generate_main(["--out", str(out)]) == 0
    for path in PROTOTXT.glob("*.prototxt"):
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    assert generate_main(["--out", str(out), "--check"]) == 0

    edited = out / "vgg_l2_solver.prototxt"
    edited.write_text(edited.read_text().replace("base_lr: 0.01", "base_lr: 0.02"))
    (out / "vgg_old_variant_solver.prototxt").write_text("")
    capsys.readouterr()
    assert generate_main(["--out", str(out), "--check"]) == 1
    report = capsys.readouterr().out
    assert "out of date" in report and "vgg_l2_solver.prototxt" in report
    assert "not generated any more" in report and "vgg_old_variant_solver.prototxt" in report
    # a toy file (once committed, now written into run folders only) is stale too
    (out / "toy_l2_solver.prototxt").write_text("")
    capsys.readouterr()
    assert generate_main(["--out", str(out), "--check"]) == 1
    assert "not generated any more" in capsys.readouterr().out
    assert generate_main(["--out", str(out)]) == 0  # repairs all three
    assert not (out / "toy_l2_solver.prototxt").exists()
    assert not (out / "vgg_old_variant_solver.prototxt").exists()
    assert edited.read_bytes() == (PROTOTXT / edited.name).read_bytes()


def test_roles_name_the_papers_z_v_x_w():
    resnet = roles("resnet")
    assert (resnet.z_blob, resnet.z_shape, resnet.fc1_layer, resnet.x_blob) == \
        ("res5_6", (512, 5, 5), "fc5_5x5", "fc5_5x5")
    assert (resnet.classifier_layer, resnet.logits_blob) == ("fc6_7cls", "fc6_7cls")
    assert len(resnet.hidden_blobs) == 12
    vgg = roles("vgg")
    assert (vgg.z_blob, vgg.fc1_layer, vgg.x_blob, vgg.classifier_layer) == \
        ("fc6", "fc7", "fc7", "fc8_7cls")
    toy = roles("toy")
    assert (toy.conv_layer, toy.z_blob, toy.z_shape, toy.fc1_layer) == \
        ("conv1", "conv1", (1, 20, 20), "fc1")
    assert toy.input_shape == (1, 48, 48) and toy.num_classes == 6


def test_pretrained_fc_layers_keep_their_names_only_where_the_weights_fit():
    assert roles("vgg", input_size=224).z_blob == "fc6"
    assert roles("vgg", input_size=112).z_blob == "fc6_4x4"     # pool5 is 4x4, not 7x7
    assert roles("resnet", input_size=96).fc1_layer == "fc5_4x4"
    assert roles("resnet", input_size=120).z_shape == (512, 6, 6)  # the paper's 512x6x6
    # The class count is part of the class-dependent layers' names (7 -> 6 fine-tuning).
    assert roles("resnet", num_classes=6).classifier_layer == "fc6_6cls"
    names = {layer.name for layer in train_val_net("resnet", "center", num_classes=6).layer}
    assert {"fc6_6cls", "center_loss_6cls"} <= names


def test_other_class_counts_sizes_sources_and_batches(caffe):
    net = train_val_net("toy", "l2_center", num_classes=7, train_source="/abs/train_lmdb",
                        test_source="/abs/test_lmdb", input_size=64, batch_size=16,
                        test_batch_size=10)
    data = [layer for layer in net.layer if layer.type == "Data"]
    assert [(d.data_param.source, d.data_param.batch_size) for d in data] == \
        [("/abs/train_lmdb", 16), ("/abs/test_lmdb", 10)]
    layers = {layer.name: layer for layer in net.layer}
    assert layers["fc2_7cls"].inner_product_param.num_output == 7
    deploy = deploy_net("toy", "l2_center", num_classes=7, input_size=64, batch_size=3)
    assert list(deploy.layer[0].input_param.shape[0].dim) == [3, 1, 64, 64]


def test_bad_names_and_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="unknown net 'alexnet'.*resnet"):
        train_val_net("alexnet", "l2")
    with pytest.raises(ValueError, match="unknown variant 'l3'.*l2_center"):
        train_val_net("toy", "l3")
    with pytest.raises(ValueError, match="input_size 30 is too small for the resnet net"):
        roles("resnet", input_size=30)
    with pytest.raises(ValueError, match="'max_iters' is not a SolverParameter field"):
        solver("net.prototxt", "runs/x", max_iters=10)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        roles("toy", num_classes=1)


def test_solver_overrides_and_paper_values():
    param = solver("/r/net.prototxt", "/r/snap", max_iter=300, test_iter=7, test_interval=50,
                   base_lr=1e-3, solver_mode="GPU")
    assert (param.net, param.snapshot_prefix, param.max_iter, list(param.test_iter)) == \
        ("/r/net.prototxt", "/r/snap", 300, [7])
    assert param.base_lr == pytest.approx(1e-3) and param.solver_mode == 1
    assert param.momentum == pytest.approx(0.9) and param.stepsize == 4000


def test_write_experiment_for_a_run_folder(caffe, tmp_path):
    fold = tmp_path / "run" / "fold_00"
    # 23 test records (the caller's count from manifest.json) at batch 5: 5 test iterations.
    paths = write_experiment(fold, "toy", "l2_center", num_classes=6,
                             train_source=tmp_path / "train_lmdb",
                             test_source=tmp_path / "test_lmdb", test_batch_size=5,
                             test_records=23, snapshot_prefix=fold / "snaps" / "snapshot",
                             max_iter=40)
    names = file_names("toy", "l2_center")
    assert paths["train_val"] == fold / names["train_val"] and paths["solver"].is_file()
    assert paths["deploy"].is_file() and (fold / "snaps").is_dir()
    assert paths["max_iter"] == 40 and paths["test_iter"] == math.ceil(23 / 5)
    assert paths["roles"].classifier_layer == "fc2_6cls"

    pb = caffe.proto.caffe_pb2
    written = text_format.Parse(paths["solver"].read_text(), pb.SolverParameter())
    assert written.net == str(fold / names["train_val"])
    assert written.snapshot_prefix == str(fold / "snaps" / "snapshot")
    assert (written.max_iter, list(written.test_iter)) == (40, [5])
    net = text_format.Parse(paths["train_val"].read_text(), pb.NetParameter())
    assert [layer.data_param.source for layer in net.layer if layer.type == "Data"] == \
        [str(tmp_path / "train_lmdb"), str(tmp_path / "test_lmdb")]
