"""DCGAN: the GAN game played by all-convolutional networks with batch normalization.

Radford, Metz and Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016 (arXiv:1511.06434).

What is new (the paper's "architecture guidelines for stable deep convolutional GANs"): no pooling
and no fully connected hidden layers, strided convolutions in D and fractionally strided
(transposed) convolutions in G; batch normalization in both, except at G's output and D's input;
ReLU in G with a tanh output, leaky ReLU (slope 0.2) in D. The losses are the GAN's
(Goodfellow et al. 2014) with G's non-saturating form, on D's logits y:

    L_D = E_x[softplus(-D(x))] + E_z[softplus(D(G(z)))]
    L_G = E_z[softplus(-D(G(z)))]

One iteration (Chainer's DCGAN updater): G(z) once, D on the fake and the real batch, then G's
step (backprop through D into G only) and D's step (backprop stopping at G(z)), from that one
forward pass.

Two architectures:
    'mnist' (28 x 28): the networks of /work/shared/bench/torch_dcgan.py, layer for layer, so the
      benchmark times the same step in both frameworks. G: ConvT(100->128, 4, 1, 0) + BN + LReLU,
      ConvT(128->64, 3, 2, 1) + BN + LReLU, ConvT(64->32, 4, 2, 1) + BN + LReLU,
      ConvT(32->1, 4, 2, 1) + tanh. D: Conv(1->32, 4, 2, 1) + LReLU, Conv(32->64, 4, 2, 1) + BN +
      LReLU, Conv(64->128, 3, 2, 1) + BN + LReLU, Conv(128->1, 4, 1, 0) (logits; the reference's
      sigmoid + BCE is folded into a softplus, the same loss without overflow). Convs have biases,
      BN has eps 1e-5 and momentum 0.1 (PyTorch's defaults), as in the reference.
    'radford' (size = 4 * 2^k, e.g. 64 x 64 RGB): the paper's Figure 1 at ngf = ndf = 64. G: project
      z with a 4 x 4 transposed conv to 8 ngf channels, then 4 x 4 stride-2 transposed convs
      halving the channels, BN + ReLU, tanh at the output. D mirrors it with 4 x 4 stride-2 convs,
      BN (not on the first) and LReLU(0.2), then a 4 x 4 conv to one logit. Convs before a BN
      have no bias (BN's beta replaces it).

Defaults and their sources:
    z ~ N(0, I), 100 dimensions         paper section 4 (it used uniform noise; the reference and
                                        most implementations use N(0, I))
    Adam(alpha=2e-4, beta1=0.5)         paper section 4
    weights N(0, 0.02), biases 0        paper section 4
    batch size 64                       the reference benchmark (the paper used 128)
"""
import dataclasses

import numpy

from .. import functions as F
from .. import links as L
from ..core import no_backprop_mode, using_config
from ..initializers import Normal
from ..optimizers import Adam
from ..training import Updater


@dataclasses.dataclass
class Config:
    arch: str = "mnist"         # 'mnist' (28 x 28, the benchmark's) or 'radford' (4 * 2^k)
    size: int = 28
    channels: int = 1
    n_z: int = 100
    ngf: int = 64               # radford: G's last hidden width (widths 8 ngf, 4 ngf, ...)
    ndf: int = 64               # radford: D's first width
    bn_eps: float = 1e-5
    alpha: float = 2e-4
    beta1: float = 0.5


def lrelu(h):
    return F.leaky_relu(h, 0.2)


def _deconv(a, b, k, s, p, nobias=False):
    return L.Deconvolution2D(a, b, k, s, p, nobias=nobias, initialW=Normal(0.02))


def _conv(a, b, k, s, p, nobias=False):
    return L.Convolution2D(a, b, k, s, p, nobias=nobias, initialW=Normal(0.02))


# -- networks ----------------------------------------------------------------------------------

def mnist_generator(c):
    """z (N, 100, 1, 1) -> (N, 1, 28, 28): 1 -> 4 -> 7 -> 14 -> 28 pixels."""
    bn = lambda n: L.BatchNormalization(n, eps=c.bn_eps)
    return L.Sequential(_deconv(c.n_z, 128, 4, 1, 0), bn(128), lrelu,     # (N, 128, 4, 4)
                        _deconv(128, 64, 3, 2, 1), bn(64), lrelu,         # (N, 64, 7, 7)
                        _deconv(64, 32, 4, 2, 1), bn(32), lrelu,          # (N, 32, 14, 14)
                        _deconv(32, c.channels, 4, 2, 1), F.tanh)         # (N, 1, 28, 28)


def mnist_discriminator(c):
    """(N, 1, 28, 28) -> logits (N, 1, 1, 1): 28 -> 14 -> 7 -> 4 -> 1 pixels."""
    bn = lambda n: L.BatchNormalization(n, eps=c.bn_eps)
    return L.Sequential(_conv(c.channels, 32, 4, 2, 1), lrelu,             # (N, 32, 14, 14)
                        _conv(32, 64, 4, 2, 1), bn(64), lrelu,            # (N, 64, 7, 7)
                        _conv(64, 128, 3, 2, 1), bn(128), lrelu,          # (N, 128, 4, 4)
                        _conv(128, 1, 4, 1, 0))                           # (N, 1, 1, 1)


def _depth(size):
    """k with size = 4 * 2^k (k >= 2), the number of stride-2 layers."""
    k = (size // 4).bit_length() - 1
    if size < 16 or 4 * 2 ** k != size:
        raise ValueError(f"DCGAN (radford): image size {size} must be 4 * 2^k, at least 16")
    return k


def radford_generator(c):
    """z (N, n_z, 1, 1) -> (N, C, size, size), e.g. 1 -> 4 -> 8 -> 16 -> 32 -> 64 pixels."""
    k = _depth(c.size)
    widths = [c.ngf * 2 ** (k - 1 - i) for i in range(k)]                # 8 ngf ... ngf at 64
    layers = [_deconv(c.n_z, widths[0], 4, 1, 0, nobias=True),           # (N, 8 ngf, 4, 4)
              L.BatchNormalization(widths[0], eps=c.bn_eps), F.relu]
    for a, b in zip(widths, widths[1:]):                                 # doubles H and W
        layers += [_deconv(a, b, 4, 2, 1, nobias=True), L.BatchNormalization(b, eps=c.bn_eps),
                   F.relu]
    layers += [_deconv(widths[-1], c.channels, 4, 2, 1), F.tanh]         # (N, C, size, size)
    return L.Sequential(*layers)


def radford_discriminator(c):
    """(N, C, size, size) -> logits (N, 1, 1, 1), e.g. 64 -> 32 -> 16 -> 8 -> 4 -> 1 pixels."""
    k = _depth(c.size)
    widths = [c.ndf * 2 ** i for i in range(k)]                          # ndf ... 8 ndf at 64
    layers = [_conv(c.channels, widths[0], 4, 2, 1), lrelu]              # no BN on D's input
    for a, b in zip(widths, widths[1:]):                                 # halves H and W
        layers += [_conv(a, b, 4, 2, 1, nobias=True), L.BatchNormalization(b, eps=c.bn_eps),
                   lrelu]
    layers.append(_conv(widths[-1], 1, 4, 1, 0))                         # (N, 1, 1, 1)
    return L.Sequential(*layers)


ARCHITECTURES = {"mnist": (mnist_generator, mnist_discriminator),
                 "radford": (radford_generator, radford_discriminator)}


class Generator(L.Chain):
    """G(z): z (N, n_z) -> images (N, C, size, size) in [-1, 1]."""

    def __init__(self, c):
        super().__init__()
        self.net = ARCHITECTURES[c.arch][0](c)

    def forward(self, z):
        return self.net(F.reshape(z, z.shape + (1, 1)))     # z as a 1 x 1 image of n_z channels


class Discriminator(L.Chain):
    """D(x): images (N, C, size, size) -> logits (N, 1)."""

    def __init__(self, c):
        super().__init__()
        self.net = ARCHITECTURES[c.arch][1](c)

    def forward(self, x):
        return F.reshape(self.net(x), (len(x), 1))


def sample_z(c, n, rng=numpy.random):
    """n noise vectors z ~ N(0, I), float32 (N, n_z), from rng (numpy's global one by default)."""
    return rng.standard_normal((n, c.n_z)).astype(numpy.float32)


# -- losses ------------------------------------------------------------------------------------

def loss_discriminator(y_real, y_fake):
    """L_D = -E[log D(x)] - E[log(1 - D(G(z)))] on logits."""
    return F.mean(F.softplus(-y_real)) + F.mean(F.softplus(y_fake))


def loss_generator(y_fake):
    """L_G = -E[log D(G(z))], the non-saturating generator loss."""
    return F.mean(F.softplus(-y_fake))


# -- one iteration -----------------------------------------------------------------------------

def build(c, device=-1):
    """Generator, discriminator and their optimizers for a Config, on the device."""
    G, D = Generator(c), Discriminator(c)
    G.to_device(device)
    D.to_device(device)
    return {"gen": G, "dis": D}, {"gen": Adam(c.alpha, c.beta1).setup(G),
                                  "dis": Adam(c.alpha, c.beta1).setup(D)}


class DCGANUpdater(Updater):
    """One shared forward pass, then G's step and D's step (the reference's 'shared' scheme)."""

    def __init__(self, config, models, optimizers, device=-1):
        super().__init__(models, optimizers, device)
        self.config = config

    def update(self, batch):
        c, G, D = self.config, self.models["gen"], self.models["dis"]
        x_real = self.to_device(batch)                          # (N, C, H, W)
        z = self.to_device(sample_z(c, len(x_real)))            # (N, n_z)
        x_fake = G(z)                                           # (N, C, H, W)
        y_fake, y_real = D(x_fake), D(x_real)                   # (N, 1) logits
        loss_G = loss_generator(y_fake)
        loss_D = loss_discriminator(y_real, y_fake)

        G.cleargrads()
        loss_G.backward(inputs=G.params())                      # through D, no D gradients
        self.optimizers["gen"].update()
        D.cleargrads()
        loss_D.backward(inputs=D.params())                      # stops at G(z): no G work
        self.optimizers["dis"].update()

        accuracy = 0.5 * (float((y_real.array > 0).mean()) + float((y_fake.array < 0).mean()))
        return {"loss/gen": float(loss_G.array), "loss/dis": float(loss_D.array),
                "dis/accuracy": accuracy}


def generate(G, z):
    """G(z) as an array, in test mode (BN's running statistics) and without a graph."""
    with no_backprop_mode(), using_config("train", False):
        return G(z).array
