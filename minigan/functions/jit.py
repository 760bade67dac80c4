"""Compiled CPU loops through numba (the optional `minigan[jit]` extra).

Where NumPy needs several broadcast passes and temporaries over one array and a compiled loop
needs one or two, the CPU path may call a loop compiled here. The NumPy code stays the
reference (and the default without numba); MINIGAN_JIT=0 turns the loops off; tests run both
and compare them. Used: normalization (norm_jit.py), depthwise convolution's taps
(depthwise_jit.py), the activations' element-wise passes, Adam's update and Winograd's tile
transforms (winograd.py).
"""
import math
import os

import numpy

from .. import backend
from .im2col import _run

try:
    import numba
except ImportError:         # the extra is absent: the NumPy passes run
    numba = None

# reassociation (vector sums) and contraction (FMA) only: NaN and inf still propagate
FLAGS = {"reassoc", "contract", "nsz"}


def enabled():
    """True when the compiled loops run: numba imports and MINIGAN_JIT is not "0"."""
    return numba is not None and os.environ.get("MINIGAN_JIT", "1") != "0"


def takes(*arrays):
    """True where the loops take these arrays: compiled loops on, plain NumPy float32/64."""
    return enabled() and all(backend.is_host_float(a) for a in arrays)


_compiled = {}


def compiled(fn, fastmath=FLAGS):
    """fn compiled by numba on first use (nogil, cached on disk where it can be)."""
    if fn not in _compiled:
        # error_model="numpy": x / 0 gives inf or NaN as in NumPy, and without Python's
        # zero-division check a loop that divides can be vectorized
        _compiled[fn] = numba.njit(nogil=True, cache=True, fastmath=fastmath,
                                   error_model="numpy")(fn)
    return _compiled[fn]


def over_blocks(fn, n, item_bytes, total_bytes):
    """fn(lo, hi) over range(n), threaded for big arrays (the loops release the GIL)."""
    _run(fn, n, item_bytes, total_bytes, numpy)


# -- element-wise loops (flat, contiguous arrays of one dtype) -----------------------------------
# Each loop runs over slices [lo, hi) from index 0: LLVM then knows no index is negative (numba
# wraps negative ones) and vectorizes; over range(lo, hi) it emits scalar code.

def _leaky_relu(x, slope, y, lo, hi):
    """y = x where x >= 0, else slope x."""
    x, y = x[lo:hi], y[lo:hi]
    for i in range(y.size):
        y[i] = x[i] if x[i] >= 0 else x[i] * slope


def _leaky_relu_grad(x, gy, slope, gx, lo, hi):
    """gx = gy where x >= 0, else slope gy."""
    x, gy, gx = x[lo:hi], gy[lo:hi], gx[lo:hi]
    for i in range(gx.size):
        gx[i] = gy[i] if x[i] >= 0 else gy[i] * slope


def _relu_grad(y, gy, gx, lo, hi):
    """gx = gy [y > 0] (a product, so inf * 0 gives NaN as NumPy's)."""
    y, gy, gx = y[lo:hi], gy[lo:hi], gx[lo:hi]
    for i in range(gx.size):
        gx[i] = gy[i] * (1.0 if y[i] > 0 else 0.0)


def _erf(x, y, lo, hi):
    """y = erf(x) (libm's, as math.erf)."""
    x, y = x[lo:hi], y[lo:hi]
    for i in range(y.size):
        y[i] = math.erf(x[i])


def elementwise(fn, out_like, *args):
    """A new array like out_like, filled by the loop fn(*args, out, lo, hi) over flat blocks."""
    arrays = [numpy.ascontiguousarray(a).reshape(-1) if isinstance(a, numpy.ndarray) else a
              for a in args]
    out = numpy.empty_like(out_like, order="C")
    flat = out.reshape(-1)
    run = compiled(fn)
    n_arrays = 1 + sum(isinstance(a, numpy.ndarray) for a in arrays)     # with out
    over_blocks(lambda lo, hi: run(*arrays, flat, lo, hi), flat.size, flat.itemsize,
                flat.nbytes * n_arrays)
    return out


def leaky_relu(x, slope):
    return elementwise(_leaky_relu, x, x, x.dtype.type(slope))


def leaky_relu_grad(x, gy, slope):
    return elementwise(_leaky_relu_grad, gy, x, gy, gy.dtype.type(slope))


def relu_grad(y, gy):
    return elementwise(_relu_grad, gy, y, gy)


def erf(x):
    return elementwise(_erf, x, x)


# -- GLU: the halves of x as rows (lead, 2, rest), a = x3[:, 0], b = x3[:, 1] ----------------------

def _glu(x3, s, half, y, lo, hi):
    """s <- s half + half (s held tanh(b half)), y = a s, as GLU.forward's NumPy passes; over
    flat items [lo, hi) of the (lead, rest) rows."""
    rest = s.shape[1]
    for r in range(lo // rest, (hi - 1) // rest + 1):
        i0, i1 = max(lo - r * rest, 0), min(hi - r * rest, rest)
        a, sr, yr = x3[r, 0, i0:i1], s[r, i0:i1], y[r, i0:i1]
        for i in range(sr.size):
            v = sr[i] * half + half
            sr[i] = v
            yr[i] = a[i] * v


def _glu_grad(x3, s, gy, one, gx3, lo, hi):
    """ga = gy s, gb = (1 - s) ga a, as GLU.backward's NumPy passes (the rows as in _glu)."""
    rest = s.shape[1]
    for r in range(lo // rest, (hi - 1) // rest + 1):
        i0, i1 = max(lo - r * rest, 0), min(hi - r * rest, rest)
        a, sr, g = x3[r, 0, i0:i1], s[r, i0:i1], gy[r, i0:i1]
        ga, gb = gx3[r, 0, i0:i1], gx3[r, 1, i0:i1]
        for i in range(sr.size):
            u = g[i] * sr[i]
            ga[i] = u
            gb[i] = (one - sr[i]) * u * a[i]


def glu(x3):
    """GLU's forward on x3 (lead, 2, rest): (y, s), both (lead, rest)."""
    lead, _, rest = x3.shape
    s, y = numpy.empty((lead, rest), x3.dtype), numpy.empty((lead, rest), x3.dtype)
    run = compiled(_glu, fastmath=False)           # no FMA: the NumPy passes' bits
    half = x3.dtype.type(0.5)

    def block(lo, hi):
        for r in range(lo // rest, (hi - 1) // rest + 1):
            i0, i1 = max(lo - r * rest, 0), min(hi - r * rest, rest)
            t = s[r, i0:i1]                 # tanh(b / 2) by NumPy (vectorized; no libm loop)
            numpy.multiply(x3[r, 1, i0:i1], half, out=t)
            numpy.tanh(t, out=t)
        run(x3, s, half, y, lo, hi)
    over_blocks(block, s.size, s.itemsize, 4 * s.nbytes)
    return y, s


def glu_grad(x3, s, gy):
    """GLU's gradient (lead, 2, rest) from x3, s and gy (lead, rest)."""
    gx3 = numpy.empty(x3.shape, gy.dtype)
    run = compiled(_glu_grad, fastmath=False)
    one = s.dtype.type(1)
    over_blocks(lambda lo, hi: run(x3, s, gy, one, gx3, lo, hi), s.size, s.itemsize,
                5 * s.nbytes)
    return gx3


# -- nearest upsampling (pooling.Repeat) and its adjoint, the block sum (pooling.BlockSum) --------

def _repeat(x2, kh, kw, scale, y2, lo, hi):
    """Row r of x2 (R, w) times scale, each value kw times, as kh rows: row r of y2 (R, kh kw w)."""
    w = x2.shape[1]
    n = kw * w
    for r in range(lo, hi):
        xr, yr = x2[r], y2[r]
        if kw == 2:                 # the upsampling's case, written out: LLVM vectorizes it
            for j in range(w):
                v = xr[j] * scale
                yr[2 * j] = v
                yr[2 * j + 1] = v
        else:
            for j in range(w):
                v = xr[j] * scale
                for t in range(kw):
                    yr[j * kw + t] = v
        for i in range(1, kh):
            out = yr[i * n:(i + 1) * n]
            for j in range(n):
                out[j] = yr[j]


def _block_sum(x2, kh, kw, scale, y2, lo, hi):
    """Row r of y2 (R, ow): scale * each kh x kw block of the kh image rows in row r of x2,
    summed along w first, then down the rows, left to right (BlockSum's NumPy order)."""
    ow = y2.shape[1]
    width = ow * kw
    for r in range(lo, hi):
        xr, yr = x2[r], y2[r]
        if kh == kw == 2:           # the 2 x 2 pooling's case, written out
            x1 = xr[width:]
            for j in range(ow):
                yr[j] = ((xr[2 * j] + xr[2 * j + 1]) + (x1[2 * j] + x1[2 * j + 1])) * scale
            continue
        for j in range(ow):
            acc = xr[j * kw]
            for t in range(1, kw):
                acc += xr[j * kw + t]
            for i in range(1, kh):
                s = xr[i * width + j * kw]
                for t in range(1, kw):
                    s += xr[i * width + j * kw + t]
                acc += s
            yr[j] = acc * scale


def repeat(x, kh, kw, scale):
    """x (..., h, w) -> (..., kh h, kw w): scale x, each pixel a kh x kw block."""
    *lead, h, w = x.shape
    x2 = numpy.ascontiguousarray(x).reshape(-1, w)
    y = numpy.empty((*lead, h * kh, w * kw), x.dtype)
    y2 = y.reshape(x2.shape[0], kh * kw * w)
    run, t = compiled(_repeat, fastmath=False), x.dtype.type(scale)
    over_blocks(lambda lo, hi: run(x2, kh, kw, t, y2, lo, hi), x2.shape[0], y2[0].nbytes,
                y.nbytes)
    return y


def block_sum(x, kh, kw, scale):
    """x (..., kh oh, kw ow) -> (..., oh, ow): scale * the sum of each block."""
    *lead, h, w = x.shape
    oh, ow = h // kh, w // kw
    x2 = numpy.ascontiguousarray(x).reshape(-1, kh * w)
    y = numpy.empty((*lead, oh, ow), x.dtype)
    y2 = y.reshape(-1, ow)
    run, t = compiled(_block_sum, fastmath=False), x.dtype.type(scale)
    over_blocks(lambda lo, hi: run(x2, kh, kw, t, y2, lo, hi), x2.shape[0], x2[0].nbytes,
                x.nbytes)
    return y


# -- noise injection (noise.ScaledNoise): y = x + w noise, w per channel, noise per image ----------

def _scaled_noise(x3, w, n2, y3, lo, hi):
    """Rows lo..hi of (N C, S): y[n, c] = x[n, c] + w[c] noise[n] (the product rounded first,
    as NumPy's passes)."""
    C = x3.shape[1]
    for r in range(lo, hi):
        n, c = r // C, r % C
        a, nz, y = x3[n, c], n2[n], y3[n, c]
        wc = w[c]
        for i in range(y.size):
            y[i] = a[i] + wc * nz[i]


def scaled_noise(x, w, noise):
    """x (N, C, H, W) + w (C,) * noise (N, 1, H, W) in one threaded pass."""
    N, C, H, W = x.shape
    x3 = numpy.ascontiguousarray(x).reshape(N, C, H * W)
    n2 = numpy.ascontiguousarray(noise, x.dtype).reshape(N, H * W)
    y = numpy.empty((N, C, H, W), x.dtype)
    run = compiled(_scaled_noise, fastmath=False)
    w = numpy.ascontiguousarray(w, x.dtype)
    over_blocks(lambda lo, hi: run(x3, w, n2, y.reshape(N, C, H * W), lo, hi), N * C,
                H * W * x.itemsize, 2 * y.nbytes)
    return y


# -- Adam's update: one pass over p, g, m, v instead of ten NumPy passes over a block --------------

def _adam(p, g, m, v, c1, c2, step, eps_hat, shrink, lo, hi):
    """Adam.update_one's NumPy passes, operation for operation (so the bits are the same)."""
    p, g, m, v = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
    for i in range(p.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * c1
        vi = v[i] + (gi * gi - v[i]) * c2
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * shrink - mi / (math.sqrt(vi) + eps_hat) * step


def _amsgrad(p, g, m, v, vhat, c1, c2, step, eps_hat, shrink, lo, hi):
    """_adam with vhat <- max(vhat, v) in the denominator, NaN winning as in numpy.maximum
    (a loop of its own: one loop with a flag, v standing in for vhat, gave scalar code)."""
    p, g, m, v, vhat = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], vhat[lo:hi]
    for i in range(p.size):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * c1
        vi = v[i] + (gi * gi - v[i]) * c2
        m[i] = mi
        v[i] = vi
        w = vhat[i]
        if not (w >= vi or w != w):
            w = vi
        vhat[i] = w
        p[i] = p[i] * shrink - mi / (math.sqrt(w) + eps_hat) * step


def adam(p, g, m, v, vhat, b1, b2, step, eps_hat, shrink):
    """Adam's step on flat contiguous arrays in place (vhat: AMSGrad's, or None), threaded for
    big parameters."""
    t = p.dtype.type
    # no FMA or reassociation: NumPy's bits
    run = compiled(_adam, fastmath=False) if vhat is None else compiled(_amsgrad, fastmath=False)
    arrays = (p, g, m, v) if vhat is None else (p, g, m, v, vhat)
    args = arrays + (t(1 - b1), t(1 - b2), t(step), t(eps_hat), t(shrink))
    over_blocks(lambda lo, hi: run(*args, lo, hi), p.size, p.itemsize, p.nbytes * len(arrays))
