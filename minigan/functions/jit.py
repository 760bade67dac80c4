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
