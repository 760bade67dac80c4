"""Pooling and resizing: gradient checks (first and second order) in float64, fast paths against
the general matrix form, and PyTorch as the reference in float32."""
import numpy
import pytest

import minigan
import minigan.functions as F
from minigan import Variable
from minigan.functions.pooling import Separable, _window_matrix
from helpers import check_op, randn

f32 = numpy.float32


def spaced(*shape, seed=0):
    """Distinct values 0.1 apart in random order: no near-ties for max pooling's differences."""
    n = int(numpy.prod(shape))
    return numpy.random.RandomState(seed).permutation(n).reshape(shape) * 0.1 - n * 0.05


# each op: (minigan function of x, torch function of x or None, input shape)
OPS = {
    "avg_2": (lambda x: F.average_pooling_2d(x, 2), "avg_pool2d(x, 2)", (2, 3, 4, 6)),
    "avg_2_odd": (lambda x: F.average_pooling_2d(x, 2), "avg_pool2d(x, 2)", (1, 2, 5, 7)),
    "avg_3s2p1": (lambda x: F.average_pooling_2d(x, 3, 2, 1),
                  "avg_pool2d(x, 3, 2, 1, count_include_pad=True)", (2, 2, 5, 6)),
    "avg_3s1p1": (lambda x: F.average_pooling_2d(x, 3, 1, 1), "avg_pool2d(x, 3, 1, 1)",
                  (1, 2, 4, 5)),
    "avg_rect": (lambda x: F.average_pooling_2d(x, (2, 3), (1, 2), (1, 0)),
                 "avg_pool2d(x, (2, 3), (1, 2), (1, 0))", (1, 2, 5, 7)),
    "avg_3s1p1_nopad": (lambda x: F.average_pooling_2d(x, 3, 1, 1, count_include_pad=False),
                        "avg_pool2d(x, 3, 1, 1, count_include_pad=False)", (1, 2, 4, 5)),
    "avg_3s2p1_nopad": (lambda x: F.average_pooling_2d(x, 3, 2, 1, count_include_pad=False),
                        "avg_pool2d(x, 3, 2, 1, count_include_pad=False)", (2, 2, 5, 6)),
    "avg_rect_nopad": (lambda x: F.average_pooling_2d(x, (2, 3), (1, 2), (1, 1), False),
                       "avg_pool2d(x, (2, 3), (1, 2), (1, 1), count_include_pad=False)",
                       (1, 2, 5, 7)),
    "max_2": (lambda x: F.max_pooling_2d(x, 2), "max_pool2d(x, 2)", (2, 3, 4, 6)),
    "max_2_odd": (lambda x: F.max_pooling_2d(x, 2), "max_pool2d(x, 2)", (1, 2, 5, 7)),
    "max_3s2p1": (lambda x: F.max_pooling_2d(x, 3, 2, 1), "max_pool2d(x, 3, 2, 1)", (2, 2, 5, 6)),
    "max_3s1p1": (lambda x: F.max_pooling_2d(x, 3, 1, 1), "max_pool2d(x, 3, 1, 1)", (1, 2, 4, 5)),
    "max_rect": (lambda x: F.max_pooling_2d(x, (2, 3), (1, 2), (1, 1)),
                 "max_pool2d(x, (2, 3), (1, 2), (1, 1))", (1, 2, 5, 7)),
    "adaptive_div": (lambda x: F.adaptive_average_pooling_2d(x, (3, 2)),
                     "adaptive_avg_pool2d(x, (3, 2))", (2, 2, 6, 6)),
    "adaptive_1": (lambda x: F.adaptive_average_pooling_2d(x, 1), "adaptive_avg_pool2d(x, 1)",
                   (2, 3, 5, 7)),
    "adaptive_odd": (lambda x: F.adaptive_average_pooling_2d(x, (3, 4)),
                     "adaptive_avg_pool2d(x, (3, 4))", (1, 2, 5, 7)),
    "adaptive_up": (lambda x: F.adaptive_average_pooling_2d(x, (5, 3)),
                    "adaptive_avg_pool2d(x, (5, 3))", (1, 2, 3, 5)),
    "nearest_2": (lambda x: F.upsample_nearest(x), "interpolate(x, scale_factor=2)", (2, 2, 3, 4)),
    "nearest_3": (lambda x: F.upsample_nearest(x, 3), "interpolate(x, scale_factor=3)",
                  (1, 2, 2, 3)),
}
for _ac in (True, False):
    for _name, _size, _shape in (("up", (7, 9), (2, 2, 4, 5)), ("down", (4, 3), (1, 2, 7, 9)),
                                 ("mixed", (2, 6), (1, 2, 5, 4)), ("to1", (1, 1), (1, 1, 3, 4)),
                                 ("from1", (3, 2), (1, 1, 1, 1))):
        OPS[f"bilinear_{_name}_{'ac' if _ac else 'hp'}"] = (
            lambda x, s=_size, a=_ac: F.resize_images(x, s, align_corners=a),
            f"interpolate(x, size={_size}, mode='bilinear', align_corners={_ac})", _shape)


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck(name):
    fn, _, shape = OPS[name]
    x = spaced(*shape, seed=1) if name.startswith("max") else randn(*shape, seed=1)
    check_op(fn, (x,))


@pytest.mark.parametrize("fn,size", [
    (lambda x: F.average_pooling_2d(x, 2), (6, 4)),
    (lambda x: F.average_pooling_2d(x, 3), (7, 9)),
    (lambda x: F.adaptive_average_pooling_2d(x, (2, 3)), (6, 9)),
    (lambda x: F.adaptive_average_pooling_2d(x, 1), (3, 5)),
], ids=["avg2", "avg3_crop", "adaptive", "global"])
def test_block_fast_path_equals_matrix_form(fn, size):
    """The reshape fast path and the separable matrices give the same map (and adjoint)."""
    x, gy = Variable(randn(2, 3, *size, seed=1)), None
    y = fn(x)
    gy = randn(*y.shape, seed=2)
    h, w = size
    (oh, ow), (kh, kw) = y.shape[2:], (h // y.shape[2], w // y.shape[3])
    ref = Separable((_window_matrix, h, oh, kh, kh, 0), (_window_matrix, w, ow, kw, kw, 0))
    y_ref = ref.apply((x,))[0]
    numpy.testing.assert_allclose(y.array, y_ref.array, rtol=1e-12)
    numpy.testing.assert_allclose(minigan.grad([y], [x], [gy])[0].array,
                                  minigan.grad([y_ref], [x], [gy])[0].array, rtol=1e-12)


@pytest.mark.skipif(minigan.functions.jit.numba is None, reason="numba is not installed "
                    "(minigan[jit])")
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k,scale,shape", [((2, 2), 1, (2, 3, 4, 16)), ((2, 2), 0.25, (3, 2, 5, 20)),
                                           ((3, 2), 1 / 6, (2, 2, 3, 16)), ((1, 3), 2.0, (4, 17)),
                                           ((2, 2), 0.25, (2, 3, 4, 4))])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # inf - inf in both paths
def test_jit_block_sum_and_repeat_equal_numpy_passes(dtype, threads, k, scale, shape, monkeypatch):
    """The nearest upsampling (Repeat) and its adjoint (BlockSum) compiled give the NumPy
    passes' bits (the same sums in the same order), in small threaded blocks or not, on a
    non-contiguous input too, at inf and NaN."""
    from minigan.functions.pooling import BlockSum, Repeat
    monkeypatch.setattr("minigan.functions.im2col._threads", lambda: threads)
    monkeypatch.setattr("minigan.functions.im2col._PARALLEL_BYTES", 0)
    monkeypatch.setattr("minigan.functions.im2col._CHUNK_BYTES", 64)
    rng = numpy.random.RandomState(2)
    kh, kw = k
    x = rng.standard_normal(shape[:-2] + (shape[-2], shape[-1])).astype(dtype)
    big = rng.standard_normal(shape[:-2] + (shape[-2] * kh, shape[-1] * kw)).astype(dtype)
    x.flat[:3] = big.flat[:3] = [numpy.inf, -numpy.inf, numpy.nan]
    outs = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("MINIGAN_JIT", flag)
        outs[flag] = [Repeat(kh, kw, scale).forward((x,))[0],
                      Repeat(kh, kw, scale).forward((x[..., ::-1, :],))[0],
                      BlockSum(kh, kw, scale).forward((big,))[0],
                      BlockSum(kh, kw, scale).forward((big[..., ::-1],))[0]]
    for a, b in zip(outs["1"], outs["0"]):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        numpy.testing.assert_array_equal(a, b)


def test_average_without_pads_keeps_constants():
    """count_include_pad=False averages only real pixels: a constant image stays constant at the
    border, where the padded average shrinks toward 0 (4/9 at a corner of a 3 x 3 window)."""
    x = numpy.full((1, 1, 4, 5), 2.0)
    numpy.testing.assert_allclose(F.average_pooling_2d(x, 3, 1, 1, count_include_pad=False).array,
                                  x, rtol=1e-15)
    assert F.average_pooling_2d(x, 3, 1, 1).array[0, 0, 0, 0] == pytest.approx(2 * 4 / 9)


def test_max_pooling_gradient_goes_to_first_maximum_only():
    x = Variable(numpy.ones((1, 1, 2, 4), f32))
    y = F.max_pooling_2d(x, 2)
    y.grad = numpy.array([[[[1, 2]]]], f32)
    y.backward()
    numpy.testing.assert_array_equal(x.grad.array[0, 0], [[1, 0, 2, 0], [0, 0, 0, 0]])


def test_float32_stays_float32():
    x = numpy.zeros((1, 2, 4, 4), f32)
    for fn, _, _ in OPS.values():
        assert fn(x).dtype == f32


@pytest.mark.parametrize("call,message", [
    (lambda: F.max_pooling_2d(numpy.zeros((1, 1, 4, 4)), 2, pad=2), "max_pooling_2d: pad"),
    (lambda: F.average_pooling_2d(numpy.zeros((1, 1, 2, 2)), 3),
     r"average_pooling_2d: input \(1, 1, 2, 2\)"),
    (lambda: F.average_pooling_2d(numpy.zeros((1, 4, 4)), 2),
     r"x must be \(N, C, H, W\), got shape \(1, 4, 4\)"),
    (lambda: F.adaptive_average_pooling_2d(numpy.zeros((1, 1, 4, 4)), (0, 2)), "adaptive"),
    (lambda: F.upsample_nearest(numpy.zeros((1, 1, 2, 2)), 1.5), "upsample_nearest: scale"),
    (lambda: F.resize_images(numpy.zeros((1, 1, 2, 2)), (3, 3, 3)), "resize_images: output_shape"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- PyTorch as the reference, float32 -----------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch",
                               reason="PyTorch reference tests need: pip install torch==2.13.0")


def helper_test_op(torch, mg_fn, torch_expr, shape, rtol=1e-4, atol=1e-6, seed=0, dtype=f32):
    """Run both on the same input; compare y and the gradient of <y, gy> w.r.t. x."""
    x = randn(*shape, seed=seed, dtype=dtype)
    xv, xt = Variable(x), torch.tensor(x, requires_grad=True)
    y = mg_fn(xv)
    yt = eval("torch.nn.functional." + torch_expr, {"torch": torch, "x": xt})
    assert y.shape == tuple(yt.shape)
    numpy.testing.assert_allclose(y.array, yt.detach().numpy(), rtol=rtol, atol=atol)
    gy = randn(*y.shape, seed=seed + 1, dtype=dtype)
    gx, = minigan.grad([y], [xv], [gy])
    gxt, = torch.autograd.grad(yt, xt, torch.tensor(gy))
    numpy.testing.assert_allclose(gx.array, gxt.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(OPS))
def test_vs_torch(torch, name):
    fn, expr, shape = OPS[name]
    helper_test_op(torch, fn, expr, shape)


BILINEAR = [((16, 16), (37, 23), True), ((16, 16), (37, 23), False), ((40, 33), (9, 14), True),
            ((40, 33), (9, 14), False), ((8, 8), (8, 8), False), ((3, 3), (20, 1), False)]


@pytest.mark.parametrize("dtype", [f32, numpy.float64])
@pytest.mark.parametrize("size,out,ac", BILINEAR)
def test_bilinear_larger_vs_torch(torch, size, out, ac, dtype):
    """float64 agrees to rounding; in float32 PyTorch's own source coordinates are float32 and
    drift by ~1e-5 (ours are exact to ~3e-7), hence the looser atol there."""
    tol = dict(rtol=1e-4, atol=2e-5) if dtype == f32 else dict(rtol=1e-12, atol=1e-12)
    helper_test_op(torch, lambda x: F.resize_images(x, out, align_corners=ac),
                   f"interpolate(x, size={out}, mode='bilinear', align_corners={ac})",
                   (2, 3) + size, dtype=dtype, **tol)


# -- CuPy against NumPy (pytest -m gpu) ----------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(OPS))
def test_cupy_matches_numpy(name):
    """Forward, gradient and gradient of the gradient norm agree across devices."""
    import cupy
    fn, _, shape = OPS[name]
    x = (spaced(*shape) if name.startswith("max") else randn(*shape, seed=1)).astype(f32)
    results = []
    for xp in (numpy, cupy):
        xv = Variable(xp.asarray(x))
        y = F.tanh(fn(xv))                  # nonlinear, so the gradient depends on x
        gy = xp.asarray(randn(*y.shape, seed=2, dtype=f32))
        gx, = minigan.grad([y], [xv], [gy], create_graph=True)
        ggy, = minigan.grad([F.sum(gx * gx)], [xv])
        results.append([minigan.backend.to_cpu(v.array) for v in (y, gx, ggy)])
    for a, b in zip(*results):
        numpy.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


# -- blur: the fixed [1 2 1]^2 / 16 filter (lucidrains' antialias) -------------------------------

def blur_reference(x):
    """numpy.pad's reflect (= torch's and kornia's), then the 9 taps summed."""
    p = numpy.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    k = numpy.outer([1, 2, 1], [1, 2, 1]) / 16
    H, W = x.shape[2:]
    return sum(k[i, j] * p[:, :, i:i + H, j:j + W] for i in range(3) for j in range(3))


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (1, 2, 2, 4)])
def test_blur_against_reflect_padded_filter_and_its_gradients(shape):
    check_op(F.blur, [randn(*shape)], blur_reference)


def test_blur_refuses_a_one_pixel_side():
    with pytest.raises(ValueError, match="nothing to reflect"):
        F.blur(randn(1, 1, 1, 4))
