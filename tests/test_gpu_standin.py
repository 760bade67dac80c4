"""Tier 3 in CI: minigan's GPU code path "on the GPU" without one, on a strict CuPy stand-in
(tests/cupy_standin). pix2pix, each zoo GAN, DiffAugment and the CLI run a few iterations on
device 0 (or 1) with every raw kernel emulated on host threads, and must equal the CPU run,
meet nothing CuPy would refuse, and wait for the device no more often than today.
"""
import numpy
import pytest

import cupy_standin
import cuda_host
from minigan import augment, backend, cuda
from minigan.gans import began, dcgan, gan, lightweight, pix2pix, wgan_gp

from helpers import run

# host syncs per iteration today: each GAN reads its logged scalars with float(), one device ->
# host wait each (lightweight: + the gradient penalty it keeps, at every gp_every-th step); a
# hidden sync (a float() inside an op, a boolean mask, a NumPy call) breaks these bounds
SYNCS = {"pix2pix": 4, "gan": 4, "dcgan": 4, "wgan-gp": 4, "began": 4, "lightweight": 5}
ZOO = {
    "gan": (gan, gan.Config(n_hidden=16), (1, 28, 28)),
    "dcgan": (dcgan, dcgan.Config(arch="radford", size=16, channels=3, ngf=4, ndf=4),
              (3, 16, 16)),
    "wgan-gp": (wgan_gp, wgan_gp.Config(arch="radford", x_shape=(3, 16, 16), ngf=4, ndf=4,
                                        n_critic=2), (3, 16, 16)),
    "began": (began, began.Config(size=16, n=4, n_h=8, n_z=8), (3, 16, 16)),
    "lightweight": (lightweight, lightweight.Config.for_data((3, 32, 32), fmap_max=4, n_z=4),
                    (3, 32, 32)),
}


@pytest.fixture
def standin(monkeypatch):
    """The stand-in as cupy, with two devices; cupy.random draws NumPy's global stream, so a
    run on the stand-in draws the dropout masks the CPU run draws."""
    cuda_host.prebuild(cuda.families())
    return cupy_standin.install(monkeypatch, n_devices=2, host_random=True)


def train(module, c, batches, device, state=None, dtype=None):
    """Losses of len(batches) updates from the same initial weights, with the host syncs of
    each update."""
    numpy.random.seed(0)
    models, optimizers = module.build(c)
    if dtype is not None:
        for net in models.values():
            net.to_device(backend.CPU)
            for p in net.params():
                p.array = p.array.astype(dtype)
            for link in net.links():                # batch norm's running statistics
                for name in link._persistent:
                    value = getattr(link, name)
                    if getattr(value, "dtype", None) == numpy.float32:
                        setattr(link, name, value.astype(dtype))
        for name, opt in optimizers.items():
            opt.setup(models[name])                 # Adam's moments in the new dtype
    up = module.Updater(c, models, optimizers, device)
    losses, syncs = [], []
    with up.device:
        for batch in batches:
            before = state.total_syncs if state else 0
            losses.append(up.update(batch))
            syncs.append((state.total_syncs if state else 0) - before)
    return losses, syncs


def assert_same(got, want, rtol):
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in w:
            numpy.testing.assert_allclose(g[k], w[k], rtol=rtol, atol=rtol * 1e-2, err_msg=k)


def pix2pix_batches(n, dtype):
    rng = numpy.random.RandomState(0)
    x = (rng.randint(0, 12, (2, 1, 32, 32)) == numpy.arange(12)[:, None, None]).astype(dtype)
    return [(x, rng.uniform(-1, 1, (2, 3, 32, 32)).astype(dtype)) for _ in range(n)]


@pytest.mark.parametrize("dtype, rtol", [(numpy.float32, 1e-4), (numpy.float64, 1e-10)])
def test_pix2pix_on_the_gpu_equals_the_cpu_run(standin, dtype, rtol):
    c = pix2pix.Config(in_channels=12, n_down=3, ngf=4, ndf=4)
    batches = pix2pix_batches(3, dtype)
    with cupy_standin_off(standin):
        want, _ = train(pix2pix, c, batches, -1, dtype=dtype)
    got, syncs = train(pix2pix, c, batches, backend.Device(0), standin.state, dtype)
    assert_same(got, want, rtol)
    state = standin.state
    assert state.incompatibilities == [] and not state.numpy_calls
    assert set(state.launches) >= {"im2col", "col2im", "norm_stats", "norm_forward",
                                   "norm_backward", "leaky_relu_forward", "adam_update"}
    assert max(syncs) <= SYNCS["pix2pix"], syncs


class cupy_standin_off:
    """The CPU run beside a stand-in install: cuda.enabled is False for NumPy arrays anyway; this
    only checks that the CPU run made no device call."""

    def __init__(self, mod):
        self.state = mod.state

    def __enter__(self):
        self.before = (self.state.total_syncs, sum(self.state.launches.values()))

    def __exit__(self, *exc):
        assert (self.state.total_syncs, sum(self.state.launches.values())) == self.before


def zoo_batches(c, shape, n):
    rng = numpy.random.RandomState(1)
    return [rng.uniform(-1, 1, (4 * c.minibatches(),) + shape).astype(numpy.float32)
            for _ in range(n)]


@pytest.mark.parametrize("name", ["gan", "dcgan", "wgan-gp", "began",
                                  pytest.param("lightweight", marks=pytest.mark.slow)])
def test_each_zoo_gan_on_the_gpu_equals_the_cpu_run(standin, name):
    module, c, shape = ZOO[name]
    batches = zoo_batches(c, shape, 1 if name == "lightweight" else 3)
    with cupy_standin_off(standin):
        want, _ = train(module, c, batches, -1)
    got, syncs = train(module, c, batches, backend.Device(0), standin.state)
    assert_same(got, want, 1e-4)
    assert standin.state.incompatibilities == [] and not standin.state.numpy_calls
    assert sum(standin.state.launches.values()) > 0         # the kernels ran, not the twins
    assert max(syncs) <= SYNCS[name], syncs


@pytest.mark.parametrize("name", ["dcgan", "wgan-gp"])
def test_a_run_on_device_1_never_touches_device_0(standin, name):
    """Device 0 is current outside the run; an array of device 0 meeting one of device 1 (or
    a kernel compiled for device 0 launched on 1) raises in the stand-in."""
    module, c, shape = ZOO[name]
    batches = zoo_batches(c, shape, 2)
    want, _ = train(module, c, batches, -1)
    got, _ = train(module, c, batches, backend.Device(1), standin.state)
    assert_same(got, want, 1e-4)
    assert standin.state.incompatibilities == [] and standin.state.current == 0
    assert {k[0] for k in cuda._modules} == {1}             # kernels compiled for device 1 only


@pytest.mark.parametrize("policy", ["color,translation,cutout", "translation"])
def test_diff_augment_on_the_gpu_equals_the_cpu_and_never_syncs(standin, policy):
    x = numpy.random.RandomState(0).standard_normal((3, 3, 9, 8))
    for dtype, rtol in ((numpy.float32, 1e-6), (numpy.float64, 1e-12)):
        a = x.astype(dtype)
        want = augment.diff_augment(a, policy, rng=numpy.random.RandomState(2)).array
        dev = backend.Device(0)
        got = augment.diff_augment(dev.send(a), policy, rng=numpy.random.RandomState(2))
        assert isinstance(got.array, standin.ndarray) and got.dtype == dtype
        numpy.testing.assert_allclose(got.array.get(), want, rtol=rtol, atol=rtol)
    state = standin.state
    assert state.launches["diff_augment"] == 2 and state.launches["diff_augment_sums"] == 2
    assert state.incompatibilities == []
    assert state.syncs == {"get": 2}                        # only the two .get() above


def test_offsets_on_the_gpu_equal_the_cpu_and_never_sync(standin):
    x = numpy.random.RandomState(0).standard_normal((3, 4, 9, 8))
    dev = backend.Device(0)
    v = dev.send(x)
    for kind in augment.OFFSETS:
        want = augment.offset(x, kind, rng=numpy.random.RandomState(3)).array
        got = augment.offset(v, kind, rng=numpy.random.RandomState(3)).array
        assert isinstance(got, standin.ndarray)
        numpy.testing.assert_array_equal(got.get(), want)
    assert standin.state.incompatibilities == []
    assert standin.state.syncs == {"get": 3}                # only the three .get() above


def test_the_cli_trains_dcgan_on_gpu_0_as_on_the_cpu(standin, tmp_path, monkeypatch):
    from test_zoo_cli import QUIET, image_folder
    monkeypatch.chdir(tmp_path)
    image_folder("imgs", n=8, size=16)
    args = ["dcgan", "--dataset", "folder", "--data-dir", "imgs", "--size", 16, "--ngf", 4,
            "--ndf", 4, "--batch-size", 4, "--iterations", 2, *QUIET]
    logs = {}
    for gpu in (-1, 0):
        code, out = run(*args, "--out", f"run{gpu}", "--gpu", gpu)
        assert code == 0, out
        logs[gpu] = [{k: v for k, v in r.items() if k.startswith(("loss", "dis"))}
                     for r in _log(tmp_path / f"run{gpu}")]
    assert_same(logs[0], logs[-1], 1e-4) and logs[0]
    assert standin.state.incompatibilities == [] and sum(standin.state.launches.values()) > 0
    assert (tmp_path / "run0" / "snapshot_iter_0000002.h5").exists()


def _log(folder):
    import json
    return [json.loads(line) for line in open(folder / "log.jsonl", encoding="utf-8")]


def test_pix2pix_resume_and_translate_on_gpu_1(standin, tmp_path, monkeypatch):
    """--gpu 1 through the whole pix2pix workflow: snapshots loaded into device 1's arrays
    (inside their device), translate on device 1; nothing meets device 0."""
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    tiny = ["--size", 32, "--n-down", 3, "--ngf", 4, "--ndf", 4, "--labels", "color",
            "--batch-size", 2, "--log-interval", 2, "--snapshot-interval", 2,
            "--sample-interval", 2, "--workers", 0, "--out", "run", "--gpu", 1]
    assert run("pix2pix", *tiny, "--iterations", 2)[0] == 0
    code, out = run("pix2pix", *tiny, "--iterations", 4, "--resume")
    assert code == 0, out
    (tmp_path / "inputs").mkdir()
    pixels = numpy.random.RandomState(0).rand(32, 64, 3) * 255
    Image.fromarray(pixels.astype(numpy.uint8)).save(tmp_path / "inputs" / "0.jpg")
    code, out = run("translate", "--snapshot", "run/snapshot_iter_0000004.h5", "--input",
                    "inputs", "--out", "translated", "--gpu", 1)
    assert code == 0, out
    assert (tmp_path / "translated" / "0.png").exists()
    assert standin.state.incompatibilities == [] and standin.state.current == 0
    assert {k[0] for k in cuda._modules} == {1}
