"""nets/pretrained.py and tools/fetch_pretrained.py without internet: file:// downloads, trust-on-first-use
checksums, archive unpacking and the check that a caffemodel fits the project's net."""
import hashlib
import tarfile

import pytest
from google.protobuf import text_format

from nets import deploy_net
from nets.pretrained import (RECORD_FILE, FetchError, PretrainedModel, caffemodel_shapes, compare_weights,
                             fetch, net_shapes, read_records)
from tools.fetch_pretrained import main


def save_toy_weights(caffe, path, **net_options):
    prototxt = path.with_suffix(".prototxt")
    prototxt.write_text(text_format.MessageToString(deploy_net("toy", "softmax", **net_options)))
    caffe.Net(str(prototxt), caffe.TEST).save(str(path))
    return path


def toy_model(url, archive=False):
    return PretrainedModel(description="toy", net="toy",
                           download_name="toy.tar.gz" if archive else "toy.caffemodel",
                           caffemodel="toy.caffemodel", urls=(url,), archive=archive)


def test_first_download_is_recorded_and_later_ones_are_checked(caffe, tmp_path, capsys):
    (tmp_path / "published").mkdir()
    source = save_toy_weights(caffe, tmp_path / "published" / "toy.caffemodel")
    dest = tmp_path / "cache"
    model = toy_model(source.as_uri())
    weights = fetch(model, dest)
    assert weights == dest / "toy.caffemodel" and weights.read_bytes() == source.read_bytes()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert read_records(dest) == {"toy.caffemodel": digest}
    assert (dest / RECORD_FILE).read_text() == f"{digest}  toy.caffemodel\n"
    out = capsys.readouterr().out
    assert "trusted on first use" in out and "initialised at random: none" in out

    fetch(model, dest)  # same file again: matches the record
    assert "(recorded)" in capsys.readouterr().out

    source.write_bytes(source.read_bytes() + b"tampered")
    with pytest.raises(FetchError, match="has SHA-256 .* but .* was recorded"):
        fetch(model, dest)
    assert not weights.exists()  # the unverified copy is not left under the final name
    with pytest.raises(FetchError, match="was given"):
        fetch(model, tmp_path / "other", sha256="0" * 64)
    assert not list((tmp_path / "other").glob("*.part"))


def test_archive_member_is_unpacked_and_checked(caffe, tmp_path):
    weights = save_toy_weights(caffe, tmp_path / "toy.caffemodel")
    archive = tmp_path / "toy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(weights, arcname="toy_caffe/toy.caffemodel")
        tar.add(weights.with_suffix(".prototxt"), arcname="toy_caffe/toy_deploy.prototxt")
    result = fetch(toy_model(archive.as_uri(), archive=True), tmp_path / "cache")
    assert result == tmp_path / "cache" / "toy.caffemodel"
    assert result.read_bytes() == weights.read_bytes()
    assert list(read_records(tmp_path / "cache")) == ["toy.tar.gz"]


def test_weights_that_do_not_fit_the_net_are_refused(caffe, tmp_path):
    # A 7-class model: its classifier has another name, so it is re-initialised, not a clash.
    seven = save_toy_weights(caffe, tmp_path / "seven.caffemodel", num_classes=7)
    loaded, initialised = compare_weights(caffemodel_shapes(seven), net_shapes("toy"), seven)
    assert (sorted(loaded), initialised) == (["conv1", "fc1"], ["fc2_6cls"])
    # A 64x64 model: fc1 has 28*28 inputs instead of 20*20; caffe would abort.
    wide = save_toy_weights(caffe, tmp_path / "wide.caffemodel", input_size=64)
    with pytest.raises(FetchError, match=r"does not fit .*fc1: file \[\(32, 784\)"):
        compare_weights(caffemodel_shapes(wide), net_shapes("toy"), wide)


def test_v1_caffemodels_with_legacy_blob_shapes_are_read(caffe, tmp_path):
    pb = caffe.proto.caffe_pb2
    old = pb.NetParameter()
    layer = old.layers.add(name="fc1")
    for num, channels, height, width in ((1, 1, 32, 400), (1, 1, 1, 32)):
        layer.blobs.add(num=num, channels=channels, height=height, width=width)
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(old.SerializeToString())
    shapes = caffemodel_shapes(path)
    assert shapes == {"fc1": [(1, 1, 32, 400), (1, 1, 1, 32)]}
    loaded, _ = compare_weights(shapes, net_shapes("toy"), path)
    assert loaded == ["fc1"]


def test_cli_with_a_downloaded_file_prints_the_weights_argument(tmp_path, capsys):
    local = tmp_path / "downloads" / "face_model.caffemodel"
    local.parent.mkdir()
    local.write_bytes(b"not checked with --no-check")
    dest = tmp_path / "cache"
    assert main(["face_resnet", "--file", str(local), "--dest", str(dest), "--no-check"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"-weights {dest / 'face_model.caffemodel'}")
    assert main(["face_resnet", "--file", str(local), "--dest", str(dest), "--no-check",
                 "--sha256", "f" * 64]) == 1
    assert "error:" in capsys.readouterr().err
