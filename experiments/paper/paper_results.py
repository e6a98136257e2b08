"""The paper's reported numbers (Xie et al., Pattern Recognition 2019), for reports.

Accuracies in percent, keyed by our dataset, net and variant names. Facts cited
from the paper's Tables 2-7, 12 and 15. Where the paper prints one result twice
with two values, both are kept here (PRINTED_TWICE) and reports show the note.
"""

# Table 3: FER2013, no center loss (feature and hidden-unit sparseness).
TABLE3 = {
    "vgg": {"softmax": 66.84, "l2": 70.08, "l1": 68.18, "l2l2": 68.04, "l1l1": 70.08,
            "l2h_s": 68.49, "l1h_s": 69.38, "l2h_d": 69.16, "l1h_d": 68.57},
    "resnet": {"softmax": 69.71, "l2": 71.91, "l1": 71.32, "l2l2": 71.38, "l1l1": 71.88,
               "l2h_s": 71.27, "l1h_s": 71.52, "l2h_d": 71.69, "l1h_d": 71.36},
}

# Table 4: FER2013, mean per-class sensitivity / specificity (network not stated).
TABLE4 = {"softmax": {"sensitivity": 83.71, "specificity": 81.88},
          "l2": {"sensitivity": 84.77, "specificity": 85.72}}

# Table 5: FER2013, weight sparseness and connection pruning vs feature sparseness.
TABLE5 = {
    "vgg": {"w_l2": 66.87, "v_l2": 67.07, "vw_l2": 67.07, "w_l1_cp": 66.95, "w_l2_cp": 67.29,
            "v_l1_cp": 67.79, "v_l2_cp": 68.01, "l1": 68.18, "l2": 70.08},
    "resnet": {"w_l2": 68.24, "v_l2": 69.41, "vw_l2": 68.51, "w_l1_cp": 69.52, "w_l2_cp": 69.77,
               "v_l1_cp": 70.30, "v_l2_cp": 70.33, "l1": 71.32, "l2": 71.91},
}

# Table 6: FER2013, combinations of dropout, center loss and L2 sparseness.
TABLE6 = {
    "resnet": {"softmax": 69.71, "dropout": 69.57, "dropout_l2": 71.72, "dropout_center": 71.24,
               "dropout_l2_center": 71.83, "center": 71.58, "l2": 71.91, "l2_center": 72.14},
    "vgg": {"softmax": 66.84, "dropout": 66.56, "dropout_l2": 69.85, "dropout_center": 70.15,
            "dropout_l2_center": 70.1, "center": 70.33, "l2": 70.08, "l2_center": 70.43},
}

# Table 7: ResNet on the four databases (ten-fold person-independent means except FER2013).
TABLE7 = {
    "softmax": {"fer2013": 69.71, "ckplus": 94.7, "oulu": 77.29, "mmi": 72.69},
    "w_l2_center": {"fer2013": 68.9, "ckplus": 97.11, "oulu": 81.04, "mmi": 74.63},
    "v_l2_center": {"fer2013": 69.55, "ckplus": 96.63, "oulu": 81.46, "mmi": 75.61},
    "dropout_center": {"fer2013": 71.24, "ckplus": 95.9, "oulu": 80.83, "mmi": 77.07},
    "center": {"fer2013": 71.58, "ckplus": 96.14, "oulu": 78.75, "mmi": 74.15},
    "l2": {"fer2013": 71.91, "ckplus": 97.35, "oulu": 82.92, "mmi": 77.56},
    "l2_center": {"fer2013": 72.14, "ckplus": 97.59, "oulu": 82.71, "mmi": 78.54},
}

# Table 12: cross-database accuracy of ResNet L2 + center, TRAINING -> {testing: accuracy}.
TABLE12 = {
    "fer2013": {"ckplus": 63.86, "oulu": 39.79, "mmi": 57.07},
    "ckplus": {"fer2013": 39.72, "oulu": 42.08, "mmi": 60.48},
    "oulu": {"fer2013": 54.19, "ckplus": 84.47, "mmi": 61.46},
    "mmi": {"fer2013": 60.19, "ckplus": 77.02, "oulu": 50.83},
}

# Table 15: best cross-database accuracy per method, (testing, training) -> {method: accuracy}.
TABLE15 = {
    ("fer2013", "mmi"): {"w_l2_center": 54.14, "v_l2_center": 54.83, "dropout_center": 55.07,
                         "l2_center": 60.19},
    ("ckplus", "oulu"): {"w_l2_center": 83.81, "v_l2_center": 82.17, "dropout_center": 82.52,
                         "l2_center": 84.47},
    ("oulu", "mmi"): {"w_l2_center": 51.04, "v_l2_center": 49.79, "dropout_center": 48.96,
                      "l2_center": 50.83},
    ("mmi", "oulu"): {"w_l2_center": 58.53, "v_l2_center": 57.56, "dropout_center": 61.46,
                      "l2_center": 61.46},
}

# Table 2: toy network on MMI, RespondRatio per expression and face part,
# NM = L2-norm regularisation, SP = L2 sparseness.
TABLE2_PARTS = ("nose_root", "eyes_brows", "cheek", "mouth")
TABLE2 = {
    "anger": {"NM": (1.03, 1.11, 0.54, 0.85), "SP": (1.08, 1.14, 0.49, 0.84)},
    "disgust": {"NM": (1.22, 1.19, 0.77, 0.92), "SP": (1.31, 1.17, 0.73, 0.97)},
    "fear": {"NM": (1.69, 0.97, 0.50, 0.79), "SP": (1.78, 1.01, 0.36, 0.76)},
    "happiness": {"NM": (0.91, 1.04, 0.83, 1.11), "SP": (0.89, 1.07, 0.80, 1.16)},
    "sadness": {"NM": (1.45, 1.03, 0.71, 1.05), "SP": (1.51, 1.06, 0.64, 1.09)},
    "surprise": {"NM": (0.96, 1.10, 0.79, 1.07), "SP": (0.91, 1.18, 0.75, 1.1)},
}


def paper_accuracy(dataset, net, variant):
    """The paper's accuracy for one (dataset, net, variant) cell, or None, with its table."""
    if dataset == "fer2013":
        for name, table in (("Table 3", TABLE3), ("Table 5", TABLE5), ("Table 6", TABLE6)):
            if variant in table.get(net, {}):
                return table[net][variant], name
    if net == "resnet" and variant in TABLE7 and dataset in TABLE7[variant]:
        return TABLE7[variant][dataset], "Table 7"
    return None, None


# MMI has 205 test sequences in the paper's protocol; an accuracy over them is k/205.
MMI_SEQUENCES = 205

# One result printed with two values: (dataset, net, variant, test database or None) ->
# {table: value as printed}, and which value is a whole fraction k/205 of MMI's sequences.
PRINTED_TWICE = {
    ("mmi", "resnet", "l2_center", None): {
        "values": {"7": 78.54, "11": 78.53},
        "note": "The paper prints ResNet L2 + center loss on MMI as 78.54 in Table 7 but 78.53 in "
                "Table 11. Only 78.54 is a whole fraction of MMI's 205 sequences rounded to two decimals "
                "(161/205 = 78.537 %); 78.53 is the same fraction cut, not rounded."},
    ("ckplus", "resnet", "l2_center", "mmi"): {
        "values": {"12": 60.48, "16": 60.0},
        "note": "The paper prints training on CK+ and testing on MMI as 60.48 in Table 12 but 60.0 in "
                "Table 16. Only 60.0 is a whole fraction of MMI's 205 sequences rounded to two decimals "
                "(123/205 = 60.000 %); 60.48 is 124/205 = 60.488 % cut, not rounded: one sequence more."},
}


def printed_twice_note(dataset, net, variant, test=None):
    """The note on a cell the paper prints with two different values, or None."""
    entry = PRINTED_TWICE.get((dataset, net, variant, test))
    return entry["note"] if entry else None


def printed_twice_notes(table):
    """The notes of PRINTED_TWICE that concern the paper's table ``table`` ("7", "11", ...)."""
    return [entry["note"] for entry in PRINTED_TWICE.values() if str(table) in entry["values"]]
