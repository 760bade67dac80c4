"""MNIST IDX reading and download, image folders, the 2-D ring: shapes, ranges and clear errors."""
import functools
import gzip
import hashlib
import http.server
import os
import shutil
import struct
import threading

import numpy
import pytest
from PIL import Image

from helpers import shared
from minigan.datasets import mnist
from minigan.datasets.errors import DatasetError
from minigan.datasets.image_folder import ImageFolderDataset
from minigan.datasets.mnist import MnistDataset, find_mnist, parse_idx, read_idx
from minigan.datasets.toy import RingDataset, mode_coverage, ring_centers, sample_ring

# the team's real datasets (tests only); MINIGAN_TEST_DATA points elsewhere


def idx_bytes(array):
    """An IDX file's bytes for a uint8 array."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(folder, split, n, gz=True, seed=0):
    """Tiny random MNIST files for a split; returns (images, labels)."""
    rng = numpy.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=numpy.uint8)
    labels = rng.integers(0, 10, n, dtype=numpy.uint8)
    for stem, array in zip(mnist.FILES[split], (images, labels)):
        data = idx_bytes(array)
        with open(os.path.join(folder, stem + (".gz" if gz else "")), "wb") as f:
            f.write(gzip.compress(data, mtime=0) if gz else data)
    return images, labels


# -- MNIST ------------------------------------------------------------------------------------

def test_real_mnist_test_set():
    root = find_mnist(shared("mnist"))
    assert root is not None and mnist.available_splits(root) == ["test"]
    ds = MnistDataset(root)  # no split given: the t10k files alone are enough
    assert ds.split == "test" and len(ds) == 10000 and ds.shape == (1, 28, 28)
    assert ds.describe().startswith("MNIST test: 10000 digits")
    x, = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == numpy.float32 and x.min() == -1 and x.max() == 1
    assert ds.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # md5 of the uncompressed files as the data README gives them
    images = read_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"))
    assert hashlib.md5(idx_bytes(images)).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    assert hashlib.md5(idx_bytes(labels)).hexdigest() == "27ae3e4e09519cfbb04c329615203637"
    with pytest.raises(DatasetError, match=r"no MNIST 'train' files .*\(found: test\)"):
        MnistDataset(root, split="train")


def test_mnist_options(tmp_path):
    images, labels = write_mnist(tmp_path, "train", 6)
    write_mnist(tmp_path, "test", 3, gz=False)
    assert find_mnist(str(tmp_path)) == str(tmp_path)
    assert mnist.available_splits(tmp_path) == ["train", "test"]
    ds = MnistDataset(tmp_path, value_range=(0, 1), label=True, n=4, flatten=True)
    assert ds.split == "train" and len(ds) == 4
    x, y = ds[3]
    assert x.shape == (784,) and y == labels[3] and y.dtype == numpy.int32
    numpy.testing.assert_allclose(x, images[3].reshape(-1) / 255, rtol=1e-6)
    x, = MnistDataset(tmp_path, split="test")[0]
    assert x.min() >= -1 and x.max() <= 1
    assert find_mnist(str(tmp_path / "nothing")) is None


def test_idx_raw_and_gzip_detected_by_content(tmp_path):
    a = numpy.arange(24, dtype=numpy.uint8).reshape(2, 3, 4)
    (tmp_path / "raw").write_bytes(idx_bytes(a))
    (tmp_path / "zipped-without-gz-name").write_bytes(gzip.compress(idx_bytes(a)))
    for name in ("raw", "zipped-without-gz-name"):
        numpy.testing.assert_array_equal(read_idx(tmp_path / name), a)
    big_endian = bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 2) + struct.pack(">2h", -2, 300)
    assert parse_idx(big_endian).tolist() == [-2, 300]


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00\x07\x01" + bytes(8), "not an IDX file"),  # unknown type code
    (b"PK\x03\x04", "not an IDX file"),
    (bytes([0, 0, 8, 2]) + struct.pack(">2I", 3, 3) + bytes(8), "20 bytes where shape"),
    (bytes([0, 0, 8, 3]) + b"\x00", "truncated"),
])
def test_bad_idx(tmp_path, data, message):
    (tmp_path / "bad").write_bytes(data)
    with pytest.raises(DatasetError, match=message):
        read_idx(tmp_path / "bad")


def test_mnist_labels_must_match_images(tmp_path):
    write_mnist(tmp_path, "train", 5)
    four_labels = gzip.compress(idx_bytes(numpy.zeros(4, numpy.uint8)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(four_labels)
    with pytest.raises(DatasetError, match="4 labels for 5 images"):
        MnistDataset(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DatasetError, match="cannot read .*train-images"):
        MnistDataset(tmp_path)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=served))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("no_proxy", "*")  # never send 127.0.0.1 through a proxy
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_mnist(tmp_path, mirror, monkeypatch):
    write_mnist(tmp_path / "served", "train", 5)
    write_mnist(tmp_path / "served", "test", 3)
    md5 = {name: hashlib.md5((tmp_path / "served" / name).read_bytes()).hexdigest() for name in mnist.MD5}
    monkeypatch.setattr(mnist, "MD5", md5)
    dest = tmp_path / "data" / "mnist"
    # the first mirror lacks the files (HTTP 404), the second has them
    assert mnist.download_mnist(dest, mirrors=(mirror + "gone/", mirror), progress=False) == dest
    assert sorted(os.listdir(dest)) == sorted(md5)
    assert len(MnistDataset(dest, split="train")) == 5 and len(MnistDataset(dest, split="test")) == 3
    mnist.download_mnist(dest, mirrors=("http://127.0.0.1:9/never-asked/",), progress=False)  # all present


def test_download_mnist_checksum_mismatch(tmp_path, mirror, monkeypatch):
    write_mnist(tmp_path / "served", "test", 3)
    monkeypatch.setattr(mnist, "MD5", dict(mnist.MD5, **{"t10k-images-idx3-ubyte.gz": "0" * 32}))
    dest = tmp_path / "mnist"
    with pytest.raises(DatasetError, match="checksum mismatch .*t10k-images"):
        mnist.download_mnist(dest, splits=("test",), mirrors=(mirror,), progress=False)
    assert os.listdir(dest) == []  # nothing half-written or unverified is left


# -- image folders ----------------------------------------------------------------------------

def copy_some(src, dest, n):
    os.makedirs(dest, exist_ok=True)
    for name in sorted(os.listdir(src))[:n]:
        shutil.copy(os.path.join(src, name), dest)
    return dest


@pytest.mark.parametrize("name, size", [("faces64", 64), ("ramen", 64), ("ramen", 32)])
def test_real_image_folders(tmp_path, name, size):
    folder = copy_some(shared(name), tmp_path / name, 4)
    ds = ImageFolderDataset(folder, size=size)
    assert len(ds) == 4 and ds.shape == (3, size, size) and "4 images" in ds.describe()
    x, = ds[0]
    assert x.shape == (3, size, size) and x.dtype == numpy.float32
    assert -1 <= x.min() < -0.5 and 0.5 < x.max() <= 1  # real photos span most of the range
    gray, = ImageFolderDataset(folder, size=size, channels=1)[0]
    assert gray.shape == (1, size, size)


def test_faces64_are_decoded_exactly(tmp_path):
    folder = copy_some(shared("faces64"), tmp_path / "f", 1)
    x, = ImageFolderDataset(folder, size=64, draft=False)[0]
    with Image.open(os.path.join(folder, os.listdir(folder)[0])) as im:
        expected = numpy.asarray(im.convert("RGB")).transpose(2, 0, 1) / 127.5 - 1
    numpy.testing.assert_allclose(x, expected, atol=1e-6)


def test_mixed_modes_convert(tmp_path):
    rng = numpy.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=numpy.uint8)  # not square: centre-cropped
    Image.fromarray(rgb).save(tmp_path / "a_rgb.png")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "b_gray.jpg")
    Image.fromarray(rgb).convert("P").save(tmp_path / "c_palette.gif")
    Image.fromarray(numpy.full((20, 20, 4), 0, numpy.uint8), "RGBA").save(tmp_path / "d_clear.png")
    Image.fromarray((rgb[:, :, 1].astype(numpy.uint16) * 257)).save(tmp_path / "e_16bit.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "f_cmyk.jpg")
    Image.fromarray(rgb[:, :, 2] > 128).save(tmp_path / "g_bilevel.bmp")
    (tmp_path / ".hidden.jpg").write_bytes(b"AppleDouble junk")  # skipped, as macOS leaves them
    for channels in (1, 3):
        ds = ImageFolderDataset(tmp_path, size=16, channels=channels)
        assert len(ds) == 7
        xs = [ds[i][0] for i in range(len(ds))]
        assert all(x.shape == (channels, 16, 16) and -1 <= x.min() and x.max() <= 1 for x in xs)
    assert numpy.all(xs[3] == 1)  # fully transparent composites onto white
    # 16-bit values are scaled to 8 bits, not clipped at 255 into an all-white image
    sixteen, = ImageFolderDataset(tmp_path, size=40, channels=1)[4]
    numpy.testing.assert_allclose(sixteen[0], rgb[:, 10:50, 1] / 127.5 - 1, atol=1e-6)


def test_rgba_keeps_alpha_and_opaque_images_get_alpha_1(tmp_path):
    rng = numpy.random.default_rng(1)
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=numpy.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a_rgba.png")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "b_rgb.png")
    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "c_la.png")
    pal = Image.fromarray(rgba[..., 0] % 4, "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    pal.save(tmp_path / "d_palette.png", transparency=0)
    Image.fromarray(rgba[..., 0]).convert("RGB").save(tmp_path / "e_photo.jpg")
    ds = ImageFolderDataset(tmp_path, size=16, channels=4)
    assert ds.shape == (4, 16, 16) and "as 4x16x16" in ds.describe()
    a, rgb, la, palette, photo = (ds[i][0] for i in range(5))
    numpy.testing.assert_allclose(a, rgba.transpose(2, 0, 1) / 127.5 - 1, atol=1e-6, rtol=0)
    numpy.testing.assert_array_equal(rgb[:3], a[:3])
    assert (rgb[3] == 1).all() and (photo[3] == 1).all()    # no alpha: opaque, as convert('RGBA')
    numpy.testing.assert_array_equal(la[3], a[3])
    numpy.testing.assert_array_equal(la[0], la[2])
    numpy.testing.assert_array_equal(palette[3] == -1, rgba[..., 0] % 4 == 0)
    # RGB still composites the same files onto white
    white, = ImageFolderDataset(tmp_path, size=16)[3]
    assert (white[:, rgba[..., 0] % 4 == 0] == 1).all()
    with pytest.raises(DatasetError, match="b_rgb.png: mode RGB, but strict mode needs RGBA"):
        ImageFolderDataset(tmp_path, size=16, channels=4, strict=True)
    with pytest.raises(DatasetError, match=r"1 \(grayscale\), 3 \(RGB\) or 4 \(RGBA\), not 2"):
        ImageFolderDataset(tmp_path, channels=2)


def test_flip_uses_the_rng(tmp_path):
    Image.fromarray(numpy.arange(16 * 16 * 3, dtype=numpy.uint8).reshape(16, 16, 3)).save(tmp_path / "a.png")
    plain = ImageFolderDataset(tmp_path, size=16)
    flip = ImageFolderDataset(tmp_path, size=16, flip=True, cache=True)

    class Heads:
        def random(self):
            return 0.0

    class Tails:
        def random(self):
            return 0.9

    numpy.testing.assert_array_equal(flip.get_example(0, Heads())[0], plain[0][0][:, :, ::-1])
    numpy.testing.assert_array_equal(flip.get_example(0, Tails())[0], plain[0][0])
    numpy.testing.assert_array_equal(flip.get_example(0, Tails())[0], plain[0][0])  # from the cache


def test_exif_orientation_is_applied(tmp_path):
    a = numpy.zeros((16, 16), numpy.uint8)
    a[:, 8:] = 255  # left half black, right half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(a).save(tmp_path / "phone.png", exif=exif)
    x, = ImageFolderDataset(tmp_path, size=16, channels=1)[0]
    assert numpy.all(x[0, :8] == -1) and numpy.all(x[0, 8:] == 1)  # shown: top black, bottom white


def test_recursive(tmp_path):
    os.makedirs(tmp_path / "sub")
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "a.png")
    assert len(ImageFolderDataset(tmp_path, size=8)) == 1
    with pytest.raises(DatasetError, match="subfolders not searched"):
        ImageFolderDataset(tmp_path, size=8, recursive=False)


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="image folder not found: .*nowhere"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"no images in .*looked for .*\.jpg .*\.png"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    with pytest.raises(DatasetError, match="cannot read image .*corrupt.jpg"):
        ImageFolderDataset(tmp_path)


def test_truncated_file_named_when_decoded(tmp_path):
    Image.fromarray(numpy.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=numpy.uint8)).save(
        tmp_path / "cut.jpg", quality=95)
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])  # the header survives, the pixels do not
    ds = ImageFolderDataset(tmp_path, size=32)
    with pytest.raises(DatasetError, match="cannot decode image .*cut.jpg"):
        ds[0]


def test_strict_and_refused_modes(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "gray.png")
    assert len(ImageFolderDataset(tmp_path, size=8)) == 1
    with pytest.raises(DatasetError, match="gray.png: mode L, but strict mode needs RGB"):
        ImageFolderDataset(tmp_path, size=8, strict=True)
    Image.fromarray(numpy.zeros((8, 8), numpy.float32)).save(tmp_path / "float.tif")
    with pytest.raises(DatasetError, match="float.tif: cannot convert a 32-bit 'F' image"):
        ImageFolderDataset(tmp_path, size=8)


# -- the 2-D ring -----------------------------------------------------------------------------

def test_ring_dataset():
    ds = RingDataset(n=1000, seed=1)
    x, = ds[0]
    assert len(ds) == 1000 and x.shape == (2,) and x.dtype == numpy.float32
    numpy.testing.assert_array_equal(RingDataset(n=1000, seed=1).points, ds.points)
    assert not numpy.array_equal(RingDataset(n=1000, seed=2).points, ds.points)
    numpy.testing.assert_allclose(numpy.linalg.norm(ring_centers(), axis=1), 2, rtol=1e-6)


def test_mode_coverage():
    perfect = sample_ring(2500, numpy.random.default_rng(0))
    covered, quality = mode_coverage(perfect)
    assert covered == 8 and quality > 0.97  # 1 - exp(-4.5) = 98.9% of a 2-D Gaussian is within 3 sigma
    collapsed = ring_centers()[2] + 0.01 * numpy.random.default_rng(1).standard_normal((2500, 2))
    assert mode_coverage(collapsed)[0] == 1
    assert mode_coverage(numpy.zeros((100, 2))) == (0, 0.0)  # the ring's centre is no mode
    wide = RingDataset(n=2000, n_modes=5, radius=1, std=0.1)
    assert mode_coverage(wide.points, wide.centers, std=0.1)[0] == 5
