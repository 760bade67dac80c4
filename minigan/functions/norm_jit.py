"""Batch and instance normalization's plain-array passes, compiled by numba (jit.py).

normalization.py's NumPy passes are the reference; these compute the same thing with each
statistic's rows read twice (sums, then the output) while they sit in cache, where NumPy needs
five broadcast passes and temporaries. Used on the CPU when numba imports and MINIGAN_JIT is not
"0"; the differentiable path (create_graph=True) and CuPy never come here.

Layout: x3 is (N, C, S). A statistic covers the rows (n, c) of one channel for all n (batch
norm, G = 1) or one row each (instance norm, G = N); R = rows per statistic, count = R S.
Sums accumulate in float64 whatever the dtype (reassociated, so LLVM vectorizes them).
"""
import math

import numpy

from .jit import compiled, over_blocks


def _forward_loops(x, gamma, beta, eps, per_sample, y, mean, var, inv, lo, hi):
    """Channels lo..hi: mean, var (two passes: no cancellation), inv_std; y = gamma xhat + beta."""
    N, C, S = x.shape
    G, R = (N, 1) if per_sample else (1, N)
    count = R * S
    for g in range(G):
        for c in range(lo, hi):
            s = 0.0
            for r in range(R):
                for i in range(S):
                    s += x[g + r, c, i]
            m = s / count
            q = 0.0
            for r in range(R):
                for i in range(S):
                    d = x[g + r, c, i] - m
                    q += d * d
            v = q / count
            k = 1.0 / math.sqrt(v + eps)
            t = x.dtype.type                  # the output pass in x's dtype, as in _backward_loops
            m32, a = t(m), t(gamma[c] * k)
            b = beta[c]
            for r in range(R):
                for i in range(S):
                    y[g + r, c, i] = (x[g + r, c, i] - m32) * a + b
            mean[g, c], var[g, c], inv[g, c] = m, v, k


def _backward_loops(x, gy, mean, inv, scale, per_sample, gx, sums, lo, hi):
    """Channels lo..hi: gx = a (gy - mean(gy) - xhat mean(gy xhat)), a = gamma inv_std; and
    sums[g, c] = (sum gy, sum gy xhat) for gbeta and ggamma."""
    N, C, S = x.shape
    G, R = (N, 1) if per_sample else (1, N)
    count = R * S
    for g in range(G):
        for c in range(lo, hi):
            m, k = mean[g, c], inv[g, c]
            s1 = 0.0
            s2 = 0.0
            for r in range(R):
                for i in range(S):
                    e = gy[g + r, c, i]
                    s1 += e
                    s2 += e * (x[g + r, c, i] - m)
            a = scale[g, c]
            m1 = s1 / count                   # mean(gy)
            m2 = s2 * k / count               # mean(gy xhat)
            # the coefficients in x's dtype, as NumPy's passes have them: float64 arithmetic
            # per element made this pass twice as slow in float32
            t = x.dtype.type
            m1, b = t(m1), t(a * k * m2)
            for r in range(R):
                for i in range(S):
                    gx[g + r, c, i] = a * (gy[g + r, c, i] - m1) - b * (x[g + r, c, i] - m)
            sums[g, c, 0], sums[g, c, 1] = s1, s2 * k


def _over_channels(fn, x3):
    """fn(lo, hi) over channel blocks, threaded for big arrays."""
    n, c, s = x3.shape
    over_blocks(fn, c, n * s * x3.itemsize, x3.nbytes)


def forward(lay, x3, gamma, beta, eps):
    """y3 and [mean, var, inv_std, gamma inv_std], each (G, C, 1), as _Layout.forward."""
    n, c, _ = x3.shape
    dt = x3.dtype
    x3 = numpy.ascontiguousarray(x3)
    if gamma is None:       # Standardize: xhat alone
        gamma, beta = numpy.ones(c, dt), numpy.zeros(c, dt)
    g = n if lay.per_sample else 1
    y3 = numpy.empty_like(x3)
    mean, var, inv = (numpy.empty((g, c), dt) for _ in range(3))
    run = compiled(_forward_loops)
    _over_channels(lambda lo, hi: run(x3, gamma, beta, dt.type(eps), lay.per_sample, y3, mean,
                                      var, inv, lo, hi), x3)
    stats = [a[..., None] for a in (mean, var, inv)]
    return y3, stats + [gamma[:, None] * stats[2]]


def backward(lay, x3, gy3, mean, inv, scale):
    """gx3, ggamma, gbeta as _Layout.backward (statistics (G, C, 1) from forward)."""
    n, c, _ = x3.shape
    dt = x3.dtype
    x3, gy3 = numpy.ascontiguousarray(x3), numpy.ascontiguousarray(gy3)
    g = n if lay.per_sample else 1
    # scale is (G or 1, C, 1): gamma inv_std; give every statistic its own value
    mean, inv = mean.reshape(g, c), inv.reshape(g, c)
    scale = numpy.ascontiguousarray(numpy.broadcast_to(scale.reshape(-1, c), (g, c)))
    gx3 = numpy.empty_like(x3)
    sums = numpy.empty((g, c, 2), dt)
    run = compiled(_backward_loops)
    _over_channels(lambda lo, hi: run(x3, gy3, mean, inv, scale, lay.per_sample, gx3, sums,
                                      lo, hi), x3)
    return gx3, sums[..., 1].sum(0), sums[..., 0].sum(0)
