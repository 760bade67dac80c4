"""Batch and instance normalization's plain-array passes, compiled by numba (jit.py).

normalization.py's NumPy passes are the reference; these compute the same thing with each
statistic's rows read twice (sums, then the output) while they sit in cache, where NumPy needs
five broadcast passes and temporaries: the forward, the backward, and NormalizationGrad's
second derivative at the last order (grad_backward). Used on the CPU when numba imports and
MINIGAN_JIT is not "0"; the recorded ops of higher orders and CuPy never come here.

Layout: x3 is (N, C, S). A statistic covers the rows (n, c) of one channel for all n (batch
norm, G = 1) or one row each (instance norm, G = N); R = rows per statistic, count = R S.
Sums accumulate in float64 whatever the dtype (reassociated, so LLVM vectorizes them); the
per-element output passes run in x's dtype, their coefficients rounded once per statistic.
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


def _grad_loops(x, gy, ggx, has_ggx, mean, inv, scale, gamma, R_, B_, per_sample, g_x, g_gy,
                s_inv, lo, hi):
    """NormalizationGrad's second derivative (normalization._grad_backward's formulas) for
    channels lo..hi: five per-statistic sums in one pass (xhat on the fly), then g_gy and g_x
    in one more; s_inv[g, c] = s inv_std for g_gamma. ggx stands in as gy when absent."""
    N, C, S = x.shape
    G, Rr = (N, 1) if per_sample else (1, N)
    n = Rr * S
    t = x.dtype.type
    for g in range(G):
        for c in range(lo, hi):
            mu, k, a = mean[g, c], inv[g, c], scale[g, c]
            s_gy = 0.0
            s_gyx = 0.0
            s_h = 0.0
            s_hx = 0.0
            s_hgy = 0.0
            for r in range(Rr):
                xr, er, hr = x[g + r, c], gy[g + r, c], ggx[g + r, c]
                for i in range(S):
                    xh = (xr[i] - mu) * k
                    e = er[i]
                    s_gy += e
                    s_gyx += e * xh
                    if has_ggx:
                        h = hr[i]
                        s_h += h
                        s_hx += h * xh
                        s_hgy += h * e
            gbar, m, p, q = s_gy / n, s_gyx / n, s_h / n, s_hx / n
            s = s_hgy - n * (gbar * p + m * q) if has_ggx else 0.0
            R, B = R_[c], B_[c]
            k_xhat = R - a * q
            c_gg = t(B - a * p)
            c0 = t(-k * (-a * (p * m + gbar * q) + R * gbar))
            c1 = t(-(k * (R * m - 2 * a * m * q) + gamma[c] * s * k * k / n))
            c_gy, c_h, kx = t(k * k_xhat), t(-k * a * m), t(k_xhat)
            for r in range(Rr):
                xr, er, hr = x[g + r, c], gy[g + r, c], ggx[g + r, c]
                out_x, out_gy = g_x[g + r, c], g_gy[g + r, c]
                for i in range(S):
                    xh = (xr[i] - mu) * k
                    h = hr[i] if has_ggx else t(0)
                    out_gy[i] = xh * kx + h * a + c_gg
                    out_x[i] = er[i] * c_gy + xh * c1 + h * c_h + c0
            s_inv[g, c] = s * k


def grad_backward(lay, x3, gamma, gy3, ggx3, gggamma, ggbeta, mean, inv, scale):
    """(g_x3, g_gamma or None, g_gy3) as normalization._grad_backward, in two passes."""
    n, c, _ = x3.shape
    dt = x3.dtype
    x3, gy3 = numpy.ascontiguousarray(x3), numpy.ascontiguousarray(gy3)
    has = ggx3 is not None
    ggx3 = numpy.ascontiguousarray(ggx3) if has else gy3
    g = n if lay.per_sample else 1
    zeros = numpy.zeros(c, dt)
    R = zeros if gggamma is None else numpy.ascontiguousarray(gggamma, dt)
    B = zeros if ggbeta is None else numpy.ascontiguousarray(ggbeta, dt)
    mean, inv = mean.reshape(g, c), inv.reshape(g, c)
    scale = numpy.ascontiguousarray(numpy.broadcast_to(scale.reshape(-1, c), (g, c)))
    g_x, g_gy = numpy.empty_like(x3), numpy.empty_like(x3)
    s_inv = numpy.empty((g, c), dt)
    run = compiled(_grad_loops)
    _over_channels(lambda lo, hi: run(x3, gy3, ggx3, has, mean, inv, scale, gamma, R, B,
                                      lay.per_sample, g_x, g_gy, s_inv, lo, hi), x3)
    return g_x, (s_inv.sum(0) if has else None), g_gy
