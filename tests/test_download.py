"""Downloads against a local HTTP server: success unpacks atomically; each failure leaves nothing."""
import hashlib
import io
import os
import socket
import zipfile

import numpy
import pytest
from PIL import Image

from minigan.datasets import DatasetError, FacadeDataset, download, download_facade
from minigan.datasets.download import CMP_BASE_PAIRS, download_file


def image_bytes(array, fmt, palette=None):
    im = Image.fromarray(array, "P" if palette else None)
    if palette:
        im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def cmp_zip(pairs=CMP_BASE_PAIRS, extra=(), stored=False):
    """A CMP-style zip (base/cmp_bNNNN.jpg + .png, 8x8 images), as bytes."""
    photo = image_bytes(numpy.full((8, 8, 3), 128, numpy.uint8), "JPEG")
    label = image_bytes(numpy.arange(64, dtype=numpy.uint8).reshape(8, 8) % 12 + 1, "PNG", [0, 0, 0] * 256)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("readme.txt", "CMP facade database, base set (test copy)\n")
        for i in range(1, pairs + 1):
            zf.writestr(f"base/cmp_b{i:04d}.jpg", photo)
            zf.writestr(f"base/cmp_b{i:04d}.png", label)
        for name, data in extra:
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def good_zip():
    return cmp_zip()


def leftovers(folder):
    """What a failed download left in folder (hidden partial files or folders included)."""
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def failure(tmp_path, fn, *args, **kw):
    """The DatasetError message of fn, after checking that nothing was left in tmp_path/data."""
    with pytest.raises(DatasetError) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)
    assert leftovers(tmp_path / "data") == []
    return str(e.value)


def test_download_facade_unpacks_a_usable_dataset(tmp_path, server, good_zip):
    server.routes["/cmp.zip"] = (good_zip, 0)
    dest = tmp_path / "data" / "facade"
    sha = hashlib.sha256(good_zip).hexdigest()
    assert download_facade(dest, url=server.url + "/cmp.zip", sha256=sha, progress=False) == str(dest)
    assert leftovers(tmp_path / "data") == ["facade"]               # no partial files beside it
    assert len(os.listdir(dest / "base")) == 2 * CMP_BASE_PAIRS
    train, val = FacadeDataset(dest, "train", size=8), FacadeDataset(dest, "val", size=8)
    assert (len(train), len(val)) == (341, 37) and train.layout == "cmp"
    assert train.get_example(0, numpy.random.default_rng(0))[0].shape == (12, 8, 8)


def test_progress_line_on_stderr(tmp_path, server, capsys):
    server.routes["/small.zip"] = (cmp_zip(pairs=2), 0)
    download(server.url + "/small.zip", tmp_path / "data" / "x", progress=True)
    err = capsys.readouterr().err
    assert "small.zip" in err and "100%" in err and "MB/s" in err


def test_truncated_download(tmp_path, server, good_zip):
    server.routes["/cut.zip"] = (good_zip[: len(good_zip) // 2], len(good_zip) - len(good_zip) // 2)
    msg = failure(tmp_path, download_facade, tmp_path / "data" / "facade", url=server.url + "/cut.zip",
                  progress=False)
    assert "truncated" in msg and f"of {len(good_zip)} bytes" in msg


def test_bad_zip(tmp_path, server, good_zip):
    server.routes["/half.zip"] = (good_zip[: len(good_zip) // 2], 0)  # whole as sent, but not a zip
    msg = failure(tmp_path, download_facade, tmp_path / "data" / "facade", url=server.url + "/half.zip",
                  progress=False)
    assert "not a valid zip" in msg


def test_corrupt_member(tmp_path, server):
    data = bytearray(cmp_zip(pairs=3, stored=True))
    at = data.index(b"JFIF") + 40                                     # inside the first photo
    data[at] ^= 0xFF
    server.routes["/crc.zip"] = (bytes(data), 0)
    msg = failure(tmp_path, download, server.url + "/crc.zip", tmp_path / "data" / "x", progress=False)
    assert "corrupt" in msg and "cmp_b0001.jpg" in msg


def test_checksum_mismatch(tmp_path, server, good_zip):
    server.routes["/cmp.zip"] = (good_zip, 0)
    msg = failure(tmp_path, download_facade, tmp_path / "data" / "facade", url=server.url + "/cmp.zip",
                  sha256="0" * 64, progress=False)
    assert "checksum mismatch" in msg and hashlib.sha256(good_zip).hexdigest() in msg


def test_wrong_contents(tmp_path, server):
    server.routes["/few.zip"] = (cmp_zip(pairs=5), 0)
    msg = failure(tmp_path, download_facade, tmp_path / "data" / "facade", url=server.url + "/few.zip",
                  progress=False)
    assert "5 cmp_bNNNN photo/label pairs" in msg and "expected 378" in msg


def test_member_outside_destination(tmp_path, server):
    server.routes["/evil.zip"] = (cmp_zip(pairs=1, extra=[("../evil.txt", "x")]), 0)
    msg = failure(tmp_path, download, server.url + "/evil.zip", tmp_path / "data" / "x", progress=False)
    assert "outside the destination" in msg and not (tmp_path / "evil.txt").exists()


def test_existing_destination_is_left_alone(tmp_path, server, good_zip):
    server.routes["/cmp.zip"] = (good_zip, 0)
    dest = tmp_path / "data" / "facade"
    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(DatasetError, match="already exists"):
        download_facade(dest, url=server.url + "/cmp.zip", progress=False)
    assert os.listdir(dest) == ["mine.txt"] and leftovers(tmp_path / "data") == ["facade"]
    assert server.hits == []                                          # refused before fetching


def test_http_and_network_errors(tmp_path, server):
    msg = failure(tmp_path, download, server.url + "/missing.zip", tmp_path / "data" / "x", progress=False)
    assert "HTTP 404" in msg
    with socket.socket() as s:                                        # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    msg = failure(tmp_path, download, f"http://127.0.0.1:{port}/x.zip", tmp_path / "data" / "x",
                  progress=False)
    assert "cannot download" in msg


def test_download_file_tries_mirrors_and_keeps_good_files(tmp_path, server):
    body = b"some bytes" * 100
    server.routes["/m2/f.gz"] = (body, 0)
    md5 = hashlib.md5(body).hexdigest()
    path = tmp_path / "data" / "f.gz"
    urls = [server.url + "/m1/f.gz", server.url + "/m2/f.gz"]
    assert download_file(urls, path, md5=md5, progress=False) == path
    assert path.read_bytes() == body and leftovers(tmp_path / "data") == ["f.gz"]
    hits = len(server.hits)
    assert download_file(urls, path, md5=md5, progress=False) == path  # present and right: no fetch
    assert len(server.hits) == hits
    path.write_bytes(b"other")
    with pytest.raises(DatasetError, match="already exists with other contents"):
        download_file(urls, path, md5=md5, progress=False)
    assert path.read_bytes() == b"other"


def test_download_file_all_mirrors_fail(tmp_path, server):
    server.routes["/m1/f.gz"] = (b"wrong", 0)
    urls = [server.url + "/m1/f.gz", server.url + "/m2/f.gz"]
    msg = failure(tmp_path, download_file, urls, tmp_path / "data" / "f.gz", md5="0" * 32, progress=False)
    assert "no mirror gave f.gz" in msg and "checksum mismatch" in msg and "HTTP 404" in msg
