"""The vanilla GAN: a generator and a discriminator in a two-player minimax game.

Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville and Bengio, "Generative
Adversarial Nets", NIPS 2014 (arXiv:1406.2661).

What is new: G maps noise z to samples, D(x) is the probability that x came from the data, and
both are trained against each other:

    min_G max_D V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))]

Early in training log(1 - D(G(z))) saturates (D rejects every sample and the gradient vanishes),
so the paper (section 3) trains G to maximize log D(G(z)) instead: the non-saturating loss. With
D returning a logit y, log D = -softplus(-y) and log(1 - D) = -softplus(y), so

    L_D = E_x[softplus(-D(x))] + E_z[softplus(D(G(z)))]      (binary cross entropy on logits)
    L_G = E_z[softplus(-D(G(z)))]

One iteration is the paper's Algorithm 1 with k = 1: a D step on a minibatch of data and of noise,
then a G step on a fresh minibatch of noise.

Defaults and their sources:
    networks (MNIST, 28 x 28 flattened to 784, in [-1, 1]): small MLPs that train in minutes on
      a CPU,
      G = Linear(20 -> 100) + LeakyReLU(0.01) + Linear(100 -> 784) + tanh,
      D = Linear(784 -> 100, no bias) + LeakyReLU(0.01) + Dropout(0.5) + Linear(100 -> 1);
      the paper's D also used dropout (section 5), its G and D were maxout / ReLU MLPs
    z ~ N(0, I), 20 dimensions      enough for MNIST at this size (the paper used uniform noise)
    Adam(alpha=2e-4, beta1=0.5)     Radford et al. 2015's advice; the paper used SGD + momentum
    toy data (2-D ring): same MLPs with the data's dimensions, a linear output (the ring's radius
      2 lies outside tanh's range), wider and deeper (hidden=128, layers=2), lighter dropout (0.2)
      and 2-D noise (measured: with 20-D noise G collapsed onto 0 to 3 of the 8 modes in 1,500
      steps, with 2-D noise it found all 8; dropout 0.2 made that steadier across seeds)
"""
import dataclasses
import math

from .. import functions as F
from .. import links as L
from .. import training
from ..core import no_backprop_mode
from ..optimizers import Adam
from . import base
from .base import generate, sample_z  # noqa: F401 (this GAN's noise and sampling)


@dataclasses.dataclass
class Config(base.Config):
    x_shape: tuple = (1, 28, 28)    # one sample's shape; G's output is reshaped to it
    n_z: int = 20                   # dimension of the noise z
    n_hidden: int = 100             # units per hidden layer
    n_layers: int = 1               # hidden layers in each of G and D
    slope: float = 0.01             # leaky ReLU slope
    dropout: float = 0.5            # in D, after each hidden layer
    output: str = "tanh"            # G's output: 'tanh' for images in [-1, 1], 'linear' for toys
    alpha: float = 2e-4
    beta1: float = 0.5

    @classmethod
    def for_data(cls, shape, **overrides):
        """MLPs for the data's shape; for points (the 2-D ring) the toy's: 2-D noise, linear
        output, two hidden layers of 128, dropout 0.2 in D."""
        toy = {"n_z": 2, "n_hidden": 128, "n_layers": 2, "dropout": 0.2, "output": "linear"}
        return cls.create(**{**(toy if len(shape) == 1 else {}), "x_shape": tuple(shape),
                             **overrides})


FLAGS = {"n_z": "Noise dimensions [default: 20; 2 on the toy data].",
         "n_hidden": "Hidden units [default: 100; 128 on the toy data]."}
DATASETS = ("mnist", "folder", "toy")
TRAINING = {"iterations": 50_000, "batch_size": 64}


# -- networks ----------------------------------------------------------------------------------

class Generator(L.Chain):
    """z (N, n_z) -> x (N, *x_shape): Linear + leaky ReLU per hidden layer, Linear, tanh."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        sizes = [c.n_z] + [c.n_hidden] * c.n_layers + [math.prod(c.x_shape)]
        self.layers = L.Sequential(*[L.Linear(a, b) for a, b in zip(sizes, sizes[1:])])

    def forward(self, z):
        h = z                                                   # (N, n_z)
        for layer in self.layers[:-1]:
            h = F.leaky_relu(layer(h), self.c.slope)            # (N, n_hidden)
        x = self.layers[-1](h)                                  # (N, prod(x_shape))
        if self.c.output == "tanh":
            x = F.tanh(x)
        return F.reshape(x, (len(z),) + tuple(self.c.x_shape))  # (N, *x_shape)


class Discriminator(L.Chain):
    """x (N, *x_shape) -> logit (N, 1): Linear (the first without bias) + leaky ReLU + dropout
    per hidden layer, then Linear to one logit."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        sizes = [math.prod(c.x_shape)] + [c.n_hidden] * c.n_layers
        self.hidden = L.Sequential(*[L.Linear(a, b, nobias=i == 0)
                                     for i, (a, b) in enumerate(zip(sizes, sizes[1:]))])
        self.out = L.Linear(c.n_hidden, 1)

    def forward(self, x):
        h = F.reshape(x, (len(x), -1))                          # (N, prod(x_shape))
        for layer in self.hidden:
            h = F.dropout(F.leaky_relu(layer(h), self.c.slope), self.c.dropout)
        return self.out(h)                                      # (N, 1) logits


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
    """Algorithm 1 with k = 1: one D step, then one G step on fresh noise."""

    def update(self, batch):
        c, G, D = self.config, self.models["gen"], self.models["dis"]
        x_real = self.to_device(batch)                          # (N, *x_shape)
        n = len(x_real)

        # D step: ascend log D(x) + log(1 - D(G(z)))
        with no_backprop_mode():
            x_fake = G(self.to_device(sample_z(c, n)))          # no graph: D's step only
        y_real, y_fake = D(x_real), D(x_fake)                   # (N, 1) logits
        loss_D = loss_discriminator(y_real, y_fake)
        D.cleargrads()
        loss_D.backward(inputs=D.params())
        self.optimizers["dis"].update()

        # G step: ascend log D(G(z)) on a new minibatch of noise
        y_fake_g = D(G(self.to_device(sample_z(c, n))))
        loss_G = loss_generator(y_fake_g)
        G.cleargrads()
        loss_G.backward(inputs=G.params())                      # through D, no D gradients
        self.optimizers["gen"].update()

        accuracy = 0.5 * (float((y_real.array > 0).mean()) + float((y_fake.array < 0).mean()))
        return {"loss/gen": float(loss_G.array), "loss/dis": float(loss_D.array),
                "dis/accuracy": accuracy}

