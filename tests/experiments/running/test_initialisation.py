"""The paper's initialisation chain in the table runner (issue 22, item 1): public face model ->
FER2013 -> CK+/Oulu/MMI, with generated caffemodels that carry the public models' layer names and
shapes (the real files cannot be downloaded here), and a real `caffe train` from one."""
import json

import pytest
from google.protobuf import text_format

from experiments.running.initialisation import InitError, face_model_file, plan
from nets import deploy_net
from tests.prepared_fixture import build_prepared_dataset
from tools import reproduce


def public_face_resnet(caffe, folder):
    """A face_model.caffemodel with the public center-loss ResNet's layer names and shapes
    (its 112x96 geometry: conv1a ... fc5 as recorded in docs/nets.md), random weights."""
    folder.mkdir(parents=True, exist_ok=True)
    prototxt = folder / "face_deploy.prototxt"
    prototxt.write_text(text_format.MessageToString(deploy_net("resnet", "softmax", geometry="public")))
    path = folder / "face_model.caffemodel"
    caffe.Net(str(prototxt), caffe.TEST).save(str(path))
    return path


def test_the_plan_uses_face_models_only_when_every_net_of_the_table_finds_one(caffe, tmp_path):
    empty = tmp_path / "none"
    assert plan({"resnet", "vgg", "toy"}, "auto", empty) == {"resnet": None, "toy": None, "vgg": None}
    models = tmp_path / "models"
    resnet = public_face_resnet(caffe, models)
    assert face_model_file("resnet", models) == resnet and face_model_file("cnn48", models) is None
    assert plan({"resnet", "cnn48"}, "auto", models) == {"resnet": str(resnet), "cnn48": None}
    with pytest.raises(InitError, match="start resnet from its face model but vgg from random weights.*"
                                        "fetch_pretrained.py vgg_face"):
        plan({"resnet", "vgg"}, "auto", models)
    assert plan({"resnet", "vgg"}, "random", models) == {"resnet": None, "vgg": None}
    with pytest.raises(InitError, match="--init face: no face model for vgg"):
        plan({"resnet", "vgg"}, "face", models)
    with pytest.raises(InitError, match="toy net\\(s\\) have no public face model"):
        plan({"toy"}, "face", models)


def test_dry_run_shows_the_chain_and_each_cells_start(caffe, tmp_path, capsys):
    models = tmp_path / "models"
    weights = public_face_resnet(caffe, models)
    jobs = reproduce.main(["--table", "9", "--dry-run", "--pretrained-dir", str(models)])
    out = capsys.readouterr().out
    fer, ck = jobs
    assert fer.face_model == ck.face_model == str(weights) and ck.parent() == fer
    assert f"--name fer2013_resnet_l2_center_paper_s1_face --weights {weights}" in out
    assert "--name ckplus_resnet_l2_center_paper_s1_face_from_fer2013 --weights" in out
    assert "starts from the fer2013 run fer2013_resnet_l2_center_paper_s1_face" in out
    # Cross-database trainings start from the face model: FER2013 is among their test sets.
    jobs = reproduce.main(["--table", "12", "--dry-run", "--pretrained-dir", str(models)])
    assert all(job.face_model == str(weights) and job.parent() is None for job in jobs)
    assert reproduce.main(["--table", "9", "--dry-run", "--pretrained-dir", str(models),
                           "--init", "random"])[0].face_model is None
    with pytest.raises(SystemExit) as refused:   # VGG-Face missing: Table 3 would mix
        reproduce.main(["--table", "3", "--dry-run", "--pretrained-dir", str(models)])
    assert refused.value.code == 2
    assert "fetch_pretrained.py vgg_face" in capsys.readouterr().err


def test_table_options_reach_every_run_and_tag_its_name(capsys):
    jobs = reproduce.main(["--table", "9", "--dry-run", "--transferred-lr-mult", "0.1",
                           "--center-lr-mult", "50"])
    out = capsys.readouterr().out
    assert all(dict(job.recipe) == {"transferred_lr_mult": 0.1, "center_lr_mult": 50.0} for job in jobs)
    assert "--name fer2013_resnet_l2_center_paper_s1_clr50.0_tlr0.1 " in out
    assert "--transferred-lr-mult 0.1" in out and "--center-lr-mult 50.0" in out


@pytest.mark.slow
def test_a_fer2013_cell_trains_from_the_face_model(caffe, tmp_path):
    # A real caffe train: the conv layers load from the face model; fc5 (5x4 there, 5x5 at the
    # square 112 input) and the classifier start anew, as Caffe's log says.
    models = tmp_path / "models"
    weights = public_face_resnet(caffe, models)
    fer = build_prepared_dataset(tmp_path / "fer", official=True, dataset="fer2013", size=112,
                                 subjects=6, images_per_class=2, crops=1)
    reproduce.main(["--table", "3", "--nets", "resnet", "--variants", "softmax", "--scale", "smoke",
                    "--data", f"fer2013={fer}", "--runs-dir", str(tmp_path / "runs"),
                    "--pretrained-dir", str(models)])
    run = tmp_path / "runs" / "fer2013_resnet_softmax_smoke_s1_face"
    assert json.loads((run / "config.json").read_text())["weights"] == str(weights)
    log = (run / "official" / "train.log").read_text()
    assert "Ignoring source layer fc5" in log and "Ignoring source layer conv1a" not in log
    table = json.loads((tmp_path / "runs" / "table_3" / "table_3.json").read_text())
    assert table["cells"][0]["starts_from"] == "face model face_model.caffemodel"
