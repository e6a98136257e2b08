"""Atomic LMDBs of Caffe Datum records (data_prep/lmdb_io.py)."""
import warnings

import lmdb
import numpy as np
import pytest

from data_prep.lmdb_io import image_to_datum, read_lmdb, write_lmdb


def _records(rng, count, shape=(1, 12, 12)):
    return [(f"{i:07d}_00", rng.integers(0, 256, shape, dtype=np.uint8), int(rng.integers(0, 7)))
            for i in range(count)]


def test_round_trip_equals_the_input(tmp_path, rng, caffe):
    records = _records(rng, 25)
    assert write_lmdb(tmp_path / "db", records, commit_every=7) == 25
    back = list(read_lmdb(tmp_path / "db"))
    assert [key for key, _, _ in back] == [key for key, _, _ in records]
    for (_, image, label), (_, image_back, label_back) in zip(records, back):
        np.testing.assert_array_equal(image_back, image)
        assert label_back == label
    # decoded independently, with pycaffe's own datum_to_array, straight from LMDB
    env = lmdb.open(str(tmp_path / "db"), readonly=True, lock=False)
    with env.begin() as txn:
        datum = caffe.proto.caffe_pb2.Datum()
        datum.ParseFromString(txn.get(records[3][0].encode()))
    env.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycaffe's own np.fromstring
        decoded = caffe.io.datum_to_array(datum)
    np.testing.assert_array_equal(decoded, records[3][1])
    assert datum.label == records[3][2]


def test_two_dimensional_images_become_one_channel(tmp_path, rng):
    image = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    write_lmdb(tmp_path / "db", [("k", image, 2)])
    [(key, back, label)] = list(read_lmdb(tmp_path / "db"))
    assert back.shape == (1, 5, 6) and np.array_equal(back[0], image) and label == 2


def test_interrupted_write_leaves_no_lmdb(tmp_path, rng):
    def interrupted():
        yield from _records(rng, 30)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_lmdb(tmp_path / "db", interrupted(), commit_every=10)
    assert list(tmp_path.iterdir()) == []


def test_bad_record_leaves_no_lmdb(tmp_path, rng):
    records = _records(rng, 3) + [("bad", np.zeros((4, 4), np.float32), 0)]
    with pytest.raises(ValueError, match="must be uint8"):
        write_lmdb(tmp_path / "db", records)
    assert list(tmp_path.iterdir()) == []


def test_existing_lmdb_is_never_overwritten(tmp_path, rng):
    write_lmdb(tmp_path / "db", _records(rng, 2))
    with pytest.raises(FileExistsError, match="already exists"):
        write_lmdb(tmp_path / "db", _records(rng, 5))
    assert len(list(read_lmdb(tmp_path / "db"))) == 2


def test_duplicate_keys_are_refused(tmp_path, rng):
    records = _records(rng, 2)
    records.append((records[0][0], records[1][1], 0))
    with pytest.raises(KeyError, match="duplicate LMDB key '0000000_00'"):
        write_lmdb(tmp_path / "db", records)
    assert list(tmp_path.iterdir()) == []


def test_reading_a_non_lmdb_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not an LMDB"):
        list(read_lmdb(tmp_path))


def test_datum_fields(caffe):
    datum = image_to_datum(np.arange(6, dtype=np.uint8).reshape(1, 2, 3), 5)
    assert (datum.channels, datum.height, datum.width, datum.label) == (1, 2, 3, 5)
    assert datum.data == bytes(range(6))
