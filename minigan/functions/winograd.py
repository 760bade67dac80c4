"""A 3 x 3 stride-1 convolution by Winograd's minimal filtering F(4 x 4, 3 x 3): 36 GEMMs over
tiles of 4 x 4 outputs, 2.25 products per output pixel and channel pair where im2col takes 9.

Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). In one dimension,
m outputs of an r-tap correlation, y_i = sum_k g_k d_{i+k}, need only alpha = m + r - 1
products, one per point of a polynomial (Toom-Cook, transposed):

  y = A^T [ (G g) . (B^T d) ],   A^T = E_m^T,  G = E_r,  B^T = V^-T

where E_k (alpha x k) evaluates a polynomial of k coefficients at the points 0, 1, -1, 2, -2
and infinity (whose row picks the leading coefficient) and V = E_alpha. Nested in two
dimensions over tiles, summed over the input channels, each of the alpha^2 points is a GEMM:

  U[ab] (Cout, C) = (G g G^T)[ab]          the filter, transformed once per call
  V[ab] (C, T)    = (B^T d_t B)[ab]        every tile t of every image of the batch
  M[ab] = U[ab] @ V[ab],   y_t = A^T M_t A

The map is linear in g and in d, so the gradients are its adjoints in the same domain: gx from
gV[ab] = U[ab]^T @ gM[ab], gW from gU[ab] = gM[ab] @ V[ab]^T, where gM = A gy_t A^T. In float32
the results differ from im2col's by ~1e-5 of their scale (the points 2 and -2; cuDNN's F(4, 3)
alike); in float64 by ~1e-14. The tile transforms are compiled loops (jit.py): without numba,
or with MINIGAN_WINOGRAD=0, the convolutions keep their window and im2col forms. Every
product is tested equal to the im2col form.
"""
import os

import numpy

from . import cpu, jit

ALPHA = 6                                   # F(4, 3): m = 4 outputs per tile side
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0)        # and infinity
# Where it measured faster than the window and im2col forms (benchmarks/README.md), per CPU
# kind (cpu.py): the transforms cost ~C per output pixel against the GEMMs' ~C Cout, so few
# channels lose; on small images the filter's transform and GEMMs of few tiles cost more than
# they save. (oh ow per sample, {min(C, Cout) from: oh ow over the batch})
LIMITS = {
    "default": (32 * 32, {128: 8192, 64: 65536}),      # AMD EPYC Zen 4
    "intel-avx512": (16 * 16, {64: 1024}),             # Intel Xeon (AVX-512, AMX)
}
MIN_SAMPLE_PIXELS, MIN_PIXELS = None, None          # set (by tests) to override LIMITS


def enabled():
    """Whether the form may run: compiled loops on and MINIGAN_WINOGRAD not "0"."""
    return jit.enabled() and os.environ.get("MINIGAN_WINOGRAD", "1") != "0"


def _evaluation(k):
    """E_k (alpha x k): the values at the points of a polynomial of k coefficients."""
    E = numpy.zeros((ALPHA, k))
    for a, p in enumerate(POINTS):
        E[a] = [p ** i for i in range(k)]
    E[ALPHA - 1, k - 1] = 1.0       # infinity: the leading coefficient
    return E


def matrices(r):
    """(A^T (m x alpha), G (alpha x r), B^T (alpha x alpha)) of F(m, r), m = alpha - r + 1."""
    m = ALPHA - r + 1
    return _evaluation(m).T, _evaluation(r), numpy.linalg.inv(_evaluation(ALPHA)).T


AT, G, BT = matrices(3)
TILE = AT.shape[0]


def takes(shape, Co, ksize, s, p, d, groups, a):
    """Whether conv of an x of `shape` (N, C, H, W) with W (Co, C, 3, 3), stride 1, pad p, or
    one of its gradients, runs here; a is one of the product's operands."""
    oh, ow = shape[2] + 2 * p[0] - 2, shape[3] + 2 * p[1] - 2
    sample, pixels = LIMITS[cpu.kind()]
    sample = sample if MIN_SAMPLE_PIXELS is None else MIN_SAMPLE_PIXELS
    pixels = pixels if MIN_PIXELS is None else MIN_PIXELS
    return (tuple(ksize) == (3, 3) and s == (1, 1) and d == (1, 1) and groups == 1
            and oh * ow >= sample and enabled() and jit.takes(a)
            and any(min(shape[1], Co) >= c and shape[0] * oh * ow >= n
                    for c, n in pixels.items()))


# -- the tile transforms (compiled by numba through jit.compiled) ------------------------------
# The tiles of one image form a grid of th rows of K = tw + 1 (tw = ceil(ow / m)), so that each
# pass below runs as one flat loop over the grid (th K values: LLVM vectorizes it; loops over a
# row of 40 tiles stayed scalar). The spare tile j = tw lies past the output: in gy's transform
# it reads only zeros, so gM's spare column is zero, and so are gV's (which _scatter through B
# spills into the next tile row) and its terms in gU; in y it is cropped.
# A plane is first split into its m x m phases, P[pr, pc, I, k] = xpad[I m + pr, k m + pc]:
# row u of tile row i is then phase row i + u // m and column v of tile j phase column
# j + v // m, so every sum reads a phase at a fixed offset. The loops are written out for
# F(4, 3): six terms per sum, four phases.
assert (ALPHA, TILE) == (6, 4)


def _split(x, n, c, pad_h, pad_w, P, line):
    """P[pr, pc, I, k] = x[n, c, I m + pr - pad_h, k m + pc - pad_w], zero outside x; line is
    a scratch row of K m values (the padded row, split in one pass: LLVM vectorizes the
    constant stride m = TILE, and not a stride it cannot see)."""
    H, W = x.shape[2:]
    m = TILE
    rows, K = P.shape[2:]
    line[:] = 0.0
    w = min(W, K * m - pad_w)
    for I in range(rows):
        for pr in range(m):
            row = I * m + pr - pad_h
            if row < 0 or row >= H:
                P[pr, :, I] = 0.0
                continue
            src, dst = x[n, c, row], line[pad_w:]
            for q in range(w):
                dst[q] = src[q]
            p0, p1, p2, p3 = P[pr, 0, I], P[pr, 1, I], P[pr, 2, I], P[pr, 3, I]
            for k in range(K):
                p0[k] = line[4 * k]
                p1[k] = line[4 * k + 1]
                p2[k] = line[4 * k + 2]
                p3[k] = line[4 * k + 3]


def _merge(P, pad_h, pad_w, y, n, c, line):
    """y[n, c, row, col] = P[pr, pc, I, k] at row = I m + pr - pad_h, col = k m + pc - pad_w
    (zero where P does not reach): the adjoint of _split on the pixels it covers."""
    H, W = y.shape[2:]
    m = TILE
    rows, K = P.shape[2:]
    w = min(W, K * m - pad_w)
    for row in range(H):
        out = y[n, c, row]
        I, pr = (row + pad_h) // m, (row + pad_h) % m
        if I >= rows:
            out[:] = 0.0
            continue
        p0, p1, p2, p3 = P[pr, 0, I], P[pr, 1, I], P[pr, 2, I], P[pr, 3, I]
        for k in range(K):
            line[4 * k] = p0[k]
            line[4 * k + 1] = p1[k]
            line[4 * k + 2] = p2[k]
            line[4 * k + 3] = p3[k]
        src = line[pad_w:]
        for q in range(w):
            out[q] = src[q]
        out[w:] = 0.0


def _combine(dst, w, s0, s1, s2, s3, s4, s5, L, add):
    """dst[:L] (+)= sum_i w[i] s_i[:L]: six terms in one pass (ALPHA = 6; zero weights cost
    less than a pass each), over 1-D views from 0, which LLVM vectorizes."""
    w0, w1, w2, w3, w4, w5 = w[0], w[1], w[2], w[3], w[4], w[5]
    if add:
        for q in range(L):
            dst[q] += (w0 * s0[q] + w1 * s1[q] + w2 * s2[q] + w3 * s3[q] + w4 * s4[q]
                       + w5 * s5[q])
    else:
        for q in range(L):
            dst[q] = (w0 * s0[q] + w1 * s1[q] + w2 * s2[q] + w3 * s3[q] + w4 * s4[q]
                      + w5 * s5[q])


if jit.numba is not None:      # the loops below call these from compiled code
    _split, _merge, _combine = (jit.compiled(f) for f in (_split, _merge, _combine))


def _gather(x, T, pad_h, pad_w, th, K, out, lo, hi):
    """out[a alpha + b, c, (n th + i) K + j] = sum_uv T[a, u] T[b, v] xpad[n, c, i m + u,
    j m + v]: B^T d B (T = B^T) or A gy A^T (T = A, padded with zero columns to alpha x
    alpha); the spare tile j = K - 1 reads on into the next tile row."""
    N = x.shape[0]
    m, L = TILE, th * K
    P = numpy.empty((m, m, th + 1, K), out.dtype)
    Pf = P.reshape(m, m, (th + 1) * K)
    R = numpy.zeros((ALPHA, m, (th + 1) * K), out.dtype)    # the tail past L stays 0: the
    # spare tile of the last row reads it, and zero weights times garbage could be NaN
    line = numpy.empty(K * m, out.dtype)
    for c in range(lo, hi):
        for n in range(N):
            _split(x, n, c, pad_h, pad_w, P, line)
            for pc in range(m):                     # R[a] = sum_u T[a, u] xpad[tile rows u]
                rows = (Pf[0, pc], Pf[1, pc], Pf[2, pc], Pf[3, pc], Pf[0, pc, K:], Pf[1, pc, K:])
                for a in range(ALPHA):
                    _combine(R[a, pc], T[a], *rows, L, False)
            t0 = n * L
            for a in range(ALPHA):                  # out[ab] = sum_v T[b, v] R[a, columns v]
                cols = (R[a, 0], R[a, 1], R[a, 2], R[a, 3], R[a, 0, 1:], R[a, 1, 1:])
                for b in range(ALPHA):
                    _combine(out[a * ALPHA + b, c, t0:], T[b], *cols, L, False)


def _scatter(M, T, pad_h, pad_w, th, K, y, lo, hi):
    """y[n, c] = the plane whose padded pixels (i m + u, j m + v) sum T[u, a] T[v, b]
    M[a alpha + b, c, (n th + i) K + j] over the tiles (overlapping by alpha - m): the adjoint
    of _gather, A^T M A (T = A^T padded with zero rows to alpha x alpha) or B gV B^T (T = B)."""
    N = y.shape[0]
    m, L = TILE, th * K
    Z = numpy.empty((ALPHA, m, (th + 1) * K), y.dtype)
    P = numpy.empty((m, m, th + 1, K), y.dtype)
    Pf = P.reshape(m, m, (th + 1) * K)
    line = numpy.empty(K * m, y.dtype)
    live = numpy.zeros(ALPHA, numpy.bool_)          # rows of T not all zero (A^T has 4 of 6)
    for v in range(ALPHA):
        for b in range(ALPHA):
            live[v] |= T[v, b] != 0.0
    for c in range(lo, hi):
        for n in range(N):
            t0 = n * L
            Z[:] = 0.0
            for a in range(ALPHA):                  # Z[a, columns v] += sum_b T[v, b] M[ab]
                tiles = (M[a * ALPHA, c, t0:], M[a * ALPHA + 1, c, t0:],
                         M[a * ALPHA + 2, c, t0:], M[a * ALPHA + 3, c, t0:],
                         M[a * ALPHA + 4, c, t0:], M[a * ALPHA + 5, c, t0:])
                for v in range(ALPHA):
                    if live[v]:
                        _combine(Z[a, v % m, v // m:], T[v], *tiles, L, True)
            P[:] = 0.0
            for pc in range(m):                     # rows u of the tiles += sum_a T[u, a] Z[a]
                z = (Z[0, pc], Z[1, pc], Z[2, pc], Z[3, pc], Z[4, pc], Z[5, pc])
                for u in range(ALPHA):
                    if live[u]:
                        _combine(Pf[u % m, pc, (u // m) * K:], T[u], *z, L, True)
            _merge(P, pad_h, pad_w, y, n, c, line)


def _tiles(size):
    """(th, K): tile rows, and tiles per row with the spare."""
    return -(-size[0] // TILE), -(-size[1] // TILE) + 1


def _over_channels(fn, arr, T, pad, tiles, out, C):
    run = jit.compiled(fn)
    Tp = numpy.zeros((ALPHA, ALPHA), out.dtype)          # A^T and A padded with zeros
    Tp[:T.shape[0], :T.shape[1]] = T
    jit.over_blocks(lambda lo, hi: run(arr, Tp, pad[0], pad[1], tiles[0], tiles[1], out,
                                       lo, hi), C, out[:, 0].nbytes + arr[:, 0].nbytes,
                    out.nbytes + arr.nbytes)


def _transformed(d, T, pad, tiles):
    """(alpha^2, C, N th K): the tiles of d (N, C, H, W) through T on both sides."""
    N, C = d.shape[:2]
    out = numpy.empty((ALPHA * ALPHA, C, N * tiles[0] * tiles[1]), d.dtype)
    _over_channels(_gather, numpy.ascontiguousarray(d), T, pad, tiles, out, C)
    return out


def _image(M, T, pad, tiles, shape):
    """The image (N, C, H, W) = shape summed from the tiles of M through T (its adjoint)."""
    y = numpy.empty(shape, M.dtype)
    _over_channels(_scatter, M, T, pad, tiles, y, shape[1])
    return y


def _filter(g, G):
    """U (alpha^2, Cout, C) = G g G^T for g (Cout, C, r, r), as two GEMMs over the (Cout, C)
    planes of the taps: t[i] = G @ g[i, :], then U = G @ t."""
    Co, C, r = g.shape[:3]
    G = G.astype(g.dtype)
    t = numpy.matmul(G, g.transpose(2, 3, 0, 1).reshape(r, r, Co * C))     # (r_i, alpha_b, X)
    return (G @ t.reshape(r, ALPHA * Co * C)).reshape(ALPHA * ALPHA, Co, C)


def _filter_adjoint(gU, G):
    """gW (Cout, C, r, r) = G^T gU G for gU (alpha^2, Cout, C): _filter's adjoint."""
    Co, C, r = gU.shape[1], gU.shape[2], G.shape[1]
    G = G.astype(gU.dtype)
    t = (G.T @ gU.reshape(ALPHA, ALPHA * Co * C)).reshape(r, ALPHA, Co * C)   # (r_i, b, X)
    gW = numpy.matmul(G.T, t).reshape(r, r, Co, C)                            # (i, j, X)
    return numpy.ascontiguousarray(gW.transpose(2, 3, 0, 1))


def conv(x, W, p, out_size):
    """y (N, Cout) + out_size: the correlation of x (N, C, H, W), zero-padded by p (and
    beyond, as far as out_size reaches), with W (Cout, C, 3, 3)."""
    tiles = _tiles(out_size)
    M = numpy.matmul(_filter(W, G), _transformed(x, BT, p, tiles))
    return _image(M, AT, (0, 0), tiles, (x.shape[0], W.shape[0]) + tuple(out_size))


def gy_tiles(gy):
    """gM = A gy_t A^T over the tiles of gy (alpha^2, Cout, N th K): what the x-gradient and the
    W-gradient both transform, so a backward that needs both builds it once."""
    return _transformed(gy, AT.T, (0, 0), _tiles(gy.shape[2:]))


def conv_grad_x(gy, W, p, in_size, gM=None):
    """gx (N, C) + in_size of conv for gy (N, Cout, oh, ow): also the stride-1 transposed
    convolution of gy with W (Cout, C, 3, 3) and pad p. gM: gy_tiles(gy), if built already."""
    tiles = _tiles(gy.shape[2:])
    gM = gy_tiles(gy) if gM is None else gM
    gV = numpy.matmul(_filter(W, G).transpose(0, 2, 1), gM)
    return _image(gV, BT.T, p, tiles, (gy.shape[0], W.shape[1]) + tuple(in_size))


def conv_grad_w(x, gy, p, gM=None):
    """gW (Cout, C, 3, 3) of conv, summed over the batch (gM as in conv_grad_x)."""
    tiles = _tiles(gy.shape[2:])
    gM = gy_tiles(gy) if gM is None else gM
    gU = numpy.matmul(gM, _transformed(x, BT, p, tiles).transpose(0, 2, 1))
    return _filter_adjoint(gU, G)
