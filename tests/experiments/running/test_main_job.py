"""The main job end to end (reduced): synthetic data -> prepare -> crossval -> RespondRatio -> report."""
import json

import pytest

from tools import main_job

pytestmark = pytest.mark.slow  # the main job end to end: prepare, two variants of crossval, report


def test_main_job_runs_end_to_end_and_reuses_finished_work(tmp_path, capsys):
    args = ["--out", str(tmp_path / "main"), "--folds", "2", "--subjects", "4", "--images", "3",
            "--iters", "30", "--batch-size", "32", "--variants", "softmax", "l2"]
    report_path = main_job.main(args)
    text = report_path.read_text()
    for variant in ("softmax", "l2"):
        assert f"| synthetic | toy | {variant} | 2 |" in text
        run = tmp_path / "main" / "runs" / f"synthetic_toy_{variant}"
        assert json.loads((run / "summary.json").read_text())["folds"] == ["fold_00", "fold_01"]
        assert (run / "respond_ratio.json").is_file()
    assert "RespondRatio" in text and "1.03, 1.11, 0.54, 0.85" in text  # Table 2 beside ours
    # The prepared data's audit stands beside the protocol checks.
    assert "## Protocol checks" in text and "Data-quality audit at prepare time" in text
    # The report ends with the model applied to generated faces through tools/predict.py.
    example = text.split("## Using the model: predict.py on generated faces", 1)[1]
    assert "tools/predict.py --model" in example and "synthetic_toy_l2" in example
    assert example.count("face01_") >= 6
    first = (tmp_path / "main" / "runs" / "synthetic_toy_l2" / "fold_00" / "result.json").stat().st_mtime_ns
    capsys.readouterr()
    main_job.main(args)
    assert "reusing" in capsys.readouterr().out
    assert (tmp_path / "main" / "runs" / "synthetic_toy_l2" / "fold_00" / "result.json").stat().st_mtime_ns == first
