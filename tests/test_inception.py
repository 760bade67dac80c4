"""The FID Inception-v3 against a PyTorch twin (tests/inception_twin.py) with random weights,
saved by torch.save in both layouts and read by minigan's restricted reader: features (float32
and float64), the 299 resize, the input gradient; its pooling; `download inception` against a
127.0.0.1 server; `fid --features inception` end to end and without the weights."""
import hashlib
import os

import numpy
import pytest
from click.testing import CliRunner

import minigan
from minigan import metrics
from minigan.commands.download import download as download_group
from minigan.commands.fid import fid_command
from minigan.models import inception, load_state_dict, weights
from minigan.visualize import save_image

from helpers import check_op, error_line, randn

FORMATS = {"zip": True, "legacy": False}


def torch_module():
    return pytest.importorskip("torch", reason="PyTorch reference tests need: "
                                               "pip install torch==2.13.0")


@pytest.fixture(scope="module")
def twin():
    import inception_twin
    return inception_twin.build(torch_module())


@pytest.fixture(scope="module")
def pth_files(twin, tmp_path_factory):
    """{format: path} of the twin's state dict, saved as torch.save writes each layout."""
    torch, folder = torch_module(), tmp_path_factory.mktemp("pth")
    paths = {}
    for fmt, zipped in FORMATS.items():
        paths[fmt] = folder / f"{fmt}.pth"
        torch.save(twin.state_dict(), paths[fmt], _use_new_zipfile_serialization=zipped)
    return paths


@pytest.fixture(scope="module")
def state_dict(pth_files):
    return load_state_dict(pth_files["zip"])


@pytest.fixture(scope="module")
def net(state_dict):
    return inception.InceptionV3(state_dict)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh, empty cache folder; the loaded networks forgotten."""
    monkeypatch.setenv("MINIGAN_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(inception, "_loaded", {})
    return tmp_path / "home"


def images(shape, seed=0):
    return numpy.random.RandomState(seed).uniform(-1, 1, shape).astype(numpy.float32)


def twin_features(twin, x, resize=True):
    """pytorch-fid's forward: its input is in [0, 1]."""
    torch = torch_module()
    with torch.no_grad():
        return twin(torch.tensor((x + 1) / 2), resize=resize).numpy()


def close(a, e, rtol):
    """|a - e| <= rtol max|e| everywhere (features near 0 are compared at the scale of all)."""
    assert a.shape == e.shape
    err = numpy.abs(a - e).max() / numpy.abs(e).max()
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


# -- the network ---------------------------------------------------------------------------------

def test_both_layouts_read_the_same(pth_files, state_dict, twin):
    """Every key the twin saved (BN counters and the 1008-class fc included), equal in both."""
    legacy = load_state_dict(pth_files["legacy"])
    assert list(legacy) == list(state_dict) == list(twin.state_dict())
    assert state_dict["fc.weight"].shape == (1008, 2048)
    for k, v in state_dict.items():
        numpy.testing.assert_array_equal(legacy[k], v)
        numpy.testing.assert_array_equal(v, twin.state_dict()[k].numpy())


def test_weights_are_constants(net):
    """No Parameters; W and b of each conv: torchvision's 94 BasicConv2ds, less those whose 1x1
    heads became one conv (4 -> 1 in the 3 A, 4 C blocks and Mixed_7b, 2 -> 1 in Mixed_7a,
    3 -> 1 in Mixed_7c)."""
    assert list(net.params()) == []
    fused = 3 * 3 + 4 * 3 + 3 + 1 + 2
    assert len(list(net.namedpersistents())) == 2 * (94 - fused)


@pytest.mark.parametrize("fmt", FORMATS)
def test_features_equal_the_twin(pth_files, twin, fmt):
    """2 images of 75 x 75 (the smallest Inception-v3 takes) without the resize, float32."""
    net = inception.InceptionV3(load_state_dict(pth_files[fmt]))
    x = images((2, 3, 75, 75))
    with minigan.no_backprop_mode():
        got = net(x, resize=False).array
    assert got.shape == (2, 2048) and got.dtype == numpy.float32
    close(got, twin_features(twin, x, resize=False), 1e-4)


def test_features_equal_the_twin_in_float64(state_dict, twin):
    net64 = inception.InceptionV3(state_dict, numpy.float64)
    x = images((1, 3, 75, 75), seed=1).astype(numpy.float64)
    with minigan.no_backprop_mode():
        got = net64(x, resize=False).array
    try:
        close(got, twin_features(twin.double(), x, resize=False), 1e-11)
    finally:
        twin.float()


def test_the_resize_to_299(net, twin):
    """An image at another size is resized inside as pytorch-fid's (bilinear, no corners), and
    metrics' per-image preparation gives the same input to the network."""
    x = images((1, 3, 48, 64), seed=2)
    with minigan.no_backprop_mode():
        got = net(x).array
    close(got, twin_features(twin, x), 1e-4)

    rgb = numpy.random.RandomState(3).randint(0, 256, (37, 50, 3)).astype(numpy.uint8)
    prepared = metrics.resize_bilinear(rgb, 299)
    torch = torch_module()
    t = torch.tensor(rgb.transpose(2, 0, 1)[None] / 255.0, dtype=torch.float32)  # ToTensor
    expected = 2 * torch.nn.functional.interpolate(t, size=(299, 299), mode="bilinear",
                                                   align_corners=False) - 1
    assert prepared.shape == (3, 299, 299) and prepared.dtype == numpy.float32
    numpy.testing.assert_allclose(prepared, expected[0].numpy(), rtol=0, atol=2e-5)
    same = numpy.random.RandomState(4).randint(0, 256, (299, 299, 3)).astype(numpy.uint8)
    numpy.testing.assert_allclose(metrics.resize_bilinear(same, 299),
                                  same.transpose(2, 0, 1) / 127.5 - 1, rtol=0, atol=1e-6)


def test_gradient_reaches_the_input(state_dict, twin):
    """d (features . r) / d image equals torch's autograd, in float64."""
    torch = torch_module()
    net64, twin64 = inception.InceptionV3(state_dict, numpy.float64), twin.double()
    try:
        x = images((1, 3, 75, 75), seed=5).astype(numpy.float64)
        r = numpy.random.RandomState(6).standard_normal((1, 2048))
        xv = minigan.Variable(x)
        gx, = minigan.grad([net64(xv, resize=False)], [xv], [r])
        xt = torch.tensor((x + 1) / 2, requires_grad=True)
        (twin64(xt, resize=False) * torch.tensor(r)).sum().backward()
        close(gx.array, xt.grad.numpy() / 2, 1e-9)      # d/dx of f((x + 1) / 2) = f' / 2
    finally:
        twin.float()


def test_count_include_pad_false_pooling():
    """The blocks' pool: the mean over the window's real pixels; first and second derivatives."""
    def reference(x):
        n, c, h, w = x.shape
        y = numpy.empty_like(x)
        for i in range(h):
            for j in range(w):
                window = x[:, :, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
                y[:, :, i, j] = window.mean(axis=(2, 3))
        return y
    check_op(inception.avg_pool, (randn(2, 3, 5, 4, seed=7),), reference)


def test_on_the_cupy_standin(state_dict, monkeypatch):
    """The GPU code path (tests/cupy_standin): the features and nothing CuPy would refuse."""
    import cupy_standin
    from minigan import backend
    cupy = cupy_standin.install(monkeypatch, n_devices=1)
    device = backend.Device(0)
    x = images((1, 3, 75, 75), seed=8)
    results = []
    for where in (backend.CPU, device):
        net = inception.InceptionV3(state_dict).to_device(where)
        with where, minigan.no_backprop_mode():
            results.append(backend.to_cpu(net(where.send(x), resize=False).array))
    assert cupy.state.incompatibilities == [] and not cupy.state.numpy_calls
    numpy.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-5)


# -- the weights: missing, downloaded --------------------------------------------------------------

def test_the_pinned_digest_extends_the_name():
    """torch.hub checks that the sha256 starts with the 8 digits in the file's name."""
    assert len(weights.INCEPTION_SHA256) == 64
    assert weights.INCEPTION_SHA256.startswith(weights.INCEPTION_FILE.rsplit("-", 1)[1][:8])
    assert weights.INCEPTION_URL.endswith("/" + weights.INCEPTION_FILE)


def picture_folder(folder, n, size, seed):
    folder.mkdir(parents=True)
    rng = numpy.random.RandomState(seed)
    for i in range(n):
        save_image(rng.randint(0, 256, (size, size, 3)).astype(numpy.uint8),
                   str(folder / f"{i}.png"))
    return folder


def invoke(command, *args):
    result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_fid_without_the_weights_says_how_to_get_them(tmp_path, home):
    real, fake = picture_folder(tmp_path / "r", 2, 8, 0), picture_folder(tmp_path / "f", 2, 8, 1)
    code, output = invoke(fid_command, "--real", real, "--fake", fake, "--features", "inception")
    assert code != 0
    line = error_line(output)
    assert "Inception-v3 weights are not downloaded" in line
    assert "python cli.py download inception" in line
    assert not (home / "fid_stats").exists() or not os.listdir(home / "fid_stats")


def weight_files(home):
    folder = home / "weights"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def test_download_then_fid_reproduces_pytorch_fid(tmp_path, home, server, pth_files, twin,
                                                  monkeypatch):
    """The twin's weights served from 127.0.0.1 (their digest pinned for the test): the file
    lands in the cache with its HDF5 twin, and `fid --features inception` prints the FID of the
    twin's features of the images as pytorch-fid feeds them (ToTensor, the network's resize)."""
    body = pth_files["legacy"].read_bytes()
    server.routes["/w.pth"] = (body, 0)
    monkeypatch.setattr(weights, "INCEPTION_SHA256", hashlib.sha256(body).hexdigest())
    code, output = invoke(download_group, "inception", "--url", server.url + "/w.pth")
    assert code == 0, output
    files = weight_files(home)
    assert weights.INCEPTION_FILE in files and len(files) == 2
    assert [f for f in files if f != weights.INCEPTION_FILE][0].endswith(".h5")
    assert (home / "weights" / weights.INCEPTION_FILE).read_bytes() == body
    assert "--features inception" in output

    real = picture_folder(tmp_path / "real", 2, 40, 2)       # 4 images: ~6 GFLOP each
    fake = picture_folder(tmp_path / "fake", 2, 24, 3)
    code, output = invoke(fid_command, "--real", real, "--fake", fake, "--features", "inception",
                          "--batch-size", 2)
    assert code == 0, output
    line = output.strip().splitlines()[-1]
    assert line.startswith("FID (Inception-v3): ") and "2 real, 2 fake" in line
    assert len(list((home / "fid_stats").glob("inception-*.h5"))) == 1

    def pytorch_fid_features(folder):
        from PIL import Image
        x = numpy.stack([numpy.asarray(Image.open(folder / f"{i}.png").convert("RGB"))
                         for i in range(len(os.listdir(folder)))])
        return twin_features(twin, x.transpose(0, 3, 1, 2).astype(numpy.float32) / 127.5 - 1)
    expected = metrics.compare(*(metrics.Statistics.of(pytorch_fid_features(f))
                                 for f in (real, fake)), network="Inception-v3")
    assert float(line.split()[2]) == pytest.approx(expected.fid, rel=1e-3)


def test_download_with_a_wrong_checksum_leaves_nothing(home, server):
    body = b"not the weights" * 1000
    server.routes["/w.pth"] = (body, 0)
    code, output = invoke(download_group, "inception", "--url", server.url + "/w.pth")
    assert code != 0
    line = error_line(output)
    assert "checksum mismatch" in line and hashlib.sha256(body).hexdigest() in line
    assert weights.INCEPTION_SHA256 in line
    assert weight_files(home) == [] and not (home / "weights").exists()


def test_truncated_download_leaves_nothing(home, server):
    body = b"x" * 5000
    server.routes["/w.pth"] = (body[:2000], 3000)      # Content-Length says 5000
    code, output = invoke(download_group, "inception", "--url", server.url + "/w.pth")
    assert code != 0
    assert "truncated" in error_line(output) and "2000 of 5000 bytes" in output
    assert not (home / "weights").exists()


def test_weights_that_are_no_state_dict_are_refused(home, server, monkeypatch):
    """A file with the right digest but a hostile pickle: refused by the reader, never run."""
    import pickle
    body = pickle.dumps(type("Evil", (), {"__reduce__": lambda self: (os.system, ("true",))})())
    server.routes["/w.pth"] = (body, 0)
    monkeypatch.setattr(weights, "INCEPTION_SHA256", hashlib.sha256(body).hexdigest())
    code, output = invoke(download_group, "inception", "--url", server.url + "/w.pth")
    assert code != 0
    assert "refused to load the global" in error_line(output)
    assert not (home / "weights").exists()


def test_loading_from_the_cache(home, pth_files, monkeypatch):
    """inception_v3() reads the .pth once, converts it to HDF5, then reads the HDF5."""
    (home / "weights").mkdir(parents=True)
    target = home / "weights" / weights.INCEPTION_FILE
    target.write_bytes(pth_files["zip"].read_bytes())
    net = inception.inception_v3()
    assert inception.inception_v3() is net
    h5 = list((home / "weights").glob("*.h5"))
    assert len(h5) == 1
    monkeypatch.setattr(inception, "_loaded", {})
    calls = []
    monkeypatch.setattr(weights, "load_state_dict", lambda p: calls.append(p))   # not called
    net2 = inception.inception_v3()
    assert calls == []
    numpy.testing.assert_array_equal(net2.Mixed_7c.heads.W, net.Mixed_7c.heads.W)
