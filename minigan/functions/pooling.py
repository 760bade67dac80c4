"""Pooling over the last two axes: average, adaptive average, max; and the linear maps they share.

Average pooling, adaptive pooling, nearest upsampling and bilinear resizing are all linear maps of
each (H, W) plane that act on rows and columns separately: y = A_h x A_w^T. `Separable` applies
that with two matrix products; its backward is the same node with the transposed matrices
(y = A_h^T gy A_w), so derivatives of every order are exact. Tiles (kernel == stride, no pad) and
integer upsampling take fast paths of strided slices, `BlockSum` and its adjoint `Repeat`. Max
pooling records each window's argmax; its backward scatters to the argmax, and the backward of
that gathers from it again.
"""
import functools

import numpy

from .. import backend
from ..core import FunctionNode, as_variable
from . import jit
from .array import get_item


@functools.lru_cache(maxsize=256)
def _matrix(spec, dtype, device):
    """The (n_out, n_in) matrix spec[0](*spec[1:]), built once per spec, dtype and device."""
    m = spec[0](*spec[1:]).astype(dtype)
    if device < 0:
        m.flags.writeable = False          # shared by every call: never modified
        return m
    cupy = backend.get_cupy(device)
    with cupy.cuda.Device(device):
        return cupy.asarray(m)


class Separable(FunctionNode):
    """y = A_h x A_w^T on the last two axes, with A = spec[0](*spec[1:]) (transposed if asked)."""

    def __init__(self, spec_h, spec_w, transpose=False):
        self.spec_h, self.spec_w, self.transpose = spec_h, spec_w, transpose

    def forward(self, inputs):
        x, = inputs
        dev = backend.device_of(x)
        mh = _matrix(self.spec_h, x.dtype.str, dev)
        mw = _matrix(self.spec_w, x.dtype.str, dev)
        if self.transpose:
            mh, mw = mh.T, mw.T
        *lead, h, w = x.shape
        oh, ow = mh.shape[0], mw.shape[0]
        if h * w * ow + oh * h * ow <= oh * h * w + oh * w * ow:     # columns first is cheaper
            y = mh @ (x.reshape(-1, w) @ mw.T).reshape(-1, h, ow)
        else:
            y = (mh @ x.reshape(-1, h, w)).reshape(-1, w) @ mw.T
        return y.reshape(*lead, oh, ow),

    def backward(self, indexes, grad_outputs):
        return Separable(self.spec_h, self.spec_w, not self.transpose).apply(grad_outputs)


def _phase_sum(x, k, axis):
    """sum_j x[..., j::k] along axis -1 or -2, as a new array (k strided additions)."""
    phase = (lambda j: x[..., j::k]) if axis == -1 else (lambda j: x[..., j::k, :])
    y = phase(0) + phase(1) if k > 1 else phase(0).copy()
    for j in range(2, k):
        y += phase(j)
    return y


class BlockSum(FunctionNode):
    """scale * the sum over each non-overlapping kh x kw block (H, W divisible by kh, kw)."""

    def __init__(self, kh, kw, scale):
        self.kh, self.kw, self.scale = kh, kw, scale

    def forward(self, inputs):
        x, = inputs
        if jit.takes(x):            # one threaded pass, the same sums in the same order
            return jit.block_sum(x, self.kh, self.kw, self.scale),
        # strided additions: numpy's sum over short axes (reshape(..., k).sum(-1)) is ~10x slower
        y = _phase_sum(_phase_sum(x, self.kw, -1), self.kh, -2)
        if self.scale != 1:
            y *= x.dtype.type(self.scale)
        return y,

    def backward(self, indexes, grad_outputs):
        return Repeat(self.kh, self.kw, self.scale).apply(grad_outputs)


class Repeat(FunctionNode):
    """scale * each pixel repeated into a kh x kw block (nearest upsampling): BlockSum's adjoint."""

    def __init__(self, kh, kw, scale=1):
        self.kh, self.kw, self.scale = kh, kw, scale

    def forward(self, inputs):
        x, = inputs
        # one threaded pass: each value read once, each row written; on rows of 16 and more
        # (below that the compiled loop's cost per row makes it slower than NumPy's copies)
        if x.shape[-1] >= 16 and jit.takes(x):
            return jit.repeat(x, self.kh, self.kw, self.scale),
        xp = backend.get_array_module(x)
        *lead, h, w = x.shape
        if self.scale != 1:
            x = x * x.dtype.type(self.scale)
        t = xp.empty((*lead, h, w * self.kw), x.dtype)      # strided writes, as in BlockSum
        for j in range(self.kw):
            t[..., j::self.kw] = x
        y = xp.empty((*lead, h * self.kh, w * self.kw), x.dtype)
        for i in range(self.kh):
            y[..., i::self.kh, :] = t
        return y,

    def backward(self, indexes, grad_outputs):
        return BlockSum(self.kh, self.kw, self.scale).apply(grad_outputs)


def _window_matrix(n_in, n_out, k, s, p, include_pad=True):
    """Row i averages window [i s - p, i s - p + k): 1/k on its in-range part (pads count 0),
    or, without include_pad, 1/(the number of in-range cells), so the pads are left out."""
    start = numpy.arange(n_out)[:, None] * s - p
    j = numpy.arange(n_in)
    inside = (j >= start) & (j < start + k)
    if include_pad:
        return inside / k
    return inside / numpy.maximum(inside.sum(axis=1, keepdims=True), 1)


def _adaptive_matrix(n_in, n_out):
    """PyTorch's adaptive bins: row i averages [floor(i n_in / n_out), ceil((i+1) n_in / n_out))."""
    i = numpy.arange(n_out)[:, None]
    start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
    j = numpy.arange(n_in)
    return ((j >= start) & (j < end)) / (end - start)


def _pair(v, name, what):
    v = (v, v) if numpy.isscalar(v) else tuple(v)
    if len(v) != 2 or not all(isinstance(n, (int, numpy.integer)) for n in v):
        raise ValueError(f"{name}: {what} must be an int or a pair of ints, got {v}")
    return tuple(int(n) for n in v)


def _check_4d(name, x):
    if x.ndim != 4:
        raise ValueError(f"{name}: x must be (N, C, H, W), got shape {x.shape}")


def _windows(name, x, ksize, stride, pad):
    """(kh, kw), (sh, sw), (ph, pw) and the output size (floor mode), or a ValueError."""
    _check_4d(name, x)
    k = _pair(ksize, name, "ksize")
    s = _pair(k if stride is None else stride, name, "stride")
    p = _pair(pad, name, "pad")
    if min(k) < 1 or min(s) < 1 or min(p) < 0:
        raise ValueError(f"{name}: need ksize, stride >= 1 and pad >= 0, got {k}, {s}, {p}")
    out = tuple((n + 2 * pp - kk) // ss + 1 for n, kk, ss, pp in zip(x.shape[2:], k, s, p))
    if min(out) < 1:
        raise ValueError(f"{name}: input {x.shape} is smaller than the window {k} (pad {p})")
    return k, s, p, out


def average_pooling_2d(x, ksize, stride=None, pad=0, count_include_pad=True):
    """Mean over each window; padded cells count as zeros (as Chainer), or with
    count_include_pad=False are left out (TensorFlow's "SAME" average, Inception-v3's FID blocks).

    Without the pads the divisor of window (i, j) is the count of its real pixels, rows_i cols_j:
    a window is a rectangle, so it meets the image in one, and the map stays separable.
    """
    x = as_variable(x)
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = _windows("average_pooling_2d", x, ksize, stride, pad)
    if (kh, kw) == (sh, sw) and ph == pw == 0:        # tiles: crop the remainder, sum blocks
        if x.shape[2:] != (oh * kh, ow * kw):
            x = get_item(x, (Ellipsis, slice(0, oh * kh), slice(0, ow * kw)))
        return BlockSum(kh, kw, 1.0 / (kh * kw)).apply((x,))[0]
    h, w = x.shape[2:]
    inc = bool(count_include_pad)
    return Separable((_window_matrix, h, oh, kh, sh, ph, inc),
                     (_window_matrix, w, ow, kw, sw, pw, inc)).apply((x,))[0]


def adaptive_average_pooling_2d(x, output_size):
    """Average pooling to a given (oh, ow), with PyTorch's bins for non-divisible sizes."""
    x = as_variable(x)
    _check_4d("adaptive_average_pooling_2d", x)
    oh, ow = _pair(output_size, "adaptive_average_pooling_2d", "output_size")
    h, w = x.shape[2:]
    if min(oh, ow) < 1:
        raise ValueError(f"adaptive_average_pooling_2d: output_size {(oh, ow)} must be positive")
    if h % oh == 0 and w % ow == 0:
        kh, kw = h // oh, w // ow
        return BlockSum(kh, kw, 1.0 / (kh * kw)).apply((x,))[0]
    return Separable((_adaptive_matrix, h, oh), (_adaptive_matrix, w, ow)).apply((x,))[0]


def _offsets(k, s, out):
    """(o, index) per kernel offset o = i kw + j: the strided view of the padded input it sees."""
    (kh, kw), (sh, sw), (oh, ow) = k, s, out
    for i in range(kh):
        for j in range(kw):
            yield i * kw + j, (Ellipsis, slice(i, i + sh * (oh - 1) + 1, sh),
                               slice(j, j + sw * (ow - 1) + 1, sw))


def _pad(x, p, value):
    if not any(p):
        return x
    xp = backend.get_array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=value)


class MaxPooling2D(FunctionNode):
    """Max over each window; the gradient goes to the window's first maximum (as PyTorch)."""

    def __init__(self, k, s, p, out):
        self.k, self.s, self.p, self.out = k, s, p, out

    def forward(self, inputs):
        x = _pad(inputs[0], self.p, inputs[0].dtype.type(-numpy.inf))     # padding never wins
        xp = backend.get_array_module(x)
        # running max and argmax over one view per kernel offset (never a loop over pixels);
        # strided views are copied first: numpy's strided loops run ~10x slower
        y = arg = None
        for o, index in _offsets(self.k, self.s, self.out):
            if y is None:
                y = x[index].copy()
                arg = xp.zeros(y.shape, numpy.int8 if self.k[0] * self.k[1] < 128 else numpy.int32)
                continue
            v = xp.ascontiguousarray(x[index])
            better = v > y                                  # strict: the first maximum stays
            xp.maximum(y, v, out=y)
            xp.maximum(arg, better * arg.dtype.type(o), out=arg)   # o exceeds earlier offsets
        self.arg = arg
        return y,

    def backward(self, indexes, grad_outputs):
        return Scatter(self.arg, self.k, self.s, self.p, self.inputs[0].shape).apply(grad_outputs)


class Scatter(FunctionNode):
    """gx: each gy added at its window's argmax (zeros elsewhere); the adjoint of Gather."""

    def __init__(self, arg, k, s, p, shape):
        self.arg, self.k, self.s, self.p, self.shape = arg, k, s, p, shape

    def forward(self, inputs):
        gy, = inputs
        xp = backend.get_array_module(gy)
        n, c, h, w = self.shape
        ph, pw = self.p
        overlap = self.s[0] < self.k[0] or self.s[1] < self.k[1]
        gx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), gy.dtype)
        for o, index in _offsets(self.k, self.s, gy.shape[2:]):
            if overlap:                                     # windows share pixels: accumulate
                gx[index] += gy * (self.arg == o)
            else:                                           # a pixel is in one view at most
                gx[index] = gy * (self.arg == o)
        return gx[:, :, ph:ph + h, pw:pw + w].copy() if ph or pw else gx,

    def backward(self, indexes, grad_outputs):
        return Gather(self.arg, self.k, self.s, self.p).apply(grad_outputs)


class Gather(FunctionNode):
    """y: for each window, x at its argmax."""

    def __init__(self, arg, k, s, p):
        self.arg, self.k, self.s, self.p = arg, k, s, p

    def forward(self, inputs):
        x = _pad(inputs[0], self.p, 0)
        xp = backend.get_array_module(x)
        y = xp.zeros(self.arg.shape, x.dtype)
        for o, index in _offsets(self.k, self.s, self.arg.shape[2:]):
            y += x[index] * (self.arg == o)
        return y,

    def backward(self, indexes, grad_outputs):
        shape = self.inputs[0].shape
        return Scatter(self.arg, self.k, self.s, self.p, shape).apply(grad_outputs)


def max_pooling_2d(x, ksize, stride=None, pad=0):
    """Max over each window (stride defaults to ksize; floor output size; pad <= ksize / 2)."""
    x = as_variable(x)
    k, s, p, out = _windows("max_pooling_2d", x, ksize, stride, pad)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"max_pooling_2d: pad {p} must be at most half of ksize {k}")
    return MaxPooling2D(k, s, p, out).apply((x,))[0]
