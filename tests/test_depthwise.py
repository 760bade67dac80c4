"""depthwise_convolution_2d (its NumPy tap loops and the compiled ones): gradient checks to second order, the grouped im2col route and PyTorch
as oracles, the routing from convolution_2d, and its errors."""
import numpy
import pytest

import minigan
import minigan.functions as F
from minigan import Variable
from minigan.functions import convolution as conv_module
from minigan.functions import depthwise as dw
from minigan.gradient_check import check_backward, check_double_backward

from helpers import randn

# (N, C, (H, W), k, stride, pads ((top, bottom), (left, right)), dilate)
CASES = [
    (2, 3, (7, 6), 3, 1, ((1, 1), (1, 1)), 1),          # 3x3 "same"
    (2, 4, (8, 9), 5, 2, ((1, 2), (2, 1)), 1),          # TF "same" at stride 2: uneven pads
    (1, 2, (9, 9), 3, 2, ((2, 2), (2, 2)), 2),          # dilated
    (1, 3, (6, 5), (2, 3), (1, 2), ((0, 1), (0, 0)), 1),  # rectangular kernel and stride
    (2, 2, (5, 5), 3, 3, ((0, 0), (0, 0)), 1),          # stride > kernel reach: taps skip pixels
    (1, 2, (4, 4), 1, 1, ((0, 0), (0, 0)), 1),          # 1x1: a per-channel scale
]
IDS = [f"N{n}-C{c}-{hw}-k{k}-s{s}-p{p}-d{d}" for n, c, hw, k, s, p, d in CASES]
pytestmark = pytest.mark.usefixtures("passes")     # the NumPy tap loops and depthwise_jit's


def _k(k):
    return (k, k) if isinstance(k, int) else k


def arrays(case, seed=0, dtype=numpy.float64):
    n, c, hw, k, *_ = case
    kh, kw = _k(k)
    return (randn(n, c, *hw, seed=seed, dtype=dtype),
            (randn(c, 1, kh, kw, seed=seed + 1) / numpy.sqrt(kh * kw)).astype(dtype),
            randn(c, seed=seed + 2, dtype=dtype))


def op(case):
    *_, s, p, d = case
    return lambda x, W, b=None: F.depthwise_convolution_2d(x, W, b, s, p, d)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients(case):
    x, W, b = arrays(case)
    check_backward(op(case), (x, W, b))
    check_double_backward(op(case), (x, W), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("case", CASES[:3], ids=IDS[:3])
def test_helper_nodes_gradients(case):
    """The adjoint and W-gradient nodes on their own, first and second order."""
    n, c, hw, k, s, p, d = case
    x, W, _ = arrays(case)
    g = dw.Geometry(_k(k), _pair(s), p, _pair(d), hw)
    gy = randn(n, c, *g.outsize, seed=5)
    deconv = lambda gy, W: dw.DepthwiseDeconvolution2D(g).apply((gy, W))[0]   # noqa: E731
    grad_w = lambda x, gy: dw.DepthwiseGradW(g).apply((x, gy))[0]             # noqa: E731
    for f, inputs in ((deconv, (gy, W)), (grad_w, (x, gy))):
        check_backward(f, inputs)
        check_double_backward(f, inputs, atol=1e-4, rtol=1e-3)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


SYMMETRIC = [c for c in CASES if all(lo == hi for lo, hi in c[5])]


@pytest.mark.parametrize("case", SYMMETRIC, ids=[IDS[CASES.index(c)] for c in SYMMETRIC])
def test_equals_grouped_route(case):
    """The same values and gradients as the im2col route with groups = C."""
    x, W, b = arrays(case)
    *_, s, p, d = case
    pad = tuple(lo for lo, _ in p)
    gy = randn(*op(case)(x, W).shape, seed=7)

    def grouped(x, W, b):
        return conv_module.Convolution2DFunction(_pair(s), pad, _pair(d), x.shape[1]).apply(
            (x, W, b))[0]

    results = []
    for f in (op(case), grouped):
        xs = [Variable(a) for a in (x, W, b)]
        y = f(*xs)
        results.append([y.array] + [g.array for g in minigan.grad(y, xs, gy)])
    for a, e in zip(*results):
        numpy.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


def test_convolution_2d_routes_depthwise_only():
    assert conv_module.is_depthwise((2, 8, 5, 5), (8, 1, 3, 3), 8)
    assert not conv_module.is_depthwise((2, 8, 5, 5), (16, 1, 3, 3), 8)   # channel multiplier 2
    assert not conv_module.is_depthwise((2, 8, 5, 5), (8, 2, 3, 3), 4)
    assert not conv_module.is_depthwise((2, 8, 5, 5), (8, 8, 3, 3), 1)
    x, W = randn(1, 4, 6, 6), randn(4, 1, 3, 3)
    y = F.convolution_2d(Variable(x), W, None, 1, 1, 1, 4)
    assert isinstance(y.creator, dw.DepthwiseConvolution2D)
    y = F.convolution_2d(Variable(x), randn(4, 2, 3, 3), None, 1, 1, 1, 2)
    assert isinstance(y.creator, conv_module.Convolution2DFunction)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_equals_torch(case):
    torch = pytest.importorskip("torch", reason="PyTorch reference tests need: "
                                                "pip install torch==2.13.0")
    x, W, b = arrays(case, dtype=numpy.float32)
    n, c, hw, k, s, p, d = case
    y = op(case)(x, W, b).array
    xt = torch.nn.functional.pad(torch.tensor(x), (p[1][0], p[1][1], p[0][0], p[0][1]))
    yt = torch.nn.functional.conv2d(xt, torch.tensor(W), torch.tensor(b), _pair(s), 0,
                                    _pair(d), c).numpy()
    numpy.testing.assert_allclose(y, yt, rtol=1e-5, atol=1e-5)


def test_blocks_change_nothing(monkeypatch):
    """Planes walked in many small blocks give the same values and gradients as in one."""
    from minigan.functions import im2col
    x, W = randn(4, 6, 12, 12, seed=3), randn(6, 1, 5, 5, seed=4)
    gy = randn(4, 6, 6, 6, seed=5)

    def run():
        xs = [Variable(x), Variable(W)]
        y = F.depthwise_convolution_2d(*xs, None, 2, ((1, 2), (1, 2)))
        return [y.array] + [g.array for g in minigan.grad(y, xs, gy)]

    whole = run()
    monkeypatch.setattr(im2col, "_CHUNK_BYTES", 1)          # one plane per block
    for a, e in zip(run(), whole):
        numpy.testing.assert_allclose(a, e, rtol=1e-13, atol=1e-13)


def test_errors():
    x, W = randn(1, 4, 6, 6), randn(4, 1, 3, 3)
    with pytest.raises(ValueError, match=r"\(C, 1, kh, kw\)"):
        F.depthwise_convolution_2d(x, randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match="b"):
        F.depthwise_convolution_2d(x, W, randn(3))
    with pytest.raises(ValueError, match="empty output"):
        F.depthwise_convolution_2d(randn(1, 4, 2, 2), W)
    with pytest.raises(ValueError, match="stride"):
        F.depthwise_convolution_2d(x, W, stride=0)
    with pytest.raises(ValueError, match="pad"):
        F.depthwise_convolution_2d(x, W, pad=((1, 2, 3), (1, 1)))
    with pytest.raises(TypeError, match="dtype"):
        F.depthwise_convolution_2d(x.astype("f"), W)
