"""convolution_2d / deconvolution_2d: gradient checks (first and second order), PyTorch oracle,
im2col/col2im against loops, error messages, and gradients that must not be computed."""
import numpy
import pytest

import minigan
import minigan.functions as F
from minigan import Variable
from minigan.functions import convolution as conv_module
from minigan.functions import im2col as im
from minigan.gradient_check import check_backward, check_double_backward


class Case:
    """One op configuration: shapes and hyper-parameters of a conv or deconv."""

    def __init__(self, n, cin, cout, size, k, stride=1, pad=0, dilate=1, groups=1, extra=None):
        self.n, self.cin, self.cout, self.size, self.k = n, cin, cout, size, _pair(k)
        self.stride, self.pad, self.dilate, self.groups = stride, pad, dilate, groups
        self.extra = extra            # deconv only: outsize - default size (output_padding)

    def __repr__(self):
        return (f"N{self.n}-{self.cin}to{self.cout}-{self.size}-k{self.k}-s{self.stride}"
                f"-p{self.pad}-d{self.dilate}-g{self.groups}" +
                (f"-op{self.extra}" if self.extra else ""))

    def arrays(self, deconv, bias, dtype=numpy.float64, seed=0):
        rng = numpy.random.RandomState(seed)
        kh, kw = self.k
        wshape = ((self.cin, self.cout // self.groups, kh, kw) if deconv else
                  (self.cout, self.cin // self.groups, kh, kw))
        arrays = [rng.standard_normal((self.n, self.cin) + _pair(self.size)),
                  rng.standard_normal(wshape) / numpy.sqrt(self.cin // self.groups * kh * kw)]
        if bias:
            arrays.append(rng.standard_normal(self.cout))
        return tuple(a.astype(dtype) for a in arrays)

    def outsize(self):
        """deconv outsize: default + extra, or None."""
        if not self.extra:
            return None
        return tuple(_deconv_default(n, k, s, p, d) + e for n, k, s, p, d, e in zip(
            _pair(self.size), self.k, _pair(self.stride), _pair(self.pad), _pair(self.dilate),
            _pair(self.extra)))

    def minigan(self, deconv):
        """The op as a function of Variables (x, W[, b])."""
        if deconv:
            return lambda x, W, b=None: F.deconvolution_2d(
                x, W, b, self.stride, self.pad, self.outsize(), self.dilate, self.groups)
        return lambda x, W, b=None: F.convolution_2d(x, W, b, self.stride, self.pad, self.dilate,
                                                     self.groups)

    def torch(self, deconv):
        tf = torch_module().nn.functional
        if deconv:
            return lambda x, W, b=None: tf.conv_transpose2d(
                x, W, b, self.stride, self.pad, self.extra or 0, self.groups, self.dilate)
        return lambda x, W, b=None: tf.conv2d(x, W, b, self.stride, self.pad, self.dilate,
                                              self.groups)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _deconv_default(n, k, s, p, d):
    return s * (n - 1) + d * (k - 1) + 1 - 2 * p


def torch_module():
    return pytest.importorskip("torch", reason="PyTorch reference tests need: "
                                               "pip install torch==2.13.0")


CONV_CASES = [
    Case(1, 3, 4, 5, 3, pad=1),                                     # 3x3 same
    Case(2, 4, 6, (7, 6), 4, stride=2, pad=1),                      # pix2pix down, odd sizes
    Case(2, 4, 6, (8, 7), (3, 2), stride=(2, 1), pad=(1, 0), groups=2),
    Case(1, 4, 4, (9, 8), 3, stride=2, pad=2, dilate=2, groups=4),  # depthwise, dilated
    Case(2, 3, 5, 6, 1),                                            # pointwise (no im2col)
    Case(1, 2, 3, 7, 2, stride=3),                                  # stride > kernel
    Case(1, 6, 4, (4, 5), 5, pad=2, groups=2),                      # kernel covers the image
    Case(2, 3, 2, 2, 4, stride=2, pad=1),                           # 2x2 -> 1x1 (pix2pix enc.c7)
    Case(1, 2, 3, 5, 3, stride=2, dilate=(1, 2)),
    Case(2, 6, 2, (6, 5), (3, 2), pad=1, dilate=(2, 1), groups=2),  # few outputs: flipped route
    Case(1, 4, 2, 4, 3, pad=3),                                     # pad > k-1: no flipped route
    Case(1, 3, 3, 5, 3, pad=1),                     # as many columns either way: neither flips
    Case(3, 5, 4, 4, 4),                            # the kernel is the image: a linear layer
    Case(2, 3, 2, (3, 5), (3, 5), stride=2),        # ... rectangular, any stride
]
# N >= 4 samples of at most 64 output pixels (columns per sample): the batch-last route (DCGAN's
# 4 x 4 -> 1 x 1 head and 1 x 1 -> 4 x 4 first layer are linear layers: the dense cases above)
LAST_CONV_CASES = [
    Case(4, 3, 5, 7, 3, stride=2, pad=1),                           # N = 4 exactly, odd size
    Case(5, 4, 6, (6, 5), 4, stride=2, pad=1),                      # pix2pix down, odd sizes
    Case(4, 3, 4, (7, 6), (3, 2), stride=(2, 1), pad=(1, 0)),
    Case(4, 2, 3, 8, 3, pad=1),                                     # stride 1, 64 pixels: the limit
    Case(4, 2, 3, 32, 4, stride=4),                                 # a 1024-pixel image -> 8 x 8
    Case(6, 2, 3, (5, 7), 3),                                       # stride 1, no pad
    Case(4, 3, 5, 6, 1),                                            # pointwise
]
LAST_DECONV_CASES = [
    Case(4, 3, 5, (3, 4), 4, stride=2, pad=1),                      # pix2pix up
    Case(4, 4, 3, 3, 3, stride=2, pad=1, extra=1),
    Case(4, 3, 2, 5, 3, pad=1),                                     # stride 1
    Case(4, 2, 3, 2, 2, stride=3, extra=2),                         # stride > kernel, gaps
    Case(4, 3, 1, 1, 3, pad=1),                     # (N, 1, 1, 1) out: no view of a workspace
]
CONV_CASES += LAST_CONV_CASES
DECONV_CASES = [
    Case(1, 3, 4, 4, 3, pad=1),
    Case(2, 4, 6, (3, 4), 4, stride=2, pad=1),                      # pix2pix up
    Case(1, 4, 6, 3, (3, 2), stride=(2, 3), pad=(1, 0), groups=2, extra=(1, 2)),
    Case(1, 4, 4, 3, 3, stride=2, pad=1, dilate=2, groups=4, extra=1),
    Case(2, 3, 5, 3, 1),
    Case(1, 2, 3, 1, 4, stride=2, pad=1),                           # 1x1 input
    Case(1, 2, 3, 2, 2, stride=3, extra=2),                         # stride > kernel, gaps
    Case(2, 4, 2, (2, 3), 4, stride=2, pad=1, extra=(1, 0)),
    Case(2, 2, 6, (4, 3), (3, 2), pad=(1, 0), dilate=(1, 2), groups=2),  # few inputs: conv route
    Case(1, 2, 4, 5, 3, pad=3),                                     # pad > k-1: no conv route
    Case(1, 3, 3, 5, 3, pad=1),
    Case(3, 5, 4, 1, 4),                                            # 1x1 -> kxk: a linear layer
    Case(2, 3, 2, 1, (2, 3), stride=3),
] + LAST_DECONV_CASES


def _ids(cases):
    return [repr(c) for c in cases]


def _ops():
    return pytest.mark.parametrize("deconv,case", [(False, c) for c in CONV_CASES] +
                                   [(True, c) for c in DECONV_CASES],
                                   ids=["conv-" + repr(c) for c in CONV_CASES] +
                                       ["deconv-" + repr(c) for c in DECONV_CASES])


@_ops()
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_backward(deconv, case, bias):
    check_backward(case.minigan(deconv), case.arrays(deconv, bias), atol=1e-5, rtol=1e-4)


@_ops()
def test_double_backward(deconv, case):
    check_double_backward(case.minigan(deconv), case.arrays(deconv, True), atol=1e-4, rtol=1e-3)


def test_third_order_through_grad_w():
    """d/dx of <d(<d/dW <y, gy>, ggW>)/dgy, v>: every node's backward is differentiable."""
    case = CONV_CASES[1]
    x, W = (Variable(a) for a in case.arrays(False, False))
    f = case.minigan(False)

    def second(x, W):
        y = f(x, W)
        gy = Variable(numpy.random.RandomState(1).standard_normal(y.shape))
        gW, = minigan.grad([y], [W], [gy], create_graph=True)
        return F.sum(gW * gW)
    check_double_backward(second, (x.array, W.array), atol=1e-4, rtol=1e-3)


@_ops()
def test_matches_pytorch(deconv, case):
    """float32 forward and every gradient against torch.nn.functional."""
    torch = torch_module()
    arrays = case.arrays(deconv, True, numpy.float32, seed=3)
    vs = [Variable(a) for a in arrays]
    y = case.minigan(deconv)(*vs)
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    yt = case.torch(deconv)(*ts)
    gy = numpy.random.RandomState(4).standard_normal(y.shape).astype(numpy.float32)
    y.grad = gy
    y.backward()
    yt.backward(torch.tensor(gy))
    assert y.dtype == numpy.float32
    for name, got, want in [("y", y.array, yt.detach().numpy())] + [
            (f"grad {i}", v.grad.array, t.grad.numpy()) for i, (v, t) in enumerate(zip(vs, ts))]:
        scale = float(numpy.abs(want).max()) or 1.0
        numpy.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("size", [64, 128])
def test_pix2pix_layer_shape_matches_pytorch(size, monkeypatch):
    """One real-sized stride-2 layer, so the threaded im2col/col2im blocks run (64), or the
    space-to-depth form where the BLAS allows it (128)."""
    monkeypatch.setattr(im, "_PARALLEL_BYTES", 1 << 20)    # threads for its 1 MB of columns
    torch = torch_module()
    rng = numpy.random.RandomState(0)
    x = rng.standard_normal((1, 16, size, size)).astype(numpy.float32)
    W = (0.1 * rng.standard_normal((32, 16, 4, 4))).astype(numpy.float32)
    xv, Wv = Variable(x), Variable(W)
    y = F.convolution_2d(xv, Wv, stride=2, pad=1)
    z = F.deconvolution_2d(y, Wv, stride=2, pad=1)      # back to (1, 16, size, size)
    F.sum(z * z).backward()
    xt, Wt = torch.tensor(x, requires_grad=True), torch.tensor(W, requires_grad=True)
    zt = torch.nn.functional.conv_transpose2d(torch.nn.functional.conv2d(xt, Wt, None, 2, 1),
                                              Wt, None, 2, 1)
    (zt * zt).sum().backward()
    for got, want in [(z.array, zt.detach().numpy()), (xv.grad.array, xt.grad.numpy()),
                      (Wv.grad.array, Wt.grad.numpy())]:
        numpy.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * numpy.abs(want).max())


def _results(deconv, case, arrays):
    """y, the gradients of x, W, b, and the gradients of <gx, gx> + <gW, gW> (second order)."""
    vs = [Variable(a) for a in arrays]
    y = case.minigan(deconv)(*vs)
    gy = Variable(numpy.random.RandomState(5).standard_normal(y.shape))
    grads = minigan.grad([y], vs, [gy], create_graph=True)
    second = minigan.grad([F.sum(grads[0] ** 2) + F.sum(grads[1] ** 2)], vs[:2] + [gy])
    return [y.array] + [g.array for g in grads + second]


def _spy_products(module, monkeypatch, names=("conv", "conv_grad_x", "conv_grad_w")):
    """The names of module's functions `names` as they run, in a list ("_last" appended to a
    call with last=True)."""
    used = []
    for name in names:
        fn = getattr(module, name)

        def spy(*a, _f=fn, _n=name, **kw):
            used.append(_n + "_last" * bool(kw.get("last")))
            return _f(*a, **kw)
        monkeypatch.setattr(module, name, spy)
    return used


@pytest.mark.parametrize("deconv,case", [(False, c) for c in LAST_CONV_CASES] +
                         [(True, c) for c in LAST_DECONV_CASES], ids=repr)
def test_batch_last_route_equals_the_nchw_route(deconv, case, monkeypatch):
    """Forward, first and second order gradients of both routes agree; the route is taken."""
    from minigan.functions import im2col_last as last
    arrays = case.arrays(deconv, True)
    used = _spy_products(last, monkeypatch, ("conv", "deconv", "grad_w"))
    got = _results(deconv, case, arrays)
    assert {"deconv" if deconv else "conv", "grad_w"} <= set(used)
    from minigan.functions import im2col
    monkeypatch.setattr(im2col, "batch_last", lambda *a: False)
    for g, w in zip(got, _results(deconv, case, arrays)):
        numpy.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


S2D_CASES = [
    (False, Case(1, 3, 5, (8, 6), 4, stride=2, pad=1)),             # pix2pix down
    (False, Case(2, 4, 3, (6, 10), 4, stride=2, pad=1)),            # two samples
    (True, Case(1, 5, 3, (4, 3), 4, stride=2, pad=1)),              # pix2pix up
    (True, Case(3, 2, 4, (2, 5), 4, stride=2, pad=1)),
]


WINDOW_CASES = [
    (False, Case(1, 3, 5, (6, 7), 3, pad=1)),                       # 3 x 3 same
    (False, Case(2, 4, 3, (5, 6), (3, 2), pad=(1, 0))),
    (False, Case(1, 2, 3, 7, 5, pad=3)),                            # pad > k - 1
    (False, Case(2, 3, 2, (4, 5), 3)),                              # no pad
    (True, Case(1, 5, 3, (4, 6), 3, pad=1)),                        # stride-1 transposed
    (True, Case(2, 3, 4, (3, 2), (2, 3), pad=(0, 1))),
]


@pytest.mark.parametrize("groups", [1, 2])
def test_grad_w_over_a_batch_accumulates_in_place(groups, monkeypatch):
    """The im2col route's W-gradient over N > 1 samples, summed by BLAS with beta = 1, equals
    the sum of the per-sample products numpy.matmul makes; blas.gemm is the one taken."""
    from minigan.functions import blas
    if not blas.available():
        pytest.skip("no OpenBLAS with cblas loaded: numpy.matmul sums the products")
    rng = numpy.random.RandomState(0)
    x, gy = rng.standard_normal((3, 4, 7, 6)), rng.standard_normal((3, 6, 4, 3))
    args = (x, gy, 3, 2, (2, 2), (1, 0), (1, 1), groups)
    calls = []
    monkeypatch.setattr(blas, "gemm", lambda *a, _g=blas.gemm, **k: calls.append(1) or _g(*a, **k))
    got = conv_module._conv_grad_w(*args)
    assert len(calls) == 3 * groups
    monkeypatch.setattr(blas, "available", lambda: False)
    numpy.testing.assert_allclose(got, conv_module._conv_grad_w(*args), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("form,deconv,case",
                         [("space_to_depth", d, c) for d, c in S2D_CASES] +
                         [("conv_windows", d, c) for d, c in WINDOW_CASES],
                         ids=lambda v: v if isinstance(v, str) else repr(v))
def test_window_forms_equal_the_im2col_route(form, deconv, case, monkeypatch):
    """Forward, first and second order gradients of the space-to-depth form (4 x 4 stride 2)
    and the stride-1 window form equal the im2col and flipped forms'; the form's three
    products are the ones taken."""
    import importlib
    from minigan.functions import conv_windows as win
    if not win.blas.available():
        pytest.skip("no OpenBLAS with cblas loaded: the window forms are off")
    module = importlib.import_module(f"minigan.functions.{form}")
    for name in ("MIN_PIXELS", "MIN_SAMPLE_PIXELS", "MIN_CHANNELS"):
        monkeypatch.setattr(win, name, 1)
    monkeypatch.setattr(im, "_CHUNK_BYTES", 1)        # the phase copies: one channel per block,
    monkeypatch.setattr(im, "_PARALLEL_BYTES", 0)     # on the thread pool
    arrays = case.arrays(deconv, True)
    used = _spy_products(module, monkeypatch)
    got = _results(deconv, case, arrays)
    assert set(used) == {"conv", "conv_grad_x", "conv_grad_w"}
    monkeypatch.setattr(win, "MIN_PIXELS", 1 << 40)
    used.clear()
    for g, w in zip(got, _results(deconv, case, arrays)):
        numpy.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    assert not used


S2D_LAST_CASES = [
    (False, Case(4, 3, 5, (8, 6), 4, stride=2, pad=1)),             # DCGAN's D, small
    (False, Case(5, 2, 3, (6, 10), 4, stride=2, pad=1)),
    (True, Case(4, 5, 3, (4, 3), 4, stride=2, pad=1)),              # DCGAN's G
]


@pytest.mark.parametrize("deconv,case", S2D_LAST_CASES, ids=repr)
def test_batch_last_space_to_depth_equals_im2col_last(deconv, case, monkeypatch):
    """The phase form over a batch-last buffer (one GEMM per tap for the whole batch) equals
    im2col_last's route to second order in float64; its three products are the ones taken."""
    from minigan.functions import conv_windows as win, space_to_depth as s2d
    if not win.blas.available():
        pytest.skip("no OpenBLAS with cblas loaded: the window forms are off")
    monkeypatch.setattr(win, "MIN_CHANNELS", 1)
    monkeypatch.setattr(s2d, "MIN_LAST_PIXELS", 1)
    monkeypatch.setattr(s2d, "MIN_LAST_COLUMNS", 1)
    monkeypatch.setattr(im, "batch_last", lambda *a: True)
    arrays = case.arrays(deconv, True)
    used = _spy_products(s2d, monkeypatch)
    got = _results(deconv, case, arrays)
    assert set(used) == {"conv_last", "conv_grad_x_last", "conv_grad_w_last"}
    used.clear()
    monkeypatch.setattr(s2d, "MIN_LAST_PIXELS", 1 << 40)
    for g, w in zip(got, _results(deconv, case, arrays)):
        numpy.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    assert not used


@pytest.mark.parametrize("n, big, small, c_big, c_small, want", [
    (64, (14, 14), (7, 7), 64, 128, True),      # DCGAN's D layer, and G's as its adjoint
    (8, (16, 16), (8, 8), 128, 256, False),     # 8 x 9 x 8 = 576 columns per GEMM
    (16, (16, 16), (8, 8), 128, 256, True),
    (64, (8, 8), (4, 4), 128, 256, False),      # under MIN_LAST_PIXELS
    (64, (14, 14), (7, 7), 8, 64, True),        # the phases: K = 4 C = 32
    (64, (14, 14), (7, 7), 4, 64, False),
    (64, (28, 28), (14, 14), 64, 1, False),     # G's last layer: one channel
    (64, (15, 14), (7, 7), 64, 128, False),
])
def test_batch_last_space_to_depth_takes_only_its_geometry(n, big, small, c_big, c_small, want,
                                                          monkeypatch):
    from minigan.functions import space_to_depth as s2d
    monkeypatch.setattr(s2d._win.blas, "available", lambda: True)
    a = numpy.zeros((n, c_big, 1, 1), numpy.float32)
    got = s2d.takes_last(big, small, c_big, c_small, (4, 4), (2, 2), (1, 1), (1, 1), 1, a)
    assert got == want
    assert not s2d.takes_last(big, small, c_big, c_small, (4, 4), (2, 2), (0, 0), (1, 1), 1, a)


# odd and non-square sizes leave partial tiles; a stride-1 transposed convolution runs the same
# three products the other way
WINOGRAD_CASES = [
    (False, Case(1, 3, 5, (6, 7), 3, pad=1)), (False, Case(2, 4, 3, (9, 5), 3)),
    (False, Case(1, 2, 3, (5, 11), 3, pad=2)), (False, Case(3, 5, 4, 4, 3, pad=1)),
    (False, Case(2, 4, 3, (6, 9), 3, pad=(1, 0))), (True, Case(2, 3, 4, (5, 4), 3, pad=(0, 1))),
    (True, Case(1, 3, 5, (7, 6), 3, pad=1)), (True, Case(2, 4, 3, (3, 8), 3)),
]


@pytest.mark.parametrize("deconv,case", WINOGRAD_CASES, ids=repr)
def test_winograd_form_equals_the_im2col_route(deconv, case, monkeypatch):
    """Forward, first and second order gradients of Winograd's F(4 x 4, 3 x 3) equal the other
    routes' in float64; its three products are the ones taken, its transforms a channel per
    block on the thread pool."""
    from minigan.functions import jit, winograd as wg
    if jit.numba is None:
        pytest.skip("numba (minigan[jit]) is absent: the form is off")
    monkeypatch.setenv("MINIGAN_JIT", "1")
    monkeypatch.setattr(wg, "MIN_SAMPLE_PIXELS", 1)
    monkeypatch.setattr(wg, "MIN_PIXELS", {1: 1})
    monkeypatch.setattr(im, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(im, "_PARALLEL_BYTES", 0)
    arrays = case.arrays(deconv, True)
    used = _spy_products(wg, monkeypatch)
    got = _results(deconv, case, arrays)
    assert set(used) == {"conv", "conv_grad_x", "conv_grad_w"}
    used.clear()
    monkeypatch.setenv("MINIGAN_WINOGRAD", "0")
    for g, w in zip(got, _results(deconv, case, arrays)):
        numpy.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-11)
    assert not used


@pytest.mark.parametrize("need", ["both", "x", "W"])
def test_winograd_backward_transforms_gy_once(need, monkeypatch):
    """A convolution's backward that needs both gradients builds gy's tiles once for the two
    (and the same gradients as the im2col route); one gradient alone builds them in its form."""
    from minigan.functions import jit, winograd as wg
    if jit.numba is None:
        pytest.skip("numba (minigan[jit]) is absent: the form is off")
    monkeypatch.setenv("MINIGAN_JIT", "1")
    monkeypatch.setattr(wg, "MIN_SAMPLE_PIXELS", 1)
    monkeypatch.setattr(wg, "MIN_PIXELS", {1: 1})
    rng = numpy.random.RandomState(0)
    x, W = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((4, 3, 3, 3))
    gy = rng.standard_normal((2, 4, 9, 7))
    used = _spy_products(wg, monkeypatch, ("gy_tiles", "conv_grad_x", "conv_grad_w"))

    def grads():
        xv = Variable(x, requires_grad=need != "W")
        Wv = Variable(W, requires_grad=need != "x")
        y = F.convolution_2d(xv, Wv, None, 1, 1)
        return [g.array for g in minigan.grad([y], [v for v in (xv, Wv) if v.requires_grad],
                                              [gy])]
    got = grads()
    want = {"both": ["gy_tiles", "conv_grad_x", "conv_grad_w"],
            "x": ["conv_grad_x", "gy_tiles"], "W": ["conv_grad_w", "gy_tiles"]}[need]
    assert used == want
    monkeypatch.setenv("MINIGAN_WINOGRAD", "0")
    for g, w in zip(got, grads()):
        numpy.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("shape, co, ksize, s, p, d, groups, want", [
    ((1, 64, 64, 64), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    ((4, 64, 32, 32), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),     # 4096 pixels in all
    ((1, 64, 32, 32), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),
    ((64, 64, 16, 16), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),   # small per sample
    ((1, 64, 64, 64), 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),    # few channels
    ((1, 3, 64, 64), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),
    ((1, 64, 64, 64), 64, (1, 1), (1, 1), (0, 0), (1, 1), 1, False),    # pointwise: plain GEMM
    ((1, 64, 130, 130), 64, (3, 3), (2, 2), (1, 1), (1, 1), 1, False),
    ((1, 64, 64, 64), 64, (3, 3), (1, 1), (2, 2), (2, 2), 1, False),
    ((1, 64, 64, 64), 64, (3, 3), (1, 1), (1, 1), (1, 1), 2, False),
])
def test_window_form_takes_only_its_geometry(shape, co, ksize, s, p, d, groups, want,
                                             monkeypatch):
    from minigan.functions import conv_windows as win
    monkeypatch.setattr(win.blas, "available", lambda: True)
    a = numpy.zeros(shape[:2] + (1, 1), numpy.float32)
    assert win.takes(shape, co, ksize, s, p, d, groups, a) == want
    monkeypatch.setattr(win.blas, "available", lambda: False)
    assert not win.takes(shape, co, ksize, s, p, d, groups, a)


@pytest.mark.parametrize("big, small, ksize, s, p, groups, want", [
    ((128, 192), (64, 96), (4, 4), (2, 2), (1, 1), 1, True),
    ((129, 192), (64, 96), (4, 4), (2, 2), (1, 1), 1, False),    # odd side, or outsize + 1
    ((128, 192), (64, 96), (3, 3), (2, 2), (1, 1), 1, False),
    ((128, 192), (64, 96), (4, 4), (2, 2), (0, 0), 1, False),
    ((128, 192), (64, 96), (4, 4), (2, 2), (1, 1), 2, False),
    ((64, 96), (32, 48), (4, 4), (2, 2), (1, 1), 1, False),      # under MIN_PIXELS
])
def test_space_to_depth_takes_only_its_geometry(big, small, ksize, s, p, groups, want,
                                                monkeypatch):
    from minigan.functions import space_to_depth as s2d
    monkeypatch.setattr(s2d._win.blas, "available", lambda: True)
    x = numpy.zeros((1, 2, 1, 1), numpy.float32)
    assert s2d.takes(big, small, 32, 32, ksize, s, p, (1, 1), groups, x) == want
    if small == (32, 48):       # the threshold counts the pixels of the whole batch
        assert s2d.takes(big, small, 32, 32, ksize, s, p, (1, 1), groups,
                         numpy.zeros((3, 2, 1, 1)))
    # but not of many small images (DCGAN's 14 x 14 at batch 64)
    assert not s2d.takes((28, 28), (14, 14), 32, 32, ksize, s, p, (1, 1), groups,
                         numpy.zeros((64, 2, 1, 1)))
    assert not s2d.takes(big, small, 32, 32, ksize, s, p, (1, 1), groups,
                         x.astype(numpy.float16))
    assert not s2d.takes(big, small, 7, 31, ksize, s, p, (1, 1), groups, x)    # K = 28, 31
    monkeypatch.setattr(minigan.cuda, "enabled", lambda a: True)
    assert not s2d.takes(big, small, 32, 32, ksize, s, p, (1, 1), groups, x)
    monkeypatch.setattr(minigan.cuda, "enabled", lambda a: False)
    monkeypatch.setattr(s2d._win.blas, "available", lambda: False)
    assert not s2d.takes(big, small, 32, 32, ksize, s, p, (1, 1), groups, x)


@pytest.mark.parametrize("n", [1, 64])
def test_dcgan_1x1_input_layer_is_no_padded_convolution(n, monkeypatch):
    """ConvT(100 -> 128, 4, 1, 0) on 1 x 1 is one GEMM (the flipped route, a 4 x 4 conv of the
    zero-padded 7 x 7 input, would do 16 times the work), and matches PyTorch."""
    torch = torch_module()
    x, W, b = Case(n, 100, 128, 1, 4).arrays(True, True, numpy.float32, seed=2)
    calls = []
    conv = conv_module._conv
    monkeypatch.setattr(conv_module, "_conv", lambda *a: calls.append(1) or conv(*a))
    vs = [Variable(a) for a in (x, W, b)]
    y = F.deconvolution_2d(*vs)
    assert calls == [] and y.shape == (n, 128, 4, 4)
    F.sum(y * y).backward()
    ts = [torch.tensor(a, requires_grad=True) for a in (x, W, b)]
    yt = torch.nn.functional.conv_transpose2d(*ts)
    (yt * yt).sum().backward()
    for got, want in [(y.array, yt.detach().numpy())] + [
            (v.grad.array, t.grad.numpy()) for v, t in zip(vs, ts)]:
        numpy.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * numpy.abs(want).max())


@pytest.mark.parametrize("deconv", [False, True], ids=["conv", "deconv"])
def test_a_kernel_covering_the_image_is_one_gemm_per_product(deconv, monkeypatch):
    """DCGAN's D head, Conv(128 -> 1, 4) on 4 x 4, and G's ConvT(100 -> 128, 4) from 1 x 1 at
    batch 64: every product is one GEMM in NCHW (no form, route or columns is consulted), equal
    to the sums written out."""
    def refuse(*args, **kwargs):
        raise AssertionError("a kernel covering the image took another form")
    for module, name in ((conv_module._im, "route"), (conv_module._s2d, "takes"),
                         (conv_module._wino, "takes"), (conv_module._win, "takes"),
                         (conv_module, "_columns")):
        monkeypatch.setattr(module, name, refuse)
    case = Case(64, 100, 128, 1, 4) if deconv else Case(64, 128, 1, 4, 4)
    x, W, b = (Variable(a) for a in case.arrays(deconv, True))
    y = case.minigan(deconv)(x, W, b)
    gy = numpy.random.RandomState(5).standard_normal(y.shape)
    y.grad = gy
    y.backward()
    xa, Wa = x.array, W.array
    if deconv:      # y[n, o, i, j] = sum_c x[n, c] W[c, o, i, j]
        want = [numpy.einsum("nc,coij->noij", xa[:, :, 0, 0], Wa),
                numpy.einsum("noij,coij->nc", gy, Wa)[:, :, None, None],
                numpy.einsum("nc,noij->coij", xa[:, :, 0, 0], gy)]
    else:           # y[n, o] = sum_cij W[o, c, i, j] x[n, c, i, j]
        want = [numpy.einsum("ocij,ncij->no", Wa, xa)[:, :, None, None],
                numpy.einsum("no,ocij->ncij", gy[:, :, 0, 0], Wa),
                numpy.einsum("no,ncij->ocij", gy[:, :, 0, 0], xa)]
    want[0] = want[0] + b.array.reshape(1, -1, 1, 1)
    for got, w in zip((y.array, x.grad.array, W.grad.array), want):
        numpy.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(b.grad.array, gy.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_device_arrays_keep_the_raw_kernels(monkeypatch):
    """Arrays the kernels serve (CuPy's; NumPy's in the host emulation) never go batch-last."""
    from minigan.functions import im2col
    x = numpy.zeros((64, 8, 4, 4))
    assert im2col.batch_last(x, 1, (1, 1), 16)
    monkeypatch.setattr(minigan.cuda, "enabled", lambda a: True)
    assert not im2col.batch_last(x, 1, (1, 1), 16)


@pytest.mark.parametrize("args, want", [
    # (x shape, ksize, stride, pad, copies, flipped copies, GEMM columns, columns given)
    (((1, 128, 256, 256), (3, 3), (1, 1), (1, 1), 128, 3, 65536, None), "flipped"),
    (((1, 128, 256, 256), (3, 3), (2, 2), (1, 1), 128, 3, 16384, None), "nchw"),    # stride 2
    (((1, 128, 256, 256), (1, 1), (1, 1), (0, 0), 128, 3, 65536, None), "nchw"),    # 1 x 1
    (((1, 128, 256, 256), (3, 3), (1, 1), (1, 1), 128, 3, 65536, "col"), "nchw"),   # shared
    (((64, 64, 7, 7), (4, 4), (2, 2), (1, 1), 64, 64, 16, None), "batch_last"),
    (((3, 64, 7, 7), (4, 4), (2, 2), (1, 1), 64, 64, 16, None), "nchw"),            # N < 4
    (((64, 64, 32, 32), (4, 4), (2, 2), (1, 1), 64, 64, 256, None), "nchw"),        # P > 64
])
def test_route_picks_one_form_per_product(args, want):
    from minigan.functions import im2col
    shape, k, s, p, copies, flipped, columns, col = args
    x = numpy.zeros(shape, numpy.float32) if numpy.prod(shape) < 1e6 else \
        numpy.lib.stride_tricks.as_strided(numpy.zeros(1, numpy.float32), shape, (0,) * 4)
    assert im2col.route(x, k, s, p, (1, 1), 1, copies, flipped, columns, col) == want


# -- im2col / col2im against the definition -------------------------------------------------------

def _loops_im2col(x, kh, kw, sy, sx, ph, pw, oh, ow, dy, dx):
    col = numpy.zeros(x.shape[:2] + (kh, kw, oh, ow), x.dtype)
    H, W = x.shape[2:]
    for i in range(kh):
        for j in range(kw):
            for y in range(oh):
                for z in range(ow):
                    h, w = sy * y + dy * i - ph, sx * z + dx * j - pw
                    if 0 <= h < H and 0 <= w < W:
                        col[:, :, i, j, y, z] = x[:, :, h, w]
    return col


@pytest.mark.parametrize("geometry", [
    (3, 3, 1, 1, 1, 1, 1, 1), (4, 4, 2, 2, 1, 1, 1, 1), (3, 2, 2, 3, 2, 0, 2, 1),
    (2, 2, 3, 3, 0, 0, 1, 1), (4, 3, 1, 2, 0, 1, 1, 3), (1, 1, 2, 2, 0, 0, 1, 1)],
    ids=lambda g: "k{}x{}-s{}x{}-p{}x{}-d{}x{}".format(*g))
@pytest.mark.parametrize("blocks", ["one", "serial", "threads"])
def test_im2col_col2im(geometry, blocks, monkeypatch):
    """im2col equals the loops; col2im is its adjoint: <col2im(c), x> = <c, im2col(x)>."""
    if blocks != "one":         # one channel per block: in turn, or in the thread pool
        monkeypatch.setattr(im, "_CHUNK_BYTES", 1)
    if blocks == "threads":
        monkeypatch.setattr(im, "_PARALLEL_BYTES", 0)
    kh, kw, sy, sx, ph, pw, dy, dx = geometry
    rng = numpy.random.RandomState(0)
    x = rng.standard_normal((2, 3, 9, 8))
    oh, ow = im.conv_outsize(9, kh, sy, ph, dy), im.conv_outsize(8, kw, sx, pw, dx)
    col = im.im2col(x, kh, kw, sy, sx, ph, pw, oh, ow, dy, dx)
    numpy.testing.assert_array_equal(col, _loops_im2col(x, kh, kw, sy, sx, ph, pw, oh, ow, dy, dx))
    c = rng.standard_normal(col.shape)
    for h, w in [(9, 8), (9 + sy - 1, 8 + sx - 1)]:     # also sizes with uncovered pixels
        x2 = rng.standard_normal((2, 3, h, w))
        img = im.col2im(c, sy, sx, ph, pw, h, w, dy, dx)
        lhs = (img * x2).sum()
        rhs = (c * im.im2col(x2, kh, kw, sy, sx, ph, pw, oh, ow, dy, dx)).sum()
        assert abs(lhs - rhs) < 1e-9 * abs(rhs) + 1e-9
    # the same gathers on (C, H, W, N) planes, the batch as a trailing axis (im2col_last)
    xl, cl = x.transpose(1, 2, 3, 0), numpy.empty((3, kh, kw, oh, ow, 2))
    im.gather(xl, cl, sy, sx, ph, pw, dy, dx)
    numpy.testing.assert_array_equal(cl, col.transpose(1, 2, 3, 4, 5, 0))
    img = numpy.empty((3, 9 + sy - 1, 8 + sx - 1, 2))
    im.scatter(c.transpose(1, 2, 3, 4, 5, 0), img, sy, sx, ph, pw, dy, dx)
    numpy.testing.assert_allclose(img, im.col2im(c, sy, sx, ph, pw, *img.shape[1:3], dy, dx)
                                  .transpose(1, 2, 3, 0), rtol=1e-13, atol=1e-13)


# -- gradients that nothing needs are not computed ------------------------------------------------

def test_input_gradient_skipped_when_input_is_constant(monkeypatch):
    calls = []
    deconv = conv_module.Deconvolution2DFunction.forward
    monkeypatch.setattr(conv_module.Deconvolution2DFunction, "forward",
                        lambda self, inputs: calls.append(1) or deconv(self, inputs))
    rng = numpy.random.RandomState(0)
    x = rng.standard_normal((1, 3, 8, 8)).astype(numpy.float32)
    W = Variable(rng.standard_normal((4, 3, 4, 4)).astype(numpy.float32))
    F.sum(F.convolution_2d(x, W, stride=2, pad=1)).backward()   # x: a plain array, a constant
    assert calls == [] and W.grad is not None
    xv = Variable(x)
    F.sum(F.convolution_2d(xv, W, stride=2, pad=1)).backward()
    assert calls == [1] and xv.grad.shape == x.shape


def test_weight_gradient_skipped_when_weight_is_constant(monkeypatch):
    made = []
    monkeypatch.setattr(conv_module.Convolution2DGradW, "forward",
                        lambda self, inputs: made.append(1) or ())
    x = Variable(numpy.ones((1, 2, 5, 5)))
    W = Variable(numpy.ones((2, 2, 3, 3)), requires_grad=False)
    F.sum(F.deconvolution_2d(F.convolution_2d(x, W), W)).backward()
    assert made == [] and x.grad is not None


@pytest.mark.parametrize("deconv", [False, True], ids=["conv", "deconv"])
def test_stride_1_builds_the_columns_of_the_side_with_fewer_channels(deconv, monkeypatch):
    """A stride-1 conv 16 -> 2 (or deconv 2 -> 16) never builds 16 * 9 columns, in forward or
    backward: the flipped formulation puts the columns on the 2-channel side."""
    built = []
    im2col = im.im2col
    monkeypatch.setattr(im, "im2col", lambda x, *a, **k: built.append(x.shape[1]) or
                        im2col(x, *a, **k))
    rng = numpy.random.RandomState(0)
    x = Variable(rng.standard_normal((1, 2 if deconv else 16, 8, 8)))
    W = Variable(rng.standard_normal((2, 16, 3, 3)))
    y = F.deconvolution_2d(x, W, pad=1) if deconv else F.convolution_2d(x, W, pad=1)
    F.sum(y ** 2).backward()
    assert built and 16 not in built


# -- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda: F.convolution_2d(numpy.zeros((1, 3, 8, 8)), numpy.zeros((4, 5, 3, 3))),
     "convolution_2d: x (1, 3, 8, 8) has 3 channels but W (4, 5, 3, 3) expects 5 (groups=1)"),
    (lambda: F.convolution_2d(numpy.zeros((1, 4, 8, 8)), numpy.zeros((4, 1, 3, 3)), groups=2),
     "x (1, 4, 8, 8) has 4 channels but W (4, 1, 3, 3) expects 2 (groups=2)"),
    (lambda: F.convolution_2d(numpy.zeros((1, 6, 8, 8)), numpy.zeros((4, 2, 3, 3)), groups=3),
     "groups=3 must divide"),
    (lambda: F.convolution_2d(numpy.zeros((1, 3, 8, 8)), numpy.zeros((4, 3, 3, 3)), groups=0),
     "groups must be a positive int"),
    (lambda: F.convolution_2d(numpy.zeros((1, 3, 2, 2)), numpy.zeros((4, 3, 3, 3))),
     "empty output"),
    (lambda: F.convolution_2d(numpy.zeros((1, 3, 8, 8)), numpy.zeros((4, 3, 3, 3)),
                              numpy.zeros(5)), "b (5,) must have shape (4,)"),
    (lambda: F.convolution_2d(numpy.zeros((3, 8, 8)), numpy.zeros((4, 3, 3, 3))), "4-D"),
    (lambda: F.deconvolution_2d(numpy.zeros((1, 3, 4, 4)), numpy.zeros((4, 2, 3, 3))),
     "deconvolution_2d: x (1, 3, 4, 4) has 3 channels but W (4, 2, 3, 3) expects 4"),
    (lambda: F.deconvolution_2d(numpy.zeros((1, 4, 4, 4)), numpy.zeros((4, 2, 3, 3)), groups=3),
     "groups=3 must divide"),
    (lambda: F.deconvolution_2d(numpy.zeros((1, 4, 4, 4)), numpy.zeros((4, 2, 4, 4)), stride=2,
                                pad=1, outsize=(10, 8)),
     "outsize (10, 8) is invalid for x (1, 4, 4, 4) and W (4, 2, 4, 4) with stride (2, 2), "
     "pad (1, 1), dilate (1, 1): each side must lie in [8, 9], [8, 9]"),
    (lambda: F.deconvolution_2d(numpy.zeros((1, 4, 4, 4)), numpy.zeros((4, 2, 4, 4)), stride=2,
                                pad=1, outsize=(7, 8)), "outsize (7, 8) is invalid"),
    (lambda: F.convolution_2d(numpy.zeros((1, 3, 8, 8)), numpy.zeros((4, 3, 3, 3)),
                              stride=(1, 2, 3)), "stride must be an int or a pair"),
    (lambda: F.convolution_2d(numpy.zeros((1, 3, 8, 8)), numpy.zeros((4, 3, 3, 3)), stride=0),
     "stride (0, 0) and dilate (1, 1) must be >= 1"),
], ids=["channels", "channels-groups", "groups-divide", "groups-zero", "empty", "bias",
        "ndim", "deconv-channels", "deconv-groups", "outsize-big", "outsize-small", "stride",
        "stride-zero"])
def test_errors(call, message):
    with pytest.raises(ValueError) as e:
        call()
    assert message in str(e.value)


def test_dtype_mismatch_is_a_type_error():
    with pytest.raises(TypeError, match="share one dtype"):
        F.convolution_2d(numpy.zeros((1, 3, 8, 8), numpy.float32), numpy.zeros((4, 3, 3, 3)))


# -- GPU: the same xp code on CuPy matches NumPy -------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("deconv,case", [(False, CONV_CASES[1]), (False, CONV_CASES[3]),
                                         (True, DECONV_CASES[1]), (True, DECONV_CASES[2])])
def test_cupy_matches_numpy(deconv, case):
    import cupy
    arrays = case.arrays(deconv, True, numpy.float32)
    results = []
    for to in (numpy.asarray, cupy.asarray):
        vs = [Variable(to(a)) for a in arrays]
        y = case.minigan(deconv)(*vs)
        F.sum(y * y).backward()
        results.append([minigan.backend.to_cpu(a) for a in [y.array] + [v.grad.array for v in vs]])
    for got, want in zip(results[1], results[0]):
        numpy.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * numpy.abs(want).max())


@pytest.mark.parametrize("form", ["space_to_depth", "conv_windows"])
def test_window_forms_return_no_view_of_their_workspaces(form, monkeypatch):
    """A result that is a whole workspace row (one sample, one output channel and row; a k x 1
    kernel) must still be a copy: the next call reuses the workspace."""
    from minigan.functions import conv_windows as win
    if not win.blas.available():
        pytest.skip("no OpenBLAS with cblas loaded: the window forms are off")
    for name in ("MIN_PIXELS", "MIN_SAMPLE_PIXELS", "MIN_CHANNELS"):
        monkeypatch.setattr(win, name, 1)
    rng = numpy.random.RandomState(0)
    # two input channels and one output channel: not a depthwise convolution
    x_shape, w_shape, pad, stride = (((1, 2, 2, 6), (1, 2, 4, 4), 1, 2) if form == "space_to_depth"
                                     else ((1, 2, 3, 5), (1, 2, 3, 1), 0, 1))
    x, W = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y = F.convolution_2d(x, W, stride=stride, pad=pad).array
    first = y.copy()
    F.convolution_2d(rng.standard_normal(x.shape), W, stride=stride, pad=pad)
    numpy.testing.assert_array_equal(y, first)
    gx = F.deconvolution_2d(y, W, stride=stride, pad=pad, outsize=x.shape[2:]).array
    first = gx.copy()
    F.deconvolution_2d(rng.standard_normal(y.shape), W, stride=stride, pad=pad,
                       outsize=x.shape[2:])
    numpy.testing.assert_array_equal(gx, first)
