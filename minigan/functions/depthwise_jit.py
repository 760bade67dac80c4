"""Depthwise convolution's tap loops, compiled by numba (jit.py).

depthwise.py's NumPy loops are the reference: per tap (i, j) they multiply one contiguous run of
L values of a padded phase by the plane's weight into a temporary, then add it, two passes and a
Python call per tap. These make every tap of a plane one fused multiply-add over the run, all
taps in one call. Same layout as depthwise.py: ph (B, P, Hq Wq) phases, rows (B, L) outputs in
rows of Wq, wp (B, kh, kw) the planes' weights, taps (T, 4) of (i, j, phase, offset).
The inner loops run over 1-D views of a row: with 2-D indexing LLVM does not vectorize them
(12x slower, and slower than NumPy).
"""
from .jit import compiled


def _forward(ph, wp, taps, L, acc):
    """acc[b, l] = sum_t wp[b, i_t, j_t] ph[b, p_t, off_t + l]."""
    for b in range(ph.shape[0]):
        out = acc[b]
        out[:] = 0.0
        for t in range(taps.shape[0]):
            w = wp[b, taps[t, 0], taps[t, 1]]
            src = ph[b, taps[t, 2], taps[t, 3]:taps[t, 3] + L]
            for l in range(L):
                out[l] += w * src[l]


def _adjoint(rows, wp, taps, L, ph):
    """ph[b, p_t, off_t + l] += wp[b, i_t, j_t] rows[b, l] (ph zeroed first)."""
    for b in range(rows.shape[0]):
        ph[b] = 0.0
        src = rows[b]
        for t in range(taps.shape[0]):
            w = wp[b, taps[t, 0], taps[t, 1]]
            out = ph[b, taps[t, 2], taps[t, 3]:taps[t, 3] + L]
            for l in range(L):
                out[l] += w * src[l]


def _weights(ph, rows, taps, L, gw):
    """gw[b, i_t, j_t] = sum_l ph[b, p_t, off_t + l] rows[b, l] (float64 sums)."""
    for b in range(ph.shape[0]):
        r = rows[b]
        for t in range(taps.shape[0]):
            src = ph[b, taps[t, 2], taps[t, 3]:taps[t, 3] + L]
            s = 0.0
            for l in range(L):
                s += src[l] * r[l]
            gw[b, taps[t, 0], taps[t, 1]] = s


def forward(ph, wp, taps, L, acc):
    compiled(_forward)(ph, wp, taps, L, acc)


def adjoint(rows, wp, taps, L, ph):
    compiled(_adjoint)(rows, wp, taps, L, ph)


def weights(ph, rows, taps, L, gw):
    compiled(_weights)(ph, rows, taps, L, gw)
