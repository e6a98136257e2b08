"""Data-quality audit: image statistics that reveal a broken copy of a database.

A copy of a database can be damaged in ways that no reader error shows: every
Training image of a widely shared FER2013 export is Gaussian-blurred (median
variance of the Laplacian 6 against 2,132 on its test images), some exports
hold blank images, some classes were upscaled from smaller originals. A net
trains on such a copy without complaint and the result is simply wrong. The
audit measures every image as read (before alignment, which resamples and
hides the original resolution), summarises the figures per split part and per
class, and checks them (docs/data.md, "Data-quality audit", gives the measured
figures behind every threshold).

Per image (``image_figures``, run inside the preparation workers):
    sharpness    variance of the Laplacian (OpenCV 3x3 kernel) of the gray image
    brightness   mean gray level
    contrast     standard deviation of the gray levels
    fine_detail  share of the Laplacian's energy that is lost when the image is
                 reduced to half its side and enlarged again (bicubic): ~0.6-0.9
                 for photos and drawn faces at their own resolution, ~0.05-0.3
                 for images upscaled from half their side or smaller (bilinear,
                 bicubic, Lanczos); ~1 for blurred images, whose remaining
                 Laplacian energy is the 8-bit rounding noise
    blocky       1 when every 2x2 block holds one value (nearest-neighbour upscaling)
    height, width, constant (1 when every pixel has one value)

Per group (all images of a split part, or of one class in it): the medians of
the figures over the images that are not near-constant (their contrast below
NEAR_CONSTANT_CONTRAST, counted separately), the shares of constant and
near-constant images, and the most common original sizes.
"""
from collections import Counter

import cv2
import numpy as np

FIGURES = ("sharpness", "brightness", "contrast", "fine_detail", "blocky", "height", "width", "constant")
_COLUMN = {name: i for i, name in enumerate(FIGURES)}
NEAR_CONSTANT_CONTRAST = 2.0      # gray levels; a face photo has 30-60
# Thresholds (docs/data.md, "Data-quality audit", has the measured figures).
SHARPNESS_FACTOR = 4.0            # train vs val/test median sharpness; clean FER2013: 1.1, blurred copy: 350
CONTRAST_FACTOR = 2.0             # train vs val/test median contrast; clean: 1.02, blurred copy: 1.48
CONSTANT_SHARE = 0.01             # constant or near-constant images in a class of a split part
UPSCALED_FINE_DETAIL = 0.4        # median fine_detail of a class below this: upscaled
UPSCALED_BLOCKY_SHARE = 0.5       # or this share of its images blocky
CLASS_SHARPNESS_FACTOR = 3.0      # a class's median sharpness vs the median over the other classes
CLASS_CONTRAST_FACTOR = 1.5
CLASS_BRIGHTNESS_SPREADS = 1.0    # a class's median brightness vs the others', in image-brightness spreads
CLASS_BRIGHTNESS_ERRORS = 4.0     # ... and in standard errors of that median (small classes are noisy)
MIN_CLASS_IMAGES = 10             # classes with fewer images are summarised, not compared
THRESHOLDS = {"sharpness_factor": SHARPNESS_FACTOR, "contrast_factor": CONTRAST_FACTOR,
              "constant_share": CONSTANT_SHARE, "near_constant_contrast": NEAR_CONSTANT_CONTRAST,
              "upscaled_fine_detail": UPSCALED_FINE_DETAIL, "upscaled_blocky_share": UPSCALED_BLOCKY_SHARE,
              "class_sharpness_factor": CLASS_SHARPNESS_FACTOR, "class_contrast_factor": CLASS_CONTRAST_FACTOR,
              "class_brightness_spreads": CLASS_BRIGHTNESS_SPREADS,
              "class_brightness_errors": CLASS_BRIGHTNESS_ERRORS, "min_class_images": MIN_CLASS_IMAGES}
PARTS = ("train", "val", "test")


class AuditError(ValueError):
    """--strict and the audit found problems; the message lists them."""


def image_figures(image):
    """The FIGURES of one 2-D uint8 image, as a float64 vector (OpenCV reductions: ~30 us at 48x48)."""
    height, width = image.shape
    mean, contrast = (float(v[0][0]) for v in cv2.meanStdDev(image))
    laplacian_energy = _variance(cv2.Laplacian(image, cv2.CV_32F))
    lowest, highest = cv2.minMaxLoc(image)[:2]
    fine_detail = np.nan
    if contrast >= NEAR_CONSTANT_CONTRAST and min(height, width) >= 4 and laplacian_energy > 0:
        pixels = image.astype(np.float32)
        half = cv2.resize(pixels, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        back = cv2.resize(half, (width, height), interpolation=cv2.INTER_CUBIC)
        fine_detail = _variance(cv2.Laplacian(pixels - back, cv2.CV_32F)) / laplacian_energy
    even = image[:height // 2 * 2, :width // 2 * 2]
    blocky = bool(np.array_equal(even[0], even[1]) and np.array_equal(even[0::2], even[1::2])
                  and np.array_equal(even[:, 0::2], even[:, 1::2]))
    return np.array([laplacian_energy, mean, contrast, fine_detail, blocky, height, width,
                     lowest == highest], np.float64)


def _variance(values):
    return float(cv2.meanStdDev(values)[1][0][0]) ** 2


def group_summary(figures):
    """Summary of an (n, len(FIGURES)) array of image figures (JSON-ready)."""
    figures = np.asarray(figures, np.float64).reshape(-1, len(FIGURES))
    count = len(figures)
    near_constant = figures[:, _COLUMN["contrast"]] < NEAR_CONSTANT_CONTRAST
    usable = figures[~near_constant]
    summary = {"images": count}
    for name in ("sharpness", "brightness", "contrast", "fine_detail"):
        values = usable[:, _COLUMN[name]]
        values = values[~np.isnan(values)]
        summary[name] = round(float(np.median(values)), 3) if len(values) else None
    brightness = usable[:, _COLUMN["brightness"]]
    # robust standard deviation of the images' brightness (IQR / 1.349): the yardstick of the class check
    summary["brightness_spread"] = (round(float(np.subtract(*np.percentile(brightness, [75, 25]))) / 1.349, 3)
                                    if len(usable) else None)
    summary["blocky"] = round(float(usable[:, _COLUMN["blocky"]].mean()), 4) if len(usable) else None
    summary["constant"] = round(float(figures[:, _COLUMN["constant"]].mean()), 4) if count else 0.0
    summary["near_constant"] = round(float(near_constant.mean()), 4) if count else 0.0
    sizes = Counter(f"{int(w)}x{int(h)}" for h, w in figures[:, [_COLUMN["height"], _COLUMN["width"]]])
    summary["sizes"] = dict(sizes.most_common(3))
    return summary


def audit_parts(parts, labels, class_names, figures):
    """Audit of one split. ``parts``: {"train": item indices, ...}; ``labels``, ``figures``: per item.

    Returns {part: {"all": summary, "per_class": {class: summary}}} for the parts that have items
    (train, val, test first; a database without an official split is audited as one part, "all").
    """
    labels = np.asarray(labels)
    figures = np.asarray(figures, np.float64).reshape(-1, len(FIGURES))
    audited = {}
    for part in [p for p in PARTS if p in parts] + [p for p in parts if p not in PARTS]:
        indices = np.asarray(sorted(parts[part] or ()), np.int64)
        if not len(indices):
            continue
        per_class = {}
        for label, name in enumerate(class_names):
            members = indices[labels[indices] == label]
            if len(members):
                per_class[name] = group_summary(figures[members])
        audited[part] = {"all": group_summary(figures[indices]), "per_class": per_class}
    return audited


def check(splits, upscaling=True):
    """Warnings for ``splits`` = {split name: audit_parts(...)}: a list of dicts with a "message".

    ``upscaling`` False: no upscaling check (figures measured on resampled crops, not the originals).
    """
    warnings = []
    for split, parts in splits.items():
        warnings += _check_train_vs_others(split, parts)
        for part, audited in parts.items():
            warnings += _check_classes(split, part, audited["per_class"], audited["all"]["brightness_spread"],
                                       upscaling)
    return warnings


def _warning(check_name, split, part, class_name, figure, value, reference, message):
    return {"check": check_name, "split": split, "part": part, "class": class_name, "figure": figure,
            "value": value, "reference": reference, "message": message}


def _ratio(a, b):
    return max(a, b) / max(min(a, b), 1e-9)


def _check_train_vs_others(split, parts):
    warnings = []
    train = parts.get("train", {}).get("all")
    if train is None:
        return warnings
    for part in ("val", "test"):
        other = parts.get(part, {}).get("all")
        if other is None:
            continue
        for figure, factor, what in (
                ("sharpness", SHARPNESS_FACTOR, "one set blurred or sharpened (check how the copy was "
                 "exported: a re-encoded or smoothed copy, or images from another source)"),
                ("contrast", CONTRAST_FACTOR, "a different gray-level range (check whether one set was "
                 "rescaled, e.g. stored as 0..127, or normalised differently)")):
            a, b = train[figure], other[figure]
            if a is None or b is None or _ratio(a, b) <= factor:
                continue
            warnings.append(_warning(
                f"split_{figure}", split, f"train/{part}", None, figure, a, b,
                f"split {split}: median {figure} of train is {a:.4g}, of {part} {b:.4g} (factor "
                f"{_ratio(a, b):.1f}, more than {factor:g}): train and {part} images look like they come "
                f"from different distributions, {what}"))
    return warnings


def _check_classes(split, part, per_class, spread, upscaling=True):
    warnings = []
    upscaled = set()
    for name, summary in per_class.items():
        share = summary["near_constant"]
        if share > CONSTANT_SHARE:
            count = round(share * summary["images"])
            warnings.append(_warning(
                "constant_images", split, part, name, "near_constant", share, CONSTANT_SHARE,
                f"split {split}, {part}, class {name}: {count} of {summary['images']} images "
                f"({share:.1%}) are constant or nearly so (gray-level spread below {NEAR_CONSTANT_CONTRAST:g}; "
                f"{round(summary['constant'] * summary['images'])} all one value): check those files "
                f"(blank, black or failed exports) and remove them"))
        if not upscaling or summary["images"] < MIN_CLASS_IMAGES or summary["fine_detail"] is None:
            continue
        if summary["fine_detail"] < UPSCALED_FINE_DETAIL or summary["blocky"] > UPSCALED_BLOCKY_SHARE:
            upscaled.add(name)
            sizes = ", ".join(summary["sizes"])
            warnings.append(_warning(
                "upscaled", split, part, name, "fine_detail", summary["fine_detail"], UPSCALED_FINE_DETAIL,
                f"split {split}, {part}, class {name}: images of {sizes} pixels hold no detail finer than "
                f"half their resolution (median fine-detail share {summary['fine_detail']:.2f}, below "
                f"{UPSCALED_FINE_DETAIL:g}; blocky {summary['blocky']:.0%}): they look upscaled from smaller "
                f"originals; check where this class's images come from"))
    comparable = {name: s for name, s in per_class.items()
                  if s["images"] >= MIN_CLASS_IMAGES and s["sharpness"] is not None}
    if len(comparable) < 3:
        return warnings
    for name, summary in comparable.items():
        others = [s for other, s in comparable.items() if other != name]
        for figure in ("sharpness", "contrast", "brightness"):
            if figure == "sharpness" and name in upscaled:
                continue                       # already explained by the upscaling warning
            value = summary[figure]
            reference = float(np.median([s[figure] for s in others]))
            if figure == "brightness":
                # 1.2533 s / sqrt(n): the standard error of a median of n values of spread s
                error = 1.2533 * (spread or 0) / np.sqrt(summary["images"])
                far = abs(value - reference) > max(CLASS_BRIGHTNESS_SPREADS * (spread or 0),
                                                   CLASS_BRIGHTNESS_ERRORS * error)
                limit = f"{CLASS_BRIGHTNESS_SPREADS:g} spread of the images' brightness ({spread:.3g} levels)"
            else:
                factor = CLASS_SHARPNESS_FACTOR if figure == "sharpness" else CLASS_CONTRAST_FACTOR
                far, limit = _ratio(value, reference) > factor, f"a factor {factor:g}"
            if far:
                warnings.append(_warning(
                    f"class_{figure}", split, part, name, figure, value, round(reference, 3),
                    f"split {split}, {part}, class {name}: median {figure} {value:.4g} against {reference:.4g} "
                    f"over the other classes (more than {limit} apart): this class's images may come "
                    f"from another source or processing; check a few of them against the other classes"))
    return warnings


MEASURED_ON_IMAGES = "images as read, before alignment"


def build_audit(split_parts, labels, class_names, figures, source=MEASURED_ON_IMAGES, upscaling=True):
    """The manifest's "audit" entry: {split: audit_parts}, the warnings, the thresholds used.

    ``split_parts``: {split name: {"train": item indices, "val": ..., "test": ...}}; ``labels``,
    ``figures``: per item; ``upscaling``: see check().
    """
    splits = {name: audit_parts(parts, labels, class_names, figures) for name, parts in split_parts.items()}
    return {"measured_on": source, "figures": list(FIGURES), "thresholds": THRESHOLDS,
            "splits": splits, "warnings": check(splits, upscaling)}


def summary_lines(audit, with_warnings=True):
    """A few lines for a terminal: the figures of each split part, the warning count, the warnings."""
    lines = []
    for split, parts in audit["splits"].items():
        cells = [f"{part} {audited['all']['images']} img, sharpness {_number(audited['all']['sharpness'])}, "
                 f"contrast {_number(audited['all']['contrast'])}" for part, audited in parts.items()]
        lines.append(f"audit {split}: " + "; ".join(cells))
    warnings = audit["warnings"]
    lines.append(f"audit: {len(warnings)} warning(s)" + (":" if warnings else " (images look consistent)"))
    if with_warnings:
        lines += [f"  warning: {w['message']}" for w in warnings]
    return lines


def _number(value):
    return "-" if value is None else f"{value:.4g}"


def audit_summary_markdown(audit):
    """Markdown of an audit dict (the manifest's "audit" entry): a table per split, then the warnings."""
    lines = [f"Data-quality audit (measured on {audit.get('measured_on', 'the images')}).", "",
             "| split | part | images | sharpness | brightness | contrast | fine detail | near-constant | sizes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for split, parts in audit["splits"].items():
        for part, audited in parts.items():
            s = audited["all"]
            lines.append(f"| {split} | {part} | {s['images']} | {_number(s['sharpness'])} | "
                         f"{_number(s['brightness'])} | {_number(s['contrast'])} | {_number(s['fine_detail'])} | "
                         f"{s['near_constant']:.2%} | {', '.join(s['sizes'])} |")
    lines.append("")
    if audit["warnings"]:
        lines.append(f"**{len(audit['warnings'])} warning(s):**")
        lines.append("")
        lines += [f"- {w['message']}" for w in audit["warnings"]]
    else:
        lines.append("No warning: train and test images look alike, no constant images, no upscaled or "
                     "outlying class.")
    return "\n".join(lines) + "\n"
