"""RespondRatio (the paper's Eq. 13, Table 2) of a trained toy network.

Command line: tools/respond_ratio.py.

For the toy net (one convolution -> FC1 (32) -> FC2), z_i is the convolution's
feature map of image i, V and b FC1's weights and bias, x_i = V z_i + b. For
expression e and face part m:

    RespondRatio_{e,m} = sum_{i in SET_e} sum_{j in I50(i)} exp(sum_{k in PART_m} V_jk z_ik + b_j)
                       / sum_{i in SET_e} sum_{j in I50(i)} exp(r_m V_j^T z_i + b_j)

where SET_e is the test images of expression e (each fold's snapshot on its
own, person-independent test images, pooled), I50(i) the top half of x_i's
components and r_m = #PART_m / #z the share of the map the part covers. The
printed equation's denominator reads "#PART_m/#PART_m", which we take to be
that share: a part contributing in proportion to its size gives a ratio near 1
(Table 2's values lie around 1). Sums are done in log space.

Face parts (ours: the paper's Fig. 7 regions are not in the text we have),
in units of the eye distance d around the alignment template's points:
nose root between the eyes; eyes and brows a box over each eye reaching up
to the brows; cheeks below each eye down to the nose base; mouth around the
mouth centre. A map unit belongs to a part when its receptive field's centre
does; crops are accounted for by their offsets. Results go to
``respond_ratio.json`` in each run folder (tools/report.py shows them).
"""
from pathlib import Path


import numpy as np
from scipy.special import logsumexp

from data_prep.face_template import template_from_dict
from data_prep.labels import CLASS_NAMES
from data_prep.lmdb_io import read_lmdb
from experiments.errors import ExperimentError
from nets.build import roles
from runtime.caffe_env import import_caffe
from data_prep.prepared import PreparedDataset, parse_key
from experiments.paper.paper_results import TABLE2_PARTS
from experiments.running.run_folder import read_config, read_summary, trained_snapshot
from nets.experiment import file_names
from runtime.files import write_json_atomic
from runtime.prototxt import read_net


class RespondRatioError(ExperimentError):
    """A run folder RespondRatio (Eq. 13) is not defined for, or not ready for."""


def part_boxes(template):
    """{part: [(x0, y0, x1, y1), ...]} in face-box fractions."""
    left, right = np.array(template.left_eye), np.array(template.right_eye)
    nose, mouth = np.array(template.nose_base), np.array(template.mouth)
    d = float(np.linalg.norm(right - left))
    eye_y = (left[1] + right[1]) / 2
    centre_x = (left[0] + right[0]) / 2
    eyes = [(e[0] - 0.3 * d, e[1] - 0.45 * d, e[0] + 0.3 * d, e[1] + 0.15 * d) for e in (left, right)]
    cheeks = [(e[0] - 0.3 * d, e[1] + 0.25 * d, e[0] + 0.3 * d, nose[1]) for e in (left, right)]
    return {
        "nose_root": [(centre_x - 0.2 * d, eye_y - 0.25 * d, centre_x + 0.2 * d, eye_y + 0.2 * d)],
        "eyes_brows": eyes,
        "cheek": cheeks,
        "mouth": [(mouth[0] - 0.5 * d, mouth[1] - 0.2 * d, mouth[0] + 0.5 * d, mouth[1] + 0.25 * d)],
    }


def part_masks(template, offset, input_size, map_side, kernel, stride):
    """{part: bool (map_side, map_side)} for a crop whose window is shifted by ``offset``."""
    centres = (stride * np.arange(map_side) + (kernel - 1) / 2 + 0.5) / input_size
    xs = centres[np.newaxis, :] + offset[0]
    ys = centres[:, np.newaxis] + offset[1]
    masks = {}
    for part, boxes in part_boxes(template).items():
        mask = np.zeros((map_side, map_side), dtype=bool)
        for x0, y0, x1, y1 in boxes:
            mask |= (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        masks[part] = mask
    return masks


def log_terms(z, weights, bias, masks):
    """Per image, the log of the numerator and denominator sums of Eq. 13 for every part.

    z: (N, K) maps, weights: (J, K), bias: (J,), masks: {part: (K,) bool} or
    {part: (N, K) bool} (per-image masks, for crops). Returns {part: (num (N,), den (N,))}.
    """
    x = z @ weights.T + bias                                   # (N, J)
    half = weights.shape[0] // 2
    top = np.argsort(-x, axis=1, kind="stable")[:, :half]      # I50: the top half of x_i
    full = np.take_along_axis(z @ weights.T, top, axis=1)      # V_j^T z_i
    b_top = bias[top]
    out = {}
    for part, mask in masks.items():
        mask = np.broadcast_to(mask, z.shape)
        partial = np.take_along_axis((z * mask) @ weights.T, top, axis=1)
        share = mask.sum(axis=1, keepdims=True) / z.shape[1]
        out[part] = (logsumexp(partial + b_top, axis=1), logsumexp(share * full + b_top, axis=1))
    return out


def respond_ratios(log_terms_by_class):
    """{class: {part: ratio}} from per-image log terms pooled over a class's images."""
    result = {}
    for name, parts in log_terms_by_class.items():
        result[name] = {part: float(np.exp(logsumexp(np.concatenate(num)) - logsumexp(np.concatenate(den))))
                        for part, (num, den) in parts.items()}
    return result


def _conv_geometry(net_path, layer_name):
    """(kernel, stride) of a square convolution, read from the net's own definition."""
    net_param = read_net(net_path)
    conv = next(layer.convolution_param for layer in net_param.layer if layer.name == layer_name)
    return conv.kernel_size[0], (conv.stride[0] if conv.stride else 1)


def fold_terms(fold_dir, test_lmdb, variant, manifest, template, batch=64):
    """Log terms of every test record of one fold, grouped by class name."""
    caffe = import_caffe()
    caffe.set_mode_cpu()
    net_roles = roles("toy", manifest["num_classes"], manifest["image_size"])
    deploy = fold_dir / file_names("toy", variant)["deploy"]
    kernel, stride = _conv_geometry(deploy, net_roles.conv_layer)
    net = caffe.Net(str(deploy), caffe.TEST, weights=str(trained_snapshot(fold_dir)))
    weights = net.params[net_roles.fc1_layer][0].data.astype(np.float64)
    bias = net.params[net_roles.fc1_layer][1].data.astype(np.float64)
    map_side = net_roles.z_shape[-1]
    offsets = np.array(manifest["crop_offsets"], dtype=np.float64)
    masks_by_crop = [
        {part: m.ravel() for part, m in part_masks(template, offset, manifest["image_size"], map_side,
                                                   kernel=kernel, stride=stride).items()}
        for offset in offsets]
    records = list(read_lmdb(test_lmdb))
    grouped = {}
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        images = np.stack([image for _, image, _ in chunk]).astype(np.float32)
        net.blobs["data"].reshape(*images.shape)
        net.blobs["data"].data[...] = images
        net.forward()
        z = net.blobs[net_roles.z_blob].data.reshape(len(chunk), -1).astype(np.float64)
        masks = {part: np.stack([masks_by_crop[parse_key(key)[1]][part] for key, _, _ in chunk])
                 for part in TABLE2_PARTS}
        terms = log_terms(z, weights, bias, masks)
        for row, (_, _, label) in enumerate(chunk):
            name = manifest["classes"][label]
            parts = grouped.setdefault(name, {part: ([], []) for part in TABLE2_PARTS})
            for part in TABLE2_PARTS:
                parts[part][0].append(terms[part][0][row:row + 1])
                parts[part][1].append(terms[part][1][row:row + 1])
    return grouped


def run_respond_ratio(run_dir, data_dir=None):
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config.get("net") != "toy" or config.get("tool") != "crossval":
        raise RespondRatioError(f"{run_dir} is not a cross-validation run of the toy net; "
                                "Eq. 13 is defined for the toy network (tools/crossval.py --net toy)")
    dataset = PreparedDataset.open(data_dir or config["data"])
    manifest = dataset.manifest
    template = template_from_dict(manifest["template"], origin=f"{dataset.root}/manifest.json")
    summary = read_summary(run_dir)
    if summary is None:
        raise RespondRatioError(f"{run_dir} has no summary.json: finish its cross-validation first")
    pooled = {}
    for fold in summary["folds"]:
        for name, parts in fold_terms(run_dir / fold, dataset.lmdb(fold, "test"), config["variant"], manifest,
                                      template).items():
            into = pooled.setdefault(name, {part: ([], []) for part in TABLE2_PARTS})
            for part in TABLE2_PARTS:
                into[part][0].extend(parts[part][0])
                into[part][1].extend(parts[part][1])
    ordered = {name: pooled[name] for name in CLASS_NAMES if name in pooled}
    result = {"ratios": respond_ratios(ordered), "parts": list(TABLE2_PARTS),
              "part_boxes": part_boxes(template), "folds": summary["folds"]}
    write_json_atomic(run_dir / "respond_ratio.json", result)
    return result
