"""Batch, fixed (test-mode) and instance normalization.

Both norms standardize x, xhat = (x - mean) / sqrt(var + eps), and then scale and shift each
channel, y = gamma xhat + beta. Batch norm takes the statistics over (N, H, W), instance norm over
(H, W) of each (n, c) plane. The arrays are seen as rows (N, C, S), S = H W, so that both reduce
rows with BLAS (a @ 1, a . b), several times faster than numpy's sum over axes.

One fused node computes y and, when no graph is recorded, its gradients in a few passes. When the
gradient must itself be differentiable (create_graph=True, a gradient penalty), the gradient is one
more node, `NormalizationGrad`: the same fused passes forward, the second derivative backward (on
arrays when that is the last order, two compiled passes or a dozen NumPy ones; else with
differentiable ops on xhat and inv_std = 1 / sqrt(var + eps) from `Standardize`, so every order
of derivative is exact).

On CuPy arrays the plain-array passes (_run_forward, _run_backward) are raw kernels
(kernels/norm.cu, _kernel_forward below): two reads and one write each way.
"""
import numpy

from .. import backend, cuda
from ..core import FunctionNode, as_array, as_variable, config
from . import jit, norm_jit
from .array import broadcast_to, reshape
from .math import mean, sum


_BLOCK = 1 << 17     # elements per block of channels (512 KiB of float32): a block's several
                     # passes hit the cache, and x, gy cross main memory once per direction
                     # (measured on 2 cores, next to PyTorch: 1.5-2x faster from 512K elements)


def _rows(a):
    """(N, C, ...) -> (N, C, S)."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def _row_dot(a, b):
    """sum_s a * b for each row of (N, C, S) arrays -> (N, C), as BLAS dot products."""
    xp = backend.get_array_module(a)
    if hasattr(xp, "vecdot"):           # NumPy >= 2: one fused loop, no batch of tiny GEMMs
        return xp.vecdot(a, b)
    return (a[..., None, :] @ b[..., :, None])[..., 0, 0]


class _Layout:
    """Which rows share statistics: all N of a channel (batch norm) or each (n, c) (instance)."""

    def __init__(self, shape, per_sample):
        self.shape, self.per_sample = shape, per_sample
        size = 1
        for s in shape[2:]:
            size *= s
        self.count = size if per_sample else size * shape[0]       # elements per statistic
        self.axes = tuple(a for a in range(2 if per_sample else 0, len(shape)) if a != 1)
        self.param_axes = (0,) + tuple(range(2, len(shape)))          # reduced for gamma, beta
        self.stat_shape = ((shape[0] if per_sample else 1), shape[1]) + (1,) * (len(shape) - 2)
        self.w = None                                                 # 1/n, for row means

    def group(self, row_stats):
        """(N, C) per-row sums -> (G, C, 1) per-statistic sums."""
        s = row_stats[..., None]
        return s if self.per_sample or len(s) == 1 else s.sum(0, keepdims=True)

    def blocks(self, x3):
        """Slices of the channel axis: one for small or CuPy arrays, else L2-sized blocks."""
        n, c, size = x3.shape
        if backend.is_cupy_array(x3) or x3.size <= 2 * _BLOCK:
            return [slice(None)]
        step = max(1, _BLOCK // (n * size))
        return [slice(i, i + step) for i in range(0, c, step)]

    def row_means(self, a):
        """(N, c, S) -> (G, c, 1) means, the row sums done by BLAS as a @ (1/n)."""
        if self.w is None:
            self.w = backend.get_array_module(a).full(a.shape[-1], 1 / self.count, a.dtype)
        return self.group(a @ self.w)

    def per_channel(self, v):
        """(G, c, 1) -> (c,), summed over G."""
        return v.reshape(-1) if len(v) == 1 else v.sum(0)[:, 0]

    def forward(self, x3, gamma, beta, eps, out=None):
        """y3 = gamma (x3 - mean) inv_std + beta (xhat if gamma is None) on a block of rows, and
        [mean, var, inv_std, gamma inv_std], each (G, c, 1).

        Two passes for the variance, so no cancellation however large the mean.
        """
        xp = backend.get_array_module(x3)
        mu = self.row_means(x3)
        y3 = xp.subtract(x3, mu, out=out)                             # x - mean
        var = self.group(_row_dot(y3, y3)) * (1 / self.count)
        inv = 1 / xp.sqrt(var + eps)
        scale = inv if gamma is None else gamma[:, None] * inv
        y3 *= scale
        if beta is not None:
            y3 += beta[:, None]
        return y3, [mu, var, inv, scale]

    def backward(self, x3, gy3, mu, inv, scale, out=None):
        """gx3 = a (gy - mean(gy) - xhat mean(gy xhat)) with a = gamma inv_std; ggamma, gbeta.

        As gx = a gy + b (x - mean) + c with per-statistic b = -a inv_std mean(gy xhat),
        c = -a mean(gy): four passes over memory after x - mean.
        """
        xp = backend.get_array_module(x3)
        xc = x3 - mu
        m1 = self.row_means(gy3)                                      # mean(gy)
        m2 = self.group(_row_dot(gy3, xc)) * (inv * (1 / self.count))  # mean(gy xhat)
        xc *= scale * inv * -m2
        xc -= scale * m1
        gx3 = xp.multiply(gy3, scale, out=out)
        gx3 += xc
        return gx3, self.per_channel(m2) * self.count, self.per_channel(m1) * self.count


def _run_forward(lay, x, gamma, beta, eps):
    """y and [mean, var, inv_std, gamma inv_std] (each (G, C, 1)), block by block of channels."""
    if cuda.enabled(x):
        return _kernel_forward(lay, x, gamma, beta, eps)
    if jit.takes(x):
        y3, stats = norm_jit.forward(lay, _rows(x), gamma, beta, eps)
        return y3.reshape(x.shape), stats
    x3 = _rows(x)
    blocks = lay.blocks(x3)
    if len(blocks) == 1:
        y3, stats = lay.forward(x3, gamma, beta, eps)
        return y3.reshape(x.shape), stats
    xp = backend.get_array_module(x)
    y3 = xp.empty_like(x3)
    stats = [xp.empty((len(x) if lay.per_sample else 1, x.shape[1], 1), x.dtype) for _ in range(4)]
    for b in blocks:
        _, part = lay.forward(x3[:, b], None if gamma is None else gamma[b],
                              None if beta is None else beta[b], eps, out=y3[:, b])
        for whole, p in zip(stats, part):
            whole[:, b] = p
    return y3.reshape(x.shape), stats


def _run_backward(lay, x, gy, mu, inv, scale):
    """gx, ggamma, gbeta on arrays, block by block of channels."""
    if cuda.enabled(x):
        return _kernel_backward(lay, x, gy, mu, inv, scale)
    if jit.takes(x):
        gx3, ggamma, gbeta = norm_jit.backward(lay, _rows(x), _rows(gy), mu, inv, scale)
        return gx3.reshape(x.shape), ggamma, gbeta
    x3, gy3 = _rows(x), _rows(gy)
    blocks = lay.blocks(x3)
    if len(blocks) == 1:
        gx3, ggamma, gbeta = lay.backward(x3, gy3, mu, inv, scale)
        return gx3.reshape(x.shape), ggamma, gbeta
    xp = backend.get_array_module(x)
    gx3 = xp.empty_like(x3)
    ggamma, gbeta = xp.empty(x.shape[1], x.dtype), xp.empty(x.shape[1], x.dtype)
    for b in blocks:
        _, ggamma[b], gbeta[b] = lay.backward(x3[:, b], gy3[:, b], mu[:, b], inv[:, b],
                                              scale[:, b], out=gx3[:, b])
    return gx3.reshape(x.shape), ggamma, gbeta


class _Launch:
    """Launch geometry of kernels/norm.cu for one layout: statistics, rows, ranges per statistic."""

    def __init__(self, lay, x):
        self.xp = backend.get_array_module(x)
        N, C = x.shape[:2]
        S = x.size // max(N * C, 1)
        G = N if lay.per_sample else 1
        self.C, self.nstat = C, G * C
        self.nrows = 1 if lay.per_sample else N
        count = self.nrows * S
        # ranges of >= 4 values per thread, and about 2048 blocks in all
        per_block = 4 * cuda.threads_per_block
        self.splits = max(1, min(count // per_block, -(-2048 // self.nstat), 256))
        self.grid = (self.splits, min(self.nstat, cuda.max_grid_y))
        self.sizes = (cuda.int32(self.nstat), cuda.int32(self.nrows), cuda.int32(S),
                      numpy.int64(C * S))
        cuda.int32(count)

    def run(self, name, dtype, args, shared_values):
        block = cuda.threads_per_block
        cuda.launch("norm", name, dtype, self.grid, block, args,
                    shared_mem=shared_values * numpy.dtype(dtype).itemsize)


def _kernel_forward(lay, x, gamma, beta, eps):
    """_run_forward by kernels/norm.cu: partial moments per range, then merge and normalize."""
    g = _Launch(lay, x)
    xp, t = g.xp, x.dtype.type
    x = xp.ascontiguousarray(x)
    if gamma is None:           # Standardize: xhat alone
        gamma, beta = xp.ones(g.C, x.dtype), xp.zeros(g.C, x.dtype)
    part = xp.empty((g.nstat, g.splits, 3), x.dtype)
    g.run("norm_stats", x.dtype, (x, part) + g.sizes + (cuda.int32(g.splits),),
          3 * cuda.threads_per_block)
    y = xp.empty_like(x)
    mu, var, inv = (xp.empty(lay.stat_shape[:2] + (1,), x.dtype) for _ in range(3))
    g.run("norm_forward", x.dtype, (x, part, xp.ascontiguousarray(gamma),
                                     xp.ascontiguousarray(beta), y, mu, var, inv) + g.sizes +
          (cuda.int32(g.C), cuda.int32(g.splits), t(eps)), 2)
    return y, [mu, var, inv, gamma[:, None] * inv]


def _kernel_backward(lay, x, gy, mu, inv, scale):
    """_run_backward by kernels/norm.cu: partial sums of gy and gy (x - mean), then gx."""
    g = _Launch(lay, x)
    xp = g.xp
    x, gy = xp.ascontiguousarray(x), xp.ascontiguousarray(gy)
    part = xp.empty((g.nstat, g.splits, 2), x.dtype)
    g.run("norm_backward_sums", x.dtype, (x, gy, mu, part) + g.sizes + (cuda.int32(g.splits),),
          2 * cuda.threads_per_block)
    gx = xp.empty_like(x)
    sums = xp.empty((g.nstat // g.C, g.C, 2), x.dtype)     # (sum gy, sum gy xhat) per statistic
    g.run("norm_backward", x.dtype, (x, gy, mu, inv, xp.ascontiguousarray(scale), part, gx, sums)
          + g.sizes + (cuda.int32(g.splits),), 2)
    return gx, sums[..., 1].sum(0), sums[..., 0].sum(0)


def _standardize_grad(xhat, inv_std, gxhat, ginv, axes, count):
    """d/dx of <gxhat, xhat> + <ginv, inv_std>, with differentiable ops.

    gx = inv_std (gxhat - mean(gxhat) - xhat mean(gxhat xhat)) - ginv inv_std^2 xhat / count,
    since d xhat_j/dx_i = inv_std (delta_ij - 1/n - xhat_i xhat_j / n) and
    d inv_std/dx_i = -inv_std^3 (x_i - mean) / n = -inv_std^2 xhat_i / n.
    """
    gx = None
    if gxhat is not None:
        gx = inv_std * (gxhat - mean(gxhat, axes, keepdims=True)
                        - xhat * mean(gxhat * xhat, axes, keepdims=True))
    if ginv is not None:
        term = xhat * (ginv * inv_std * inv_std * (-1.0 / count))
        gx = term if gx is None else gx + term
    return gx


class Standardize(FunctionNode):
    """x -> (xhat, inv_std): x standardized over the layout's axes, and 1 / sqrt(var + eps)."""

    def __init__(self, per_sample, eps):
        self.per_sample, self.eps = per_sample, eps

    def forward(self, inputs):
        x, = inputs
        self.layout = _Layout(x.shape, self.per_sample)
        xhat, stats = _run_forward(self.layout, x, None, None, self.eps)
        self.retain_outputs((0, 1))
        return xhat, stats[2].reshape(self.layout.stat_shape)

    def backward(self, indexes, grad_outputs):
        xhat, inv_std = self.get_retained_outputs()
        gxhat, ginv = grad_outputs
        lay = self.layout
        return _standardize_grad(xhat, inv_std, gxhat, ginv, lay.axes, lay.count),


class Normalization(FunctionNode):
    """y = gamma xhat + beta, with batch (per_sample=False) or instance statistics."""

    def __init__(self, per_sample, eps):
        self.per_sample, self.eps = per_sample, eps

    def forward(self, inputs):
        x, gamma, beta = inputs
        self.retain_inputs((0, 1))
        self.layout = _Layout(x.shape, self.per_sample)
        y, (self.mean, self.var, self.inv_std, self.scale) = _run_forward(self.layout, x, gamma,
                                                                          beta, self.eps)
        return y,

    def backward(self, indexes, grad_outputs):
        x, gamma = self.get_retained_inputs()
        gy, = grad_outputs
        lay = self.layout
        if not config.enable_backprop:    # plain arrays: nothing will differentiate this gradient
            return _run_backward(lay, x.array, gy.array, self.mean, self.inv_std, self.scale)
        return NormalizationGrad(self).apply((x, gamma, gy))


class NormalizationGrad(FunctionNode):
    """(x, gamma, gy) -> (gx, ggamma, gbeta), Normalization's gradient as one node.

    Under a gradient penalty (create_graph=True) the gradient is then the fused array pass, not a
    dozen recorded ops. This node's backward, the second derivative, runs on arrays when it is
    the last order (_grad_backward), else with differentiable ops, so every order stays exact.
    """

    def __init__(self, norm):
        self.per_sample, self.eps, self.layout = norm.per_sample, norm.eps, norm.layout
        self.stats = norm.mean, norm.inv_std, norm.scale

    def forward(self, inputs):
        x, _, gy = inputs
        self.retain_inputs((0, 1, 2))
        return _run_backward(self.layout, x, gy, *self.stats)

    def backward(self, indexes, grad_outputs):
        """With h = gy - mean(gy) - xhat mean(gy xhat) and a = gamma inv_std, the forward is
        gx = a h, ggamma = sum(gy xhat), gbeta = sum(gy). For upstream (ggx, gggamma, ggbeta):
          d/dgy    = a (ggx - mean(ggx) - xhat mean(ggx xhat)) + gggamma xhat + ggbeta
          d/dgamma = sum(ggx h inv_std) over the parameter's axes
          d/dxhat  = -a (ggx mean(gy xhat) + gy mean(ggx xhat)) + gggamma gy,
          d/dinv   = gamma sum(ggx h) per statistic,
        and d/dx from the last two through xhat(x), inv_std(x) (_standardize_grad)."""
        x, gamma, gy = self.get_retained_inputs()
        ggx, gggamma, ggbeta = grad_outputs
        lay = self.layout
        if not config.enable_backprop:    # the last order: the same formulas on arrays
            arr = lambda v: None if v is None else v.array
            g_x, g_gamma, g_gy = _grad_backward(lay, x.array, gamma.array, gy.array, arr(ggx),
                                                arr(gggamma), arr(ggbeta), *self.stats)
            return (g_x if 0 in indexes else None, g_gamma if 1 in indexes else None,
                    g_gy if 2 in indexes else None)
        pshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        xhat, inv_std = Standardize(self.per_sample, self.eps).apply((x,))
        g = reshape(gamma, pshape)
        a = g * inv_std
        g_gy = gxhat = ginv = g_gamma = None
        if ggx is not None:
            g_gy = _standardize_grad(xhat, a, ggx, None, lay.axes, lay.count)
            m = mean(gy * xhat, lay.axes, keepdims=True)
            h = gy - mean(gy, lay.axes, keepdims=True) - xhat * m
            s = sum(ggx * h, lay.axes, keepdims=True)                 # per statistic
            g_gamma = reshape(sum(s * inv_std, lay.param_axes), (x.shape[1],))
            ginv = g * s
            gxhat = -a * (ggx * m + gy * mean(ggx * xhat, lay.axes, keepdims=True))
        if gggamma is not None:
            r = reshape(gggamma, pshape)
            g_gy = r * xhat if g_gy is None else g_gy + r * xhat
            gxhat = r * gy if gxhat is None else gxhat + r * gy
        if ggbeta is not None:
            r = broadcast_to(reshape(ggbeta, pshape), x.shape)
            g_gy = r if g_gy is None else g_gy + r
        g_x = None
        if 0 in indexes and gxhat is not None:
            g_x = _standardize_grad(xhat, inv_std, gxhat, ginv, lay.axes, lay.count)
        return g_x, g_gamma if 1 in indexes else None, g_gy if 2 in indexes else None


def _grad_backward(lay, x, gamma, gy, ggx, gggamma, ggbeta, mu, inv, a):
    """NormalizationGrad.backward on arrays (norm_jit's two passes, else about a dozen NumPy
    passes): five per-statistic means, then g_gy and g_x as per-statistic combinations of ggx,
    gy and xhat (a = gamma inv_std).

    With gbar = mean(gy), m = mean(gy xhat), p = mean(ggx), q = mean(ggx xhat), R = gggamma,
    B = ggbeta, n = count: g_gy = a ggx + (R - a q) xhat + B - a p; s = n (mean(ggx gy) - gbar p
    - m q); g_gamma = sum of s inv_std; and _standardize_grad of gxhat = -a (m ggx + q gy) + R gy,
    ginv = gamma s, whose means are known: mean(gxhat) = -a (p m + gbar q) + R gbar and
    mean(gxhat xhat) = R m - 2 a m q.
    """
    if jit.takes(x, gy):            # two compiled passes instead of a dozen
        g_x, g_gamma, g_gy = norm_jit.grad_backward(
            lay, _rows(x), gamma, _rows(gy), None if ggx is None else _rows(ggx), gggamma,
            ggbeta, mu, inv, a)
        return g_x.reshape(x.shape), g_gamma, g_gy.reshape(x.shape)
    xp = backend.get_array_module(x)
    n = lay.count
    x3, gy3 = _rows(x), _rows(gy)
    mean_of = lambda u3, v3: lay.group(_row_dot(u3, v3)) * (1 / n)
    xhat = xp.subtract(x3, mu)
    xhat *= inv
    gbar, m = lay.row_means(gy3), mean_of(gy3, xhat)
    R = 0 if gggamma is None else gggamma[:, None]
    B = 0 if ggbeta is None else ggbeta[:, None]
    p = q = s = 0
    if ggx is not None:
        g3 = _rows(ggx)
        p, q = lay.row_means(g3), mean_of(g3, xhat)
        s = n * (mean_of(g3, gy3) - gbar * p - m * q)
    g_gamma = lay.per_channel(s * inv) if ggx is not None else None    # as the graph path
    k_xhat = R - a * q
    g_gy = xhat * k_xhat
    if ggx is not None:
        g_gy += g3 * a
    g_gy += B - a * p
    c0 = -inv * (-a * (p * m + gbar * q) + R * gbar)
    c1 = -(inv * (R * m - 2 * a * m * q) + gamma[:, None] * s * inv * inv * (1 / n))
    g_x = xp.multiply(gy3, inv * k_xhat)
    xhat *= c1
    g_x += xhat
    if ggx is not None:
        g_x += g3 * (-inv * a * m)
    g_x += c0
    return g_x.reshape(x.shape), g_gamma, g_gy.reshape(x.shape)


def _check(name, x, params, min_ndim=2):
    """Raise ValueError unless x is (N, C, ...) and every parameter is a (C,) array of x's dtype."""
    if x.ndim < min_ndim:
        raise ValueError(f"{name}: x must have at least {min_ndim} axes (N, C, ...), got shape "
                         f"{x.shape}")
    for pname, p in params.items():
        p = as_array(p)
        if p.shape != (x.shape[1],):
            raise ValueError(f"{name}: {pname} has shape {p.shape}, expected ({x.shape[1]},) "
                             f"for x of shape {x.shape}")
        if p.dtype != x.dtype:
            raise TypeError(f"{name}: {pname} has dtype {p.dtype}, x has dtype {x.dtype}")


def batch_normalization(x, gamma, beta, eps=2e-5, running_mean=None, running_var=None,
                        decay=0.9):
    """Training-mode batch norm over all axes but 1; updates running_mean/var in place if given.

    running = decay running + (1 - decay) batch statistic, with the unbiased variance
    (n / (n - 1)) for running_var, as Chainer and PyTorch (momentum = 1 - decay) do.
    """
    x = as_variable(x)
    running = {k: v for k, v in (("running_mean", running_mean), ("running_var", running_var))
               if v is not None}
    _check("batch_normalization", x, {"gamma": gamma, "beta": beta, **running})
    node = Normalization(False, eps)
    y, = node.apply((x, gamma, beta))
    n = node.layout.count
    if running_mean is not None:
        running_mean *= decay
        running_mean += node.mean.reshape(-1) * (1 - decay)
    if running_var is not None:      # unbiased; a single value per channel gives var = 0
        running_var *= decay
        running_var += node.var.reshape(-1) * ((1 - decay) * n / max(n - 1, 1))
    return y


def fixed_batch_normalization(x, gamma, beta, mean, var, eps=2e-5):
    """Test-mode batch norm: gamma (x - mean) / sqrt(var + eps) + beta with given statistics."""
    x = as_variable(x)
    _check("fixed_batch_normalization", x,
           {"gamma": gamma, "beta": beta, "mean": mean, "var": var})
    pshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean, var = as_array(mean), as_array(var)                       # constants
    xp = backend.get_array_module(mean)
    scale = as_variable(gamma) * (1 / xp.sqrt(var + x.dtype.type(eps)))
    return (x - mean.reshape(pshape)) * reshape(scale, pshape) + reshape(beta, pshape)


def instance_normalization(x, gamma=None, beta=None, eps=1e-5):
    """Normalize each (n, c) plane over its spatial axes (biased variance), then gamma, beta."""
    x = as_variable(x)
    if (gamma is None) != (beta is None):
        raise ValueError("instance_normalization: give both gamma and beta, or neither")
    if gamma is None:           # constants: no gradient is computed for them
        xp = backend.get_array_module(x.array)
        gamma, beta = xp.ones(x.shape[1:2], x.dtype), xp.zeros(x.shape[1:2], x.dtype)
    _check("instance_normalization", x, {"gamma": gamma, "beta": beta}, min_ndim=3)
    return Normalization(True, eps).apply((x, gamma, beta))[0]
