"""The public pretrained face models: their registry, download, checksum and weights check.

    fetch(MODELS["face_resnet"], default_dest()) -> path of the verified caffemodel

The command line is tools/fetch_pretrained.py. Needs internet (or a local
file); the tests use file:// URLs. Steps:
1. download into ``--dest`` (default ``$FER_CACHE_DIR/pretrained``, i.e.
   ``~/.cache/fer-sparse/pretrained``) through a ``.part`` file renamed when
   complete, or take a file already downloaded (``local_file``);
2. check its SHA-256: against ``sha256`` if given, else against the value
   recorded in ``<dest>/SHA256SUMS``. Neither model's authors publish a
   checksum, so the first download is trusted and recorded there (trust on
   first use, in ``sha256sum -c`` format); every later download or --file is
   checked against that record, and a mismatch is a FetchError;
3. unpack the caffemodel from the archive (VGG-Face ships a .tar.gz);
4. read the caffemodel and compare it with the project's net: every layer
   whose name the two share must have the same blob shapes (``caffe train
   -weights`` aborts otherwise); the layers that load and the ones that start
   from random initialisation are reported.
"""
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tqdm import tqdm

from nets import deploy_net
from runtime.caffe_env import import_caffe

RECORD_FILE = "SHA256SUMS"


@dataclass(frozen=True)
class PretrainedModel:
    description: str
    net: str               # the project net it initialises (nets.NETS)
    download_name: str     # what the URL serves
    caffemodel: str        # the weights file (inside the archive when there is one)
    urls: tuple
    archive: bool = False
    sha256: str = None     # a published checksum, where one exists (none known)


MODELS = {
    "face_resnet": PretrainedModel(
        description="center-loss face ResNet, face_model.caffemodel (Wen et al., ECCV 2016; "
                    "github.com/ydwen/caffe-face)",
        net="resnet", download_name="face_model.caffemodel", caffemodel="face_model.caffemodel",
        # The location the authors' repository names; if it has moved, download the file by
        # hand from the link in that README and pass --file.
        urls=("https://github.com/ydwen/caffe-face/raw/caffe-face/face_example/"
              "face_model.caffemodel",)),
    "vgg_face": PretrainedModel(
        description="VGG-Face, VGG_FACE.caffemodel (Parkhi et al., BMVC 2015; "
                    "www.robots.ox.ac.uk/~vgg/software/vgg_face/)",
        net="vgg", download_name="vgg_face_caffe.tar.gz", caffemodel="VGG_FACE.caffemodel",
        urls=("http://www.robots.ox.ac.uk/~vgg/software/vgg_face/src/vgg_face_caffe.tar.gz",),
        archive=True),
}


class FetchError(RuntimeError):
    """A download, checksum or weights check failed; the message says what to do."""


def default_dest():
    cache = os.environ.get("FER_CACHE_DIR") or \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer-sparse"
    return Path(cache) / "pretrained"


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_records(dest):
    """{file name: sha256} from ``<dest>/SHA256SUMS``."""
    path = Path(dest) / RECORD_FILE
    records = {}
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line.strip())
            if not match:
                raise FetchError(f"{path} line {number} is not '<sha256>  <file>': {line!r}; "
                                 "fix or delete that line")
            records[match.group(2)] = match.group(1)
    return records


def record(dest, name, digest):
    records = read_records(dest)
    records[name] = digest
    path = Path(dest) / RECORD_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(f"{value}  {key}\n" for key, value in sorted(records.items())))
    os.replace(tmp, path)


def download(url, target):
    """Stream ``url`` into ``target`` through a .part file; returns target."""
    target = Path(target)
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise FetchError(f"downloading {url} failed ({exc}); check the connection, or download "
                         f"the file by hand and pass --file") from exc
    os.replace(part, target)
    return target


def verify_checksum(path, dest, expected=None):
    """Check ``path`` against ``expected`` or the recorded checksum; record it on first use.

    Returns (sha256, how) with how in {"given", "recorded", "first use"}."""
    digest = sha256_of(path)
    name = Path(path).name
    if expected:
        how, wanted = "given", expected.lower()
    else:
        wanted = read_records(dest).get(name)
        how = "recorded"
    if wanted is None:
        record(dest, name, digest)
        return digest, "first use"
    if digest != wanted:
        raise FetchError(f"{path} has SHA-256 {digest} but {wanted} was {how} "
                         f"({Path(dest) / RECORD_FILE if how == 'recorded' else '--sha256'}); "
                         "the file is corrupt or not the published one (it was removed): download "
                         "again, or fix the expected value if the authors changed the file")
    if how == "given":
        record(dest, name, digest)
    return digest, how


def unpack(archive, member_name, dest):
    """Copy the archive member whose file name is ``member_name`` to dest/member_name."""
    target = Path(dest) / member_name
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name == member_name]
        if len(members) != 1:
            raise FetchError(f"{archive} holds {len(members)} files named {member_name}, "
                             "expected one; the archive is not the published one")
        tmp = target.with_name(f".{member_name}.tmp-{os.getpid()}")
        with tar.extractfile(members[0]) as source, open(tmp, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    os.replace(tmp, target)
    return target


def _blob_shape(blob):
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)  # Caffe's V1 blobs


def _comparable(shape):
    # Caffe compares legacy 4-d blob shapes with the trailing axes of the new ones.
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def caffemodel_shapes(path):
    """{layer name: [blob shapes]} of a .caffemodel (current or V1 format)."""
    pb = import_caffe().proto.caffe_pb2
    model = pb.NetParameter()
    model.ParseFromString(Path(path).read_bytes())
    layers = list(model.layer) or list(model.layers)
    return {layer.name: [_blob_shape(blob) for blob in layer.blobs] for layer in layers if layer.blobs}


def net_shapes(net_name):
    """{layer name: [blob shapes]} of the project's deploy net (softmax variant)."""
    caffe = import_caffe()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deploy.prototxt"
        path.write_text(text_format.MessageToString(deploy_net(net_name, "softmax")))
        net = caffe.Net(str(path), caffe.TEST)
        return {name: [blob.data.shape for blob in blobs] for name, blobs in net.params.items()}


def compare_weights(model_shapes, project_shapes, model_path):
    """(loaded, initialised) layer names; raises FetchError on a shape clash."""
    loaded, clashes = [], []
    for name, shapes in project_shapes.items():
        if name not in model_shapes:
            continue
        if [_comparable(s) for s in model_shapes[name]] == [_comparable(s) for s in shapes]:
            loaded.append(name)
        else:
            clashes.append(f"{name}: file {model_shapes[name]} vs net {shapes}")
    if clashes:
        raise FetchError(f"{model_path} does not fit the project's net (caffe train -weights "
                         "would abort): " + "; ".join(clashes))
    initialised = [name for name in project_shapes if name not in model_shapes]
    return loaded, initialised


def fetch(model, dest, url=None, local_file=None, sha256=None, check=True, report=print):
    """Steps 1-4 of the module docstring; returns the caffemodel's path. ``report(line)`` receives
    what was checked (the checksum and how it was trusted, the layers that load)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    sha256 = sha256 or model.sha256
    if local_file is not None:
        local_file = Path(local_file)
        if not local_file.is_file():
            raise FetchError(f"--file {local_file} does not exist")
        download_path = dest / model.download_name
        if local_file.resolve() != download_path.resolve():
            shutil.copyfile(local_file, dest / f".{model.download_name}.part")
            os.replace(dest / f".{model.download_name}.part", download_path)
    else:
        download_path = download(url or model.urls[0], dest / model.download_name)
    try:
        digest, how = verify_checksum(download_path, dest, sha256)
    except FetchError:
        download_path.unlink()  # never leave an unverified file under the final name
        raise
    report(f"{download_path.name}: sha256 {digest} ({how})")
    if how == "first use":
        report(f"no published checksum: trusted on first use and recorded in {dest / RECORD_FILE}; "
              "later downloads are checked against it")
    weights = unpack(download_path, model.caffemodel, dest) if model.archive else download_path
    if check:
        loaded, initialised = compare_weights(caffemodel_shapes(weights), net_shapes(model.net),
                                              weights)
        report(f"{model.net} net: {len(loaded)} layers load from {weights.name}; "
              f"initialised at random: {', '.join(initialised) or 'none'}")
    return weights
