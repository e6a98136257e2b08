"""run_folder.trained_model: which trained model a run folder or fold folder holds."""
import pytest

from experiments.running.run_folder import (CONFIG, TRAINING, TrainedModelError, snapshot_path,
                                            trained_model)
from nets import file_names
from runtime.files import write_json_atomic


@pytest.fixture
def run(tmp_path):
    """A run folder as crossval writes it: fold_00 untrained, fold_01 and fold_02 trained."""
    run = tmp_path / "tiny_toy_l2"
    run.mkdir()
    write_json_atomic(run / CONFIG, {"tool": "crossval", "data": str(tmp_path / "data"), "net": "toy",
                                     "variant": "l2"})
    for fold, iterations in (("fold_00", None), ("fold_01", 30), ("fold_02", 40)):
        (run / fold).mkdir()
        (run / fold / file_names("toy", "l2")["deploy"]).write_text("name: 'toy'\n")
        if iterations:
            snapshot_path(run / fold, iterations).write_bytes(b"weights")
            write_json_atomic(run / fold / TRAINING, {"iterations": iterations})
    return run


def test_a_run_folder_holds_its_first_trained_fold_and_a_fold_folder_itself(run):
    first = trained_model(run)
    assert first.fold_dir == run / "fold_01" and first.run_dir == run
    assert first.deploy == run / "fold_01" / "toy_l2_deploy.prototxt"
    assert first.weights == run / "fold_01" / "snapshot_iter_30.caffemodel"
    assert first.config["net"] == "toy"
    assert trained_model(run / "fold_01") == first
    assert trained_model(run, "fold_02").weights.name == "snapshot_iter_40.caffemodel"
    assert trained_model(run / "fold_02", "fold_02") == trained_model(run, "fold_02")


@pytest.mark.parametrize("where, fold, said", [
    ("run", "fold_00", r"fold_00 has no finished training.*one of: fold_01, fold_02"),
    ("run", "fold_09", r"has no fold fold_09"),
    ("fold_01", "fold_02", r"is already the fold fold_01; the fold fold_02 contradicts it"),
    ("elsewhere", None, r"is neither a run folder \(no config.json\) nor a fold folder"),
])
def test_what_a_folder_lacks_is_named(run, where, fold, said):
    folder = {"run": run, "fold_01": run / "fold_01", "elsewhere": run.parent}[where]
    with pytest.raises(TrainedModelError, match=said):
        trained_model(folder, fold)


def test_a_damaged_or_untrained_run_is_named(run):
    snapshot_path(run / "fold_01", 30).unlink()
    with pytest.raises(TrainedModelError, match=r"fold_01 has no caffemodel snapshot_iter_30.caffemodel"):
        trained_model(run)
    (run / "fold_02" / "toy_l2_deploy.prototxt").unlink()
    with pytest.raises(TrainedModelError, match=r"toy_l2_deploy.prototxt is missing"):
        trained_model(run, "fold_02")
    for fold in ("fold_01", "fold_02"):
        (run / fold / TRAINING).unlink()
    with pytest.raises(TrainedModelError, match=r"no fold with a finished training"):
        trained_model(run)


def test_predictor_and_onnx_export_take_the_model_from_trained_model(run, monkeypatch):
    # Both ask run_folder: a different answer there is a different model in both.
    import inference.onnx_export as onnx_export
    import inference.predictor as predictor
    from experiments.running import run_folder

    assert predictor.resolve_run_model(run)[:2] == (trained_model(run).deploy, trained_model(run).weights)
    chosen = trained_model(run, "fold_02")
    monkeypatch.setattr(run_folder, "trained_folds", lambda run_dir: ["fold_02"])
    assert predictor.resolve_run_model(run)[1] == chosen.weights
    with pytest.raises(onnx_export.OnnxExportError, match=r"data.*manifest.json"):
        onnx_export.run_export_inputs(run)   # reached the manifest: the model was found
