"""Dropout and noise injection."""
from .. import backend
from ..core import FunctionNode, as_variable, config
from . import jit
from .math import sum as sum_


class Dropout(FunctionNode):
    def __init__(self, ratio, mask=None):
        self.ratio, self.mask = ratio, mask

    def forward(self, inputs):
        x, = inputs
        if self.mask is None:
            xp = backend.get_array_module(x)
            keep = xp.random.random_sample(x.shape) >= self.ratio
            # inverted dropout: scale the kept units by 1 / (1 - p) so E[y] = x
            self.mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.ratio))
        return x * self.mask,

    def backward(self, indexes, grad_outputs):
        return grad_outputs[0] * self.mask,


def dropout(x, ratio=0.5, mask=None):
    """Zero each unit with probability `ratio` and scale the rest by 1 / (1 - ratio), in training
    (config.train); the identity otherwise. `mask` fixes the pattern (for tests)."""
    if not config.train or ratio == 0:
        return as_variable(x)
    if not 0 <= ratio < 1:
        raise ValueError(f"dropout: ratio must be in [0, 1), got {ratio}")
    return Dropout(ratio, mask).apply((x,))[0]


class ScaledNoise(FunctionNode):
    """y = x + w noise: x (N, C, H, W), w (C,), the constant noise (N, 1, H, W) shared by the
    channels. One pass forward; backward gx = gy and gw[c] = sum over n, h, w of gy noise."""

    def __init__(self, noise):
        self.noise = noise

    def forward(self, inputs):
        x, w = inputs
        if jit.takes(x, w, self.noise):
            return jit.scaled_noise(x, w, self.noise),
        return x + w.reshape(1, -1, 1, 1) * self.noise,

    def backward(self, indexes, grad_outputs):
        gy, = grad_outputs
        if 1 not in indexes:
            return gy, None
        N, C, H, W = gy.shape
        if not config.enable_backprop:     # one product over the batch: (N, C, HW) @ (N, HW, 1)
            xp = backend.get_array_module(gy.array)
            n3 = xp.ascontiguousarray(self.noise).reshape(N, H * W, 1)
            gw = xp.matmul(xp.ascontiguousarray(gy.array).reshape(N, C, H * W), n3).sum(axis=0)
            return gy, gw.reshape(C)
        return gy, sum_(gy * self.noise, axis=(0, 2, 3))


def scaled_noise(x, w, noise):
    """x + w noise, per channel w (C,) and one noise map (N, 1, H, W) per image (StyleGAN's
    noise injection); noise is a constant array."""
    x, w = as_variable(x), as_variable(w)
    noise = backend.get_array_module(x.array).asarray(noise, x.dtype)
    N, C, H, W = x.shape
    if w.shape != (C,) or tuple(noise.shape) != (N, 1, H, W):
        raise ValueError(f"scaled_noise: w {w.shape} and noise {tuple(noise.shape)} must be "
                         f"({C},) and ({N}, 1, {H}, {W}) for x {x.shape}")
    return ScaledNoise(noise).apply((x, w))[0]
