"""The DCGAN networks (Radford, Metz and Chintala 2016) that DCGAN and WGAN-GP share.

'mnist' (28 x 28): the layers of the PyTorch reference benchmark (bench/torch_dcgan.py in the
team's shared folder). G: ConvT(n_z->128, 4, 1, 0) + BN + LReLU, ConvT(128->64, 3, 2, 1) + BN +
LReLU, ConvT(64->32, 4, 2, 1) + BN + LReLU, ConvT(32->C, 4, 2, 1) + tanh. D: Conv(C->32, 4, 2, 1)
+ LReLU, Conv(32->64, 4, 2, 1) + norm + LReLU, Conv(64->128, 3, 2, 1) + norm + LReLU,
Conv(128->1, 4, 1, 0).

'radford' (size = 4 * 2^k): the paper's Figure 1. G projects z with a 4 x 4 transposed conv to
8 ngf channels (at 64 x 64), then 4 x 4 stride-2 transposed convs halving the channels, BN +
ReLU, tanh at the output. D mirrors it with 4 x 4 stride-2 convs, a norm (not on the first) and
LReLU(0.2), then a 4 x 4 conv to one value.

The norm of D is batch norm in DCGAN and instance norm in WGAN-GP's critic (a per-sample penalty
needs per-sample values). A conv right before a norm has no bias where the norm would cancel it,
except in the 'mnist' D with batch norm, which keeps the reference's biases. Weights N(0, 0.02).
"""
from .. import functions as F
from ..initializers import Normal
from .connection import Convolution2D, Deconvolution2D
from .link import Sequential
from .normalization import BatchNormalization, InstanceNormalization

NORMS = {"batch": BatchNormalization, "instance": InstanceNormalization}


def lrelu(h):
    """Leaky ReLU with the paper's slope 0.2."""
    return F.leaky_relu(h, 0.2)


def conv(a, b, k, s, p, nobias=False):
    """Convolution2D with N(0, 0.02) weights."""
    return Convolution2D(a, b, k, s, p, nobias=nobias, initialW=Normal(0.02))


def deconv(a, b, k, s, p, nobias=False):
    """Deconvolution2D with N(0, 0.02) weights."""
    return Deconvolution2D(a, b, k, s, p, nobias=nobias, initialW=Normal(0.02))


def depth(size, gan):
    """k with size = 4 * 2^k (k >= 2): the number of stride-2 layers of the 'radford' layout."""
    k = (size // 4).bit_length() - 1
    if size < 16 or 4 * 2 ** k != size:
        raise ValueError(f"{gan} (radford): image size {size} must be 4 * 2^k, at least 16")
    return k


def mnist_generator(n_z, channels, bn_eps=1e-5):
    """z (N, n_z, 1, 1) -> (N, C, 28, 28): 1 -> 4 -> 7 -> 14 -> 28 pixels."""
    bn = lambda n: BatchNormalization(n, eps=bn_eps)
    return Sequential(deconv(n_z, 128, 4, 1, 0), bn(128), lrelu,       # (N, 128, 4, 4)
                      deconv(128, 64, 3, 2, 1), bn(64), lrelu,         # (N, 64, 7, 7)
                      deconv(64, 32, 4, 2, 1), bn(32), lrelu,          # (N, 32, 14, 14)
                      deconv(32, channels, 4, 2, 1), F.tanh)           # (N, C, 28, 28)


def mnist_discriminator(channels, norm="batch", bn_eps=1e-5):
    """(N, C, 28, 28) -> (N, 1, 1, 1): 28 -> 14 -> 7 -> 4 -> 1 pixels."""
    nobias = norm == "instance"
    n = (lambda c: BatchNormalization(c, eps=bn_eps)) if norm == "batch" else NORMS[norm]
    return Sequential(conv(channels, 32, 4, 2, 1), lrelu,                      # (N, 32, 14, 14)
                      conv(32, 64, 4, 2, 1, nobias), n(64), lrelu,             # (N, 64, 7, 7)
                      conv(64, 128, 3, 2, 1, nobias), n(128), lrelu,           # (N, 128, 4, 4)
                      conv(128, 1, 4, 1, 0, nobias))                           # (N, 1, 1, 1)


def radford_generator(n_z, size, channels, ngf=64, bn_eps=1e-5, gan="DCGAN"):
    """z (N, n_z, 1, 1) -> (N, C, size, size), e.g. 1 -> 4 -> 8 -> 16 -> 32 -> 64 pixels."""
    k = depth(size, gan)
    widths = [ngf * 2 ** (k - 1 - i) for i in range(k)]                 # 8 ngf ... ngf at 64
    layers = [deconv(n_z, widths[0], 4, 1, 0, nobias=True),             # (N, 8 ngf, 4, 4)
              BatchNormalization(widths[0], eps=bn_eps), F.relu]
    for a, b in zip(widths, widths[1:]):                                # doubles H and W
        layers += [deconv(a, b, 4, 2, 1, nobias=True), BatchNormalization(b, eps=bn_eps), F.relu]
    layers += [deconv(widths[-1], channels, 4, 2, 1), F.tanh]           # (N, C, size, size)
    return Sequential(*layers)


def radford_discriminator(size, channels, ndf=64, norm="batch", bn_eps=1e-5, gan="DCGAN"):
    """(N, C, size, size) -> (N, 1, 1, 1), e.g. 64 -> 32 -> 16 -> 8 -> 4 -> 1 pixels."""
    k = depth(size, gan)
    n = (lambda c: BatchNormalization(c, eps=bn_eps)) if norm == "batch" else NORMS[norm]
    widths = [ndf * 2 ** i for i in range(k)]                           # ndf ... 8 ndf at 64
    layers = [conv(channels, widths[0], 4, 2, 1), lrelu]                # no norm on D's input
    for a, b in zip(widths, widths[1:]):                                # halves H and W
        layers += [conv(a, b, 4, 2, 1, nobias=True), n(b), lrelu]
    layers.append(conv(widths[-1], 1, 4, 1, 0, nobias=norm == "instance"))   # (N, 1, 1, 1)
    return Sequential(*layers)
