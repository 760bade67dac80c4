"""A stride-1 convolution as kh kw GEMMs over shifted windows of one padded image: no im2col.

Flatten the zero-padded image xpad (C, Hp, Wp) row by row. Output pixel (y, x) reads tap (i, j)
at xpad[y + i, x + j], flat index (y Wp + x) + (i Wp + j): for every tap the image is one window
P[:, o_ij : o_ij + oh Wp] of the flat buffer (leading dimension the buffer's row), and

  y_wide (Cout, oh Wp) = sum_ij W[:, :, i, j] (Cout, C) @ window_ij (C, oh Wp)      (beta = 1)

whose last Wp - ow columns of each row are garbage and dropped. The adjoints read the windows too:

  gx:  gP[window_ij] += W_ij^T @ gy_wide, then gx = the interior of gP
  gW:  W_ij = sum_n gy_wide @ window_ij^T
  (gy_wide: gy at width Wp with zeros in the dropped columns, so they add nothing)

The core (window_conv, window_grad_x, window_grad_w) takes any buffer and taps; this module's
stride-1 form and space_to_depth.py's stride-2 one build their buffers and taps and call it.
Each tap's GEMM has K = C (or Cout) instead of im2col's C kh kw, so the form runs only where both
sides have MIN_CHANNELS channels and the images are big (the measurements: benchmarks/README.md).
"""
import numpy

from .. import cuda
from . import blas
from .im2col import scratch

MIN_CHANNELS = 32       # each GEMM's K: below it the windows' passes over y cost more than im2col
MIN_PIXELS = 64 * 64            # oh ow over the batch
MIN_SAMPLE_PIXELS = 32 * 32     # oh ow per sample: N x kh kw small GEMMs lose to one big one


def _offsets(kh, kw, Wp, step):
    return [(i, j, (i * Wp + j) * step) for i in range(kh) for j in range(kw)]


def window_conv(P, Q, oh, Wp, slot="win_out", step=1):
    """y_wide (N, Cout, oh Wp step) = sum_ij Q[i, j] @ P[n, :, window ij]; P (N, K, rows Wp
    step), Q (kh, kw, Cout, K); step: values per pixel (a batch-last buffer's N). A workspace:
    valid until the next call for the same slot."""
    N = P.shape[0]
    kh, kw, Co = Q.shape[:3]
    L = oh * Wp * step
    y = scratch(numpy, (N, Co, L), P.dtype, slot)
    for n in range(N):
        for i, j, o in _offsets(kh, kw, Wp, step):
            blas.gemm(Q[i, j], P[n, :, o:o + L], y[n], beta=0.0 if o == 0 else 1.0)
    return y


def window_grad_x(g, Q, rows, Wp, slot, step=1):
    """gP (N, K, rows Wp step): the adjoint of window_conv in P, for g (N, Cout, oh Wp step)
    zero in the dropped columns."""
    N = g.shape[0]
    kh, kw, _, K = Q.shape
    L = g.shape[2]
    gP = scratch(numpy, (N, K, rows * Wp * step), g.dtype, slot)
    gP[...] = 0
    for n in range(N):
        for i, j, o in _offsets(kh, kw, Wp, step):
            blas.gemm(Q[i, j].T, g[n], gP[n, :, o:o + L], beta=1.0)
    return gP


def window_grad_w(P, g, kh, kw, Wp, step=1):
    """Q (kh, kw, Cout, K) = sum_n g[n] @ P[n, :, window ij]^T: the adjoint in Q."""
    N, K = P.shape[:2]
    Co, L = g.shape[1:]
    Q = numpy.empty((kh, kw, Co, K), P.dtype)
    for n in range(N):
        for i, j, o in _offsets(kh, kw, Wp, step):
            blas.gemm(g[n], P[n, :, o:o + L].T, Q[i, j], beta=float(n > 0))
    return Q


def wide(g, Wp, slot="win_wide", last=False):
    """g (N, C, oh, ow) at row width Wp, zeros past ow: (N, C, oh Wp); last: with the batch as
    the last axis, (1, C, oh Wp N)."""
    N, C, oh, ow = g.shape
    if last:
        out = scratch(numpy, (C, oh, Wp, N), g.dtype, slot)
        view = out.transpose(3, 0, 1, 2)
    else:
        out = view = scratch(numpy, (N, C, oh, Wp), g.dtype, slot)
    view[..., :ow] = g
    view[..., ow:] = 0
    return out.reshape(1, C, -1) if last else out.reshape(N, C, oh * Wp)


def usable(a, channels, pixels=None):
    """The conditions every window form shares: a CPU float array, the BLAS, enough channels on
    both sides and enough output pixels per sample and over the batch (pixels None: the
    batch-last forms, whose GEMMs span the batch, ask no size)."""
    return (not cuda.enabled(a) and min(channels) >= MIN_CHANNELS
            and (pixels is None or pixels >= MIN_SAMPLE_PIXELS
                 and a.shape[0] * pixels >= MIN_PIXELS)
            and blas.takes(a))


# -- the stride-1 convolution ------------------------------------------------------------------

def takes(shape, Co, ksize, s, p, d, groups, a):
    """Whether conv of an x of `shape` (N, C, H, W) with W (Co, C, kh, kw), stride s, pad p, or
    one of its gradients, runs here; a is one of the product's operands."""
    kh, kw = ksize
    oh, ow = shape[2] + 2 * p[0] - kh + 1, shape[3] + 2 * p[1] - kw + 1
    return (s == (1, 1) and d == (1, 1) and groups == 1 and tuple(ksize) != (1, 1)
            and oh >= 1 and ow >= 1 and usable(a, (shape[1], Co), oh * ow))


def _padded(x, p, slot):
    """xpad flat (N, C, (Hp + 1) Wp): one spare zero row (the last window runs past Hp Wp)."""
    N, C, H, W = x.shape
    Hp, Wp = H + 2 * p[0], W + 2 * p[1]
    P = scratch(numpy, (N, C, Hp + 1, Wp), x.dtype, slot)
    P[:, :, :p[0]] = 0
    P[:, :, p[0] + H:] = 0
    P[:, :, p[0]:p[0] + H, :p[1]] = 0
    P[:, :, p[0]:p[0] + H, p[1] + W:] = 0
    P[:, :, p[0]:p[0] + H, p[1]:p[1] + W] = x
    return P.reshape(N, C, (Hp + 1) * Wp)


def _taps(W):
    return numpy.ascontiguousarray(W.transpose(2, 3, 0, 1))      # (kh, kw, Cout, C)


def conv(x, W, p):
    """The stride-1 convolution of x (N, C, H, W) with W (Cout, C, kh, kw), pad p."""
    N, C, H, Wd = x.shape
    kh, kw = W.shape[2:]
    Wp = Wd + 2 * p[1]
    oh, ow = H + 2 * p[0] - kh + 1, Wp - kw + 1
    y = window_conv(_padded(x, p, "win"), _taps(W), oh, Wp)
    return y.reshape(N, -1, oh, Wp)[..., :ow].copy()      # a copy: y is a workspace


def conv_grad_x(gy, W, p, size):
    """gx (N, C, H, W) of conv for gy (N, Cout, oh, ow), size = (H, W): also the stride-1
    transposed convolution of gy with W (Cout, C, kh, kw) and pad p."""
    H, Wd = size
    Wp = Wd + 2 * p[1]
    gP = window_grad_x(wide(gy, Wp), _taps(W), H + 2 * p[0] + 1, Wp, "win")
    gP = gP.reshape(gy.shape[0], W.shape[1], -1, Wp)
    return gP[:, :, p[0]:p[0] + H, p[1]:p[1] + Wd].copy()      # a copy: gP is a workspace


def conv_grad_w(x, gy, p, ksize):
    """gW (Cout, C, kh, kw) of conv, summed over the batch."""
    Wp = x.shape[3] + 2 * p[1]
    Q = window_grad_w(_padded(x, p, "win"), wide(gy, Wp), *ksize, Wp)
    return numpy.ascontiguousarray(Q.transpose(2, 3, 0, 1))
