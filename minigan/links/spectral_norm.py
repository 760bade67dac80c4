"""Spectral normalization (Miyato, Kataoka, Koyama and Yoshida, "Spectral Normalization for
Generative Adversarial Networks", ICLR 2018): a layer whose weight is W / sigma(W).

sigma(W), the largest singular value of W as a matrix (out, in * kh * kw), is estimated by power
iteration, one step per training forward, from the vectors u (out,) and v (in * kh * kw,) kept
between calls (persistent arrays: snapshots hold them, so a resume continues the same estimate):

    v <- W^T u / ||W^T u||,   u <- W v / ||W v||,   sigma = u^T W v

u and v are constants for the gradient (as torch.nn.utils.spectral_norm and Chainer do): with
sigma = sum(W * u v^T), the gradient G of W_sn = W / sigma reaches W as
(G - sum(G * W_sn) u v^T) / sigma, built by the engine from differentiable ops (so every order
works). In test mode u and v are used as they are (no iteration), as in PyTorch's eval mode.
"""
import numpy

from .. import functions as F
from ..core import config
from .connection import Convolution2D, Deconvolution2D, Linear
from .link import Chain, Sequential

EPS = 1e-12         # torch's normalize(eps): x / max(||x||, eps)


def _normalize(xp, x):
    return x / max(float(xp.linalg.norm(x)), EPS)


def _matrix_axis(link):
    """The axis of W that is the matrix's rows: out_channels (axis 1 for a transposed conv)."""
    return 1 if isinstance(link, Deconvolution2D) else 0


def _apply(link, x, W):
    """link's op with the weight W in place of link.W."""
    if isinstance(link, Convolution2D):
        return F.convolution_2d(x, W, link.b, stride=link.stride, pad=link.pad,
                                dilate=link.dilate, groups=link.groups)
    if isinstance(link, Deconvolution2D):
        return F.deconvolution_2d(x, W, link.b, stride=link.stride, pad=link.pad,
                                  outsize=link.outsize, dilate=link.dilate, groups=link.groups)
    return F.linear(x, W, link.b)


class SpectralNorm(Chain):
    """link (Convolution2D, Deconvolution2D or Linear) with W / sigma(W); u, v persistent."""

    def __init__(self, link, rng=numpy.random):
        super().__init__()
        if not isinstance(link, (Convolution2D, Deconvolution2D, Linear)):
            raise TypeError(f"SpectralNorm wraps Convolution2D, Deconvolution2D or Linear, not "
                            f"{type(link).__name__}")
        self.link = link
        W = self._matrix(link.W.array)
        dtype = link.W.dtype
        # random unit vectors, as torch's spectral_norm starts
        self.add_persistent("u", _normalize(numpy, rng.standard_normal(W.shape[0]).astype(dtype)))
        self.add_persistent("v", _normalize(numpy, rng.standard_normal(W.shape[1]).astype(dtype)))

    def _matrix(self, W):
        """W as the (out, rest) matrix whose spectral norm is taken."""
        axis = _matrix_axis(self.link)
        W = W if axis == 0 else W.swapaxes(0, 1)
        return W.reshape(W.shape[0], -1)

    def power_iteration(self):
        """One step of the estimate of u and v (arrays only: no graph)."""
        xp, W = self.xp, self._matrix(self.link.W.array)
        self.v[...] = _normalize(xp, W.T @ self.u)
        self.u[...] = _normalize(xp, W @ self.v)

    def sigma(self):
        """sigma = u^T W v as a Variable of W (u, v constants): sum(W * u v^T)."""
        uv = self.u[:, None] * self.v[None, :]      # u v^T (out, rest)
        if _matrix_axis(self.link) == 1:
            shape = self.link.W.shape
            uv = uv.reshape((shape[1], shape[0]) + shape[2:]).swapaxes(0, 1)
        return F.sum(self.link.W * uv.reshape(self.link.W.shape))

    def normalized_weight(self):
        """W / sigma(W), after a power-iteration step in training."""
        if config.train:
            self.power_iteration()
        W = self.link.W
        return W / F.broadcast_to(F.reshape(self.sigma(), (1,) * W.ndim), W.shape)

    def forward(self, x):
        return _apply(self.link, x, self.normalized_weight())


def spectral_norm(link, rng=numpy.random):
    """link wrapped in SpectralNorm when it is a conv, transposed conv or linear layer; else the
    links below it (a Chain's children, a Sequential's layers) wrapped in place. Returns it."""
    if isinstance(link, (Convolution2D, Deconvolution2D, Linear)):
        return SpectralNorm(link, rng)
    if isinstance(link, Chain) and not isinstance(link, SpectralNorm):
        for name in list(link._children):
            child = link.__dict__[name]
            wrapped = spectral_norm(child, rng)
            if wrapped is not child:
                setattr(link, name, wrapped)
                if isinstance(link, Sequential):        # its layer list holds the link too
                    link._layers[link._layers.index(child)] = wrapped
    return link
