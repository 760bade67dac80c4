"""Every kernel of kernels/*.cu against its NumPy twin, through the ops that dispatch to it.

Each test runs twice: on the CPU, with the kernels built as C++ and run by the host harness
(tests/cuda_host, small blocks and grids so every loop of a kernel goes round), and on a CUDA
device with CuPy (marked gpu). The twin is the same op on NumPy arrays without the kernels.
"""
import contextlib

import numpy
import pytest

import cuda_host
import minigan
import minigan.functions as F
from minigan import Variable, augment, cuda
from minigan.functions import im2col as im
from minigan.gans import pix2pix
from minigan.gradient_check import check_backward, check_double_backward
from minigan.optimizers import Adam

DTYPES = [numpy.float32, numpy.float64]
TOL = {numpy.float32: dict(rtol=2e-5, atol=2e-5), numpy.float64: dict(rtol=1e-12, atol=1e-12)}


class Host:
    """The kernels on NumPy arrays, emulated on host threads."""

    def __init__(self, monkeypatch):
        cuda_host.prebuild(cuda.families())
        self.emulator = cuda_host.Emulator(monkeypatch)
        self.put, self.get = numpy.array, numpy.asarray

    def kernels(self):
        return self.emulator.kernels()


class Gpu:
    """The kernels on CuPy arrays, on the device."""

    def __init__(self):
        import cupy
        self.put, self.get = cupy.asarray, cupy.asnumpy

    def kernels(self):
        return contextlib.nullcontext()


@pytest.fixture(params=["host", pytest.param("gpu", marks=pytest.mark.gpu)])
def dev(request, monkeypatch):
    return Host(monkeypatch) if request.param == "host" else Gpu()


def on(dev, fn, *arrays):
    """fn(*arrays) with the kernels, arrays moved to the device; results back as NumPy arrays."""
    with dev.kernels():
        out = fn(*[dev.put(a) for a in arrays])
    return tuple(dev.get(minigan.as_array(o)) for o in out) if isinstance(out, tuple) \
        else dev.get(minigan.as_array(out))


def rand(*shape, dtype=numpy.float64, seed=0):
    return numpy.random.RandomState(seed).standard_normal(shape).astype(dtype)


def close(got, want, dtype):
    numpy.testing.assert_allclose(got, want, **TOL[dtype])


# -- conv.cu: im2col, col2im, and the convolutions built on them --------------------------------

# N, C, H, W, (kh, kw), stride, pad, dilation
IM2COL = [
    (1, 1, 5, 5, (3, 3), (1, 1), (0, 0), (1, 1)),
    (2, 3, 7, 9, (3, 3), (2, 2), (1, 1), (1, 1)),      # odd sizes, stride 2, pad
    (1, 2, 8, 8, (4, 4), (2, 2), (1, 1), (1, 1)),      # pix2pix's down layers
    (2, 2, 9, 7, (3, 2), (2, 1), (1, 0), (2, 1)),      # dilation, non-square everything
    (1, 3, 4, 4, (5, 5), (1, 1), (2, 2), (1, 1)),      # kernel larger than the image
    (3, 2, 7, 6, (1, 2), (3, 3), (0, 1), (1, 1)),      # stride > kernel: pixels with no tap
    (1, 1, 11, 13, (3, 3), (3, 2), (4, 3), (2, 3)),    # pad larger than the kernel reach
    (1, 2, 12, 11, (3, 3), (1, 1), (1, 1), (1, 1)),    # more pixels than the (small) grid
]


def _outsize(case):
    N, C, H, W, (kh, kw), s, p, d = case
    return im.conv_outsize(H, kh, s[0], p[0], d[0]), im.conv_outsize(W, kw, s[1], p[1], d[1])


@pytest.mark.parametrize("case", IM2COL)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_and_col2im(dev, case, dtype):
    N, C, H, W, (kh, kw), s, p, d = case
    oh, ow = _outsize(case)
    x = rand(N, C, H, W, dtype=dtype)
    cols = lambda a: im.im2col(a, kh, kw, s[0], s[1], p[0], p[1], oh, ow, d[0], d[1])
    numpy.testing.assert_array_equal(on(dev, cols, x), cols(x))         # a gather: exact
    col = rand(N, C, kh, kw, oh, ow, dtype=dtype, seed=1)
    img = lambda a: im.col2im(a, s[0], s[1], p[0], p[1], H, W, d[0], d[1])
    close(on(dev, img, col), img(col), dtype)


# x shape, W shape, stride, pad, dilate, groups; deconvolution reads W as (C, Cout/G, kh, kw)
CONVS = [
    ((2, 4, 9, 8), (6, 2, 3, 3), 2, 1, 1, 2),          # groups
    ((1, 6, 8, 8), (2, 6, 3, 3), 1, 1, 1, 1),          # few outputs, stride 1: the flipped route
    ((2, 3, 7, 7), (4, 3, 3, 2), (1, 2), (2, 0), 2, 1),
]


def _conv_run(deconv, stride, pad, dilate, groups):
    op = F.deconvolution_2d if deconv else F.convolution_2d

    def run(x, W, b, gy):
        vs = [Variable(a) for a in (x, W, b)]
        y = op(*vs, stride=stride, pad=pad, dilate=dilate, groups=groups)
        y.grad = gy[..., :y.shape[2], :y.shape[3]].copy()
        y.backward()
        return (y,) + tuple(v.grad for v in vs)
    return run


@pytest.mark.parametrize("case", CONVS)
@pytest.mark.parametrize("deconv", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_convolutions_forward_and_backward(dev, case, deconv, dtype):
    xs, ws, stride, pad, dilate, groups = case
    if deconv:      # W (C, Cout/G, kh, kw): reuse the conv case with the channel roles swapped
        ws = (xs[1], ws[0] // groups) + ws[2:]
    x, W = rand(*xs, dtype=dtype), rand(*ws, dtype=dtype, seed=1)
    b = rand(ws[1] * groups if deconv else ws[0], dtype=dtype, seed=2)
    gy = rand(xs[0], len(b), 40, 40, dtype=dtype, seed=3)
    run = _conv_run(deconv, stride, pad, dilate, groups)
    for got, want in zip(on(dev, run, x, W, b, gy), run(x, W, b, gy)):
        close(got, minigan.as_array(want), dtype)


@pytest.mark.parametrize("deconv", [False, True])
def test_convolution_gradients_through_the_kernels(dev, deconv):
    x = rand(1, 4, 5, 6)                            # stride 2, pad 1; W: 4 <-> 3 channels
    W = rand(4, 3, 3, 3, seed=1) if deconv else rand(3, 4, 3, 3, seed=1)
    op = F.deconvolution_2d if deconv else F.convolution_2d
    with dev.kernels():
        xd, Wd = dev.put(x), dev.put(W)
        fn = lambda x, W: op(x, W, None, 2, 1)
        check_backward(fn, (xd, Wd))
        check_double_backward(fn, (xd, Wd))


# -- norm.cu --------------------------------------------------------------------------------------

NORMS = [(False, (1, 3, 5, 7)), (False, (4, 3, 16, 16)), (False, (7, 5)), (False, (2, 6, 1, 1)),
         (True, (3, 2, 9, 11)), (True, (2, 3, 16, 17)), (True, (1, 5, 1, 3))]


def _norm_run(per_sample):
    def run(x, gamma, beta, gy):
        vs = [Variable(a) for a in (x, gamma, beta)]
        if per_sample:
            y = F.instance_normalization(*vs)
            stats = ()
        else:
            xp = minigan.backend.get_array_module(x)
            mean, var = xp.zeros(x.shape[1], x.dtype), xp.ones(x.shape[1], x.dtype)
            y = F.batch_normalization(*vs, running_mean=mean, running_var=var)
            stats = (mean, var)
        y.grad = gy
        y.backward()
        return (y,) + tuple(v.grad for v in vs) + stats
    return run


@pytest.mark.parametrize("per_sample,shape", NORMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_normalization_forward_and_backward(dev, per_sample, shape, dtype):
    x = rand(*shape, dtype=dtype) * 3 + 1
    gamma, beta = rand(shape[1], dtype=dtype, seed=1), rand(shape[1], dtype=dtype, seed=2)
    gy = rand(*shape, dtype=dtype, seed=3)
    run = _norm_run(per_sample)
    tol = {numpy.float32: dict(rtol=1e-4, atol=1e-4), numpy.float64: TOL[numpy.float64]}[dtype]
    for got, want in zip(on(dev, run, x, gamma, beta, gy), run(x, gamma, beta, gy)):
        numpy.testing.assert_allclose(got, minigan.as_array(want), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_instance_normalization_of_a_constant_plane_is_beta(dev, dtype):
    x = rand(2, 3, 5, 6, dtype=dtype)
    x[1, 2] = 2.5                                    # variance 0: xhat = 0, y = beta
    gamma, beta = rand(3, dtype=dtype, seed=1), rand(3, dtype=dtype, seed=2)
    gy = rand(*x.shape, dtype=dtype, seed=3)
    y, gx = on(dev, lambda *a: _norm_run(True)(*a)[:2], x, gamma, beta, gy)
    numpy.testing.assert_array_equal(y[1, 2], numpy.full((5, 6), beta[2]))
    assert numpy.isfinite(gx).all()


@pytest.mark.parametrize("per_sample", [False, True])
def test_normalization_statistics_survive_a_large_mean(dev, per_sample):
    """float32 values near 1000 with spread 1: the kernel's moments (Welford, Chan) hold up."""
    x64 = rand(4, 2, 12, 12, seed=5) + 1000
    one, zero = numpy.ones(2), numpy.zeros(2)
    norm = F.instance_normalization if per_sample else F.batch_normalization
    want = norm(x64, one, zero).array
    got = on(dev, norm, x64.astype(numpy.float32), one.astype("f"), zero.astype("f"))
    numpy.testing.assert_allclose(got, want, atol=2e-3)


@pytest.mark.parametrize("per_sample", [False, True])
def test_normalization_gradients_through_the_kernels(dev, per_sample):
    x = rand(2, 3, 4, 5)
    gamma, beta = rand(3, seed=1), rand(3, seed=2)
    norm = F.instance_normalization if per_sample else F.batch_normalization
    with dev.kernels():
        args = tuple(dev.put(a) for a in (x, gamma, beta))
        check_backward(norm, args)
        check_double_backward(norm, args)


# -- augment.cu -----------------------------------------------------------------------------------

AUGMENTS = [((1, 3, 8, 8), "color,translation,cutout", 0.5, 1.0),
            ((3, 3, 9, 7), "color,translation,cutout", 0.2, 1.0),    # odd sizes, ProjectedGAN
            ((2, 1, 5, 6), "color,cutout", 0.5, 1.0),                 # one channel
            ((4, 3, 16, 16), "color,translation,cutout", 0.5, 0.5),   # some images untouched
            ((2, 2, 6, 5), "translation", 0.5, 1.0),
            ((3, 3, 7, 8), "color", 0.5, 1.0)]


@pytest.mark.parametrize("shape,policy,ratio,prob", AUGMENTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tile", [1024, 7], ids=["one tile", "tiles"])
def test_diff_augment_and_its_adjoint(dev, shape, policy, ratio, prob, dtype, tile, monkeypatch):
    """Also with each image cut into many tiles of 7 pixels (the last one shorter)."""
    monkeypatch.setattr(augment, "TILE_PIXELS", tile)
    p = augment.sample_params(shape, policy, ratio, rng=numpy.random.RandomState(3), prob=prob)
    x, gy = rand(*shape, dtype=dtype), rand(*shape, dtype=dtype, seed=1)
    fwd = lambda a: augment.DiffAugment(p).apply((a,))[0]
    adj = lambda a: augment.DiffAugmentGrad(p).apply((a,))[0]
    lin = lambda a: augment.DiffAugment(p, linear=True).apply((a,))[0]
    for fn, a in ((fwd, x), (adj, gy), (lin, x)):
        close(on(dev, fn, a), minigan.as_array(fn(a)), dtype)


# -- activation.cu, optimizer.cu ------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7, 13), (2, 3, 5, 5), (1,)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu_and_its_gradient(dev, shape, dtype):
    x, gy = rand(*shape, dtype=dtype), rand(*shape, dtype=dtype, seed=1)
    x.reshape(-1)[0] = 0                             # dy/dx = 1 at 0, as max(x, slope x) says

    def run(x, gy):
        v = Variable(x)
        y = F.leaky_relu(v, 0.2)
        y.grad = gy
        y.backward()
        return y, v.grad
    for got, want in zip(on(dev, run, x, gy), run(x, gy)):
        numpy.testing.assert_array_equal(got, minigan.as_array(want))


@pytest.mark.parametrize("amsgrad,decay", [(False, 0.0), (True, 1e-2)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update(dev, amsgrad, decay, dtype):
    shape = (3, 5, 7)                                # more elements than the (small) grid
    p, g = rand(*shape, dtype=dtype), rand(*shape, dtype=dtype, seed=1)
    state = {"m": rand(*shape, dtype=dtype, seed=2) * 0.1,
             "v": numpy.abs(rand(*shape, dtype=dtype, seed=3)) * 0.01}
    if amsgrad:
        state["vhat"] = state["v"] * numpy.linspace(0.5, 1.5, p.size).reshape(shape).astype(dtype)

    def run(p, g, *st):
        opt = Adam(alpha=1e-2, beta1=0.5, weight_decay_rate=decay, amsgrad=amsgrad)
        opt.t = 3
        opt.update_one(p, g, dict(zip(state, st)))
        return (p,) + st
    for got, want in zip(on(dev, run, p, g, *state.values()),
                         run(p.copy(), g, *[a.copy() for a in state.values()])):
        close(got, want, dtype)


# -- the ops together -----------------------------------------------------------------------------

def test_pix2pix_iterations_through_the_kernels(monkeypatch):
    """Three pix2pix iterations with every kernel emulated give the NumPy run's losses."""
    host = Host(monkeypatch)
    c = pix2pix.Config(in_channels=12, n_down=3, ngf=8, ndf=4)
    rng = numpy.random.RandomState(0)
    x = (rng.randint(0, 12, (2, 1, 16, 16)) == numpy.arange(12)[:, None, None]).astype("f")
    y = rng.uniform(-1, 1, (2, 3, 16, 16)).astype("f")

    def train():
        numpy.random.seed(0)        # the same weights and dropout masks for both runs
        models, optimizers = pix2pix.build(c)
        up = pix2pix.Updater(c, models, optimizers)
        return [up.update((x, y)) for _ in range(3)]
    want = train()
    with host.kernels():
        got = train()
    assert set(host.emulator.calls) == {"im2col", "col2im", "norm_stats", "norm_forward",
                                        "norm_backward_sums", "norm_backward",
                                        "leaky_relu_forward", "leaky_relu_backward", "adam_update"}
    # the losses of iterations 2 and 3 depend on the updates; the parameters themselves are not
    # compared: Adam turns the rounding noise of gradients that are 0 in exact arithmetic (the
    # bias of a conv before batch norm) into full steps of either sign
    for got_it, want_it in zip(got, want):
        for k in want_it:
            numpy.testing.assert_allclose(got_it[k], want_it[k], rtol=1e-4, err_msg=k)
