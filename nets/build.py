"""Train/val and deploy nets: a trunk (MI), the two FC layers (MII) and the
variant's losses, from one definition.

The paper's notation (Table 1) maps onto every net the same way: z = FC1's
input (the trunk's output), V = FC1's weights, x = FC1's output = FC2's input,
W = FC2's (the classifier's) weights. ``roles()`` names those blobs and layers.
"""
import dataclasses
from dataclasses import dataclass

from caffe_layers.center_loss import CENTER_FILLERS
from nets import blocks
from nets.architectures import TRUNKS, check_geometry
from nets.catalog import (CENTER_DECAY_MULT, CENTER_FILLER, CENTER_FILLER_STD, CENTER_LR_MULT,
                          DROPOUT_RATIO, LAMBDA_C, LAMBDA_FC, LAMBDA_WEIGHT, PRUNE_RATIO,
                          SPARSENESS_NORMALIZATION, SPARSENESS_NORMALIZATIONS, TRANSFERRED_LR_MULT,
                          WEIGHT_DECAY, check_net, check_variant)
from runtime.caffe_env import import_caffe

DEFAULT_BATCH_SIZE = 64        # Section 3
DEFAULT_TEST_BATCH_SIZE = 50
# The FeatureSparsenessLoss layer's "normalize" for each sparseness_normalization.
SPARSENESS_LAYER_NORMALIZE = {"batch": "batch", "sum": "none"}
# Layer types of the trunks that hold learnable blobs (transferred_lr_mult scales them).
PARAMETER_LAYERS = ("Convolution", "InnerProduct", "PReLU")


@dataclass(frozen=True)
class BuildOptions:
    """Training options that change the generated nets (docs/nets.md, "Options").

    weight_decay: the solver's weight decay; the weight-sparseness variants'
      decay_mult is computed from it, so the penalty on V/W stays
      weight_decay + LAMBDA_WEIGHT whatever the solver uses.
    transferred_lr_mult: lr_mult of MI's (the trunk's) parameters relative to
      MII (FC1, FC2): Eq. 8's mu_1 / mu_2.
    center_lr_mult: lr_mult of the center-loss centers (alpha = lr * this).
    center_filler: the centers' initialisation, "xavier" (Wen et al.'s released
      configuration), "zeros" or "gaussian" (N(0, center_filler_std^2)).
    center_filler_std: the gaussian filler's std (ignored by the others).
    center_decay_mult: the centers' decay_mult (2 in Wen et al.'s configuration).
    sparseness_normalization: "batch" (the feature-sparseness sum / N) or "sum".
    geometry: the face ResNet's input geometry, "square" or "public" (112x96).
    """
    weight_decay: float = WEIGHT_DECAY
    transferred_lr_mult: float = TRANSFERRED_LR_MULT
    center_lr_mult: float = CENTER_LR_MULT
    center_filler: str = CENTER_FILLER
    center_filler_std: float = CENTER_FILLER_STD
    center_decay_mult: float = CENTER_DECAY_MULT
    sparseness_normalization: str = SPARSENESS_NORMALIZATION
    geometry: str = "square"

    def __post_init__(self):
        for name in ("weight_decay", "transferred_lr_mult", "center_lr_mult", "center_filler_std",
                     "center_decay_mult"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.center_filler not in CENTER_FILLERS:
            raise ValueError(f"center_filler must be one of {', '.join(CENTER_FILLERS)}, "
                             f"got {self.center_filler!r}")
        if (self.center_filler == "gaussian") != (self.center_filler_std > 0):
            raise ValueError(f"center_filler_std {self.center_filler_std} with center_filler "
                             f"{self.center_filler!r}: the std is the gaussian filler's alone; "
                             "give center_filler gaussian with a std > 0, or no std")
        if self.sparseness_normalization not in SPARSENESS_NORMALIZATIONS:
            raise ValueError(f"sparseness_normalization must be one of "
                             f"{', '.join(SPARSENESS_NORMALIZATIONS)}, got "
                             f"{self.sparseness_normalization!r}")


def weight_l2_decay_mult(weight_decay):
    """decay_mult that makes Caffe's L2 weight decay on a layer weight_decay + LAMBDA_WEIGHT.

    Caffe's weight decay is an L2 penalty (weight_decay * decay_mult per layer), so
    the weight-sparseness penalty lambda is added by raising the layer's multiplier.
    """
    if weight_decay <= 0:
        raise ValueError(f"weight_decay {weight_decay} leaves no L2 weight decay to carry the "
                         f"weight-sparseness penalty {LAMBDA_WEIGHT} (decay_mult = 1 + "
                         "lambda / weight_decay); use a positive weight_decay for the W-L2, "
                         "V-L2 and V-W-L2 variants")
    return 1 + LAMBDA_WEIGHT / weight_decay


@dataclass(frozen=True)
class NetRoles:
    """Which blobs and layers of a generated net play the paper's roles."""
    net: str
    num_classes: int
    input_size: int
    input_shape: tuple     # (channels, height, width) of the ``data`` blob: raw 0-255 gray
    z_blob: str            # FC1's input (MI's output)
    z_shape: tuple
    fc1_layer: str         # FC1, weights V (num_output x dim z)
    x_blob: str            # FC1's output after its activation = FC2's input
    classifier_layer: str  # FC2, weights W
    logits_blob: str
    hidden_blobs: tuple    # the hidden layers of the ^{H,S} / ^{H,D} variants (ends in z, x)
    conv_layer: str        # the toy net's convolution (its top is z); None for the others
    geometry: str = "square"  # the face ResNet's input geometry (architectures.GEOMETRIES)


def _defaults(net, num_classes, input_size):
    info = check_net(net)
    num_classes = info.num_classes if num_classes is None else int(num_classes)
    input_size = info.input_size if input_size is None else int(input_size)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    return num_classes, input_size


def _classifier_name(trunk, num_classes):
    # The class count is in the name so that a model fine-tuned on 7 classes
    # loads into a 6-class net without a shape clash (Caffe matches by name).
    return f"{trunk.classifier_base}_{num_classes}cls"


def _fc(n, name, bottom, num_output, variant, role, options):
    """FC1 (role "V") or FC2 (role "W") as the variant wants it."""
    if variant.pruning is not None and variant.pruning.target == role:
        return blocks.masked_inner_product(n, name, bottom, num_output, PRUNE_RATIO,
                                           variant.pruning.penalty, LAMBDA_WEIGHT)
    decay_mult = weight_l2_decay_mult(options.weight_decay) if role in variant.weight_l2 else 1
    return blocks.inner_product(n, name, bottom, num_output, weight_decay_mult=decay_mult)


def _dropout(n, name, bottom):
    # Not in place: the sparseness and center losses see the undropped feature.
    L, _ = blocks.caffe_layers()
    n[name] = L.Dropout(bottom, dropout_ratio=DROPOUT_RATIO)
    return n[name]


def _l2_normalize(n, name, bottom, l2norm):
    if l2norm.learn:
        n[name] = blocks.python_layer("l2_norm", "L2Normalize", name, [bottom],
                                      {"alpha": l2norm.alpha, "learn_alpha": True},
                                      param=[{"lr_mult": 1, "decay_mult": 0}])
    else:
        n[name] = blocks.python_layer("l2_norm", "L2Normalize", name, [bottom],
                                      {"alpha": l2norm.alpha})
    return n[name]


def _center_loss(n, name, x, label, num_classes, options):
    settings = {"num_classes": num_classes, "center_filler": options.center_filler}
    if options.center_filler == "gaussian":
        settings["center_filler_std"] = options.center_filler_std
    return blocks.python_layer("center_loss", "CenterLoss", name, [x, label], settings,
                               loss_weight=LAMBDA_C,
                               param=[{"lr_mult": options.center_lr_mult,
                                       "decay_mult": options.center_decay_mult}])


def _sparseness_bottoms(sparseness, trunk, x_blob, x):
    if sparseness.where == "x":
        tops = [x]
    elif sparseness.where == "zx":
        tops = [trunk.z, x]
    else:
        tops = [top for _, top in trunk.hidden] + [x]
    coefficient = 1.0 / len(tops) if sparseness.divided else 1.0
    return tops, [coefficient] * len(tops)


def _scale_learning_rates(net_param, layer_names, lr_mult):
    """Multiply the lr_mult of every parameter of the named layers by ``lr_mult``."""
    if lr_mult == 1:
        return
    for layer in net_param.layer:
        if layer.name not in layer_names or layer.type not in PARAMETER_LAYERS:
            continue
        if not layer.param:  # PReLU: one blob (the slopes), Caffe's defaults otherwise
            layer.param.add()
        for spec in layer.param:
            spec.lr_mult = spec.lr_mult * lr_mult


def _build(net, variant_name, num_classes, input_size, data, label, options):
    """Trunk, FC head and losses on top of the given data/label tops.

    Returns (NetParameter, roles)."""
    variant = check_variant(variant_name)
    check_geometry(net, options.geometry, input_size)
    caffe = import_caffe()
    L, _ = blocks.caffe_layers()
    n = caffe.NetSpec()
    n.data, n.label = data, label
    before_trunk = set(n.tops)
    trunk = TRUNKS[net](n, blocks.input_size_check(n, n.data, input_size), input_size,
                        options.geometry)
    trunk_layers = set(n.tops) - before_trunk  # MI: the transferred part of Eq. 8

    fc1_input = _dropout(n, f"{trunk.z_blob}_drop", trunk.z) if variant.dropout else trunk.z
    x = _fc(n, trunk.fc1_layer, fc1_input, trunk.fc1_outputs, variant, "V", options)
    if trunk.fc1_relu:
        x = blocks.relu(n, trunk.fc1_relu, x)
    x_blob = trunk.fc1_layer
    classifier_input = x
    if variant.dropout:
        classifier_input = _dropout(n, f"{x_blob}_drop", x)
    if variant.l2norm is not None:
        classifier_input = _l2_normalize(n, f"{x_blob}_norm", x, variant.l2norm)
    classifier = _classifier_name(trunk, num_classes)
    if variant.normalized_classifier:
        logits = blocks.normalized_inner_product(n, classifier, classifier_input, num_classes)
    else:
        logits = _fc(n, classifier, classifier_input, num_classes, variant, "W", options)

    n.loss = L.SoftmaxWithLoss(logits, n.label)
    n.accuracy = L.Accuracy(logits, n.label, include={"phase": blocks.TEST})
    if variant.sparseness is not None:
        tops, coefficients = _sparseness_bottoms(variant.sparseness, trunk, x_blob, x)
        n.sparseness_loss = blocks.python_layer(
            "sparseness", "FeatureSparsenessLoss", "sparseness_loss", tops,
            {"p": variant.sparseness.p, "coefficients": coefficients,
             "normalize": SPARSENESS_LAYER_NORMALIZE[options.sparseness_normalization]},
            loss_weight=LAMBDA_FC)
    if variant.center:
        n.center_loss = _center_loss(n, f"center_loss_{num_classes}cls", x, n.label,
                                     num_classes, options)
    proto = n.to_proto()
    _scale_learning_rates(proto, trunk_layers, options.transferred_lr_mult)

    roles = NetRoles(
        net=net, num_classes=num_classes, input_size=input_size,
        input_shape=(1, input_size, input_size), z_blob=trunk.z_blob, z_shape=trunk.z_shape,
        fc1_layer=trunk.fc1_layer, x_blob=x_blob, classifier_layer=classifier,
        logits_blob=classifier,
        hidden_blobs=tuple(name for name, _ in trunk.hidden) + (x_blob,),
        conv_layer=trunk.conv_layer, geometry=options.geometry)
    return proto, roles


@dataclass(frozen=True)
class ExperimentNets:
    """One experiment's nets from a single build: the deploy net is derived from train_val."""
    train_val: object  # caffe_pb2.NetParameter
    deploy: object     # caffe_pb2.NetParameter
    roles: NetRoles


def _options(options):
    known = {field.name for field in dataclasses.fields(BuildOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown net option(s) {', '.join(map(repr, unknown))}; "
                         f"the options are {', '.join(sorted(known))} (docs/nets.md)")
    return BuildOptions(**options)


def _train_val(net, variant, num_classes, train_source, test_source, input_size, batch_size,
               test_batch_size, options):
    """(train/val NetParameter, NetRoles) from one build."""
    info = check_net(net)
    num_classes, input_size = _defaults(net, num_classes, input_size)
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
    test_batch_size = DEFAULT_TEST_BATCH_SIZE if test_batch_size is None else int(test_batch_size)
    train_source = info.train_source if train_source is None else train_source
    test_source = info.test_source if test_source is None else test_source
    data, label = blocks.data_layer(train_source, batch_size, blocks.TRAIN)
    proto, net_roles = _build(net, variant, num_classes, input_size, data, label, options)

    caffe = import_caffe()
    test_spec = caffe.NetSpec()
    test_spec.data, test_spec.label = blocks.data_layer(test_source, test_batch_size,
                                                        blocks.TEST)
    layers = [proto.layer[0], test_spec.to_proto().layer[0]] + list(proto.layer[1:])
    result = caffe.proto.caffe_pb2.NetParameter(name=f"{net}_{variant}")
    result.layer.extend(layers)
    return result, net_roles


def experiment_nets(net, variant, num_classes=None, train_source=None, test_source=None,
                    input_size=None, batch_size=None, test_batch_size=None, deploy_batch_size=1,
                    **options):
    """The train/val net, the deploy net derived from it, and their roles, built once.

    Arguments as ``train_val_net``; ``options`` are BuildOptions fields.
    """
    train_val, net_roles = _train_val(net, variant, num_classes, train_source, test_source,
                                      input_size, batch_size, test_batch_size, _options(options))
    deploy = deploy_from_test(train_val, net_roles.logits_blob, net_roles.input_size,
                              batch_size=deploy_batch_size)
    return ExperimentNets(train_val=train_val, deploy=deploy, roles=net_roles)


def roles(net, num_classes=None, input_size=None, **options):
    """The NetRoles of ``net`` at this class count and input size (any variant)."""
    num_classes, input_size = _defaults(net, num_classes, input_size)
    L, _ = blocks.caffe_layers()
    data, label = L.Input(ntop=2)
    return _build(net, "softmax", num_classes, input_size, data, label, _options(options))[1]


def train_val_net(net, variant, num_classes=None, train_source=None, test_source=None,
                  input_size=None, batch_size=None, test_batch_size=None, **options):
    """The train/val NetParameter: LMDB Data layers for TRAIN and TEST.

    Defaults (None) come from nets.catalog.NETS[net] and the paper's batch 64.
    Sources are written as given: relative paths resolve against the directory
    ``caffe`` runs in (the repo root for the committed nets). ``options`` are
    BuildOptions fields (weight_decay, transferred_lr_mult, the center-loss
    options, sparseness_normalization, geometry).
    """
    return _train_val(net, variant, num_classes, train_source, test_source, input_size,
                      batch_size, test_batch_size, _options(options))[0]


def phase_net(net_param, phase):
    """The layers of ``net_param`` that Caffe instantiates in ``phase`` (0 TRAIN,
    1 TEST), with their phase rules removed."""
    caffe_pb2 = import_caffe().proto.caffe_pb2
    result = caffe_pb2.NetParameter()
    result.CopyFrom(net_param)
    del result.layer[:]
    for layer in net_param.layer:
        included = (not layer.include) or any(rule.phase == phase for rule in layer.include)
        excluded = any(rule.phase == phase for rule in layer.exclude)
        if included and not excluded:
            copy = result.layer.add()
            copy.CopyFrom(layer)
            del copy.include[:]
            del copy.exclude[:]
    return result


def deploy_from_test(net_param, logits_blob, input_size, batch_size=1):
    """Derive a deploy net from a train/val net's TEST phase.

    The Data layer becomes an Input ``data`` of shape (batch, 1, input_size,
    input_size) (gray, raw 0-255 values: normalisation is inside the net); every layer
    that needs the label or carries a loss weight goes; Softmax ``prob`` ends it.
    """
    caffe_pb2 = import_caffe().proto.caffe_pb2
    test = phase_net(net_param, blocks.TEST)
    deploy = caffe_pb2.NetParameter(name=net_param.name)
    for layer in test.layer:
        if layer.type == "Data":
            data = deploy.layer.add(name="data", type="Input", top=["data"])
            data.input_param.shape.add(dim=[batch_size, 1, input_size, input_size])
        elif "label" in layer.bottom or any(weight != 0 for weight in layer.loss_weight):
            continue
        else:
            deploy.layer.add().CopyFrom(layer)
    deploy.layer.add(name="prob", type="Softmax", bottom=[logits_blob], top=["prob"])
    return deploy


def deploy_net(net, variant, num_classes=None, input_size=None, batch_size=1, **options):
    """The deploy NetParameter: Input ``data`` (batch, 1, S, S) -> ... -> ``prob``."""
    return experiment_nets(net, variant, num_classes=num_classes, input_size=input_size,
                           train_source="unused", test_source="unused",
                           deploy_batch_size=batch_size, **options).deploy
