"""data_prep/merge.py: prepared parts merged into new LMDBs keyed by the prepared layout."""
import numpy as np
import pytest

from data_prep.lmdb_io import read_lmdb
from data_prep.merge import MergeError, merge_test_records, merge_training_records
from data_prep.prepared import PreparedDataset, parse_key
from runtime.files import read_json
from tests.prepared_fixture import build_prepared_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return PreparedDataset.open(build_prepared_dataset(tmp_path_factory.mktemp("merge") / "tiny"))


def _records(path):
    return {key: (image.tobytes(), label) for key, image, label in read_lmdb(path)}


def test_training_merge_holds_every_record_once_shuffled_with_train_keys(dataset, tmp_path):
    parts = [("fold_00", "train"), ("fold_00", "test")]
    count = merge_training_records(dataset, parts, tmp_path / "train_lmdb", seed=3)
    merged = list(read_lmdb(tmp_path / "train_lmdb"))
    sources = [record for split, part in parts for record in read_lmdb(dataset.lmdb(split, part))]
    assert count == len(merged) == len(sources)
    # each record keeps its item, crop, image and label; the key's position prefix is the shuffled order
    by_item = {parse_key(key): (image.tobytes(), label) for key, image, label in sources}
    assert {parse_key(key): (image.tobytes(), label) for key, image, label in merged} == by_item
    assert [int(key.split("_")[0]) for key, _, _ in merged] == list(range(count))
    assert [parse_key(k) for k, _, _ in merged] != sorted(parse_key(k) for k, _, _ in merged)
    again = merge_training_records(dataset, parts, tmp_path / "again_lmdb", seed=3)
    assert again == count and _records(tmp_path / "again_lmdb") == _records(tmp_path / "train_lmdb")


def test_test_merge_relabels_by_class_name_and_counts_what_is_left_out(dataset, tmp_path):
    parts = [(split, "test") for split in dataset.fold_splits()]
    classes = ["surprise", "anger", "happiness"]  # a training database with other classes, in another order
    count, kept, left_out = merge_test_records(dataset, parts, classes, tmp_path / "t_lmdb",
                                               tmp_path / "t_items.json", tmp_path / "left.json")
    items = read_json(tmp_path / "t_items.json")
    assert kept == len(items) > 0 and read_json(tmp_path / "left.json") == left_out
    assert set(left_out) == {"disgust", "fear", "sadness"}
    every = [entry for split, part in parts for entry in dataset.items(split, part)]
    assert kept + sum(left_out.values()) == len(every)
    original = {entry["item"]: dataset.classes[entry["label"]] for entry in every}
    assert all(classes[entry["label"]] == original[entry["item"]] for entry in items)
    merged = list(read_lmdb(tmp_path / "t_lmdb"))
    assert count == len(merged) == sum(len(entry["keys"]) for entry in items)
    labels = {entry["item"]: entry["label"] for entry in items}
    assert all(labels[parse_key(key)[0]] == label for key, _, label in merged)
    assert [key for key, _, _ in merged] == sorted(key for key, _, _ in merged)


def test_train_parts_have_item_entries_and_an_item_in_two_parts_is_refused(dataset, tmp_path):
    entries = dataset.part_entries("fold_00", "train")
    assert entries and all(len(entry["keys"]) == int(dataset.manifest["crops"]) for entry in entries)
    with pytest.raises(MergeError, match="is in two of the merged parts"):
        merge_test_records(dataset, [("fold_00", "test"), ("fold_00", "test")], dataset.classes,
                           tmp_path / "x_lmdb", tmp_path / "x.json", tmp_path / "y.json")
    assert not (tmp_path / "y.json").exists()
    np.testing.assert_equal(sorted(e["item"] for e in entries),
                            sorted({parse_key(k)[0] for k, _, _ in read_lmdb(dataset.lmdb("fold_00", "train"))}))


def test_where_a_missing_lmdb_belongs_and_the_command_that_prepares_it():
    from pathlib import Path

    from data_prep.prepared import lmdb_location, parse_root_name, prepare_command, root_name
    assert lmdb_location("data/prepared/mmi-48/fold_03/test_lmdb") == (Path("data/prepared/mmi-48"), "fold_03", "test")
    assert lmdb_location("data/prepared/fer2013-112/official/val_lmdb")[1:] == ("official", "val")
    assert lmdb_location("data/prepared/x/somewhere/train_lmdb") is None   # not a split name
    assert lmdb_location("/somewhere/my_lmdb") is None
    assert parse_root_name(root_name("fer2013", 112)) == ("fer2013", 112)
    assert parse_root_name(root_name("ckplus")) == ("ckplus", None) and parse_root_name("My Data") is None
    assert prepare_command("data/prepared/mmi-48/fold_00/train_lmdb") == (
        "python data_prep/prepare.py --dataset mmi --root <your mmi copy> --out data/prepared/mmi-48 --size 48")
    assert prepare_command("data/prepared/ckplus/fold_00/train_lmdb").endswith("--out data/prepared/ckplus")
    assert prepare_command("/somewhere/my_lmdb") is None
