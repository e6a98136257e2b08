"""What the paper compares: the nets (the paper's three and cnn48) and every loss/regulariser variant.

Plain data (no Caffe import), so that tools can list nets and variants cheaply.
Every variant names the paper's table columns (or rows) it reproduces.
See docs/nets.md for the reasoning behind each choice.
"""
from dataclasses import dataclass

# Loss weights and penalty strengths (Section 3, first paragraph).
LAMBDA_FC = 1e-5        # feature sparseness, lambda_FC1 = lambda_FC2
LAMBDA_C = 8e-3         # center loss
LAMBDA_WEIGHT = 1e-5    # weight sparseness (W-L2, V-L2, V-W-L2) and the c.p. penalty
WEIGHT_DECAY = 5e-4     # the solver's weight decay (Section 3); the one place it is set
PRUNE_RATIO = 0.3       # c.p.: 30 % of the connections removed, as [26] suggests
# c.p. trains in two stages within ONE schedule (the budget of every other cell):
# stage 1 (unpruned) its first two thirds, stage 2 (pruned, retrained) the last
# third, continuing the schedule's learning rate where stage 1 left it (at the
# paper's solver: 8,000 iterations, then 4,000 at 1e-4). Han et al. ([26])
# retrain a pruned net at a lower rate than it was trained with; the paper
# gives no split (docs/recipe.md).
PRUNE_RETRAIN_SHARE = 1 / 3
DROPOUT_RATIO = 0.5     # Table 6: p = 0.5 on the inputs of the last two FC layers
L2NORM_ADAPTIVE_INIT = 1.0  # geometric mean of the paper's two fixed alphas (2, 0.5)
# Eq. 8's two learning rates mu_1 (MI, the transferred trunk) and mu_2 (MII, FC1
# and FC2), as the ratio mu_1 / mu_2 = the lr_mult of MI's layers. The paper
# gives neither value, so both parts learn at the solver's rate (ratio 1).
TRANSFERRED_LR_MULT = 1.0
# Center loss: the centers' lr_mult, so their update rate is alpha = lr * this
# (Wen et al.'s released solver files: lr_mult 1, centers follow the solver's
# rate; their paper reports alpha = 0.5, i.e. 50 at base_lr 0.01); their
# initialisation and weight decay as in Wen et al.'s released face-model
# configuration (center_filler xavier, decay_mult 2); "zeros" (their layer's
# own default) and "gaussian" (with CENTER_FILLER_STD) are options.
CENTER_LR_MULT = 1.0
CENTER_FILLER = "xavier"
CENTER_FILLER_STD = 0.0
CENTER_DECAY_MULT = 2.0
# How the feature-sparseness term is normalised over the batch (docs/layers.md,
# "Normalisation"): "batch" divides the summed penalty by N, as Caffe's
# SoftmaxWithLoss divides the data term; "sum" keeps Eq. 4's plain sum over the
# batch (the reading in which the authors' lambda acted N times as strongly).
SPARSENESS_NORMALIZATIONS = ("batch", "sum")
SPARSENESS_NORMALIZATION = "batch"


@dataclass(frozen=True)
class NetInfo:
    description: str
    input_size: int          # side of the square gray input the committed nets use
    num_classes: int         # class count of the committed nets
    dataset: str             # what the committed nets' LMDB paths point at
    train_source: str        # relative to the repo root (users run caffe from there)
    test_source: str


NETS = {
    "toy": NetInfo(
        description="Section 3.2's toy net: conv (1 map, 9x9, stride 2) -> FC 32 -> FC classes; "
                    "trained on MMI (Table 2, Eq. 13)",
        input_size=48, num_classes=6, dataset="mmi-48 fold_00",
        train_source="data/prepared/mmi-48/fold_00/train_lmdb",
        test_source="data/prepared/mmi-48/fold_00/test_lmdb"),
    "resnet": NetInfo(
        description="the center-loss face ResNet of Wen et al. (ECCV 2016), public layer names; "
                    "FC1 = fc5 (512-d x), FC2 = the expression classifier",
        input_size=112, num_classes=7, dataset="fer2013-112 official",
        train_source="data/prepared/fer2013-112/official/train_lmdb",
        test_source="data/prepared/fer2013-112/official/val_lmdb"),
    "vgg": NetInfo(
        description="VGG-16 with the VGG-Face layer names (Parkhi et al., BMVC 2015); "
                    "z = fc6, x = fc7, classifier = fc8",
        input_size=224, num_classes=7, dataset="fer2013-224 official",
        train_source="data/prepared/fer2013-224/official/train_lmdb",
        test_source="data/prepared/fer2013-224/official/val_lmdb"),
    "cnn48": NetInfo(
        description="not in the paper: a small CNN (3 x [3x3 conv, ReLU, 2x2 max pool] of 32/64/128 "
                    "maps -> FC 256 -> FC classes) trained from scratch on 48x48 gray faces, so the "
                    "paper's comparisons can be run on a CPU in minutes",
        input_size=48, num_classes=7, dataset="fer2013-48 official",
        train_source="data/prepared/fer2013-48/official/train_lmdb",
        test_source="data/prepared/fer2013-48/official/val_lmdb"),
}


@dataclass(frozen=True)
class Sparseness:
    """The feature-sparseness loss (Eq. 4, 5) or the hidden-unit sparseness of Table 3.

    where: "x" (FC2 input only, lambda_FC1 = 0), "zx" (FC1 and FC2 inputs) or
    "hidden" (every hidden layer's output); divided: the ^{H,D} coefficient
    1/#layers instead of ^{H,S}'s 1 per layer.
    """
    p: int
    where: str
    divided: bool = False


@dataclass(frozen=True)
class Pruning:
    """Connection pruning (c.p.) of W (the classifier) or V (FC1)."""
    target: str   # "W" or "V"
    penalty: str  # "l1" or "l2"


@dataclass(frozen=True)
class L2Norm:
    """Eq. 3's baseline: x scaled to ||x||_2 = alpha, alpha fixed or learned."""
    alpha: float
    learn: bool = False


@dataclass(frozen=True)
class Variant:
    description: str
    paper: tuple                          # where the paper reports it
    sparseness: Sparseness = None
    weight_l2: frozenset = frozenset()    # subset of {"V", "W"}
    pruning: Pruning = None
    l2norm: L2Norm = None
    normalized_classifier: bool = False   # NormFace: the classifier's weights normalised too
    dropout: bool = False
    center: bool = False


def _v(description, paper, **options):
    return Variant(description=description, paper=tuple(paper), **options)


VARIANTS = {
    "softmax": _v("softmax loss only", [
        "Table 3 SoftMax", "Table 4 Softmax loss", "Table 6 row 1", "Table 7 SoftMax only"]),
    "l2": _v("L2 feature sparseness on x (the FC2 input), lambda_FC2 = 1e-5", [
        "Table 3 L2", "Table 4 L2-sparseness", "Table 5 L2", "Table 6 row 7", "Table 7 L2",
        "Fig. 9 L2 sparseness", "Table 2 SP (toy)"],
        sparseness=Sparseness(2, "x")),
    "l1": _v("L1 feature sparseness on x, lambda_FC2 = 1e-5", [
        "Table 3 L1", "Table 5 L1"], sparseness=Sparseness(1, "x")),
    "l2l2": _v("L2 feature sparseness on z and x, lambda_FC1 = lambda_FC2 = 1e-5", [
        "Table 3 L2L2"], sparseness=Sparseness(2, "zx")),
    "l1l1": _v("L1 feature sparseness on z and x, lambda_FC1 = lambda_FC2 = 1e-5", [
        "Table 3 L1L1"], sparseness=Sparseness(1, "zx")),
    "l2h_s": _v("L2 hidden-unit sparseness, 1e-5 on every hidden layer's output", [
        "Table 3 L2^{H,S}"], sparseness=Sparseness(2, "hidden")),
    "l1h_s": _v("L1 hidden-unit sparseness, 1e-5 on every hidden layer's output", [
        "Table 3 L1^{H,S}"], sparseness=Sparseness(1, "hidden")),
    "l2h_d": _v("L2 hidden-unit sparseness, 1e-5/#layers on every hidden layer's output", [
        "Table 3 L2^{H,D}"], sparseness=Sparseness(2, "hidden", divided=True)),
    "l1h_d": _v("L1 hidden-unit sparseness, 1e-5/#layers on every hidden layer's output", [
        "Table 3 L1^{H,D}"], sparseness=Sparseness(1, "hidden", divided=True)),
    "w_l2": _v("L2 weight sparseness (1e-5) on W, the classifier's weights", [
        "Table 5 W-L2"], weight_l2=frozenset({"W"})),
    "v_l2": _v("L2 weight sparseness (1e-5) on V, FC1's weights", [
        "Table 5 V-L2"], weight_l2=frozenset({"V"})),
    "vw_l2": _v("L2 weight sparseness (1e-5) on V and W", [
        "Table 5 V-W-L2"], weight_l2=frozenset({"V", "W"})),
    "w_l1_cp": _v("connection pruning of W: 30 % masked, L1 penalty 1e-5", [
        "Table 5 W-L1-c.p."], pruning=Pruning("W", "l1")),
    "w_l2_cp": _v("connection pruning of W: 30 % masked, L2 penalty 1e-5", [
        "Table 5 W-L2-c.p."], pruning=Pruning("W", "l2")),
    "v_l1_cp": _v("connection pruning of V: 30 % masked, L1 penalty 1e-5", [
        "Table 5 V-L1-c.p."], pruning=Pruning("V", "l1")),
    "v_l2_cp": _v("connection pruning of V: 30 % masked, L2 penalty 1e-5", [
        "Table 5 V-L2-c.p."], pruning=Pruning("V", "l2")),
    "l2norm_a2": _v("L2 feature normalisation of x, alpha = 2 (Eq. 3)", [
        "Fig. 9 L2-norm alpha = 2", "Table 2 NM (toy; alpha not stated there)"], l2norm=L2Norm(2.0)),
    "l2norm_a05": _v("L2 feature normalisation of x, alpha = 0.5 (Eq. 3)", [
        "Fig. 9 L2-norm alpha = 0.5"], l2norm=L2Norm(0.5)),
    "l2norm_adaptive": _v("L2 feature normalisation of x, alpha learned (self-adaptive), "
                          f"initial {L2NORM_ADAPTIVE_INIT}", [
        "Fig. 9 L2-norm self-adaptive"], l2norm=L2Norm(L2NORM_ADAPTIVE_INIT, learn=True)),
    "l2norm_normface": _v("NormFace's form of the self-adaptive L2-norm: x normalised with a learned "
                          f"scale (initial {L2NORM_ADAPTIVE_INIT}) and the classifier's weights "
                          "normalised, no bias (Wang et al. 2017)", [
        "Fig. 9 L2-norm self-adaptive, NormFace's form (not in the paper)"],
        l2norm=L2Norm(L2NORM_ADAPTIVE_INIT, learn=True), normalized_classifier=True),
    "dropout": _v("dropout 0.5 on z and x", ["Table 6 row 2"], dropout=True),
    "center": _v("center loss on x, lambda_C = 8e-3", [
        "Table 6 row 6", "Table 7 Center"], center=True),
    "l2_center": _v("L2 feature sparseness on x + center loss (the paper's method, Eq. 9)", [
        "Table 6 row 8", "Table 7 L2 and Center", "Tables 8-11 Ours", "Table 12",
        "Tables 13-14", "Table 15 Ours"], sparseness=Sparseness(2, "x"), center=True),
    "dropout_l2": _v("dropout 0.5 on z and x + L2 feature sparseness on x", [
        "Table 6 row 3"], sparseness=Sparseness(2, "x"), dropout=True),
    "dropout_center": _v("dropout 0.5 on z and x + center loss", [
        "Table 6 row 4", "Table 7 Dropout and Center", "Table 15 Dropout"],
        dropout=True, center=True),
    "dropout_l2_center": _v("dropout 0.5 on z and x + L2 feature sparseness + center loss", [
        "Table 6 row 5"], sparseness=Sparseness(2, "x"), dropout=True, center=True),
    "w_l2_center": _v("L2 weight sparseness on W + center loss", [
        "Table 7 W-L2 and Center", "Table 15 W-L2"], weight_l2=frozenset({"W"}), center=True),
    "v_l2_center": _v("L2 weight sparseness on V + center loss", [
        "Table 7 V-L2 and Center", "Table 15 V-L2"], weight_l2=frozenset({"V"}), center=True),
}


def check_net(net):
    if net not in NETS:
        raise ValueError(f"unknown net {net!r}; choose one of {', '.join(sorted(NETS))}")
    return NETS[net]


def check_variant(variant):
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)} "
                         "(see docs/nets.md)")
    return VARIANTS[variant]
