"""Protocol checks of a prepared dataset and of a run, written into every report (docs/statistics.md).

Of a prepared dataset (``check_dataset``):
- the fold manifest's hashes: sha256 of manifest.json and items.json, and of
  each split's content (which items, labels, subjects and source names are in
  each part), so that two reports can be told to rest on the same folds;
- subject-disjointness of train and test (and val), recomputed from the
  split's LMDB keys and item lists and items.json, beside what prepare recorded;
- exact duplicates (identical pixels) and near-duplicates (perceptual hash
  within a Hamming distance, imagehash's pHash) across train and test, with
  counts and examples.

Of a run folder (``model_selection``): which data each fold's training
watched, which snapshot was scored, and so that nothing was chosen on the test
part; read from the run's config and fold files, never assumed.

``write_run_checks`` computes both for a finished run and stores them as the
run folder's ``protocol.json`` (experiments/running/run_folder.py), so that
reports render them without hashing an image.
"""
import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from tqdm import tqdm

from data_prep.lmdb_io import lmdb_keys, read_lmdb
from data_prep.prepared import ITEMS, MANIFEST, PreparedDataset, lmdb_name, parse_key
from experiments.running.evaluation import test_source
from experiments.running.run_folder import (PROTOCOL, RESULT, TRAINING, read_config, read_summary,
                                            snapshot_path)
from nets.experiment import file_names
from runtime.files import read_json, write_json_atomic

# pHash bits (of 64) two images may differ in and still count as near-duplicates. Chosen on
# FER2013 (docs/statistics.md): pairs 2 or 4 bits apart were the same photograph, slightly
# shifted or re-encoded; from 6 bits on, different people appear.
NEAR_DUPLICATE_BITS = 4
EXAMPLES = 5
PART_PAIRS = (("train", "test"), ("train", "val"), ("val", "test"))
_POPCOUNT = np.array([i.bit_count() for i in range(1 << 16)], dtype=np.uint8)


class ProtocolError(ValueError):
    """A run folder whose files do not say how its model was selected; the message names the file."""


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_json(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def part_items(dataset, split, part):
    """Item numbers of one part of a split: train from its LMDB keys, test/val from their lists."""
    if part == "train":
        return sorted({parse_key(key)[0] for key in lmdb_keys(dataset.lmdb(split, "train"))})
    return sorted(entry["item"] for entry in dataset.items(split, part))


def _all_items(dataset):
    items = read_json(dataset.root / ITEMS)
    return {entry.get("item", index): entry for index, entry in enumerate(items)}


def manifest_hashes(root):
    """sha256 of manifest.json, items.json, each split's content, and of all splits together.

    A split's hash covers, per part, the sorted [item, label, subject, source
    file name] rows: it changes when any image moves between parts or changes
    its label or subject, and not when the same data is prepared again
    elsewhere (manifest.json holds timings and paths; its own hash does change).
    """
    dataset = PreparedDataset.open(root)
    items = _all_items(dataset)
    splits = {}
    for split in dataset.splits():
        content = {part: [[i, items[i]["label"], items[i]["subject"], Path(str(items[i]["source"])).name]
                          for i in part_items(dataset, split, part)]
                   for part in dataset.parts(split)}
        splits[split] = _sha256_json(content)
    return {"manifest": _sha256_file(dataset.root / MANIFEST), "items": _sha256_file(dataset.root / ITEMS),
            "splits": splits, "folds": _sha256_json(splits)}


def subject_disjointness(root):
    """Per split: subjects of each part recomputed from the items, their overlaps, and prepare's record.

    Returns {split: {"parts": {part: {"items", "subjects"}}, "overlaps": {"train/test": [...]},
    "shared_items": {"train/test": n}, "disjoint": bool or None (no subject identities),
    "matches_manifest": bool, "mismatched_entries": n}}.
    """
    dataset = PreparedDataset.open(root)
    items = _all_items(dataset)
    report = {}
    for split in dataset.splits():
        parts, mismatched = {}, 0
        for part in dataset.parts(split):
            numbers = part_items(dataset, split, part)
            if part != "train":
                # The part's own list must agree with items.json about each item's subject and label.
                mismatched += sum(entry["subject"] != items[entry["item"]]["subject"]
                                  or entry["label"] != items[entry["item"]]["label"]
                                  for entry in dataset.items(split, part))
            parts[part] = {"items": set(numbers), "subjects": {items[i]["subject"] for i in numbers} - {None}}
        has_subjects = any(p["subjects"] for p in parts.values())
        overlaps, shared = {}, {}
        for a, b in PART_PAIRS:
            if a in parts and b in parts:
                overlaps[f"{a}/{b}"] = sorted(parts[a]["subjects"] & parts[b]["subjects"])
                shared[f"{a}/{b}"] = len(parts[a]["items"] & parts[b]["items"])
        recorded = dataset.manifest["splits"][split]
        matches = all(sorted(parts[p]["subjects"]) == sorted(recorded[p].get("subjects") or [])
                      for p in parts)
        report[split] = {
            "parts": {p: {"items": len(v["items"]), "subjects": len(v["subjects"])} for p, v in parts.items()},
            "overlaps": overlaps, "shared_items": shared,
            "disjoint": (not any(overlaps.values())) if has_subjects else None,
            "matches_manifest": matches, "mismatched_entries": mismatched}
    return report


def _image_hashes(image):
    """(sha256 of the pixels with their shape, 64-bit pHash) of one (C, H, W) or (H, W) uint8 image."""
    image = np.ascontiguousarray(image)
    exact = hashlib.sha256(repr(image.shape).encode() + image.tobytes()).digest()
    pixels = image[0] if image.ndim == 3 and image.shape[0] == 1 else image
    if pixels.ndim == 3:
        pixels = np.moveaxis(pixels, 0, -1)
    bits = imagehash.phash(Image.fromarray(pixels)).hash.ravel()
    return exact, int(np.packbits(bits).view(">u8")[0])


def _source_hashes(source):
    with Image.open(source) as image:
        return _image_hashes(np.asarray(image))


def _hash_all(function, inputs, workers, desc, progress):
    """``function`` over ``inputs`` in ``workers`` processes (hashing is CPU-bound), with a bar."""
    workers = workers or os.cpu_count() or 1
    with tqdm(total=len(inputs), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        if workers == 1 or len(inputs) < 1000:
            return [_counted(bar, function(x)) for x in inputs]
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            return [_counted(bar, h) for h in pool.imap(function, inputs, chunksize=256)]


def _counted(bar, value):
    # tqdm's update() returns whether it redrew, so it cannot share an expression with the value.
    bar.update(1)
    return value


def item_hashes(root, images="auto", progress=True, workers=None):
    """Exact and perceptual hash of every prepared item: {item: (sha256 bytes, pHash int)}, and what was hashed.

    ``images``: "lmdb" hashes each item's first crop as the LMDB holds it
    (what the net sees), "sources" the original image files, "auto" the
    originals when every one of them is a readable file, else the LMDB.
    """
    dataset = PreparedDataset.open(root)
    items = _all_items(dataset)
    sources = {i: str(entry["source"]) for i, entry in items.items()}
    if images == "auto":
        images = "sources" if all(Path(s).is_file() for s in sources.values()) else "lmdb"
    desc = f"hashing {dataset.root.name} ({images})"
    if images == "sources":
        for item, source in sources.items():
            if not Path(source).is_file():
                raise FileNotFoundError(f"{source} (item {item} of {dataset.root / ITEMS}) is missing; "
                                        "hash the prepared LMDB instead (images='lmdb')")
        numbers = sorted(sources)
        hashes = _hash_all(_source_hashes, [sources[i] for i in numbers], workers, desc, progress)
    elif images == "lmdb":
        first_crops = {}
        # Test and val LMDBs first: in K-fold they hold every item once, so train LMDBs are never read.
        lmdbs = [(split, part) for part in ("test", "val", "train") for split in dataset.splits()
                 if part in dataset.parts(split)]
        for split, part in lmdbs:
            if len(first_crops) == len(items):
                break
            if part == "train" and set(part_items(dataset, split, part)) <= first_crops.keys():
                continue
            for key, image, _ in read_lmdb(dataset.lmdb(split, part)):
                item, crop = parse_key(key)
                if crop == 0:
                    first_crops.setdefault(item, image)
        numbers = sorted(first_crops)
        hashes = _hash_all(_image_hashes, [first_crops[i] for i in numbers], workers, desc, progress)
    else:
        raise ValueError(f"images must be 'auto', 'lmdb' or 'sources', got {images!r}")
    return dict(zip(numbers, hashes)), images


def hamming_nearest(queries, references, chunk=256):
    """For each 64-bit hash in ``queries``: (smallest Hamming distance to ``references``, its index)."""
    queries = np.asarray(queries, dtype=np.uint64)
    references = np.asarray(references, dtype=np.uint64)
    distances = np.empty(queries.size, dtype=np.int64)
    nearest = np.empty(queries.size, dtype=np.int64)
    for start in range(0, queries.size, chunk):
        xor = queries[start:start + chunk, None] ^ references[None, :]
        counts = _POPCOUNT[xor.view(np.uint16)].reshape(*xor.shape, 4)
        # Four 16-bit counts summed as uint8 (at most 64): much faster than a reduction over axis 2.
        bits = counts[..., 0] + counts[..., 1] + counts[..., 2] + counts[..., 3]
        best = bits.argmin(axis=1)
        nearest[start:start + chunk] = best
        distances[start:start + chunk] = bits[np.arange(bits.shape[0]), best]
    return distances, nearest


def duplicates(root, near_bits=NEAR_DUPLICATE_BITS, images="auto", progress=True, examples=EXAMPLES,
               workers=None):
    """Exact and near-duplicate images across the parts of each split (train/test, train/val, val/test).

    For each pair (a, b): how many images of b have an identical image in a
    ("exact", with the number of identical pairs), how many others have one
    within ``near_bits`` pHash bits ("near"), and examples (source names).
    """
    dataset = PreparedDataset.open(root)
    items = _all_items(dataset)
    hashes, hashed = item_hashes(root, images, progress, workers)
    name = {i: str(entry["source"]) for i, entry in items.items()}
    result = {"hashed": hashed, "near_bits": near_bits, "splits": {}}
    for split in dataset.splits():
        members = {part: np.array(part_items(dataset, split, part), dtype=np.int64)
                   for part in dataset.parts(split)}
        pairs = {}
        for a, b in PART_PAIRS:
            if a not in members or b not in members or not members[a].size or not members[b].size:
                continue
            exact_a = np.array([hashes[i][0] for i in members[a]], dtype="S32")
            exact_b = np.array([hashes[i][0] for i in members[b]], dtype="S32")
            order = np.argsort(exact_a, kind="stable")
            sorted_a = exact_a[order]
            first = np.searchsorted(sorted_a, exact_b, side="left")
            last = np.searchsorted(sorted_a, exact_b, side="right")
            identical = last > first
            distances, nearest = hamming_nearest([hashes[i][1] for i in members[b]],
                                                 [hashes[i][1] for i in members[a]])
            near = ~identical & (distances <= near_bits)
            pairs[f"{a}/{b}"] = {
                "images": int(members[b].size), "exact": int(identical.sum()),
                "exact_pairs": int((last - first).sum()), "near": int(near.sum()),
                "exact_examples": [[name[int(members[b][k])], name[int(members[a][order[first[k]]])]]
                                   for k in np.nonzero(identical)[0][:examples]],
                "near_examples": [[name[int(members[b][k])], name[int(members[a][nearest[k]])],
                                   int(distances[k])] for k in np.nonzero(near)[0][:examples]],
                # Nearest distances up to twice the threshold, to show where it falls.
                "distance_counts": np.bincount(distances, minlength=2 * near_bits + 1)[:2 * near_bits + 1].tolist()}
        result["splits"][split] = pairs
    return result


def check_dataset(root, near_bits=NEAR_DUPLICATE_BITS, images="auto", progress=True, workers=None):
    """Every protocol check of a prepared dataset, as plain JSON-ready values, with the
    data-quality audit prepare recorded (data_prep/audit.py; None if it recorded none)."""
    dataset = PreparedDataset.open(root)
    return {"root": str(dataset.root), "dataset": dataset.name, "hashes": manifest_hashes(root),
            "subjects": subject_disjointness(root),
            "duplicates": duplicates(root, near_bits, images, progress, workers=workers),
            "audit": dataset.manifest.get("audit")}


def _watched_part(train_val_path):
    """Which part ("val", "test", ...) the TEST phase of a fold's training read, from its net."""
    source = test_source(train_val_path)
    for part in ("train", "test", "val"):
        if source.name == lmdb_name(part):
            return part, str(source)
    return None, str(source)


# Solver fields that differ from fold to fold by construction and cannot select on test:
# paths, and test_iter, which follows the size of the part each fold's training watches.
FOLD_DEPENDENT_SOLVER_FIELDS = ("net", "train_net", "test_net", "snapshot_prefix", "test_iter")


def _solver_settings(solver_path):
    """The solver's fields that could select on test: {field: [values]}, the fold-dependent ones left out."""
    settings = {}
    for line in Path(solver_path).read_text().splitlines():
        field, sep, value = line.partition(":")
        field = field.strip()
        if sep and field and not field.startswith("#") and field not in FOLD_DEPENDENT_SOLVER_FIELDS:
            settings.setdefault(field, []).append(value.strip())
    return settings


def model_selection(run_dir):
    """What each fold's training watched and which snapshot was scored, read from the run folder.

    Returns {"folds": [...], "selection_on_test": bool, "statement": str}. A
    fold selected on test would be one whose scored snapshot is not the final
    one while its training watched the test part, or whose solver settings
    differ from the other folds'.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    summary = read_summary(run_dir)
    if config.get("tool") != "crossval" or summary is None:
        raise ProtocolError(f"{run_dir} is not a finished crossval run folder")
    names = file_names(config["net"], config["variant"])
    folds, solvers = [], {}
    for fold in summary["folds"]:
        fold_dir = run_dir / fold
        for path in (fold_dir / RESULT, fold_dir / TRAINING, fold_dir / names["train_val"],
                     fold_dir / names["solver"]):
            if not path.is_file():
                raise ProtocolError(f"{path} is missing, so the fold's training and scored snapshot "
                                    "are unknown")
        result, training = read_json(fold_dir / RESULT), read_json(fold_dir / TRAINING)
        watched, source = _watched_part(fold_dir / names["train_val"])
        final = snapshot_path(fold_dir, training["iterations"]).name
        solvers[fold] = _solver_settings(fold_dir / names["solver"])
        folds.append({"fold": fold, "watched": watched, "watched_source": source,
                      "validation_scored": (fold_dir / "validation" / RESULT).is_file(),
                      "scored_snapshot": result.get("snapshot"), "final_snapshot": final,
                      "final": result.get("snapshot") == final, "iterations": training["iterations"]})
    first = next(iter(solvers.values()), {})
    differing = sorted({field for settings in solvers.values() for field in set(settings) | set(first)
                        if settings.get(field) != first.get(field)})
    same_solver = not differing
    not_final = [f["fold"] for f in folds if not f["final"]]
    selection_on_test = bool(not_final and any(f["watched"] == "test" for f in folds)) or not same_solver
    watched = sorted({f["watched"] or f["watched_source"] for f in folds})
    iterations = sorted({f["iterations"] for f in folds})
    if not_final:
        statement = (f"folds {', '.join(not_final)} scored a snapshot other than the final one: "
                     "check how it was chosen")
    elif watched == ["val"]:
        statement = (f"validation on the val part (FER2013: PublicTest), watched during training and "
                     f"scored once; the test part was scored once, with the final snapshot "
                     f"(iteration {', '.join(map(str, iterations))}); nothing was chosen on it")
    else:
        statement = (f"the final snapshot (iteration {', '.join(map(str, iterations))}) of every fold "
                     f"was scored; the test phase during training read the {'/'.join(watched)} part "
                     "for the training curves only, no snapshot was chosen on it")
    statement += ("; the solver settings are the run config's, the same in every fold" if same_solver
                  else f"; the solver settings DIFFER between folds ({', '.join(differing)})")
    return {"folds": folds, "same_solver": same_solver, "differing_solver_fields": differing,
            "selection_on_test": selection_on_test, "statement": statement}


def _stored_check(protocol_file, root, hashes):
    """A dataset check stored in ``protocol_file`` for ``root``, if its data are still the same."""
    try:
        stored = read_json(protocol_file)["datasets"][root]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same = ("hashes" in stored and stored["hashes"]["items"] == hashes["items"]
            and stored["hashes"]["folds"] == hashes["folds"])
    return stored if same else None


def dataset_check(root, near_bits=NEAR_DUPLICATE_BITS, progress=False, reuse=()):
    """``check_dataset(root)``, or a copy stored in one of the ``reuse`` protocol files for the same
    items and folds (one hashing per prepared dataset, however many runs use it), or
    {"missing": why} when the prepared dataset is no longer there."""
    root = str(root)
    if not (Path(root) / MANIFEST).is_file():
        return {"missing": f"{root} is not here (moved or removed); its data checks are not shown"}
    hashes = manifest_hashes(root)
    for protocol_file in reuse:
        stored = _stored_check(protocol_file, root, hashes)
        if stored is not None and stored.get("duplicates", {}).get("near_bits") == near_bits:
            return dict(stored, hashes=hashes)
    return check_dataset(root, near_bits, progress=progress)


def run_checks(run_dir, progress=False):
    """The protocol checks of one run folder: every prepared dataset its config names (training and
    test databases) and, for a finished crossval run, how its model was selected."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    roots = list(dict.fromkeys([config["data"], *config.get("test_data", [])]))
    # Earlier checks of the same data: this run's own file and its sibling runs'.
    reuse = [run_dir / PROTOCOL, *sorted(run_dir.parent.glob(f"*/{PROTOCOL}"))]
    checks = {"datasets": {root: dataset_check(root, progress=progress, reuse=reuse) for root in roots},
              "model_selection": None}
    if config.get("tool") == "crossval" and read_summary(run_dir) is not None:
        try:
            checks["model_selection"] = model_selection(run_dir)
        except ProtocolError as error:
            checks["model_selection"] = {"error": str(error)}
    return checks


def write_run_checks(run_dir, progress=False):
    """Compute ``run_checks`` and store them as the run folder's protocol.json; returns them."""
    checks = run_checks(run_dir, progress)
    write_json_atomic(Path(run_dir) / PROTOCOL, checks)
    return checks
