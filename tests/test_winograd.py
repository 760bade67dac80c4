"""winograd.py: the F(4, 3) matrices, and the 3 x 3 convolutions through them equal to the im2col
route in float64 (forward, first and second order), close in float32, taken only where meant."""
import numpy
import pytest

import minigan
import minigan.functions as F
from minigan import Variable
from minigan.functions import im2col as im
from minigan.functions import jit
from minigan.functions import winograd as wg

needs_numba = pytest.mark.skipif(jit.numba is None, reason="numba (minigan[jit]) is absent")


@pytest.mark.parametrize("r", [2, 3, 4])
def test_matrices_compute_a_correlation_exactly(r):
    """y = A^T [(G g) . (B^T d)] is the m-output correlation of d with g (float64)."""
    AT, G, BT = wg.matrices(r)
    m = AT.shape[0]
    assert AT.shape == (m, wg.ALPHA) and G.shape == (wg.ALPHA, r) and m == wg.ALPHA - r + 1
    rng = numpy.random.default_rng(0)
    for _ in range(5):
        d, g = rng.standard_normal(wg.ALPHA), rng.standard_normal(r)
        want = [sum(g[k] * d[i + k] for k in range(r)) for i in range(m)]
        numpy.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), want, rtol=1e-13, atol=1e-13)


# (deconv, N, C in, C out, (H, W), pad): odd and non-square sizes leave partial tiles; a stride-1
# transposed convolution is the x-gradient, so it runs the same three products the other way
CASES = [
    (False, 1, 3, 5, (6, 7), 1), (False, 2, 4, 3, (9, 5), 0), (False, 1, 2, 3, (5, 11), 2),
    (False, 3, 5, 4, (4, 4), 1), (True, 1, 3, 5, (7, 6), 1), (True, 2, 4, 3, (3, 8), 0),
]


def _grads(deconv, pad, arrays):
    """y, the gradients of x, W, b, and the gradients of <gx, gx> + <gW, gW> (second order)."""
    op = F.deconvolution_2d if deconv else F.convolution_2d
    vs = [Variable(a) for a in arrays]
    y = op(vs[0], vs[1], vs[2], 1, pad)
    gy = Variable(numpy.random.default_rng(5).standard_normal(y.shape))
    grads = minigan.grad([y], vs, [gy], create_graph=True)
    second = minigan.grad([F.sum(grads[0] ** 2) + F.sum(grads[1] ** 2)], vs[:2] + [gy])
    return [y.array] + [g.array for g in grads + second]


def _everywhere(monkeypatch):
    """Let the form take every size, and run its transforms a channel per block, threaded."""
    monkeypatch.setattr(wg, "MIN_SAMPLE_PIXELS", 1)
    monkeypatch.setattr(wg, "MIN_PIXELS", {1: 1})
    monkeypatch.setattr(im, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(im, "_PARALLEL_BYTES", 0)


@needs_numba
@pytest.mark.parametrize("deconv, n, ci, co, size, pad", CASES)
def test_winograd_equals_the_im2col_route(deconv, n, ci, co, size, pad, monkeypatch):
    _everywhere(monkeypatch)
    monkeypatch.setenv("MINIGAN_JIT", "1")
    rng = numpy.random.default_rng(1)
    wshape = (ci, co, 3, 3) if deconv else (co, ci, 3, 3)
    arrays = (rng.standard_normal((n, ci) + size), rng.standard_normal(wshape) / 3,
              rng.standard_normal(co))
    used = []
    for name in ("conv", "conv_grad_x", "conv_grad_w"):
        fn = getattr(wg, name)
        monkeypatch.setattr(wg, name, lambda *a, _f=fn, _n=name: used.append(_n) or _f(*a))
    got = _grads(deconv, pad, arrays)
    assert set(used) == {"conv", "conv_grad_x", "conv_grad_w"}
    used.clear()
    monkeypatch.setenv("MINIGAN_WINOGRAD", "0")
    want = _grads(deconv, pad, arrays)
    assert not used
    for g, w in zip(got, want):
        numpy.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-11)


@needs_numba
def test_winograd_float32_is_close_at_a_real_size(monkeypatch):
    """Lightweight GAN's 32 x 32 layer, 128 channels: within 1e-4 of the scale of im2col's."""
    monkeypatch.setenv("MINIGAN_JIT", "1")
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal((8, 128, 32, 32)).astype(numpy.float32)
    W = (rng.standard_normal((128, 128, 3, 3)) / 34).astype(numpy.float32)
    gy = rng.standard_normal((8, 128, 32, 32)).astype(numpy.float32)
    assert wg.takes(x.shape, 128, (3, 3), (1, 1), (1, 1), (1, 1), 1, x)

    def run():
        xv, Wv = Variable(x), Variable(W)
        y = F.convolution_2d(xv, Wv, None, 1, 1)
        y.grad = gy
        y.backward()
        return y.array, xv.grad.array, Wv.grad.array
    got = run()
    monkeypatch.setenv("MINIGAN_WINOGRAD", "0")
    for g, w in zip(got, run()):
        assert numpy.abs(g - w).max() <= 1e-4 * numpy.abs(w).max()


@pytest.mark.parametrize("shape, co, ksize, s, p, d, groups, want", [
    ((8, 128, 32, 32), 128, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),     # 8192 pixels
    ((1, 256, 128, 128), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),   # 64: 65536 wanted
    ((4, 64, 128, 128), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    ((4, 128, 32, 32), 128, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),    # 4096 pixels in all
    ((64, 128, 16, 16), 128, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),   # small per sample
    ((8, 32, 128, 128), 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),    # few channels
    ((8, 128, 32, 32), 128, (5, 5), (1, 1), (2, 2), (1, 1), 1, False),
    ((8, 128, 66, 66), 128, (3, 3), (2, 2), (1, 1), (1, 1), 1, False),
    ((8, 128, 32, 32), 128, (3, 3), (1, 1), (2, 2), (2, 2), 1, False),
    ((8, 128, 32, 32), 128, (3, 3), (1, 1), (1, 1), (1, 1), 2, False),
])
def test_winograd_takes_only_its_geometry(shape, co, ksize, s, p, d, groups, want, monkeypatch):
    monkeypatch.setattr(wg.jit, "enabled", lambda: True)
    a = numpy.zeros(shape[:2] + (1, 1), numpy.float32)
    assert wg.takes(shape, co, ksize, s, p, d, groups, a) == want
    assert not wg.takes(shape, co, ksize, s, p, d, groups, a.astype(numpy.float16))
    monkeypatch.setenv("MINIGAN_WINOGRAD", "0")
    assert not wg.takes(shape, co, ksize, s, p, d, groups, a)
    monkeypatch.setattr(wg.jit, "enabled", lambda: False)
    monkeypatch.delenv("MINIGAN_WINOGRAD")
    assert not wg.takes(shape, co, ksize, s, p, d, groups, a)
