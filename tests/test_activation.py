"""Activations and dropout: forward vs NumPy, first and second derivatives."""
import numpy
import pytest

import minigan
import minigan.functions as F
from minigan import Variable
from helpers import check_op, randn


def _away_from_zero(shape, seed=0):
    """Inputs at least 0.05 from 0, where relu-like functions have their kink."""
    x = randn(*shape, seed=seed)
    return numpy.where(x >= 0, x + 0.05, x - 0.05)


sigmoid = lambda x: 1 / (1 + numpy.exp(-x))


@pytest.mark.parametrize("fn,ref", [
    (F.relu, lambda x: numpy.maximum(x, 0)),
    (lambda x: F.leaky_relu(x, 0.2), lambda x: numpy.where(x >= 0, x, 0.2 * x)),
    (lambda x: F.elu(x, 1.3), lambda x: numpy.where(x > 0, x, 1.3 * (numpy.exp(x) - 1))),
    (F.relu6, lambda x: numpy.clip(x, 0, 6)),
    (F.tanh, numpy.tanh),
    (F.sigmoid, sigmoid),
    (F.softplus, lambda x: numpy.log1p(numpy.exp(x))),
    (lambda x: F.softplus(x, beta=2.0), lambda x: numpy.log1p(numpy.exp(2 * x)) / 2),
    (F.swish, lambda x: x * sigmoid(x)),
    (F.glu, lambda x: x[:, :2] * sigmoid(x[:, 2:])),
], ids=["relu", "leaky_relu", "elu", "relu6", "tanh", "sigmoid", "softplus", "softplus_beta",
        "swish", "glu"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 3, 3)])
def test_activation(fn, ref, shape):
    x = _away_from_zero(shape, seed=1) * 3
    if fn is F.relu6:
        x = numpy.where(numpy.abs(x - 6) < 0.05, x + 0.1, x)
    check_op(fn, (x,), ref)


def test_activations_are_stable_for_large_inputs():
    x = Variable(numpy.array([-800.0, 800.0], numpy.float32))
    numpy.testing.assert_allclose(F.sigmoid(x).array, [0.0, 1.0])
    numpy.testing.assert_allclose(F.softplus(x).array, [0.0, 800.0])
    assert numpy.isfinite(F.elu(x).array).all()


def test_dropout_scales_kept_units_and_is_identity_in_test_mode():
    numpy.random.seed(0)
    x = Variable(numpy.ones((1000, 100), numpy.float32))
    y = F.dropout(x, 0.3)
    kept = y.array != 0
    assert abs(kept.mean() - 0.7) < 0.01
    numpy.testing.assert_allclose(y.array[kept], 1 / 0.7, rtol=1e-6)
    F.sum(y).backward()
    numpy.testing.assert_array_equal(x.grad.array, y.array)
    with minigan.using_config("train", False):
        assert F.dropout(x, 0.3) is x


def test_dropout_gradients_with_a_fixed_mask():
    mask = (numpy.random.RandomState(3).rand(4, 5) > 0.5) * 2.0
    check_op(lambda v: F.dropout(v, 0.5, mask=mask), (randn(4, 5),), lambda v: v * mask)
    with pytest.raises(ValueError, match="ratio must be in"):
        F.dropout(Variable(numpy.ones(3)), 1.0)


@pytest.mark.parametrize("slope", [0.0, 0.2, 1.0, -0.5, 1.5])
def test_leaky_relu_any_slope(slope):
    """max(x, slope x) serves 0 <= slope <= 1; other slopes keep the select x >= 0 ? x : slope x."""
    check_op(lambda x: F.leaky_relu(x, slope), (_away_from_zero((2, 3, 4)),),
             lambda x: numpy.where(x >= 0, x, slope * x))


@pytest.mark.parametrize("slope", [0.2, 1.5])
def test_leaky_relu_float32_is_exact(slope):
    """float32 in, float32 out and gradient (no float64 mask), exact: dy/dx is 1 at 0."""
    x = numpy.array([-2.5, -0.0, 0.0, 0.7, 3.0], numpy.float32)
    gy = numpy.array([0.3, 1.1, -0.9, 2.0, -1.7], numpy.float32)
    v = Variable(x)
    y = F.leaky_relu(v, slope)
    y.grad = gy
    y.backward()
    s = numpy.float32(slope)
    assert y.dtype == v.grad.dtype == numpy.float32
    numpy.testing.assert_array_equal(y.array, numpy.where(x >= 0, x, x * s))
    numpy.testing.assert_array_equal(v.grad.array, numpy.where(x >= 0, gy, gy * s))


# -- the compiled loops (minigan[jit]) against the NumPy passes -----------------------------------

@pytest.mark.skipif(minigan.functions.jit.numba is None, reason="numba is not installed "
                    "(minigan[jit])")
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # inf * 0 in both paths
def test_jit_activations_equal_numpy_passes(dtype, threads, monkeypatch):
    """relu's and leaky relu's compiled forward and backward give the NumPy passes' bits,
    at 0, -0, inf and NaN too, on a non-contiguous input, threaded or not."""
    monkeypatch.setattr("minigan.functions.im2col._threads", lambda: threads)
    monkeypatch.setattr("minigan.functions.im2col._PARALLEL_BYTES", 0)
    rng = numpy.random.RandomState(0)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    x.flat[:6] = [0.0, -0.0, numpy.inf, -numpy.inf, numpy.nan, 1e-30]
    x = x.transpose(0, 2, 1, 3)                                   # not contiguous
    gy = rng.standard_normal(x.shape).astype(dtype)
    gy.flat[:3] = [numpy.inf, -numpy.inf, numpy.nan]

    def run(flag):
        monkeypatch.setenv("MINIGAN_JIT", flag)
        out = []
        for fn in (F.relu, lambda v: F.leaky_relu(v, 0.2), lambda v: F.leaky_relu(v, 0.0),
                   lambda v: F.leaky_relu(v, 1.0)):
            xv = Variable(x)
            y = fn(xv)
            gx, = minigan.grad([y], [xv], [gy])
            out += [y.array, gx.array]
        return out

    for a, b in zip(run("1"), run("0")):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        numpy.testing.assert_array_equal(a, b)
        assert (numpy.signbit(a) == numpy.signbit(b))[~numpy.isnan(a)].all()


@pytest.mark.skipif(minigan.functions.jit.numba is None, reason="numba is not installed "
                    "(minigan[jit])")
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape,axis", [((3, 8, 5, 7), 1), ((4, 6), -1), ((2, 3, 10), 2),
                                        ((6, 5), 0)])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # inf * 0 in both paths
def test_jit_glu_equals_numpy_passes(dtype, threads, shape, axis, monkeypatch):
    """GLU's compiled forward and backward give the NumPy passes' bits, with blocks that end
    inside a row (small chunks), threaded or not, at inf and NaN too."""
    monkeypatch.setattr("minigan.functions.im2col._threads", lambda: threads)
    monkeypatch.setattr("minigan.functions.im2col._PARALLEL_BYTES", 0)
    monkeypatch.setattr("minigan.functions.im2col._CHUNK_BYTES", 7 * numpy.dtype(dtype).itemsize)
    rng = numpy.random.RandomState(1)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.flat[:4] = [numpy.inf, -numpy.inf, numpy.nan, 50.0]
    x.flat[-3:] = [-numpy.inf, 0.0, -60.0]
    half = list(shape)
    half[axis] //= 2
    gy = rng.standard_normal(half).astype(dtype)

    def run(flag):
        monkeypatch.setenv("MINIGAN_JIT", flag)
        xv = Variable(x)
        y = F.glu(xv, axis)
        gx, = minigan.grad([y], [xv], [gy])
        return y.array, gx.array

    for a, b in zip(run("1"), run("0")):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        numpy.testing.assert_array_equal(a, b)


def test_glu_odd_axis_is_one_clear_error():
    with pytest.raises(ValueError, match="does not split in halves"):
        F.glu(Variable(numpy.ones((2, 3))), axis=1)


@pytest.mark.skipif(minigan.functions.jit.numba is None, reason="numba is not installed "
                    "(minigan[jit])")
@pytest.mark.parametrize("forward_jit", ["1", "0"])
def test_glu_backward_on_the_other_path_than_its_forward(forward_jit, monkeypatch):
    """MINIGAN_JIT switched between GLU's forward and backward: the same gradient."""
    x = randn(2, 6, 3, 4, seed=3)
    gy = randn(2, 3, 3, 4, seed=4)
    grads = []
    for backward_jit in ("1", "0"):
        monkeypatch.setenv("MINIGAN_JIT", forward_jit)
        xv = Variable(x)
        y = F.glu(xv)
        monkeypatch.setenv("MINIGAN_JIT", backward_jit)
        grads.append(minigan.grad([y], [xv], [gy])[0].array)
    numpy.testing.assert_array_equal(grads[0], grads[1])
