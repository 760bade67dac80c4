"""Depthwise 2-D convolution (groups == channels): a sum of kh kw shifted multiply-adds.

Notation: x (N, C, H, W), W (C, 1, kh, kw), y (N, C, oh, ow), stride s, dilation d, and pads
(top, bottom), (left, right), which may differ (TensorFlow's "same" padding at stride 2 puts the
extra row at the bottom). Per axis, output o of tap i reads input r = s o + d i - p_lo, so

  y[n, c, o, q]  = sum_ij W[c, i, j] x[n, c, s o + d i - pt, s q + d j - pl]       (conv)
  gx[n, c, r, t] = sum_ij W[c, i, j] gy[n, c, o, q] over r = s o + d i - pt, ...  (its adjoint)
  gW[c, i, j]    = sum_noq gy[n, c, o, q] x[n, c, s o + d i - pt, s q + d j - pl]

A plane is copied once into its s x s padded phases (see Geometry); there, the reads of tap
(i, j) for all outputs are one contiguous run at a fixed offset, so each tap is one multiply and
one add over a run, with no columns. The planes (n, c) are walked in blocks of about 1 MB, so a
block stays in cache over its kh kw taps.
Measured on (8, 144, 56, 56), k = 3, forward + backward, 2 shared cores (noisy): the grouped
im2col route (one GEMM of one row per (n, c)) 90 ms, strided windows of the unpadded input
75-85 ms, contiguous runs of the phases 35 ms; PyTorch 13-34 ms. With numba (minigan[jit]) the
taps of a plane run as one compiled loop (depthwise_jit.py): 1.6-3.4x faster again on
EfficientNet-lite0's shapes (benchmarks/fid_speed.py has the network's figures).

The three maps are bilinear and adjoint to one another, so each backward is built from the other
two nodes and every order of derivative works:
  <conv(x, W), gy> = <x, deconv(gy, W)> = <W, grad_w(x, gy)>.
"""
import numpy

from .. import backend
from ..core import FunctionNode, as_array
from . import im2col as _im
from . import depthwise_jit, jit
from .math import sum as _sum


class _Axis:
    """One spatial axis: tap i reads phase a_i = (d i) % s of the padded input, at offset
    (d i) // s, where phase a holds the padded pixels a, a + s, a + 2s, ... (see im2col.py)."""

    def __init__(self, n, k, s, pad, d, extra):
        lo, hi = pad
        self.n, self.s, self.lo = n, s, lo
        self.out = (n + lo + hi - d * (k - 1) - 1) // s + 1
        self.phase = [(d * i) % s for i in range(k)]
        self.offset = [(d * i) // s for i in range(k)]
        self.length = self.out + max(self.offset) + extra    # pixels of one phase

    def window(self, a):
        """(phase slice, strided input slice) of the pixels m of phase a inside the input."""
        m0 = max(0, -((a - self.lo) // self.s))     # ceil((lo - a) / s)
        m1 = min(self.length, (self.n - 1 + self.lo - a) // self.s + 1)
        if m1 <= m0:
            return None
        r0 = self.s * m0 + a - self.lo
        return slice(m0, m1), slice(r0, r0 + self.s * (m1 - m0 - 1) + 1, self.s)


class Geometry:
    """Kernel, stride, pads, dilation and the sizes of one depthwise convolution.

    A plane is stored as its s x s phases, each (Hq, Wq) and flattened: then output pixel
    (o, q) of tap (i, j) sits at o Wq + q + offset(i, j) of one phase, and a tap is a multiply-
    add of one contiguous run of oh Wq values (the output in rows of Wq, whose last Wq - ow
    columns are scratch). One more phase row keeps the last tap's run inside the phase.
    """

    def __init__(self, ksize, stride, pads, dilate, insize):
        self.ksize, self.stride, self.pads, self.dilate = ksize, stride, pads, dilate
        self.insize = insize
        self.h, self.w = (_Axis(n, k, s, p, d, extra) for n, k, s, p, d, extra
                          in zip(insize, ksize, stride, pads, dilate, (1, 0)))
        self.outsize = (self.h.out, self.w.out)
        self.run = self.h.out * self.w.length                # L: values per tap
        sx = stride[1]
        # (i, j, phase index, flat offset) of every tap
        self.taps = [(i, j, self.h.phase[i] * sx + self.w.phase[j],
                      self.h.offset[i] * self.w.length + self.w.offset[j])
                     for i in range(ksize[0]) for j in range(ksize[1])]
        self.tap_table = numpy.array(self.taps, numpy.int64)      # for depthwise_jit


def _plane_weights(W, N):
    """W (C, 1, kh, kw) repeated for each sample: (N C, kh, kw), row n C + c = W[c]."""
    xp = backend.get_array_module(W)
    C, _, kh, kw = W.shape
    return xp.broadcast_to(W.reshape(1, C, kh, kw), (N, C, kh, kw)).reshape(N * C, kh, kw)


def _phases(x, g, xp):
    """x (B, H, W) -> its padded phases (B, sy sx, Hq Wq)."""
    sy, sx = g.stride
    B = x.shape[0]
    ph = xp.zeros((B, sy, sx, g.h.length, g.w.length), x.dtype)
    for a in range(sy):
        for b in range(sx):
            wa, wb = g.h.window(a), g.w.window(b)
            if wa is not None and wb is not None:
                ph[:, a, b, wa[0], wb[0]] = x[:, wa[1], wb[1]]
    return ph.reshape(B, sy * sx, -1)


def _unphase(ph, g, xp):
    """The adjoint of _phases: (B, sy sx, Hq Wq) -> (B, H, W)."""
    sy, sx = g.stride
    B = ph.shape[0]
    ph = ph.reshape(B, sy, sx, g.h.length, g.w.length)
    x = xp.zeros((B,) + tuple(g.insize), ph.dtype)
    for a in range(sy):
        for b in range(sx):
            wa, wb = g.h.window(a), g.w.window(b)
            if wa is not None and wb is not None:
                x[:, wa[1], wb[1]] = ph[:, a, b, wa[0], wb[0]]   # each pixel is in one phase
    return x


def _rows(y, g, xp):
    """y (B, oh, ow) -> (B, oh Wq): rows of Wq with zeros after ow."""
    out = xp.zeros((y.shape[0], g.h.out, g.w.length), y.dtype)
    out[:, :, :g.w.out] = y
    return out.reshape(y.shape[0], -1)


def _blocks(fn, planes, plane_bytes, xp):
    """fn(lo, hi) over blocks of about 1 MB of planes (all at once on CuPy), in this thread.

    Not in im2col's thread pool: alone the op gains from it (1.7x on (8, 672, 14, 14), k = 5),
    but between the 1x1 convolutions of EfficientNet-lite0, whose BLAS threads are still
    spinning, it gains nothing (features of 4 x 50 images: 8.4 s with the pool, 8.0 s without,
    2 shared cores), and one thread is the safer neighbour on a busy machine.
    """
    if xp is not numpy:
        return fn(0, planes)
    per = max(1, _im._CHUNK_BYTES // plane_bytes)
    for lo in range(0, planes, per):
        fn(lo, min(planes, lo + per))


def _plane_bytes(g, itemsize):
    return (g.stride[0] * g.stride[1] * g.h.length * g.w.length + 2 * g.run) * itemsize


def _conv(x, W, g):
    """y = conv(x, W) for x (N, C, H, W)."""
    xp = backend.get_array_module(x)
    N, C, H, Wd = x.shape
    oh, ow = g.outsize
    xs, wp = x.reshape(N * C, H, Wd), _plane_weights(W, N)
    y = xp.empty((N * C, oh, ow), x.dtype)
    L, compiled = g.run, jit.takes(x, W)

    def run(lo, hi):
        ph = _phases(xs[lo:hi], g, xp)
        if compiled:
            acc = numpy.empty((hi - lo, L), x.dtype)
            depthwise_jit.forward(ph, numpy.ascontiguousarray(wp[lo:hi]), g.tap_table, L, acc)
        else:
            acc = xp.zeros((hi - lo, L), x.dtype)
            tmp = xp.empty((hi - lo, L), x.dtype)
            for i, j, p, off in g.taps:
                xp.multiply(ph[:, p, off:off + L], wp[lo:hi, i, j, None], out=tmp)
                acc += tmp
        y[lo:hi] = acc.reshape(hi - lo, oh, -1)[:, :, :ow]

    _blocks(run, N * C, _plane_bytes(g, x.itemsize), xp)
    return y.reshape(N, C, oh, ow)


def _deconv(gy, W, g):
    """gx = conv(., W)^T gy, of the input's size."""
    xp = backend.get_array_module(gy)
    N, C, oh, ow = gy.shape
    H, Wd = g.insize
    gs, wp = gy.reshape(N * C, oh, ow), _plane_weights(W, N)
    gx = xp.empty((N * C, H, Wd), gy.dtype)
    L, P = g.run, g.stride[0] * g.stride[1]
    compiled = jit.takes(gy, W)

    def run(lo, hi):
        rows = _rows(gs[lo:hi], g, xp)
        if compiled:
            ph = numpy.empty((hi - lo, P, g.h.length * g.w.length), gy.dtype)
            depthwise_jit.adjoint(rows, numpy.ascontiguousarray(wp[lo:hi]), g.tap_table, L, ph)
        else:
            ph = xp.zeros((hi - lo, P, g.h.length * g.w.length), gy.dtype)
            tmp = xp.empty((hi - lo, L), gy.dtype)
            for i, j, p, off in g.taps:
                xp.multiply(rows, wp[lo:hi, i, j, None], out=tmp)
                ph[:, p, off:off + L] += tmp
        gx[lo:hi] = _unphase(ph, g, xp)

    _blocks(run, N * C, _plane_bytes(g, gy.itemsize), xp)
    return gx.reshape(N, C, H, Wd)


def _grad_w(x, gy, g):
    """gW[c, i, j] = sum over n and the output of gy times tap (i, j)'s window of x."""
    xp = backend.get_array_module(x)
    N, C, H, Wd = x.shape
    oh, ow = g.outsize
    kh, kw = g.ksize
    xs, gs = x.reshape(N * C, H, Wd), gy.reshape(N * C, oh, ow)
    gwp = xp.empty((N * C, kh, kw), x.dtype)
    L, compiled = g.run, jit.takes(x, gy)

    def run(lo, hi):
        ph = _phases(xs[lo:hi], g, xp)
        rows = _rows(gs[lo:hi], g, xp)                          # the scratch columns are 0
        if compiled:
            depthwise_jit.weights(ph, rows, g.tap_table, L, gwp[lo:hi])
            return
        for i, j, p, off in g.taps:     # one dot product per plane
            gwp[lo:hi, i, j] = xp.matmul(ph[:, None, p, off:off + L], rows[:, :, None])[:, 0, 0]

    _blocks(run, N * C, _plane_bytes(g, x.itemsize), xp)
    return gwp.reshape(N, C, 1, kh, kw).sum(axis=0)


class DepthwiseConvolution2D(FunctionNode):
    """(x, W[, b]) -> conv(x, W) + b, one filter per channel."""

    def __init__(self, geometry):
        self.g = geometry

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        y = _conv(x, W, self.g)
        if len(inputs) == 3:
            y += inputs[2].reshape(1, -1, 1, 1)
        return y,

    def backward(self, indexes, grad_outputs):
        x, W = self.get_retained_inputs()
        gy, = grad_outputs
        gx = DepthwiseDeconvolution2D(self.g).apply((gy, W))[0] if 0 in indexes else None
        gW = DepthwiseGradW(self.g).apply((x, gy))[0] if 1 in indexes else None
        gb = _sum(gy, axis=(0, 2, 3)) if 2 in indexes else None
        return (gx, gW, gb)[:len(self.inputs)]


class DepthwiseDeconvolution2D(FunctionNode):
    """(gy, W) -> conv(., W)^T gy: the x-gradient of a depthwise convolution."""

    def __init__(self, geometry):
        self.g = geometry

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        gy, W = inputs
        return _deconv(gy, W, self.g),

    def backward(self, indexes, grad_outputs):
        gy, W = self.get_retained_inputs()
        ggx, = grad_outputs
        # <deconv(gy, W), ggx> = <gy, conv(ggx, W)> = <W, grad_w(ggx, gy)>
        ggy = DepthwiseConvolution2D(self.g).apply((ggx, W))[0] if 0 in indexes else None
        gW = DepthwiseGradW(self.g).apply((ggx, gy))[0] if 1 in indexes else None
        return ggy, gW


class DepthwiseGradW(FunctionNode):
    """(x, gy) -> the W-gradient of a depthwise convolution."""

    def __init__(self, geometry):
        self.g = geometry

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, gy = inputs
        return _grad_w(x, gy, self.g),

    def backward(self, indexes, grad_outputs):
        x, gy = self.get_retained_inputs()
        ggW, = grad_outputs
        # <grad_w(x, gy), ggW> = <gy, conv(x, ggW)> = <x, deconv(gy, ggW)>
        gx = DepthwiseDeconvolution2D(self.g).apply((gy, ggW))[0] if 0 in indexes else None
        ggy = DepthwiseConvolution2D(self.g).apply((x, ggW))[0] if 1 in indexes else None
        return gx, ggy


def _int(v, what):
    if not hasattr(v, "__index__") or isinstance(v, bool):
        raise ValueError(f"depthwise_convolution_2d: {what} must be an int, got {v!r}")
    return int(v)


def _pads(pad):
    """((top, bottom), (left, right)) from p, (ph, pw) or ((top, bottom), (left, right))."""
    if hasattr(pad, "__index__"):
        pad = (pad, pad)
    if len(pad) != 2:
        raise ValueError(f"depthwise_convolution_2d: pad must be p, (ph, pw) or "
                         f"((top, bottom), (left, right)), got {pad!r}")
    return tuple((_int(p, "pad"),) * 2 if hasattr(p, "__index__") else
                 tuple(_int(q, "pad") for q in p) for p in pad)


def _pair(v, what):
    v = (v, v) if hasattr(v, "__index__") else tuple(v)
    if len(v) != 2:
        raise ValueError(f"depthwise_convolution_2d: {what} must be an int or a pair, got {v!r}")
    return tuple(_int(q, what) for q in v)


def depthwise_convolution_2d(x, W, b=None, stride=1, pad=0, dilate=1):
    """Convolution of each channel of x (N, C, H, W) with its own filter W (C, 1, kh, kw).

    pad is p, (ph, pw) or ((top, bottom), (left, right)): the pads of the two sides may differ.
    """
    xs, ws = as_array(x).shape, as_array(W).shape
    if len(xs) != 4 or len(ws) != 4 or ws[:2] != (xs[1], 1):
        raise ValueError(f"depthwise_convolution_2d: x {xs} and W {ws} must be (N, C, H, W) "
                         "and (C, 1, kh, kw)")
    if b is not None and as_array(b).shape != (xs[1],):
        raise ValueError(f"depthwise_convolution_2d: b {as_array(b).shape} must be ({xs[1]},)")
    dtypes = {as_array(v).dtype for v in (x, W, b) if v is not None}
    if len(dtypes) > 1:
        raise TypeError(f"depthwise_convolution_2d: x, W and b must share one dtype, got "
                        f"{sorted(map(str, dtypes))}")
    s, p, d = _pair(stride, "stride"), _pads(pad), _pair(dilate, "dilate")
    if len(p) != 2 or any(len(q) != 2 for q in p):
        raise ValueError(f"depthwise_convolution_2d: bad pad {pad!r}")
    if min(s) < 1 or min(d) < 1 or min(min(q) for q in p) < 0:
        raise ValueError(f"depthwise_convolution_2d: stride {s} and dilate {d} must be >= 1, "
                         f"pads {p} >= 0")
    g = Geometry(ws[2:], s, p, d, xs[2:])
    if min(g.outsize) < 1:
        raise ValueError(f"depthwise_convolution_2d: x {xs} and W {ws} with stride {s}, pads "
                         f"{p}, dilate {d} give an empty output {g.outsize}")
    inputs = (x, W) if b is None else (x, W, b)
    return DepthwiseConvolution2D(g).apply(inputs)[0]
