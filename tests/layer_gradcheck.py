"""Helpers for the layer tests: tiny nets written to temp files, and a gradient checker.

The checker follows Caffe's own (test_gradient_check_util.hpp): central
differences with step 1e-2, an error bound of threshold * max(|analytic|,
|numeric|, 1), and points within ``kink_range`` of a kink skipped; but it runs
through a real ``caffe.Net``: the objective is the net's weighted loss, the
analytic gradient is what ``net.backward()`` leaves in the diffs.
"""
import json

import numpy as np


def python_layer(name, module, cls, bottoms, tops, params=None, loss_weight=None, extra=""):
    """Prototxt text of one Python layer; ``params`` (a dict) becomes its JSON param_str."""
    lines = [f'layer {{ name: "{name}" type: "Python"']
    lines += [f'  bottom: "{b}"' for b in bottoms]
    lines += [f'  top: "{t}"' for t in tops]
    param_str = json.dumps(params or {})
    lines.append(f"  python_param {{ module: \"caffe_layers.{module}\" layer: \"{cls}\" "
                 f"param_str: '{param_str}' }}")
    if loss_weight is not None:
        lines.append(f"  loss_weight: {loss_weight}")
    if extra:
        lines.append(f"  {extra}")
    lines.append("}")
    return "\n".join(lines)


def input_layer(shapes):
    """One Input layer with a top per (name, shape) in ``shapes`` (a dict)."""
    tops = " ".join(f'top: "{name}"' for name in shapes)
    dims = " ".join("shape { " + " ".join(f"dim: {d}" for d in shape) + " }"
                    for shape in shapes.values())
    return f'layer {{ name: "input" type: "Input" {tops} input_param {{ {dims} }} }}'


def euclidean_loss(bottom, target, loss_weight=1.0):
    """Caffe's EuclideanLoss on ``bottom`` against the blob ``target``, top "loss"."""
    return (f'layer {{ name: "loss" type: "EuclideanLoss" bottom: "{bottom}" bottom: "{target}" '
            f'top: "loss" loss_weight: {loss_weight} }}')


def write_net(path, *layers, force_backward=True):
    text = ("force_backward: true\n" if force_backward else "") + "\n".join(layers) + "\n"
    path.write_text(text)
    return path


def make_net(caffe, path, *layers, weights=None, phase=None, force_backward=True):
    write_net(path, *layers, force_backward=force_backward)
    phase = caffe.TRAIN if phase is None else phase
    if weights is None:
        return caffe.Net(str(path), phase)
    return caffe.Net(str(path), phase, weights=str(weights))


def fill_inputs(net, values):
    """Set input blobs: ``values`` maps a blob name to an array (reshaping the blob to it)."""
    for name, value in values.items():
        value = np.asarray(value, dtype=np.float32)
        net.blobs[name].reshape(*value.shape)
        net.blobs[name].data[...] = value


def _array(net, target, field):
    if target[0] == "blob":
        return getattr(net.blobs[target[1]], field)
    return getattr(net.params[target[1]][target[2]], field)


def zero_param_diffs(net):
    for blobs in net.params.values():
        for blob in blobs:
            blob.diff[...] = 0.0


def analytic_gradients(net, targets):
    """Forward, zero the parameter diffs, backward; return {target: diff copy}."""
    net.forward()
    zero_param_diffs(net)
    net.backward()
    return {target: _array(net, target, "diff").copy() for target in targets}


def weighted_loss(net, loss_weights):
    """Sum of loss_weight * loss top over ``loss_weights`` ({top name: weight}), in float64."""
    net.forward()
    return sum(weight * float(net.blobs[top].data.sum()) for top, weight in loss_weights.items())


def check_gradients(net, targets, loss_weights, step=1e-2, threshold=1e-3, kink=None,
                    kink_range=-1.0, extra_objective=None, skip=None):
    """Compare net.backward()'s diffs with central differences of the weighted loss.

    ``targets``: ("blob", name) for blobs (inputs) or ("param", layer, index)
    for learnable blobs. ``extra_objective(net)`` adds terms that a layer puts
    in its diffs without a loss top (a weight penalty). ``skip`` maps a target
    to a boolean array of elements not to check. Raises AssertionError listing
    the worst mismatches; returns the number of elements checked.
    """
    analytic = analytic_gradients(net, targets)

    def objective():
        value = weighted_loss(net, loss_weights)
        return value + (extra_objective(net) if extra_objective else 0.0)

    failures, checked = [], 0
    for target in targets:
        data = _array(net, target, "data")
        skipped = None if skip is None else skip.get(target)
        for index in np.ndindex(data.shape):
            if skipped is not None and skipped[index]:
                continue
            original = data[index].item()
            if kink is not None and abs(original - kink) < kink_range:
                continue
            data[index] = original + step
            plus, above = objective(), data[index].item()
            data[index] = original - step
            minus, below = objective(), data[index].item()
            data[index] = original
            numeric = (plus - minus) / (above - below)
            computed = float(analytic[target][index])
            scale = max(abs(computed), abs(numeric), 1.0)
            checked += 1
            if abs(computed - numeric) > threshold * scale:
                failures.append((abs(computed - numeric) / scale, target, index, computed, numeric))
    net.forward()  # leave the net as it was after the analytic pass
    if failures:
        failures.sort(reverse=True)
        lines = [f"{t} {i}: analytic {a:.6g} numeric {n:.6g}" for _, t, i, a, n in failures[:8]]
        raise AssertionError(f"{len(failures)} of {checked} gradient elements differ:\n"
                             + "\n".join(lines))
    return checked
