"""The data-quality audit (data_prep/audit.py) of a raw database folder or of a prepared folder.

prepare.py audits while it prepares (the figures are measured in its workers);
these functions serve tools/audit_data.py, which audits without preparing:

- a raw database folder is read with the registry's reader and every image is
  decoded and measured across processes (no alignment, nothing written);
- a prepared folder's audit is read from its manifest.json ("audit"), or, for
  folders prepared before the audit existed (or with ``recompute``), measured
  again on the stored crops (crop 0 of every item) read from its LMDBs. Those
  crops are aligned, resized and gray-normalised: sharpness, constant images
  and outlying classes still show; brightness and contrast reflect the
  normalisation; the upscaling check is left out (the crops are resampled).
"""
from collections import Counter

import numpy as np

from data_prep.audit import build_audit, image_figures
from data_prep.labels import class_names
from data_prep.lmdb_io import read_lmdb
from data_prep.pipeline import audit_chunk, run_chunks
from data_prep.prepared import PreparedDataset, parse_key
from data_prep.registry import DATASETS, default_options

MEASURED_ON_CROPS = "stored crops (crop 0 of every item, aligned and gray-normalised), read from the LMDBs"


def audit_database(name, root, workers=1, chunk_size=64, progress=True, **options):
    """Audit the raw database ``name`` (registry) at ``root``; returns (audit dict, skipped [(source, reason)]).

    Databases with an official split (usages) are audited per part; the others as one part, "all".
    ``options``: the reader's options (registry names), at their defaults when left out.
    """
    entry = DATASETS[name]
    read = entry.read(root, default_options(name, root=root, **options))
    skipped = [(skip.source, skip.reason) for skip in read.skipped]
    kept, figures = [], []
    for index, values, reason in run_chunks(audit_chunk, read.items, workers, chunk_size, progress,
                                            description="auditing"):
        if values is None:
            skipped.append((read.items[index].source, reason))
        else:
            kept.append(read.items[index])
            figures.append(values)
    if not kept:
        raise ValueError(f"no readable image under {root} ({len(skipped)} skipped, most often for: "
                         f"{Counter(reason for _, reason in skipped).most_common(3)})")
    usages = [item.usage for item in kept]
    if all(usage is not None for usage in usages):
        parts = {"official": {part: [i for i, u in enumerate(usages) if u == part] for part in set(usages)}}
    else:
        parts = {"database": {"all": list(range(len(kept)))}}
    audit = build_audit(parts, [item.label for item in kept], class_names(read.num_classes), np.array(figures))
    return audit, skipped


def audit_prepared(root, recompute=False):
    """The audit of the prepared folder ``root``: its manifest's, or measured again on its LMDBs."""
    dataset = PreparedDataset.open(root)
    if not recompute and "audit" in dataset.manifest:
        return dataset.manifest["audit"]
    figures, labels, split_parts = {}, {}, {}
    for split in dataset.splits():
        split_parts[split] = {}
        for part in dataset.parts(split):
            members = set()
            for key, image, label in read_lmdb(dataset.lmdb(split, part)):
                item, crop = parse_key(key)
                members.add(item)
                if crop == 0 and item not in figures:
                    figures[item], labels[item] = image_figures(image[0]), label
            split_parts[split][part] = sorted(members)
    order = sorted(figures)
    position = {item: i for i, item in enumerate(order)}
    split_parts = {split: {part: [position[item] for item in members] for part, members in parts.items()}
                   for split, parts in split_parts.items()}
    return build_audit(split_parts, [labels[item] for item in order], dataset.classes,
                       np.array([figures[item] for item in order]), source=MEASURED_ON_CROPS, upscaling=False)
