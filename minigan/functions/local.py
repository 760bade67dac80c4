"""Products over each pixel's k x k neighbourhood: the three bilinear maps of local attention.

With shift_j(t)[x, y] = t[x + u_j, y + v_j] (zero outside), j over the k k offsets
(u_j, v_j) in [-k//2, k//2]^2, rows first:

  local_dot(q, t)[:, j] = sum_d q * shift_j(t)            (N, d, X, Y), (N, d, X, Y) -> (N, kk, X, Y)
  local_mix(a, t)       = sum_j a[:, j] * shift_j(t)       (N, kk, X, Y), (N, d, X, Y) -> (N, d, X, Y)
  local_scatter(a, g)   = sum_j unshift_j(a[:, j] * g)     local_mix's adjoint in t

Each one's gradients are the other two (with <u, shift_j w> = <unshift_j u, w>):
  local_dot:     gq = mix(gs, t),   gt = scatter(gs, q)
  local_mix:     ga = dot(go, t),   gt = scatter(a, go)
  local_scatter: ga = dot(g, gu),   gg = mix(a, gu)
so, as a convolution's family, every order of the gradient stays exact. Attention's 3 x 3
neighbourhood as three nodes instead of nine slices, products and sums of recorded ops (whose
double backward, under the gradient penalty, made most of the step).
"""
import numpy

from .. import backend
from ..core import FunctionNode
from . import jit


def _offsets(k):
    r = k // 2
    return [(i, j) for i in range(k) for j in range(k)], r


def _padded(t, r):
    xp = backend.get_array_module(t)
    N, d, X, Y = t.shape
    p = xp.zeros((N, d, X + 2 * r, Y + 2 * r), t.dtype)
    p[:, :, r:r + X, r:r + Y] = t
    return p


# -- compiled loops (jit.py): one pass over each row, the k k offsets inside; threads over N ----

def _dot_loops(q, p, k, s, lo, hi):
    """s[n, j] = sum_d q[n, d] * p[n, d] at offset j, p padded by k // 2 (s zeroed)."""
    N, d, X, Y = q.shape
    for n in range(lo, hi):
        for j in range(k * k):
            u, v = j // k, j % k
            for c in range(d):
                for x in range(X):
                    srow, qrow, prow = s[n, j, x], q[n, c, x], p[n, c, x + u, v:v + Y]
                    for y in range(Y):
                        srow[y] += qrow[y] * prow[y]


def _mix_loops(a, p, k, o, lo, hi):
    """o[n, c] = sum_j a[n, j] * p[n, c] at offset j (o zeroed)."""
    N, d, X, Y = o.shape
    for n in range(lo, hi):
        for c in range(d):
            for x in range(X):
                orow = o[n, c, x]
                for j in range(k * k):
                    u, v = j // k, j % k
                    arow, prow = a[n, j, x], p[n, c, x + u, v:v + Y]
                    for y in range(Y):
                        orow[y] += arow[y] * prow[y]


def _scatter_loops(a, g, k, P, lo, hi):
    """P[n, c] at offset j += a[n, j] * g[n, c], P padded by k // 2 (zeroed)."""
    N, d, X, Y = g.shape
    for n in range(lo, hi):
        for c in range(d):
            for x in range(X):
                grow = g[n, c, x]
                for j in range(k * k):
                    u, v = j // k, j % k
                    arow, Prow = a[n, j, x], P[n, c, x + u, v:v + Y]
                    for y in range(Y):
                        Prow[y] += arow[y] * grow[y]


def _compiled(loops, out, *arrays):
    """Run loops(*arrays, out, lo, hi) over the batch, threaded for big arrays."""
    run = jit.compiled(loops)
    n = out.shape[0]
    jit.over_blocks(lambda lo, hi: run(*arrays, out, lo, hi), n, out[0].nbytes,
                    sum(a.nbytes for a in arrays if hasattr(a, "nbytes")) + out.nbytes)
    return out


# -- the array forms: the compiled loops on host arrays, else one pass per offset (NumPy, CuPy) --

def _dot(q, t, k):
    xp = backend.get_array_module(q)
    N, d, X, Y = q.shape
    offsets, r = _offsets(k)
    p = _padded(t, r)
    s = xp.zeros((N, k * k, X, Y), q.dtype)
    if jit.takes(q, t):
        return _compiled(_dot_loops, s, numpy.ascontiguousarray(q), p, k)
    for j, (u, v) in enumerate(offsets):
        s[:, j] = (q * p[:, :, u:u + X, v:v + Y]).sum(axis=1)
    return s


def _mix(a, t, k):
    xp = backend.get_array_module(t)
    N, d, X, Y = t.shape
    offsets, r = _offsets(k)
    p = _padded(t, r)
    o = xp.zeros(t.shape, t.dtype)
    if jit.takes(a, t):
        return _compiled(_mix_loops, o, numpy.ascontiguousarray(a), p, k)
    for j, (u, v) in enumerate(offsets):
        o += a[:, j:j + 1] * p[:, :, u:u + X, v:v + Y]
    return o


def _scatter(a, g, k):
    xp = backend.get_array_module(g)
    N, d, X, Y = g.shape
    offsets, r = _offsets(k)
    p = xp.zeros((N, d, X + 2 * r, Y + 2 * r), g.dtype)
    if jit.takes(a, g):
        _compiled(_scatter_loops, p, numpy.ascontiguousarray(a), numpy.ascontiguousarray(g), k)
    else:
        for j, (u, v) in enumerate(offsets):
            p[:, :, u:u + X, v:v + Y] += a[:, j:j + 1] * g
    return xp.ascontiguousarray(p[:, :, r:r + X, r:r + Y])


class _Local(FunctionNode):
    """One of the three maps on its arrays (`form`); subclasses give its backward."""
    form = None

    def __init__(self, k):
        self.k = k

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        return self.form(*inputs, self.k),


class LocalDot(_Local):
    form = staticmethod(_dot)

    def backward(self, indexes, grad_outputs):
        q, t = self.get_retained_inputs()
        gs, = grad_outputs
        return (local_mix(gs, t, self.k) if 0 in indexes else None,
                local_scatter(gs, q, self.k) if 1 in indexes else None)


class LocalMix(_Local):
    form = staticmethod(_mix)

    def backward(self, indexes, grad_outputs):
        a, t = self.get_retained_inputs()
        go, = grad_outputs
        return (local_dot(go, t, self.k) if 0 in indexes else None,
                local_scatter(a, go, self.k) if 1 in indexes else None)


class LocalScatter(_Local):
    form = staticmethod(_scatter)

    def backward(self, indexes, grad_outputs):
        a, g = self.get_retained_inputs()
        gu, = grad_outputs
        return (local_dot(g, gu, self.k) if 0 in indexes else None,
                local_mix(a, gu, self.k) if 1 in indexes else None)


def _check(op, a, b, k, a_channels):
    if k % 2 != 1 or k < 1:
        raise ValueError(f"{op}: the neighbourhood k must be odd and positive, got {k}")
    sa, sb = a.shape, b.shape
    if len(sa) != 4 or len(sb) != 4 or sa[0] != sb[0] or sa[2:] != sb[2:] or \
            (a_channels is not None and sa[1] != a_channels) or \
            (a_channels is None and sa[1] != sb[1]):
        want = f"{k * k} weights" if a_channels is not None else "the same channels"
        raise ValueError(f"{op}: shapes {tuple(sa)} and {tuple(sb)} must be (N, ., X, Y) with "
                         f"{want} in the first")


def local_dot(q, t, k=3):
    """s[:, j] = sum_d q * shift_j(t): each pixel's query against its k k neighbours' keys."""
    _check("local_dot", q, t, k, None)
    return LocalDot(k).apply((q, t))[0]


def local_mix(a, t, k=3):
    """o = sum_j a[:, j] * shift_j(t): each pixel's weights a (N, k k, X, Y) over its
    neighbours' values t (N, d, X, Y)."""
    _check("local_mix", a, t, k, k * k)
    return LocalMix(k).apply((a, t))[0]


def local_scatter(a, g, k=3):
    """sum_j unshift_j(a[:, j] * g): local_mix's adjoint in its values."""
    _check("local_scatter", a, g, k, k * k)
    return LocalScatter(k).apply((a, g))[0]
