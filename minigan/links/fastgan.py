"""The FastGAN blocks (Liu et al., ICLR 2021) that Lightweight GAN and ProjectedGAN share.

    init      z (N, n_z, 1, 1) -> ConvT 4x4 -> BN -> GLU                        (N, C, 4, 4)
    up        nearest x2 -> conv 3x3 to 2C -> noise injection -> BN -> GLU     (N, C, 2H, 2W)
    up big    ProjectedGAN's 'fastgan': up, then two rounds of conv 3x3 + noise + BN + GLU
    SLE       SLE(low, high) = high * sigmoid(conv1x1(swish(conv4x4(pool4(low)))))
    down      [conv 4x4 s2 + BN + LReLU -> conv 3x3 + BN + LReLU] + [avgpool 2 + conv 1x1 + BN
              + LReLU]: two branches summed                                     (N, C, H/2, W/2)
    decoder   up-blocks without noise, then conv 3x3 + tanh: D's self-supervision

antialias (lucidrains' option): the [1 2 1]^2 / 16 blur (F.blur) right after each x2 upsampling and
right before each downsampling branch.

Noise injection is x + w * noise with noise ~ N(0, 1) of shape (N, 1, H, W) (one map per image,
shared by the channels) and a learned per-channel w initialised at 0, so G starts noise-free
(StyleGAN's form; the FastGAN code has one scalar w). Convolutions before a batch norm have no
bias (the norm's mean cancels it); weights N(0, 0.02) as the FastGAN code's weights_init.
"""
import numpy

from .. import functions as F
from ..initializers import Normal, Zero
from .connection import Convolution2D, Deconvolution2D
from .link import Chain, Link, Sequential
from .normalization import BatchNormalization


def lrelu(h):
    """Leaky ReLU, slope 0.2 (the paper's D)."""
    return F.leaky_relu(h, 0.2)


def conv(a, b, k, s=1, p=0, nobias=True, groups=1, dtype=numpy.float32):
    """Convolution2D with N(0, 0.02) weights, no bias unless asked."""
    return Convolution2D(a, b, k, s, p, nobias=nobias, initialW=Normal(0.02), groups=groups,
                         dtype=dtype)


def bn(c, eps=1e-5, dtype=numpy.float32):
    """Batch norm with PyTorch's eps and momentum (decay 0.9 = momentum 0.1)."""
    return BatchNormalization(c, eps=eps, dtype=dtype)


class NoiseInjection(Link):
    """x + w * noise: noise (N, 1, H, W) ~ N(0, 1) unless given, w (C,) learned, starting at 0."""

    def __init__(self, channels, dtype=numpy.float32):
        super().__init__()
        self.add_param("weight", (channels,), Zero(), dtype)

    def forward(self, x, noise=None):
        N, C, H, W = x.shape
        if noise is None:       # drawn on the host (NumPy's generator: a snapshot restores it)
            noise = numpy.random.standard_normal((N, 1, H, W))
        w = self.weight if self.weight.shape == (C,) else F.broadcast_to(self.weight, (C,))
        return F.scaled_noise(x, w, noise)      # x + w[c] noise, one op (noise sent to x's device)


class InitBlock(Chain):
    """z (N, n_z) -> (N, C, 4, 4): ConvT 4x4 to 2C, BN, GLU."""

    def __init__(self, n_z, channels, dtype=numpy.float32):
        super().__init__()
        self.deconv = Deconvolution2D(n_z, 2 * channels, 4, 1, 0, nobias=True,
                                      initialW=Normal(0.02), dtype=dtype)
        self.bn = bn(2 * channels, dtype=dtype)

    def forward(self, z):
        h = self.deconv(F.reshape(z, z.shape + (1, 1)))        # (N, 2C, 4, 4)
        return F.glu(self.bn(h))                                # (N, C, 4, 4)


def maybe_blur(antialias):
    """F.blur when antialiasing, else the identity."""
    return F.blur if antialias else (lambda x: x)


class UpBlock(Chain):
    """(N, a, H, W) -> (N, b, 2H, 2W): nearest x2 (blurred with antialias), conv 3x3 to 2b,
    noise, BN, GLU."""

    def __init__(self, a, b, noise=True, antialias=False, dtype=numpy.float32):
        super().__init__()
        self.blur = maybe_blur(antialias)
        self.conv = conv(a, 2 * b, 3, 1, 1, dtype=dtype)
        self.noise = NoiseInjection(2 * b, dtype) if noise else None
        self.bn = bn(2 * b, dtype=dtype)

    def forward(self, x, noise=None):
        h = self.conv(self.blur(F.upsample_nearest(x, 2)))     # (N, 2b, 2H, 2W)
        if self.noise is not None:
            h = self.noise(h, noise)
        return F.glu(self.bn(h))                                # (N, b, 2H, 2W)


class UpBlockBig(Chain):
    """ProjectedGAN's 'fastgan' up-block: nearest x2, then twice conv 3x3 to 2b, noise (one
    scalar weight, as its code), BN, GLU."""

    def __init__(self, a, b, dtype=numpy.float32):
        super().__init__()
        self.conv1, self.noise1, self.bn1 = (conv(a, 2 * b, 3, 1, 1, dtype=dtype),
                                             NoiseInjection(1, dtype), bn(2 * b, dtype=dtype))
        self.conv2, self.noise2, self.bn2 = (conv(b, 2 * b, 3, 1, 1, dtype=dtype),
                                             NoiseInjection(1, dtype), bn(2 * b, dtype=dtype))

    def forward(self, x, noise=(None, None)):
        h = F.glu(self.bn1(self.noise1(self.conv1(F.upsample_nearest(x, 2)), noise[0])))
        return F.glu(self.bn2(self.noise2(self.conv2(h), noise[1])))   # (N, b, 2H, 2W)


class SLE(Chain):
    """Skip-layer excitation: high * sigmoid(conv1x1(swish(conv4x4(pool4(low))))), a channel
    gate for the high-resolution feature computed from the low-resolution one."""

    def __init__(self, c_low, c_high, dtype=numpy.float32):
        super().__init__()
        self.conv4 = conv(c_low, c_high, 4, dtype=dtype)       # 4x4 -> 1x1
        self.conv1 = conv(c_high, c_high, 1, dtype=dtype)

    def forward(self, low, high):
        h = F.adaptive_average_pooling_2d(low, 4)               # (N, c_low, 4, 4)
        gate = F.sigmoid(self.conv1(F.swish(self.conv4(h))))   # (N, c_high, 1, 1)
        return high * F.broadcast_to(gate, high.shape)


class DownBlock(Chain):
    """(N, a, H, W) -> (N, b, H/2, W/2): the sum of a strided-conv and an avgpool branch (both
    of x blurred, with antialias)."""

    def __init__(self, a, b, dtype=numpy.float32, antialias=False):
        super().__init__()
        self.blur = maybe_blur(antialias)
        self.main = Sequential(conv(a, b, 4, 2, 1, dtype=dtype), bn(b, dtype=dtype), lrelu,
                               conv(b, b, 3, 1, 1, dtype=dtype), bn(b, dtype=dtype), lrelu)
        self.direct = Sequential(lambda x: F.average_pooling_2d(x, 2),
                                 conv(a, b, 1, dtype=dtype), bn(b, dtype=dtype), lrelu)

    def forward(self, x):
        x = self.blur(x)
        return self.main(x) + self.direct(x)


def decoder_widths(c_in, n_up, low=16):
    """Channels after each of the decoder's n_up blocks: halved each time, at least `low`."""
    widths, c = [], c_in
    for _ in range(n_up):
        c = max(c // 2, low)
        widths.append(c)
    return widths


class SimpleDecoder(Chain):
    """D's self-supervision: (N, c_in, 8, 8) -> (N, C, 8 * 2^n_up, ...) through noise-free
    up-blocks, then conv 3x3 + tanh (images live in [-1, 1])."""

    def __init__(self, c_in, channels, n_up, dtype=numpy.float32):
        super().__init__()
        widths = [c_in] + decoder_widths(c_in, n_up)
        self.ups = Sequential(*[UpBlock(a, b, noise=False, dtype=dtype)
                                for a, b in zip(widths, widths[1:])])
        self.out = conv(widths[-1], channels, 3, 1, 1, nobias=False, dtype=dtype)

    def forward(self, h):
        return F.tanh(self.out(self.ups(h)))
