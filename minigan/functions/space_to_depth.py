"""The 4 x 4, stride-2, pad-1 convolution (pix2pix's and DCGAN's down and up layers) as four
GEMMs over windows of one buffer, instead of im2col's 16 copies of the image.

Space to depth: split the zero-padded image into its 2 x 2 phases and stack them as channels,
S[n, (a, b, c), m, q] = xpad[n, c, 2m + a, 2q + b]. Kernel tap (i, j) = (2u + a, 2v + b) then
reads phase (a, b) at (y + u, x + v), so the convolution is a 2 x 2 stride-1 one over S with
4C channels and Q[u, v][o, (a, b, c)] = W[o, c, 2u + a, 2v + b]:

  y[o, y, x] = sum_{u, v} Q[u, v] (Cout, 4C) . S[:, y + u, x + v]

With each phase's rows flattened at width Wp = ow + 1 (a zero column at the end), shifting by
(u, v) is an offset u Wp + v into the flat plane, so S_uv is a window (4C, oh Wp) of S with
leading dimension = the plane: four GEMMs (blas.gemm, beta = 1) sum into a y of width Wp whose
last column is dropped. The adjoints read the same windows:

  gx: gS[window uv] += Q[u, v]^T @ gy_wide, then the phases go back into the image (depth to space)
  gW: Q[u, v] = gy_wide (Cout, oh Wp) @ S_uv^T, summed over the batch
  (gy_wide: gy with the zero column, so S's padding columns add nothing)

The transposed convolution is the x-gradient of this one, so its forward is `gx` and its
gradients are `conv` and `grad_w` with the sides swapped. The copies are S (C H W values, a
quarter of the columns) and gy_wide; the GEMMs have K = 4C instead of 16C, which loses more than
it saves on small images: this form runs where the small side has MIN_PIXELS pixels over the
batch and MIN_SAMPLE_PIXELS per sample (a batch of small images runs N x 4 small GEMMs: DCGAN's
14 x 14 layers at batch 64 took 1.28x as long). The measurements: benchmarks/README.md. Every product is tested equal to the im2col form.
"""
import numpy

from .. import cuda
from . import blas
from .im2col import scratch

MIN_PIXELS = 64 * 64        # N oh ow, on the small side: below it im2col's one GEMM wins
MIN_SAMPLE_PIXELS = 32 * 32     # oh ow


def takes(big, small, ksize, s, p, d, groups, a):
    """Whether a product between images of size `big` (H, W) and `small` runs here; a is one of
    its (N, C, H, W) operands."""
    return (type(a) is numpy.ndarray and not cuda.enabled(a)
            and a.dtype in (numpy.float32, numpy.float64) and tuple(ksize) == (4, 4)
            and s == (2, 2) and p == (1, 1) and d == (1, 1) and groups == 1
            and tuple(big) == (2 * small[0], 2 * small[1])
            and small[0] * small[1] >= MIN_SAMPLE_PIXELS
            and a.shape[0] * small[0] * small[1] >= MIN_PIXELS and blas.available())


def _phases(x, slot):
    """S (N, 4C, (oh + 2) Wp) for x (N, C, 2 oh, 2 ow): the padded phases, one spare zero row
    (window (1, 1) runs one element past the last phase row)."""
    N, C, H, W = x.shape
    oh, ow = H // 2, W // 2
    S = scratch(numpy, (N, 2, 2, C, oh + 2, ow + 1), x.dtype, slot)
    # xpad[2m + a] = x[2m + a - 1]: phase a = 0 holds the odd rows from m = 1 (m = 0 is the pad),
    # a = 1 the even rows from m = 0 (m = oh is the pad); columns alike
    S[:, 0, :, :, 0] = 0
    S[:, 1, :, :, oh] = 0
    S[:, :, :, :, oh + 1] = 0
    S[:, :, 0, :, :, 0] = 0
    S[:, :, 1, :, :, ow] = 0
    S[:, 0, 0, :, 1:oh + 1, 1:] = x[:, :, 1::2, 1::2]
    S[:, 0, 1, :, 1:oh + 1, :ow] = x[:, :, 1::2, 0::2]
    S[:, 1, 0, :, :oh, 1:] = x[:, :, 0::2, 1::2]
    S[:, 1, 1, :, :oh, :ow] = x[:, :, 0::2, 0::2]
    return S.reshape(N, 4 * C, (oh + 2) * (ow + 1))


def _image(S, C, H, W):
    """The adjoint of _phases: the image (N, C, H, W) read back from S, its padding dropped."""
    N = S.shape[0]
    oh, ow = H // 2, W // 2
    S = S.reshape(N, 2, 2, C, oh + 2, ow + 1)
    x = numpy.empty((N, C, H, W), S.dtype)
    x[:, :, 1::2, 1::2] = S[:, 0, 0, :, 1:oh + 1, 1:]
    x[:, :, 1::2, 0::2] = S[:, 0, 1, :, 1:oh + 1, :ow]
    x[:, :, 0::2, 1::2] = S[:, 1, 0, :, :oh, 1:]
    x[:, :, 0::2, 0::2] = S[:, 1, 1, :, :oh, :ow]
    return x


def _taps(W):
    """Q (2, 2, Cout, 4C) from W (Cout, C, 4, 4): Q[u, v][o, (a, b, c)] = W[o, c, 2u + a, 2v + b]."""
    Co, C = W.shape[:2]
    return numpy.ascontiguousarray(
        W.reshape(Co, C, 2, 2, 2, 2).transpose(2, 4, 0, 3, 5, 1).reshape(2, 2, Co, 4 * C))


def _wide(g):
    """g (N, C, oh, ow) with a zero column: (N, C, oh Wp)."""
    N, C, oh, ow = g.shape
    out = scratch(numpy, (N, C, oh, ow + 1), g.dtype, "s2d_wide")
    out[..., :ow] = g
    out[..., ow] = 0
    return out.reshape(N, C, oh * (ow + 1))


def _windows(oh, ow):
    """(u, v, offset) of the four windows, each oh Wp long."""
    return [(u, v, u * (ow + 1) + v) for u in (0, 1) for v in (0, 1)]


def conv(x, W):
    """y (N, Cout, oh, ow) = the convolution of x (N, C, 2 oh, 2 ow) with W (Cout, C, 4, 4)."""
    N, C, H, Wd = x.shape
    Co = W.shape[0]
    oh, ow = H // 2, Wd // 2
    L = oh * (ow + 1)
    S, Q = _phases(x, "s2d"), _taps(W)
    y = scratch(numpy, (N, Co, L), x.dtype, "s2d_out")
    for n in range(N):
        for u, v, o in _windows(oh, ow):
            blas.gemm(Q[u, v], S[n, :, o:o + L], y[n], beta=float(u or v))
    return numpy.ascontiguousarray(y.reshape(N, Co, oh, ow + 1)[..., :ow])


def conv_grad_x(gy, W):
    """gx (N, C, 2 oh, 2 ow) of conv for gy (N, Cout, oh, ow); also the transposed convolution
    of gy with W (Cout, C, 4, 4) in deconvolution_2d's layout."""
    N, Co, oh, ow = gy.shape
    C = W.shape[1]
    L = oh * (ow + 1)
    g, Q = _wide(gy), _taps(W)
    gS = scratch(numpy, (N, 4 * C, (oh + 2) * (ow + 1)), gy.dtype, "s2d")
    gS[...] = 0
    for n in range(N):
        for u, v, o in _windows(oh, ow):
            blas.gemm(Q[u, v].T, g[n], gS[n, :, o:o + L], beta=1.0)
    return _image(gS, C, 2 * oh, 2 * ow)


def conv_grad_w(x, gy):
    """gW (Cout, C, 4, 4) of conv, summed over the batch, for x (N, C, 2 oh, 2 ow) and gy."""
    N, C, H, Wd = x.shape
    Co, oh, ow = gy.shape[1:]
    L = oh * (ow + 1)
    S, g = _phases(x, "s2d"), _wide(gy)
    Q = numpy.empty((2, 2, Co, 4 * C), x.dtype)
    for n in range(N):
        for u, v, o in _windows(oh, ow):
            blas.gemm(g[n], S[n, :, o:o + L].T, Q[u, v], beta=float(n > 0))
    # Q[u, v, o, (a, b, c)] = W[o, c, 2u + a, 2v + b]
    return numpy.ascontiguousarray(
        Q.reshape(2, 2, Co, 2, 2, C).transpose(2, 5, 0, 3, 1, 4).reshape(Co, C, 4, 4))
