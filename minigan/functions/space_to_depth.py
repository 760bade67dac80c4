"""The 4 x 4, stride-2, pad-1 convolution (pix2pix's and DCGAN's down and up layers) as four
GEMMs over windows of one buffer, instead of im2col's 16 copies of the image.

Space to depth: split the zero-padded image into its 2 x 2 phases and stack them as channels,
S[n, (a, b, c), m, q] = xpad[n, c, 2m + a, 2q + b]. Kernel tap (i, j) = (2u + a, 2v + b) then
reads phase (a, b) at (y + u, x + v), so the convolution is a 2 x 2 stride-1 one over S with
4C channels and Q[u, v][o, (a, b, c)] = W[o, c, 2u + a, 2v + b]:

  y[o, y, x] = sum_{u, v} Q[u, v] (Cout, 4C) . S[:, y + u, x + v]

which conv_windows.py's core runs as four GEMMs over windows of S (its rows at width ow + 1, the
padding column included). The transposed convolution is the x-gradient of this one, so its
forward is conv_grad_x and its gradients are conv and conv_grad_w with the sides swapped. The
copies are S (C H W values, a quarter of im2col's columns) and gy at the wider rows. Every
product is tested equal to the im2col form.
"""
import numpy

from . import conv_windows as _win
from .im2col import _run, scratch


def takes(big, small, c_big, c_small, ksize, s, p, d, groups, a):
    """Whether a product between images of size `big` (H, W) with c_big channels and `small`
    with c_small runs here; a is one of its (N, C, H, W) operands. The GEMMs' K are 4 c_big
    (the phases) and c_small."""
    return (_geometry(big, small, ksize, s, p, d, groups)
            and _win.usable(a, (4 * c_big, c_small), small[0] * small[1]))


def _geometry(big, small, ksize, s, p, d, groups):
    """4 x 4, stride 2, pad 1, one group, big = 2 small."""
    return (tuple(ksize) == (4, 4) and s == (2, 2) and p == (1, 1) and d == (1, 1)
            and groups == 1 and tuple(big) == (2 * small[0], 2 * small[1]))


def _phases(x, slot, last=False):
    """S (N, 4C, (oh + 2) Wp) for x (N, C, 2 oh, 2 ow): the padded phases, one spare zero row
    (window (1, 1) runs one element past the last phase row); last: with the batch as the last
    axis, (1, 4C, (oh + 2) Wp N). In blocks of channels, threaded for big images as im2col's
    copies."""
    N, C, H, W = x.shape
    oh, ow = H // 2, W // 2
    S, P6 = _layout(N, C, oh, ow, x.dtype, slot, last)

    def block(lo, hi):
        P = P6[:, :, :, lo:hi]
        # xpad[2m + a] = x[2m + a - 1]: phase a = 0 holds the odd rows from m = 1 (m = 0 is the
        # pad), a = 1 the even rows from m = 0 (m = oh is the pad); columns alike
        P[:, 0, :, :, 0] = 0
        P[:, 1, :, :, oh] = 0
        P[:, :, :, :, oh + 1] = 0
        P[:, :, 0, :, :, 0] = 0
        P[:, :, 1, :, :, ow] = 0
        xs = x[:, lo:hi]
        P[:, 0, 0, :, 1:oh + 1, 1:] = xs[:, :, 1::2, 1::2]
        P[:, 0, 1, :, 1:oh + 1, :ow] = xs[:, :, 1::2, 0::2]
        P[:, 1, 0, :, :oh, 1:] = xs[:, :, 0::2, 1::2]
        P[:, 1, 1, :, :oh, :ow] = xs[:, :, 0::2, 0::2]

    _run(block, C, N * H * W * x.itemsize, S.nbytes, numpy)
    return S.reshape(1, 4 * C, -1) if last else S.reshape(N, 4 * C, -1)


def _layout(N, C, oh, ow, dtype, slot, last):
    """A workspace S for the phases, (N, 2, 2, C, oh + 2, ow + 1) or, last, (2, 2, C, oh + 2,
    ow + 1, N), and the view P6 of it indexed (n, a, b, c, m, q) either way."""
    dims = (2, 2, C, oh + 2, ow + 1)
    if last:
        S = scratch(numpy, dims + (N,), dtype, slot)
        return S, S.transpose(5, 0, 1, 2, 3, 4)
    S = scratch(numpy, (N,) + dims, dtype, slot)
    return S, S


def _image(S, C, H, W, last=False):
    """The adjoint of _phases: the image (N, C, H, W) read back from S, its padding dropped."""
    oh, ow = H // 2, W // 2
    N = S.size // (4 * C * (oh + 2) * (ow + 1))
    dims = (2, 2, C, oh + 2, ow + 1)
    P6 = (S.reshape(dims + (N,)).transpose(5, 0, 1, 2, 3, 4) if last else
          S.reshape((N,) + dims))
    x = numpy.empty((N, C, H, W), S.dtype)

    def block(lo, hi):
        P, xs = P6[:, :, :, lo:hi], x[:, lo:hi]
        xs[:, :, 1::2, 1::2] = P[:, 0, 0, :, 1:oh + 1, 1:]
        xs[:, :, 1::2, 0::2] = P[:, 0, 1, :, 1:oh + 1, :ow]
        xs[:, :, 0::2, 1::2] = P[:, 1, 0, :, :oh, 1:]
        xs[:, :, 0::2, 0::2] = P[:, 1, 1, :, :oh, :ow]

    _run(block, C, N * H * W * x.itemsize, x.nbytes, numpy)
    return x


def _taps(W):
    """Q (2, 2, Cout, 4C) from W (Cout, C, 4, 4): Q[u, v][o, (a, b, c)] = W[o, c, 2u + a,
    2v + b]."""
    Co, C = W.shape[:2]
    return numpy.ascontiguousarray(
        W.reshape(Co, C, 2, 2, 2, 2).transpose(2, 4, 0, 3, 5, 1).reshape(2, 2, Co, 4 * C))


def conv(x, W, last=False):
    """y (N, Cout, oh, ow) = the convolution of x (N, C, 2 oh, 2 ow) with W (Cout, C, 4, 4);
    last: through the batch-last layout (below)."""
    N, C, H, Wd = x.shape
    oh, ow = H // 2, Wd // 2
    y = _win.window_conv(_phases(x, "s2d", last), _taps(W), oh, ow + 1, "s2d_out",
                         step=N if last else 1)
    if last:
        return y.reshape(-1, oh, ow + 1, N)[:, :, :ow].transpose(3, 0, 1, 2).copy()
    return y.reshape(N, -1, oh, ow + 1)[..., :ow].copy()      # a copy: y is a workspace


def conv_grad_x(gy, W, last=False):
    """gx (N, C, 2 oh, 2 ow) of conv for gy (N, Cout, oh, ow); also the transposed convolution
    of gy with W (Cout, C, 4, 4) in deconvolution_2d's layout."""
    N, _, oh, ow = gy.shape
    gS = _win.window_grad_x(_win.wide(gy, ow + 1, last=last), _taps(W), oh + 2, ow + 1, "s2d",
                            step=N if last else 1)
    return _image(gS, W.shape[1], 2 * oh, 2 * ow, last)


def conv_grad_w(x, gy, last=False):
    """gW (Cout, C, 4, 4) of conv, summed over the batch, for x (N, C, 2 oh, 2 ow) and gy."""
    N, C = x.shape[:2]
    Co, oh, ow = gy.shape[1:]
    Q = _win.window_grad_w(_phases(x, "s2d", last), _win.wide(gy, ow + 1, last=last), 2, 2,
                           ow + 1, step=N if last else 1)
    # Q[u, v, o, (a, b, c)] = W[o, c, 2u + a, 2v + b]
    return numpy.ascontiguousarray(
        Q.reshape(2, 2, Co, 2, 2, C).transpose(2, 5, 0, 3, 1, 4).reshape(Co, C, 4, 4))


# -- batch-last (last=True): many small images (DCGAN's 14 x 14 -> 7 x 7) -----------------------
# Per sample the four GEMMs would have only oh (ow + 1) columns; with the batch as the last axis
# of S, (a, b, c, m, q, n), a tap (u, v) is the window at (u (ow + 1) + v) N of each row, so each
# GEMM spans the whole batch (conv_windows' core with step = N), where im2col_last.py copies
# 16 C oh ow N values for its one GEMM.

MIN_LAST_PIXELS = 7 * 7     # oh ow per sample: 0.82x im2col_last at 7 x 7, 1.09x at 4 x 4
MIN_LAST_COLUMNS = 1024     # each GEMM's columns, N oh (ow + 1): 0.87x at 1152, 1.01-1.19x at 576


def takes_last(big, small, c_big, c_small, ksize, s, p, d, groups, a):
    """takes() for the products that im2col.route sends batch-last."""
    return (_geometry(big, small, ksize, s, p, d, groups)
            and small[0] * small[1] >= MIN_LAST_PIXELS
            and a.shape[0] * small[0] * (small[1] + 1) >= MIN_LAST_COLUMNS
            and _win.usable(a, (4 * c_big, c_small)))
