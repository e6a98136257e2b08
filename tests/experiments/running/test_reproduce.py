"""tools/reproduce.py: every table's cells listed, a synthetic table run end to end with real
`caffe train` runs, its statistics, reuse of finished runs, and the scheduler path (submitit's
local executor)."""
import json

import pytest

from experiments.running.reproduce import Job
from experiments.paper.tables import TABLES
from tests.prepared_fixture import build_prepared_dataset
from tools import reproduce

SMOKE = ["--scale", "smoke", "--nets", "toy", "--variants", "softmax", "l2"]


@pytest.fixture(scope="module")
def fer(tmp_path_factory):
    return build_prepared_dataset(tmp_path_factory.mktemp("data") / "fer", subjects=6, official=True,
                                  dataset="fer2013")


def test_table_3_lists_its_18_cells(capsys):
    jobs = reproduce.main(["--table", "3", "--dry-run"])
    out = capsys.readouterr().out
    assert len(jobs) == 18 and out.count("\n  cell ") == 18
    assert "cell resnet / l2: crossval resnet l2 on fer2013 (paper 71.91)" in out
    assert out.count("python tools/crossval.py") == 18


@pytest.mark.parametrize("number", sorted(TABLES))
def test_every_table_and_figure_has_cells_and_a_dry_run(number, capsys):
    jobs = reproduce.main(["--table", number, "--dry-run", "--seeds", "2"])
    assert len(set(jobs)) == len(jobs)                  # every run once, shared cells included
    for cell in TABLES[number].cells:                   # every cell served by a run of each seed
        for seed in (1, 2):
            assert Job(cell.kind, cell.net, cell.variant, cell.data, seed, cell.finetune_from) in jobs


def test_both_sparseness_normalizations_run_every_sparseness_cell_twice(capsys):
    # Issue 22, item 2: one Table 3 run says which reading of lambda reproduces the gain.
    jobs = reproduce.main(["--table", "3", "--dry-run", "--sparseness-normalization", "batch", "sum"])
    out = capsys.readouterr().out
    sparse = [v for v in ("l2", "l1", "l2l2", "l1l1", "l2h_s", "l1h_s", "l2h_d", "l1h_d")]
    assert len(jobs) == 18 + 2 * len(sparse)                  # softmax runs once per net
    assert {job.normalization for job in jobs if job.variant == "softmax"} == {"batch"}
    assert "cell resnet / l2 (sum): crossval resnet l2 on fer2013 (paper 71.91)" in out
    assert "--name fer2013_resnet_l2_paper_s1_sum" in out and "--sparseness-normalization sum" in out
    assert "--name fer2013_resnet_l2_paper_s1\n" in out       # batch keeps its run name


def test_a_sum_normalization_run_records_it_and_builds_its_net(fer, tmp_path):
    reproduce.main(["--table", "3", "--data", f"fer2013={fer}", "--runs-dir", str(tmp_path), "--scale",
                    "smoke", "--nets", "toy", "--variants", "l2", "--sparseness-normalization", "sum"])
    run = tmp_path / "fer2013_toy_l2_smoke_s1_sum"
    assert json.loads((run / "config.json").read_text())["sparseness_normalization"] == "sum"
    train_val = (run / "official" / "toy_l2_train_val.prototxt").read_text()
    assert '\\"normalize\\": \\"none\\"' in train_val
    table = json.loads((tmp_path / "table_3" / "table_3.json").read_text())
    assert [(c["column"], c["normalization"]) for c in table["cells"]] == [("l2 (sum)", "sum")]


def test_cells_fine_tuned_from_fer2013_run_after_their_parent(capsys):
    jobs = reproduce.main(["--table", "9", "--dry-run"])
    assert [job.data for job in jobs] == ["fer2013", "ckplus"] and jobs[1].parent() == jobs[0]
    assert "--weights" in capsys.readouterr().out.splitlines()[-1]


def test_a_synthetic_table_runs_writes_statistics_and_reuses_finished_runs(fer, tmp_path, capsys):
    args = ["--table", "3", "--data", f"fer2013={fer}", "--runs-dir", str(tmp_path), *SMOKE]
    reproduce.main(args + ["--seeds", "1"])
    first = tmp_path / "fer2013_toy_softmax_smoke_s1" / "official" / "result.json"
    stamp = first.stat().st_mtime_ns
    path = reproduce.main(args + ["--seeds", "2"])
    assert first.stat().st_mtime_ns == stamp            # seed 1 reused, only seed 2 trained
    table = json.loads((tmp_path / "table_3" / "table_3.json").read_text())
    cells = {cell["column"]: cell for cell in table["cells"]}
    assert set(cells) == {"softmax", "l2"} and all(c["finished"] for c in cells.values())
    assert cells["l2"]["seeds"] == [1, 2] and cells["l2"]["baseline"] == "softmax"
    # The pooled figures of each seed's summary.json, averaged over the seeds.
    summaries = [json.loads((tmp_path / run.split("/")[-1] / "summary.json").read_text())
                 for run in cells["l2"]["runs"]]
    assert cells["l2"]["pooled_accuracy"] == pytest.approx(
        sum(s["pooled_accuracy"] for s in summaries) / 2)
    assert 0 <= cells["l2"]["p_value"] <= 1 and cells["l2"]["ci_over"] == "test images"
    for run in cells["l2"]["runs"]:
        config = json.loads((tmp_path / run.split("/")[-1] / "config.json").read_text())
        assert config["scale"] == "smoke" and config["iters"] == 30 and config["seed"] in (1, 2)
    text = path.read_text()
    assert "| toy |" in text and "(71.91)" in text      # ResNet's paper number beside the toy net
    assert "McNemar" in text and "## Protocol checks" in text and "python tools/crossval.py" in text
    assert (tmp_path / "table_3" / "table_3.csv").read_text().startswith("row,column,net")


def test_runs_go_through_the_scheduler_library(fer, tmp_path):
    reproduce.main(["--table", "fig8", "--data", f"fer2013={fer}", "--runs-dir", str(tmp_path),
                    "--cluster", "local", *SMOKE])
    assert list((tmp_path / "submitit").iterdir()), "submitit wrote no job folder"
    assert (tmp_path / "fer2013_toy_l2_smoke_s1" / "summary.json").is_file()
    assert (tmp_path / "table_fig8" / "table_fig8_roc.png").is_file()


def test_missing_data_names_what_to_prepare(tmp_path):
    with pytest.raises(SystemExit, match="needs prepared datasets for ckplus, fer2013"):
        reproduce.main(["--table", "9", "--runs-dir", str(tmp_path)])


def test_the_readme_maps_every_table_and_figure_to_its_command():
    from runtime.caffe_env import REPO_ROOT
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Running the paper's experiments", 1)[1].split("\n## ", 1)[0]
    missing = [number for number in TABLES if f"`--table {number}`" not in section]
    assert not missing, f"README's table-to-command map lacks tables {missing}"


def test_runs_side_by_side_in_separate_processes(fer, tmp_path):
    reproduce.main(["--table", "fig8", "--data", f"fer2013={fer}", "--runs-dir", str(tmp_path),
                    "--jobs", "2", *SMOKE])
    for variant in ("softmax", "l2"):
        summary = json.loads((tmp_path / f"fer2013_toy_{variant}_smoke_s1" / "summary.json").read_text())
        assert summary["folds"] == ["official"]
    assert (tmp_path / "table_fig8" / "table_fig8.md").is_file()
