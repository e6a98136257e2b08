"""Every table and figure of the paper as the runs that fill it (plain data).

A table is a grid of cells; each cell is one run (a job): a cross-validation
(``crossval``: one net and variant on one prepared dataset, K folds or
FER2013's official split) or a cross-database run (``crossdb``: trained on one
database, tested on every other of the four). Cells of different tables that
are the same run share its run folder, so Table 4 reuses Table 3's runs and
Tables 12-16 share their cross-database trainings.

Protocol choices the text leaves open, and what is done here:
- Table 2 (toy net, MMI): NM is ``l2norm_a2`` (the paper does not give alpha).
- Tables 7 and 9-11: CK+, Oulu-CASIA and MMI are fine-tuned from the FER2013
  model ("FER2013 model" in Tables 9-11) of the same net and variant: those
  cells depend on the FER2013 cell and start from its final snapshot.
- Tables 12-16: every cross-database training is tested on the three other
  databases (Table 12's protocol), with ResNet L2 + center loss unless the table
  compares variants (Table 15).
"""
from dataclasses import dataclass, field

from data_prep.registry import title as dataset_title
from experiments.paper import paper_results as paper

DATABASES = ("fer2013", "ckplus", "oulu", "mmi")


@dataclass(frozen=True)
class Cell:
    row: str                 # the paper's row label
    column: str              # the paper's column label
    kind: str                # "crossval" or "crossdb"
    net: str
    variant: str
    data: str                # the (training) database
    test: str = None         # crossdb: the database this cell reads
    paper: float = None      # the paper's number for the cell (%), None if it has none
    finetune_from: str = None  # crossval: start from this database's run of the same net/variant
    normalization: str = "batch"  # the sparseness term over the batch: batch or sum (docs/recipe.md)


@dataclass(frozen=True)
class Table:
    number: str              # "3", "fig8", ...
    title: str
    cells: tuple
    baseline_variant: str = "softmax"   # paired tests compare each row's cells with this column
    measure: str = "accuracy"           # accuracy | balance | respond_ratio | confusion | roc | val_test
    notes: tuple = field(default_factory=tuple)

    def databases(self):
        needed = set()
        for cell in self.cells:
            needed.add(cell.data)
            if cell.kind == "crossdb":
                needed.update(d for d in DATABASES if d != cell.data)
            if cell.finetune_from:
                needed.add(cell.finetune_from)
        return sorted(needed, key=DATABASES.index if needed <= set(DATABASES) else str)


def _grid(nets, variants, dataset, values):
    return tuple(Cell(row=net, column=variant, kind="crossval", net=net, variant=variant, data=dataset,
                      paper=values.get(net, {}).get(variant))
                 for net in nets for variant in variants)


_TABLE3_VARIANTS = ("softmax", "l2", "l1", "l2l2", "l1l1", "l2h_s", "l1h_s", "l2h_d", "l1h_d")
_TABLE5_VARIANTS = ("w_l2", "v_l2", "vw_l2", "w_l1_cp", "w_l2_cp", "v_l1_cp", "v_l2_cp", "l1", "l2")
_TABLE6_VARIANTS = ("softmax", "dropout", "dropout_l2", "dropout_center", "dropout_l2_center",
                    "center", "l2", "l2_center")
_TABLE7_VARIANTS = ("softmax", "w_l2_center", "v_l2_center", "dropout_center", "center", "l2",
                    "l2_center")
_FIG9_VARIANTS = ("l2norm_a05", "l2norm_a2", "l2norm_adaptive", "l2")


def _table7_cells(variants=_TABLE7_VARIANTS, databases=DATABASES):
    return tuple(Cell(row=variant, column=dataset, kind="crossval", net="resnet", variant=variant,
                      data=dataset, paper=paper.TABLE7[variant][dataset],
                      finetune_from=None if dataset == "fer2013" else "fer2013")
                 for variant in variants for dataset in databases)


def _ours_cell(dataset, value):
    return (Cell(row="Ours", column=dataset_title(dataset), kind="crossval", net="resnet",
                 variant="l2_center", data=dataset, paper=value,
                 finetune_from=None if dataset == "fer2013" else "fer2013"),)


def _crossdb_cells(pairs, variant="l2_center", values=None):
    return tuple(Cell(row=dataset_title(train), column=dataset_title(test), kind="crossdb",
                      net="resnet", variant=variant, data=train, test=test,
                      paper=(values or {}).get((train, test)))
                 for train, test in pairs)


_ALL_PAIRS = tuple((train, test) for train in DATABASES for test in DATABASES if train != test)
_TABLE12_VALUES = {(train, test): value for train, row in paper.TABLE12.items()
                   for test, value in row.items()}
_TABLE15_CELLS = tuple(
    Cell(row=f"{dataset_title(test)} <- {dataset_title(train)}", column=variant, kind="crossdb",
         net="resnet", variant=variant, data=train, test=test, paper=values[variant])
    for (test, train), values in paper.TABLE15.items()
    for variant in ("w_l2_center", "v_l2_center", "dropout_center", "l2_center"))
# Table 16's "Ours" entries: (training, testing) as the paper lists them.
_TABLE16_PAIRS = (("ckplus", "fer2013"), ("mmi", "fer2013"), ("mmi", "ckplus"), ("oulu", "ckplus"),
                  ("mmi", "oulu"), ("ckplus", "mmi"), ("oulu", "mmi"))
_TABLE16_VALUES = {("ckplus", "fer2013"): 39.72, ("mmi", "fer2013"): 60.19, ("mmi", "ckplus"): 77.02,
                   ("oulu", "ckplus"): 84.47, ("mmi", "oulu"): 50.83, ("ckplus", "mmi"): 60.0,
                   ("oulu", "mmi"): 61.46}

TABLES = {table.number: table for table in (
    Table("2", "RespondRatio of face parts, toy net on MMI (NM = L2-norm, SP = L2 sparseness)",
          (Cell("NM", "l2norm_a2", "crossval", "toy", "l2norm_a2", "mmi"),
           Cell("SP", "l2", "crossval", "toy", "l2", "mmi")),
          baseline_variant="l2norm_a2", measure="respond_ratio"),
    Table("3", "Feature and hidden-unit sparseness on FER2013 (no center loss)",
          _grid(("vgg", "resnet"), _TABLE3_VARIANTS, "fer2013", paper.TABLE3)),
    Table("4", "Sensitivity and specificity on FER2013 (ROC balance points), softmax vs L2",
          _grid(("resnet",), ("softmax", "l2"), "fer2013", {}), measure="balance",
          notes=("The paper does not name the net of Table 4; its best net, ResNet, is used.",)),
    Table("5", "Weight sparseness and connection pruning vs feature sparseness on FER2013",
          _grid(("vgg", "resnet"), _TABLE5_VARIANTS, "fer2013", paper.TABLE5), baseline_variant="l2"),
    Table("6", "Dropout, center loss and L2 sparseness on FER2013",
          _grid(("resnet", "vgg"), _TABLE6_VARIANTS, "fer2013", paper.TABLE6)),
    Table("7", "ResNet on the four databases", _table7_cells()),
    Table("8", "FER2013: the paper's own row of Table 8", _ours_cell("fer2013", 72.14)),
    Table("9", "CK+: the paper's own row of Table 9", _ours_cell("ckplus", 97.59)),
    Table("10", "Oulu-CASIA: the paper's own row of Table 10", _ours_cell("oulu", 82.71)),
    Table("11", "MMI: the paper's own row of Table 11", _ours_cell("mmi", 78.53)),
    Table("12", "Cross-database accuracy, ResNet L2 + center loss (rows: training)",
          _crossdb_cells(_ALL_PAIRS, values=_TABLE12_VALUES), baseline_variant=None),
    Table("13", "Confusion matrix on CK+ of the model trained on FER2013",
          _crossdb_cells((("fer2013", "ckplus"),), values=_TABLE12_VALUES), baseline_variant=None,
          measure="confusion"),
    Table("14", "Confusion matrix on CK+ of the model trained on Oulu-CASIA",
          _crossdb_cells((("oulu", "ckplus"),), values=_TABLE12_VALUES), baseline_variant=None,
          measure="confusion"),
    Table("15", "Best cross-database accuracy of each sparseness method", _TABLE15_CELLS,
          baseline_variant="l2_center"),
    Table("16", "Cross-database accuracy, the paper's own entries of Table 16",
          _crossdb_cells(_TABLE16_PAIRS, values=_TABLE16_VALUES), baseline_variant=None),
    Table("fig8", "Mean ROC curves on FER2013, softmax vs L2 sparseness (ResNet)",
          _grid(("resnet",), ("softmax", "l2"), "fer2013", {}), measure="roc"),
    Table("fig9", "Validation and test accuracy of L2-norm regularisation and L2 sparseness on FER2013",
          _grid(("resnet",), _FIG9_VARIANTS, "fer2013", {}), baseline_variant="l2",
          measure="val_test"),
)}
