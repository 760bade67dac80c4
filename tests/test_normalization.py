"""Batch, fixed and instance normalization: gradient checks (first and second order), the fast
array backward against the differentiable one, and PyTorch as the reference."""
import numpy
import pytest

import minigan
import minigan.functions as F
from minigan import Variable
from minigan.functions import jit, norm_jit, normalization
from helpers import check_op, randn

f32, f64 = numpy.float32, numpy.float64


def _params(c, seed=5, dtype=f64):
    """gamma away from 0 and 1, beta away from 0."""
    rng = numpy.random.RandomState(seed)
    return rng.uniform(0.5, 1.5, c).astype(dtype), rng.uniform(-1, 1, c).astype(dtype)


def _fixed(mean, var):
    return lambda x, g, b: F.fixed_batch_normalization(x, g, b, mean, var)


# -- gradient checks in float64 ------------------------------------------------------------------

NORMS = {
    "bn": (F.batch_normalization, [(3, 4), (2, 3, 4, 5), (3, 2, 1, 3), (2, 2, 3)]),
    "in": (F.instance_normalization, [(2, 3, 4, 5), (1, 2, 3, 1), (2, 2, 5)]),
    "in_plain": (lambda x: F.instance_normalization(x), [(2, 3, 4, 5), (1, 2, 3, 3)]),
    "bn_eps": (lambda x, g, b: F.batch_normalization(x, g, b, eps=0.5), [(2, 3, 2, 2)]),
}
CASES = [(name, shape) for name, (_, shapes) in NORMS.items() for shape in shapes]


@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_gradcheck(name, shape, passes):
    fn, _ = NORMS[name]
    x = randn(*shape, seed=1) * 2 + 0.5
    inputs = (x,) if name == "in_plain" else (x,) + _params(shape[1])
    check_op(fn, inputs)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4, 5)])
def test_fixed_gradcheck(shape):
    c = shape[1]
    mean, var = randn(c, seed=2), randn(c, seed=3, low=0.2)
    check_op(_fixed(mean, var), (randn(*shape, seed=1),) + _params(c))


def test_batch_of_one_pixel_gives_beta():
    """n = 1 per channel: var = 0, so y = beta (Chainer's behaviour; PyTorch refuses)."""
    x, (g, b) = randn(1, 3, 1, 1), _params(3)
    y = F.batch_normalization(x, g, b, running_mean=numpy.zeros(3), running_var=numpy.ones(3))
    numpy.testing.assert_allclose(y.array.reshape(-1), b)


@pytest.mark.parametrize("fn", [F.batch_normalization, F.instance_normalization])
def test_third_order(fn):
    """The input gradient of a nonlinear loss, differentiated twice more (orders 2 and 3)."""
    w = randn(2, 3, 2, 3, seed=7)

    def input_grad(x, g, b):
        gx, = minigan.grad([F.sum(F.tanh(fn(x, g, b)) * w)], [x], create_graph=True)
        return gx

    check_op(input_grad, (randn(2, 3, 2, 3, seed=1),) + _params(3))


@pytest.mark.parametrize("fn", [F.batch_normalization, F.instance_normalization])
@pytest.mark.parametrize("used", ["all", "gx", "ggamma", "gbeta"])
def test_gradient_node_backward(fn, used, passes):
    """NormalizationGrad, the gradient under create_graph: its derivatives in (x, gamma, gy),
    first and second order, with every upstream gradient or only one (the others None), on
    the NumPy passes and on the compiled loops."""
    pick = {"all": slice(None), "gx": slice(0, 1), "ggamma": slice(1, 2), "gbeta": slice(2, 3)}

    def grads(x, g, b, gy):
        return minigan.grad([fn(x, g, b)], [x, g, b], [gy], create_graph=True)[pick[used]]

    x = randn(2, 3, 2, 3, seed=1) * 2 + 0.5
    check_op(grads, (x,) + _params(3) + (randn(2, 3, 2, 3, seed=4),))


@pytest.mark.skipif(jit.numba is None, reason="numba is not installed (minigan[jit])")
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("dtype", [f32, f64])
@pytest.mark.parametrize("given", ["all", "ggx", "gggamma", "ggbeta", "ggx+ggbeta"])
def test_jit_second_derivative_equals_numpy_passes(per_sample, dtype, given, monkeypatch):
    """NormalizationGrad's array backward: the two compiled passes against the NumPy passes,
    threaded in small blocks, with any upstream gradients absent."""
    monkeypatch.setattr("minigan.functions.im2col._PARALLEL_BYTES", 0)
    monkeypatch.setattr("minigan.functions.im2col._CHUNK_BYTES", 1)
    rng = numpy.random.RandomState(5)
    shape = (3, 4, 5, 6)
    x = (rng.standard_normal(shape) * 2 + 0.7).astype(dtype)
    gamma, gy = rng.standard_normal(4).astype(dtype), rng.standard_normal(shape).astype(dtype)
    ggx = rng.standard_normal(shape).astype(dtype) if "ggx" in given or given == "all" else None
    gggamma = rng.standard_normal(4).astype(dtype) if given in ("all", "gggamma") else None
    ggbeta = rng.standard_normal(4).astype(dtype) if given in ("all", "ggbeta", "ggx+ggbeta") \
        else None
    lay = normalization._Layout(shape, per_sample)
    _, stats = normalization._run_forward(lay, x, gamma, numpy.zeros(4, dtype), 1e-5)
    mu, _, inv, a = stats
    outs = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("MINIGAN_JIT", flag)
        outs[flag] = normalization._grad_backward(lay, x, gamma, gy, ggx, gggamma, ggbeta,
                                                   mu, inv, a)
    tol = 2e-5 if dtype == f32 else 1e-12
    for got, want in zip(outs["1"], outs["0"]):
        if want is None:
            assert got is None
            continue
        assert got.dtype == dtype and got.shape == want.shape
        numpy.testing.assert_allclose(got, want, rtol=tol, atol=tol * numpy.abs(want).max())


@pytest.mark.parametrize("fn", [F.batch_normalization, F.instance_normalization])
@pytest.mark.parametrize("dtype", [f32, f64])
def test_array_backward_matches_differentiable_backward(fn, dtype, passes):
    """The no-graph fast path (create_graph=False) equals the graph path (create_graph=True)."""
    x = Variable(randn(2, 3, 4, 5, seed=1, dtype=dtype) * 3 + 1)
    g, b = (Variable(p) for p in _params(3, dtype=dtype))
    gy = randn(2, 3, 4, 5, seed=4, dtype=dtype)
    fast = minigan.grad([fn(x, g, b)], [x, g, b], [gy])
    slow = minigan.grad([fn(x, g, b)], [x, g, b], [gy], create_graph=True)
    tol = 1e-5 if dtype == f32 else 1e-12
    for a, s in zip(fast, slow):
        assert a.dtype == dtype
        numpy.testing.assert_allclose(a.array, s.array, rtol=tol, atol=tol)


@pytest.mark.parametrize("fn", [F.batch_normalization, F.instance_normalization])
def test_blocks_of_channels_match_one_block(fn, monkeypatch):
    """Large arrays run block by block of channels (cache-sized): the same numbers as one block."""
    monkeypatch.setenv("MINIGAN_JIT", "0")                  # the blocks are the NumPy passes'
    x, gy = randn(2, 5, 3, 4, seed=1) * 2 + 1, randn(2, 5, 3, 4, seed=2)

    def run():
        xs = [Variable(a) for a in (x,) + _params(5)]
        y = fn(*xs)
        return [y.array] + [g.array for g in minigan.grad([y], xs, [gy])]

    one = run()
    monkeypatch.setattr(normalization, "_BLOCK", 10)      # blocks of 1 channel (N S = 24 > 10)
    assert len(normalization._Layout(x.shape, False).blocks(x.reshape(2, 5, -1))) == 5
    for a, b in zip(one, run()):
        numpy.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


SHAPES = [(1, 512, 32, 32), (3, 7, 5, 4), (4, 6), (2, 3, 5), (1, 2, 3, 1), (2, 3, 2, 2, 3)]


@pytest.mark.skipif(jit.numba is None, reason="numba is not installed (minigan[jit])")
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("per_sample", [False, True], ids=["batch", "instance"])
@pytest.mark.parametrize("dtype", [f32, f64])
def test_jit_passes_equal_numpy_passes(shape, per_sample, dtype, monkeypatch):
    """The compiled loops give the NumPy passes' y, statistics and gradients, threaded or not."""
    if per_sample and len(shape) < 3:
        pytest.skip("instance norm needs spatial axes")
    rng = numpy.random.RandomState(3)
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)   # a mean far from 0
    gy = rng.standard_normal(shape).astype(dtype)
    gamma, beta = _params(shape[1], dtype=dtype)
    lay = normalization._Layout(shape, per_sample)
    x3, gy3 = normalization._rows(x), normalization._rows(gy)
    y_ref, st_ref = lay.forward(x3.copy(), gamma, beta, 1e-5)
    g_ref = lay.backward(x3, gy3, st_ref[0], st_ref[2], st_ref[3])
    tol = 2e-5 if dtype == f32 else 1e-12
    for threads in (1, 2):
        monkeypatch.setattr("minigan.functions.im2col._threads", lambda: threads)
        monkeypatch.setattr("minigan.functions.im2col._PARALLEL_BYTES", 0)
        y, st = norm_jit.forward(lay, x3, gamma, beta, 1e-5)
        g = norm_jit.backward(lay, x3, gy3, st[0], st[2], st[3])
        assert y.dtype == dtype and all(a.dtype == dtype for a in st + list(g))
        for a, b in zip([y] + st + list(g), [y_ref] + st_ref + list(g_ref)):
            assert a.shape == b.shape
            numpy.testing.assert_allclose(a, b, rtol=tol, atol=tol * numpy.abs(b).max())


def test_jit_is_off_with_minigan_jit_0(monkeypatch):
    """MINIGAN_JIT=0 keeps the NumPy passes even where numba is installed."""
    monkeypatch.setenv("MINIGAN_JIT", "0")
    assert not jit.enabled()
    assert not jit.takes(numpy.zeros((1, 2, 2), f32))


def test_dtype_and_shape_errors():
    x = numpy.zeros((2, 3, 4, 4), f32)
    g, b = numpy.ones(3, f32), numpy.zeros(3, f32)
    assert F.batch_normalization(x, g, b).dtype == f32
    with pytest.raises(ValueError,
                       match=r"batch_normalization: gamma has shape \(4,\).*\(2, 3, 4, 4\)"):
        F.batch_normalization(x, numpy.ones(4, f32), b)
    with pytest.raises(ValueError, match="instance_normalization: beta"):
        F.instance_normalization(x, g, numpy.zeros((3, 1), f32))
    with pytest.raises(ValueError, match="instance_normalization: x must have at least 3"):
        F.instance_normalization(numpy.zeros((2, 3), f32))
    with pytest.raises(ValueError, match="fixed_batch_normalization: var"):
        F.fixed_batch_normalization(x, g, b, numpy.zeros(3, f32), numpy.ones(2, f32))
    with pytest.raises(TypeError, match="dtype"):
        F.batch_normalization(x, g.astype(f64), b)


# -- PyTorch as the reference, float32 -----------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch",
                               reason="PyTorch reference tests need: pip install torch==2.13.0")


def helper_test_norm(torch, mg_fn, torch_fn, shape, rtol=1e-4, atol=1e-5, seed=0):
    """Same float32 input, gamma, beta and output gradient: compare y and the three gradients."""
    rng = numpy.random.RandomState(seed)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(f32)
    g, b = _params(shape[1], seed + 1, f32)
    gy = rng.standard_normal(shape).astype(f32)
    xs = [Variable(a) for a in (x, g, b)]
    ts = [torch.tensor(a, requires_grad=True) for a in (x, g, b)]
    y, yt = mg_fn(*xs), torch_fn(*ts)
    numpy.testing.assert_allclose(y.array, yt.detach().numpy(), rtol=rtol, atol=atol)
    grads = minigan.grad([y], xs, [gy])
    grads_t = torch.autograd.grad(yt, ts, torch.tensor(gy))
    for name, a, e in zip(("x", "gamma", "beta"), grads, grads_t):
        e = e.numpy()
        numpy.testing.assert_allclose(a.array, e, rtol=rtol, atol=atol * abs(e).max(),
                                      err_msg=f"gradient of {name}")


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5, 4), (1, 8, 4, 4)])
def test_batch_norm_train_vs_torch(torch, shape):
    c = shape[1]
    rm, rv = numpy.linspace(-1, 1, c).astype(f32), numpy.linspace(0.5, 2, c).astype(f32)
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    helper_test_norm(
        torch,
        lambda x, g, b: F.batch_normalization(x, g, b, eps=1e-5, running_mean=rm,
                                              running_var=rv, decay=0.9),
        lambda x, g, b: torch.nn.functional.batch_norm(x, rm_t, rv_t, g, b, training=True,
                                                       momentum=0.1, eps=1e-5), shape)
    numpy.testing.assert_allclose(rm, rm_t.numpy(), rtol=1e-5, atol=1e-6)   # one step of both
    numpy.testing.assert_allclose(rv, rv_t.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5, 4)])
def test_batch_norm_eval_vs_torch(torch, shape):
    c = shape[1]
    mean, var = numpy.linspace(-1, 1, c).astype(f32), numpy.linspace(0.5, 2, c).astype(f32)
    helper_test_norm(
        torch,
        lambda x, g, b: F.fixed_batch_normalization(x, g, b, mean, var, eps=1e-5),
        lambda x, g, b: torch.nn.functional.batch_norm(x, torch.tensor(mean), torch.tensor(var),
                                                       g, b, training=False, eps=1e-5), shape)


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 2, 8, 8), (1, 4, 2, 3)])
def test_instance_norm_vs_torch(torch, shape):
    helper_test_norm(torch, F.instance_normalization,
                     lambda x, g, b: torch.nn.functional.instance_norm(x, weight=g, bias=b,
                                                                       eps=1e-5), shape)


def test_instance_norm_gradient_penalty_vs_torch(torch):
    """d/d(x, gamma, beta) of |d sum(w * IN(x)) / dx|^2: the second derivative WGAN-GP needs."""
    rng = numpy.random.RandomState(3)
    x = rng.standard_normal((2, 3, 4, 4)).astype(f32)
    w = rng.standard_normal((2, 3, 4, 4)).astype(f32)
    g, b = _params(3, 4, f32)

    xs = [Variable(a) for a in (x, g, b)]
    gx, = minigan.grad([F.sum(F.tanh(F.instance_normalization(*xs)) * w)], [xs[0]],
                       create_graph=True)
    grads = minigan.grad([F.sum(gx * gx)], xs)

    ts = [torch.tensor(a, requires_grad=True) for a in (x, g, b)]
    yt = torch.tanh(torch.nn.functional.instance_norm(ts[0], weight=ts[1], bias=ts[2], eps=1e-5))
    gxt, = torch.autograd.grad((yt * torch.tensor(w)).sum(), ts[0], create_graph=True)
    grads_t = torch.autograd.grad((gxt * gxt).sum(), ts)
    for a, e in zip(grads, grads_t):
        e = e.numpy()
        numpy.testing.assert_allclose(a.array, e, rtol=1e-4, atol=1e-5 * abs(e).max())


# -- CuPy against NumPy (pytest -m gpu) ----------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("name", ["bn", "in", "in_plain", "fixed"])
def test_cupy_matches_numpy(name):
    """Output, both backward paths and the running statistics agree across devices."""
    import cupy
    shape = (2, 3, 5, 4)
    x, gy = randn(*shape, seed=1, dtype=f32) * 2 + 0.5, randn(*shape, seed=2, dtype=f32)
    results = []
    for xp in (numpy, cupy):
        mean, var = xp.linspace(-1, 1, 3, dtype=f32), xp.linspace(0.5, 2, 3, dtype=f32)
        fn = {"bn": lambda x, g, b: F.batch_normalization(x, g, b, running_mean=mean,
                                                          running_var=var),
              "in": F.instance_normalization,
              "in_plain": lambda x, g, b: F.instance_normalization(x),
              "fixed": _fixed(mean, var)}[name]
        xs = [Variable(xp.asarray(a)) for a in (x,) + _params(3, dtype=f32)]
        y = fn(*xs)
        fast = minigan.grad([y], xs, [xp.asarray(gy)])
        slow = minigan.grad([fn(*xs)], xs, [xp.asarray(gy)], create_graph=True)
        arrays = [y.array, mean, var] + [g.array for g in fast + slow if g is not None]
        results.append([minigan.backend.to_cpu(a) for a in arrays])
    for a, b in zip(*results):
        numpy.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
