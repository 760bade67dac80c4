"""Links: registration, tree walks, copies, devices, each layer's gradients, and initializers."""
import numpy
import pytest

import minigan
import minigan.functions as F
import minigan.links as L
from minigan import Parameter, initializers as I
from minigan.gradient_check import check_backward

f64 = numpy.float64


def _x(rng, *shape):
    return rng.standard_normal(shape).astype(f64)


# -- gradient checks of every link, w.r.t. the input and the parameters ------------------------

LINKS = {
    "linear": (lambda: L.Linear(5, 3, dtype=f64), (4, 5)),
    "linear_nobias": (lambda: L.Linear(5, 3, nobias=True, dtype=f64), (4, 5)),
    "linear_flatten": (lambda: L.Linear(2 * 3 * 3, 4, dtype=f64), (2, 2, 3, 3)),
    "conv": (lambda: L.Convolution2D(3, 4, 3, stride=2, pad=1, dtype=f64), (2, 3, 6, 6)),
    "conv_groups_dilate": (lambda: L.Convolution2D(4, 6, (3, 2), pad=2, dilate=2, groups=2,
                                                    dtype=f64), (2, 4, 5, 5)),
    "deconv": (lambda: L.Deconvolution2D(3, 2, 4, stride=2, pad=1, dtype=f64), (2, 3, 3, 3)),
    "deconv_outsize": (lambda: L.Deconvolution2D(4, 2, 3, stride=2, pad=1, outsize=(6, 6),
                                                 groups=2, dtype=f64), (2, 4, 3, 3)),
    "bn": (lambda: L.BatchNormalization(3, dtype=f64), (4, 3, 2, 2)),
    "bn_2d_input": (lambda: L.BatchNormalization(3, dtype=f64), (6, 3)),
    "bn_no_affine": (lambda: L.BatchNormalization(3, use_gamma=False, use_beta=False, dtype=f64),
                     (4, 3, 2, 2)),
    "instance_norm": (lambda: L.InstanceNormalization(3, dtype=f64), (2, 3, 3, 3)),
    "instance_norm_plain": (lambda: L.InstanceNormalization(3, affine=False, dtype=f64),
                            (2, 3, 3, 3)),
    "cbr_down": (lambda: L.CBR(2, 3, "down", dtype=f64), (2, 2, 4, 4)),
    "cbr_up_leaky_nobn": (lambda: L.CBR(2, 3, "up", bn=False, activation=F.leaky_relu,
                                        dtype=f64), (2, 2, 2, 2)),
    "sequential": (lambda: L.Sequential(L.Linear(4, 5, dtype=f64), F.tanh,
                                        L.Linear(5, 2, dtype=f64)), (3, 4)),
}


@pytest.mark.parametrize("name", sorted(LINKS))
def test_gradcheck(name):
    numpy.random.seed(0)
    make, shape = LINKS[name]
    link = make()
    for p in link.params():     # move gamma, beta and biases away from 1 and 0
        p.array += numpy.random.uniform(-0.5, 0.5, p.shape)
    x = _x(numpy.random.RandomState(1), *shape)
    check_backward(link, x, params=list(link.params()), atol=1e-6, rtol=1e-5)


def test_bn_gradcheck_in_test_mode():
    bn = L.BatchNormalization(3, dtype=f64)
    bn.avg_mean[...] = [0.5, -1, 2]
    bn.avg_var[...] = [2, 0.5, 1]
    with minigan.using_config("train", False):
        check_backward(bn, _x(numpy.random.RandomState(0), 4, 3, 2), params=list(bn.params()))


# -- registration and walking the tree ---------------------------------------------------------

class Block(L.Chain):
    def __init__(self):
        super().__init__()
        self.c0 = L.Convolution2D(1, 2, 3)
        self.bn = L.BatchNormalization(2)

    def forward(self, x):
        return self.bn(self.c0(x))


class Net(L.Chain):
    def __init__(self):
        super().__init__()
        self.scale = Parameter(numpy.ones(1, numpy.float32))
        self.enc = Block()
        self.dec = L.Sequential(L.Linear(2, 3), F.relu, L.Linear(3, 1, nobias=True))


def test_namedparams_order_and_names():
    net = Net()
    assert [name for name, _ in net.namedparams()] == [
        "/scale", "/enc/c0/W", "/enc/c0/b", "/enc/bn/gamma", "/enc/bn/beta",
        "/dec/0/W", "/dec/0/b", "/dec/2/W"]
    assert [p for p in net.params()] == [p for _, p in net.namedparams()]
    assert [name for name, _ in net.namedpersistents()] == [
        "/enc/bn/avg_mean", "/enc/bn/avg_var", "/enc/bn/N"]
    assert [n for n, _ in net.namedlinks()] == ["", "/enc", "/enc/c0", "/enc/bn", "/dec",
                                                "/dec/0", "/dec/2"]
    assert list(net.children()) == [net.enc, net.dec]
    assert list(net.links(skipself=True))[0] is net.enc
    assert net.count_params() == 1 + 2 * 9 + 2 + 2 + 2 + 6 + 3 + 3
    assert net.enc.c0.W.name == "W"


def test_sequential_layers_and_indexing():
    seq = L.Sequential(L.Linear(2, 3), F.relu)
    seq.append(L.Linear(3, 4))
    assert len(seq) == 3 and seq[1] is F.relu and seq[2] is getattr(seq, "2")
    assert [n for n, _ in seq.namedparams()] == ["/0/W", "/0/b", "/2/W", "/2/b"]
    x = numpy.ones((5, 2), numpy.float32)
    numpy.testing.assert_array_equal(seq(x).array, seq[2](F.relu(seq[0](x))).array)
    assert seq[1:][0] is F.relu
    with pytest.raises(TypeError, match="callable"):
        seq.append(3)


def test_assignment_registers_reassignment_and_deletion_unregister():
    link = L.Link()
    link.a = Parameter(numpy.zeros(2))
    link.b = Parameter(numpy.zeros(3))
    link.a = Parameter(numpy.ones(2))           # same place in the order
    assert [n for n, _ in link.namedparams()] == ["/a", "/b"]
    assert link.a.array[0] == 1
    link.a = None                               # a plain value: no longer a parameter
    assert [n for n, _ in link.namedparams()] == ["/b"]
    del link.b
    assert list(link.params()) == [] and not hasattr(link, "b")
    link.add_persistent("count", 0)
    link.count = 5                              # stays persistent when reassigned
    assert list(link.namedpersistents()) == [("/count", 5)]
    link.count = Parameter(numpy.zeros(1))      # now a parameter instead
    assert list(link.namedpersistents()) == [] and len(list(link.params())) == 1

    chain = L.Chain(first=L.Linear(1, 1))
    chain.second = L.Linear(1, 1)
    chain.first = L.Linear(2, 2)                # replaced in place
    assert [n for n, _ in chain.namedlinks(skipself=True)] == ["/first", "/second"]
    del chain.first
    assert [n for n, _ in chain.namedlinks(skipself=True)] == ["/second"]
    chain.second = "plain"
    assert list(chain.children()) == []


def test_registration_errors():
    with pytest.raises(TypeError, match="derive from Chain"):
        L.Link().child = L.Linear(1, 1)

    class Early(L.Link):
        def __init__(self):
            self.W = Parameter(numpy.zeros(1))
            super().__init__()
    with pytest.raises(AttributeError, match="super"):
        Early()


def test_shared_link_and_parameter_counted_once():
    shared = L.Linear(2, 2)
    chain = L.Chain(a=shared, b=shared)
    assert [n for n, _ in chain.namedparams()] == ["/a/W", "/a/b"]


def test_cleargrads():
    net = Net()
    x = numpy.ones((2, 1, 5, 5), numpy.float32)
    F.sum(net.enc(x)).backward()
    assert net.enc.c0.W.grad is not None
    net.cleargrads()
    assert all(p.grad is None for p in net.params())


def test_copy_is_independent():
    net = Net()
    twin = net.copy()
    assert type(twin) is Net and type(twin.dec) is L.Sequential
    for (n1, p1), (n2, p2) in zip(net.namedparams(), twin.namedparams()):
        assert n1 == n2 and p1 is not p2
        numpy.testing.assert_array_equal(p1.array, p2.array)
    twin.enc.c0.W.array += 1
    twin.enc.bn.avg_mean += 1
    assert not numpy.allclose(net.enc.c0.W.array, twin.enc.c0.W.array)
    assert net.enc.bn.avg_mean.sum() == 0
    # the copy trains on its own: gradients reach the copy's parameters only
    F.sum(twin.dec(numpy.ones((1, 2), numpy.float32))).backward()
    assert twin.dec[0].W.grad is not None and net.dec[0].W.grad is None
    assert twin.dec[1] is F.relu


def test_device_and_to_cpu_on_cpu():
    net = Net()
    assert net.device == -1 and net.xp is numpy
    assert net.to_cpu() is net and isinstance(net.enc.bn.avg_mean, numpy.ndarray)


@pytest.mark.gpu
def test_to_gpu_moves_params_grads_and_persistents():
    import cupy
    net = Net()
    F.sum(net.enc(numpy.ones((2, 1, 5, 5), numpy.float32))).backward()
    net.to_gpu(0)
    assert net.xp is cupy and net.enc.device == 0
    assert isinstance(net.enc.c0.W.array, cupy.ndarray)
    assert isinstance(net.enc.c0.W.grad.array, cupy.ndarray)
    assert isinstance(net.enc.bn.avg_var, cupy.ndarray) and net.enc.bn.N == 0
    y = net.enc(cupy.ones((2, 1, 5, 5), cupy.float32))
    assert isinstance(y.array, cupy.ndarray)
    net.to_cpu()
    assert isinstance(net.enc.bn.avg_var, numpy.ndarray)


def test_dtype_and_default_initialization():
    numpy.random.seed(0)
    lin = L.Linear(400, 300)
    assert lin.W.dtype == numpy.float32 and lin.W.shape == (300, 400)
    assert lin.b.dtype == numpy.float32 and not lin.b.array.any()
    assert abs(lin.W.array.std() - (1 / 400) ** 0.5) < 0.02 * (1 / 400) ** 0.5   # LeCunNormal
    conv = L.Convolution2D(8, 4, 3, initialW=I.Constant(2.0), initial_bias=0.5, dtype=f64)
    assert conv.W.dtype == f64 and (conv.W.array == 2).all() and (conv.b.array == 0.5).all()
    W = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)
    assert (L.Linear(3, 2, initialW=W).W.array == W).all()


# -- layer behavior ------------------------------------------------------------------------------

def test_batch_normalization_train_and_test_modes():
    rng = numpy.random.RandomState(0)
    bn = L.BatchNormalization(3, decay=0.8)
    x = (rng.standard_normal((16, 3, 4, 4)) * [[[[1]], [[2]], [[3]]]] + 5).astype(numpy.float32)
    y = bn(x).array                                     # train: batch statistics
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    numpy.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    numpy.testing.assert_allclose(y.var(axis=(0, 2, 3)), var / (var + 2e-5), rtol=1e-4)
    n = 16 * 4 * 4          # running stats: decay old + (1 - decay) batch, unbiased variance
    numpy.testing.assert_allclose(bn.avg_mean, 0.2 * mean, rtol=1e-5)
    numpy.testing.assert_allclose(bn.avg_var, 0.8 + 0.2 * var * n / (n - 1), rtol=1e-5)
    assert bn.N == 1
    before = bn.avg_mean.copy()
    with minigan.using_config("train", False):           # test: running statistics, no update
        y = bn(x).array
    numpy.testing.assert_allclose(
        y, (x - bn.avg_mean[:, None, None]) / numpy.sqrt(bn.avg_var[:, None, None] + 2e-5),
        rtol=1e-4, atol=1e-4)
    assert (bn.avg_mean == before).all() and bn.N == 1


def test_instance_normalization_normalizes_each_plane():
    x = numpy.random.RandomState(0).standard_normal((2, 3, 5, 5)).astype(numpy.float32) * 3 + 1
    inorm = L.InstanceNormalization(3)
    inorm.gamma.array[...] = 2
    y = inorm(x).array
    numpy.testing.assert_allclose(y.mean(axis=(2, 3)), 0, atol=1e-5)
    numpy.testing.assert_allclose(y.std(axis=(2, 3)), 2, rtol=1e-3)
    assert list(L.InstanceNormalization(3, affine=False).params()) == []


@pytest.mark.parametrize("sample,shape", [("down", (2, 8, 4, 4)), ("up", (2, 8, 16, 16)),
                                          ("none-3x3", (2, 8, 8, 8)), ("none-7x7", (2, 8, 8, 8))])
@pytest.mark.parametrize("bn", [True, False])
def test_cbr_shapes(sample, shape, bn):
    cbr = L.CBR(3, 8, sample, bn=bn)
    assert cbr(numpy.ones((2, 3, 8, 8), numpy.float32)).shape == shape
    assert (cbr.batchnorm is not None) == bn
    assert isinstance(cbr.c, L.Deconvolution2D if sample == "up" else L.Convolution2D)
    assert abs(float(cbr.c.W.array.std()) - 0.02) < 0.004     # pix2pix's N(0, 0.02^2)


def test_cbr_dropout_only_in_training_and_activation():
    numpy.random.seed(0)
    x = numpy.random.standard_normal((4, 3, 8, 8)).astype(numpy.float32)
    cbr = L.CBR(3, 16, "down", bn=False, activation=None, dropout=True)
    y_train = cbr(x).array
    with minigan.using_config("train", False):
        y_test = cbr(x).array
    assert (y_test < 0).any()                           # no activation
    dropped = y_train == 0
    assert 0.35 < dropped.mean() < 0.65
    numpy.testing.assert_allclose(y_train[~dropped], 2 * y_test[~dropped], rtol=1e-5)
    relu = L.CBR(3, 16, "down", bn=True)
    assert (relu(x).array >= 0).all()
    with pytest.raises(ValueError, match="sample"):
        L.CBR(3, 16, "sideways")


# -- initializers -------------------------------------------------------------------------------

@pytest.mark.parametrize("init,shape,mean,std", [
    (I.Normal(0.02), (200, 500), 0, 0.02),
    (I.Uniform(0.3), (200, 500), 0, 0.3 / 3 ** 0.5),
    (I.LeCunNormal(), (64, 32, 3, 3), 0, (1 / (32 * 9)) ** 0.5),
    (I.HeNormal(), (64, 32, 3, 3), 0, (2 / (32 * 9)) ** 0.5),
    (I.HeNormal(0.5, fan_option="fan_out"), (64, 32, 3, 3), 0, 0.5 * (2 / (64 * 9)) ** 0.5),
    (I.GlorotUniform(), (300, 500), 0, (6 / 800) ** 0.5 / 3 ** 0.5),
    (I.GlorotNormal(2.0), (300, 500), 0, 2 * (2 / 800) ** 0.5),
    (I.Constant(3.5), (10, 10), 3.5, 0), (I.Zero(), (7,), 0, 0), (I.One(), (7,), 1, 0),
])
def test_initializer_statistics(init, shape, mean, std):
    numpy.random.seed(0)
    a = init(shape)
    assert a.shape == shape and a.dtype == numpy.float32
    assert abs(a.mean() - mean) <= 0.01 * max(std, 1e-3) * 10
    assert abs(a.std() - std) <= 0.02 * std + 1e-7
    assert init(shape, f64).dtype == f64


def test_fans():
    assert I.get_fans((3, 5)) == (5, 3)                 # Linear W (out, in)
    assert I.get_fans((8, 4, 3, 3)) == (36, 72)         # conv W (C_out, C_in, kh, kw)
    assert I.get_fans((4, 8, 4, 4)) == (128, 64)        # deconv W (C_in, C_out, kh, kw)
    with pytest.raises(ValueError):
        I.get_fans((5,))
    with pytest.raises(ValueError, match="fan_option"):
        I.HeNormal(fan_option="fan_avg")((2, 2))


def test_initializers_follow_numpy_seed():
    numpy.random.seed(3)
    a = L.Convolution2D(3, 4, 3).W.array
    numpy.random.seed(3)
    b = L.Convolution2D(3, 4, 3).W.array
    numpy.testing.assert_array_equal(a, b)


def test_generate_array_checks_shape():
    with pytest.raises(ValueError, match="expected"):
        L.Linear(3, 2, initialW=numpy.zeros((3, 2)))
    assert I.generate_array(2, (2,), f64).tolist() == [2.0, 2.0]
