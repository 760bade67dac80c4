"""lucidrains' attention for GAN feature maps (lightweight-gan 1.2.1's LinearAttention), residual
and pre-normalized: x + A(ChannelNorm(x)).

A(x) adds two views of the map, each with h heads of d channels (8 x 64), over n = X Y pixels:
  - linear attention (Shen et al. 2021, "Efficient Attention"), global at O(n d^2):
        q = softmax_d(W_q x), k = softmax_n(W_k dw3x3(x)), v = W_v dw3x3(x)
        out_lin = GELU(q (k^T v) / sqrt(d))
  - full attention inside each pixel's 3 x 3 neighbourhood (zero padded: a border pixel also
    attends to the padding's zero keys, with logit 0, as torch's unfold gives them):
        out_loc[i] = sum_{j in N(i)} softmax_j(q_i . k_j / sqrt(d)) v_j
  then A(x) = conv1x1([out_lin, out_loc]) back to x's channels.
Convolutions without bias except the last; weights N(0, 0.02): fastgan.conv, as the rest of
minigan's FastGAN.
"""
import numpy

from .. import functions as F
from ..initializers import One, Zero
from .fastgan import conv
from .link import Chain, Link


class ChannelNorm(Link):
    """(x - mean_c x) / sqrt(var_c x + eps) g + b: each pixel normalized over its channels."""

    def __init__(self, channels, eps=1e-5, dtype=numpy.float32):
        super().__init__()
        self.eps = eps
        self.add_param("g", (channels,), One(), dtype)
        self.add_param("b", (channels,), Zero(), dtype)

    def forward(self, x):
        wide = lambda v: F.broadcast_to(v, x.shape)
        d = x - wide(F.mean(x, axis=1, keepdims=True))
        inv = (F.mean(d * d, axis=1, keepdims=True) + self.eps) ** -0.5    # biased variance
        shape = (1, -1, 1, 1)
        return d * wide(inv) * wide(F.reshape(self.g, shape)) + wide(F.reshape(self.b, shape))


def heads_last(t, heads):
    """(N, h d, X, Y) -> (N h, X Y, d)."""
    N, hd, X, Y = t.shape
    return F.transpose(F.reshape(t, (N * heads, hd // heads, X * Y)), (0, 2, 1))


def heads_back(t, N, X, Y):
    """(N h, X Y, d) -> (N, h d, X, Y)."""
    return F.reshape(F.transpose(t, (0, 2, 1)), (N, -1, X, Y))


class LinearAttention(Chain):
    """A(x) of the module docstring: (N, C, X, Y) -> (N, C, X, Y)."""

    def __init__(self, dim, dim_head=64, heads=8, kernel_size=3, dtype=numpy.float32):
        super().__init__()
        self.heads, self.dim_head, self.kernel_size = heads, dim_head, kernel_size
        inner = dim_head * heads
        self.to_lin_q = conv(dim, inner, 1, dtype=dtype)
        self.to_lin_kv_dw = conv(dim, dim, 3, 1, 1, groups=dim, dtype=dtype)    # depthwise 3x3
        self.to_lin_kv = conv(dim, 2 * inner, 1, dtype=dtype)
        self.to_q = conv(dim, inner, 1, dtype=dtype)
        self.to_kv = conv(dim, 2 * inner, 1, dtype=dtype)
        self.to_out = conv(2 * inner, dim, 1, nobias=False, dtype=dtype)

    def forward(self, x):
        N, _, X, Y = x.shape
        h, scale = self.heads, self.dim_head ** -0.5
        # linear attention: the d x d context k^T v summarizes all n pixels once
        q = F.softmax(heads_last(self.to_lin_q(x), h), axis=2) * scale         # (N h, n, d)
        k, v = F.split_axis(self.to_lin_kv(self.to_lin_kv_dw(x)), 2, axis=1)
        k, v = F.softmax(heads_last(k, h), axis=1), heads_last(v, h)
        context = F.matmul(F.transpose(k, (0, 2, 1)), v)                      # (N h, d, d)
        lin = F.gelu(heads_back(F.matmul(q, context), N, X, Y))
        # full attention over each pixel's k x k neighbourhood, per head: (N h, d, X, Y)
        per_head = lambda t: F.reshape(t, (N * h, self.dim_head, X, Y))
        q = per_head(self.to_q(x)) * scale
        k, v = (per_head(t) for t in F.split_axis(self.to_kv(x), 2, axis=1))
        sim = F.local_dot(q, k, self.kernel_size)          # q . k_j, j over the neighbours
        attn = F.softmax(sim, axis=1)                                          # (N h, kk, X, Y)
        local = F.local_mix(attn, v, self.kernel_size)     # sum_j attn_j v_j: (N h, d, X, Y)
        return self.to_out(F.concat([lin, F.reshape(local, (N, -1, X, Y))], axis=1))


class ResidualAttention(Chain):
    """x + LinearAttention(ChannelNorm(x)): lucidrains' Residual(PreNorm(LinearAttention))."""

    def __init__(self, dim, dim_head=64, heads=8, dtype=numpy.float32):
        super().__init__()
        self.norm = ChannelNorm(dim, dtype=dtype)
        self.attn = LinearAttention(dim, dim_head, heads, dtype=dtype)

    def forward(self, x):
        return x + self.attn(self.norm(x))
