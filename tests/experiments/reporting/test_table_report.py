"""experiments/reporting/table_report.py on run folders in the run-folder layout: Table 7's cells
are tested against the softmax cell of their database (variants are its rows), RespondRatio is read
from the runs' stored files, the paper's numbers printed twice are noted, runs are named."""
import json

import numpy as np

from experiments.analysis import respond_ratio
from experiments.paper.tables import TABLES
from experiments.reporting import table_report
from experiments.running import reproduce
from tests.experiments.analysis.test_statistics import outcomes, write_run


def _runs(tmp_path, cells, right):
    """One finished run folder per cell; ``right``: {variant: correctly classified of 200}."""
    return {cell: [write_run(tmp_path / f"{cell.data}_{cell.net}_{cell.variant}",
                             {"fold_00": outcomes(np.arange(200) < right[cell.variant])},
                             cell.variant, dataset=cell.data)]
            for cell in cells}


def test_table_7_compares_each_variant_with_softmax_on_the_same_database(tmp_path):
    table = TABLES["7"]
    cells = [c for c in table.cells if c.data in ("ckplus", "mmi") and c.variant in ("softmax", "l2", "l2_center")]
    runs = _runs(tmp_path, cells, {"softmax": 100, "l2": 150, "l2_center": 160})
    rows = table_report.cell_results(table, cells, runs.get)
    by_cell = {(r["row"], r["column"]): r for r in rows}
    for database in ("ckplus", "mmi"):
        assert "baseline" not in by_cell[("softmax", database)]
        for variant, gain in (("l2", 0.25), ("l2_center", 0.30)):
            row = by_cell[(variant, database)]
            assert row["baseline"] == "softmax" and abs(row["difference"] - gain) < 1e-12
            assert row["p_value"] < 1e-9 and row["within_noise"] is False
    path = table_report.write_table(table, rows, tmp_path / "table_7", [], reproduce.SCALES["smoke"])
    text = path.read_text()
    assert text.count("vs softmax") == 4
    assert "| mmi_resnet_l2_center | l2_center | mmi | – | 1 | 80.00 | – | – |" in text   # starts from: –
    assert "78.54 in Table 7 but 78.53 in Table 11" in text and "60.48" not in text
    table_json = json.loads((tmp_path / "table_7" / "table_7.json").read_text())
    assert sum(cell.get("baseline") == "softmax" for cell in table_json["cells"]) == 4


def test_the_baseline_is_the_same_net_and_data_wherever_the_table_puts_the_variant():
    # Table 3: variants are columns, nets rows; Table 15: crossdb pairs are rows.
    table3 = TABLES["3"]
    l2_vgg = next(c for c in table3.cells if c.net == "vgg" and c.variant == "l2")
    assert table_report.baseline_cell(table3, l2_vgg, table3.cells) == next(
        c for c in table3.cells if c.net == "vgg" and c.variant == "softmax")
    table15 = TABLES["15"]
    cell = table15.cells[0]
    baseline = table_report.baseline_cell(table15, cell, table15.cells)
    assert (baseline.variant, baseline.row) == ("l2_center", cell.row)
    assert table_report.baseline_cell(TABLES["12"], TABLES["12"].cells[0], TABLES["12"].cells) is None


def test_table_2_reads_respond_ratio_from_the_runs_files(tmp_path, monkeypatch):
    table = TABLES["2"]
    runs = _runs(tmp_path, table.cells, {"l2norm_a2": 120, "l2": 130})
    ratios = {"anger": {"nose_root": 1.5, "eyes_brows": 1.0, "cheek": 0.25, "mouth": 0.75}}
    nm, sp = (runs[cell][0] for cell in table.cells)
    (nm / "respond_ratio.json").write_text(json.dumps({"ratios": ratios}))
    # The runs' data folder ("/nowhere") does not exist: RespondRatio cannot be computed now.
    monkeypatch.setattr(respond_ratio, "run_respond_ratio", lambda *a, **k: 1 / 0)
    rows = table_report.cell_results(table, table.cells, runs.get)
    text = table_report.write_table(table, rows, tmp_path / "table_2", [], reproduce.SCALES["smoke"]).read_text()
    assert f"| {nm.name} | anger | 1.50 | 1.00 | 0.25 | 0.75 | 1.03, 1.11, 0.54, 0.85 |" in text
    assert f"| {sp.name} | not computed: {sp / 'respond_ratio.json'} is missing" in text
    assert f"python tools/respond_ratio.py {sp}" in text


def test_a_finished_respond_ratio_table_stores_the_ratios_once(tmp_path, monkeypatch):
    computed = []
    monkeypatch.setattr(reproduce, "run_respond_ratio", lambda run_dir: computed.append(run_dir))
    done, missing = tmp_path / "done", tmp_path / "missing"
    for run_dir in (done, missing):
        run_dir.mkdir()
    (done / "respond_ratio.json").write_text("{}")
    reproduce.store_table_analyses(TABLES["2"], [done, missing])
    assert computed == [missing]
    reproduce.store_table_analyses(TABLES["3"], [missing])      # no RespondRatio in Table 3
    assert computed == [missing]
