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

Two architectures (minigan/links/dcgan.py, shared with WGAN-GP): 'mnist' (28 x 28), the layers
of the PyTorch reference benchmark, so the benchmark times the same step in both frameworks (its
sigmoid + BCE is folded into a softplus, the same loss without overflow; convs have biases, BN
eps 1e-5 and momentum 0.1 as in the reference); and 'radford' (size = 4 * 2^k, e.g. 64 x 64 RGB),
the paper's Figure 1 at ngf = ndf = 64.

Defaults and their sources:
    z ~ N(0, I), 100 dimensions         paper section 4 (it used uniform noise; the reference and
                                        most implementations use N(0, I))
    Adam(alpha=2e-4, beta1=0.5)         paper section 4
    weights N(0, 0.02), biases 0        paper section 4
    batch size 64                       the reference benchmark (the paper used 128)
"""
import dataclasses

from .. import functions as F
from .. import links as L
from ..optimizers import Adam
from .. import training
from . import base
from .base import generate, sample_z  # noqa: F401 (this GAN's noise and sampling)


@dataclasses.dataclass
class Config(base.Config):
    arch: str = "mnist"         # 'mnist' (28 x 28, the benchmark's) or 'radford' (4 * 2^k)
    size: int = 28
    channels: int = 1
    n_z: int = 100
    ngf: int = 64               # radford: G's last hidden width (widths 8 ngf, 4 ngf, ...)
    ndf: int = 64               # radford: D's first width
    bn_eps: float = 1e-5
    alpha: float = 2e-4
    beta1: float = 0.5

    @classmethod
    def for_data(cls, shape, **overrides):
        """'mnist' networks for 28 x 28 images, the paper's 'radford' layout for other sizes."""
        ch, size = base.square_images(shape, "dcgan")
        arch = "mnist" if size == 28 else "radford"
        return cls.create(**{"arch": arch, "size": size, "channels": ch, **overrides})


# the command line (commands/zoo.py): Config fields given as flags, the data it trains on (the
# first is the default), and the length and batch size of a run
FLAGS = {"n_z": "Noise dimensions.", "ngf": "Generator width (64 x 64 layout).",
         "ndf": "Discriminator width (64 x 64 layout)."}
DATASETS = ("mnist", "folder")
TRAINING = {"iterations": 20_000, "batch_size": 64}


# -- networks ----------------------------------------------------------------------------------

def networks(c):
    """(G's, D's) Sequential for the Config's architecture (minigan/links/dcgan.py)."""
    if c.arch == "mnist":
        return (L.dcgan.mnist_generator(c.n_z, c.channels, c.bn_eps),
                L.dcgan.mnist_discriminator(c.channels, "batch", c.bn_eps))
    return (L.dcgan.radford_generator(c.n_z, c.size, c.channels, c.ngf, c.bn_eps),
            L.dcgan.radford_discriminator(c.size, c.channels, c.ndf, "batch", c.bn_eps))


class Generator(L.Chain):
    """G(z): z (N, n_z) -> images (N, C, size, size) in [-1, 1]."""

    def __init__(self, c):
        super().__init__()
        self.net = networks(c)[0]

    def forward(self, z):
        return self.net(F.reshape(z, z.shape + (1, 1)))     # z as a 1 x 1 image of n_z channels


class Discriminator(L.Chain):
    """D(x): images (N, C, size, size) -> logits (N, 1)."""

    def __init__(self, c):
        super().__init__()
        self.net = networks(c)[1]

    def forward(self, x):
        return F.reshape(self.net(x), (len(x), 1))


# -- losses ------------------------------------------------------------------------------------

def loss_discriminator(y_real, y_fake):
    """L_D = -E[log D(x)] - E[log(1 - D(G(z)))] on logits."""
    return F.mean(F.softplus(-y_real)) + F.mean(F.softplus(y_fake))


def loss_generator(y_fake):
    """L_G = -E[log D(G(z))], the non-saturating generator loss."""
    return F.mean(F.softplus(-y_fake))


# -- one iteration -----------------------------------------------------------------------------

def build(c):
    """Generator, discriminator and their optimizers for a Config."""
    return base.build(Generator(c), Discriminator(c), lambda net: Adam(c.alpha, c.beta1).setup(net))


class Updater(training.Updater):
    """One shared forward pass, then G's step and D's step (the reference's 'shared' scheme)."""

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

