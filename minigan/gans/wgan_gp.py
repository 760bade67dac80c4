"""WGAN-GP: a Wasserstein GAN whose critic is kept 1-Lipschitz by a gradient penalty.

Gulrajani, Ahmed, Arjovsky, Dumoulin and Courville, "Improved Training of Wasserstein GANs",
NIPS 2017 (arXiv:1704.00028).

What is new: the WGAN critic D estimates the Wasserstein-1 distance E[D(x)] - E[D(G(z))], which
needs D to be 1-Lipschitz. Instead of clipping D's weights (WGAN), the paper penalizes the norm of
D's input gradient on points x_hat sampled uniformly on lines between real and generated samples,
where the optimal critic has gradient norm 1 (its Proposition 1):

    L = E[D(x_fake)] - E[D(x_real)] + lambda E[(||grad_x_hat D(x_hat)||_2 - 1)^2]
    x_fake = G(z),  x_hat = eps x_real + (1 - eps) x_fake,  eps ~ U(0, 1) per sample
    L_G = -E[D(G(z))]

The penalty is a function of a gradient, so its own gradient needs double backprop:
minigan.grad(..., create_graph=True) returns grad D(x_hat) as a graph, and L.backward() then
differentiates through it. One iteration is the paper's Algorithm 1: n_critic critic steps, each
on its own minibatch of real data and noise, then one generator step. The trainer hands the
updater n_critic minibatches at once (a batch of n_critic * m examples), so update(batch) is one
whole iteration and a snapshot falls between iterations.

Defaults and their sources:
    lambda = 10, n_critic = 5, Adam(alpha=1e-4, beta1=0, beta2=0.9)    paper, Algorithm 1
    z ~ N(0, I), 128 dimensions                                       paper's code (MNIST)
    no batch norm in the critic: it would make each sample's critic value depend on the others in
      the batch, against a per-sample gradient penalty (paper section 4). The paper suggests layer
      normalization; this implementation uses instance normalization (also per-sample, and per
      channel, and the norm the critic of most WGAN-GP reimplementations uses).
    networks: 'mnist' (28 x 28) and 'radford' (4 * 2^k) are DCGAN's (Radford et al. 2015,
      minigan/links/dcgan.py) with the critic's batch norms replaced by instance norms, and no sigmoid (the critic's value is
      a score, not a probability); 'mlp' for the 2-D toy data: ReLU MLPs as in the paper's toy
      experiments (smaller here: 3 x 128 units instead of 3 x 512). The critic's last layer has
      no bias: a constant cancels in E[D(x_real)] - E[D(x_fake)] and in the penalty, so its
      gradient is always 0.
"""
import dataclasses
import math

import numpy

import minigan
from .. import functions as F
from .. import links as L
from .. import training
from ..core import no_backprop_mode
from ..optimizers import Adam
from . import base
from .base import generate, sample_z  # noqa: F401 (this GAN's noise and sampling)


@dataclasses.dataclass
class Config(base.Config):
    arch: str = "mnist"         # 'mnist' (28 x 28), 'radford' (4 * 2^k) or 'mlp' (any shape)
    x_shape: tuple = (1, 28, 28)
    n_z: int = 128
    ngf: int = 64               # radford: G's last hidden width
    ndf: int = 64               # radford: the critic's first width
    n_hidden: int = 128         # mlp: units per hidden layer
    n_layers: int = 3           # mlp: hidden layers
    lam: float = 10.0           # lambda, the penalty's weight
    n_critic: int = 5           # critic steps per generator step
    alpha: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.9

    @classmethod
    def for_data(cls, shape, **overrides):
        """'mlp' with 2-D noise for points, 'mnist' for 28 x 28 images, else 'radford'."""
        shape = tuple(shape)
        if len(shape) == 1:
            fields = {"arch": "mlp", "n_z": 2}      # the toy's small MLPs take 2-D noise
        elif len(shape) == 3 and shape[1] == shape[2]:
            fields = {"arch": "mnist" if shape[1:] == (28, 28) else "radford"}
        else:
            raise base.ConfigError(f"wgan-gp needs points or square images, not data of shape "
                                   f"{shape}")
        return cls.create(**{**fields, "x_shape": shape, **overrides})

    def minibatches(self):
        return self.n_critic        # Algorithm 1: each critic step has its own minibatch


FLAGS = {"n_z": "Noise dimensions [default: 128; 2 on the toy data].",
         "ngf": "Generator width (64 x 64 layout).",
         "ndf": "Critic width (64 x 64 layout).",
         "n_critic": "Critic steps per generator step (each on its own minibatch).",
         "lam": "lambda, the gradient penalty's weight."}
DATASETS = ("mnist", "folder", "toy")
TRAINING = {"iterations": 20_000, "batch_size": 64}


# -- networks ----------------------------------------------------------------------------------

def _mlp(sizes, last_bias=True):
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [L.Linear(a, b, nobias=i == len(sizes) - 2 and not last_bias), F.relu]
    return L.Sequential(*layers[:-1])                   # no activation after the last layer


def mlp_generator(c):
    """z (N, n_z, 1, 1) -> (N, prod(x_shape)): ReLU MLP, linear output."""
    return L.Sequential(lambda z: F.reshape(z, (len(z), -1)),
                        _mlp([c.n_z] + [c.n_hidden] * c.n_layers + [math.prod(c.x_shape)]))


def mlp_critic(c):
    """(N, *x_shape) -> (N, 1): ReLU MLP."""
    return L.Sequential(lambda x: F.reshape(x, (len(x), -1)),
                        _mlp([math.prod(c.x_shape)] + [c.n_hidden] * c.n_layers + [1], False))


def networks(c):
    """(G's, the critic's) network: DCGAN's with instance norm in the critic, or the MLPs."""
    ch = c.x_shape[0]
    if c.arch == "mnist":
        return L.dcgan.mnist_generator(c.n_z, ch), L.dcgan.mnist_discriminator(ch, "instance")
    if c.arch == "radford":
        size = c.x_shape[1]
        return (L.dcgan.radford_generator(c.n_z, size, ch, c.ngf, gan="WGAN-GP"),
                L.dcgan.radford_discriminator(size, ch, c.ndf, "instance", gan="WGAN-GP"))
    return mlp_generator(c), mlp_critic(c)


class Generator(L.Chain):
    """G(z): z (N, n_z) -> samples (N, *x_shape)."""

    def __init__(self, c):
        super().__init__()
        self.x_shape = tuple(c.x_shape)
        self.net = networks(c)[0]

    def forward(self, z):
        x = self.net(F.reshape(z, z.shape + (1, 1)))
        return F.reshape(x, (len(z),) + self.x_shape)


class Critic(L.Chain):
    """D(x): samples (N, *x_shape) -> scores (N, 1); no sigmoid."""

    def __init__(self, c):
        super().__init__()
        self.net = networks(c)[1]

    def forward(self, x):
        return F.reshape(self.net(x), (len(x), 1))


# -- losses ------------------------------------------------------------------------------------

def gradient_penalty(D, x_hat, lam):
    """lambda E[(||grad D(x_hat)||_2 - 1)^2] and the per-sample norms (N,), differentiable."""
    g, = minigan.grad(F.sum(D(x_hat)), [x_hat], create_graph=True)     # (N, *x_shape)
    # sqrt'(0) is infinite: the tiny constant keeps the penalty's gradient finite at g = 0
    norm = F.sqrt(F.sum(g * g, axis=tuple(range(1, g.ndim))) + 1e-12)  # (N,)
    return lam * F.mean((norm - 1.0) ** 2), norm


def sample_eps(m, ndim, rng=numpy.random):
    """eps ~ U(0, 1) per sample, float32 (m, 1, ..., 1): where x_hat lies between x and G(z)."""
    return rng.uniform(size=(m,) + (1,) * (ndim - 1)).astype(numpy.float32)


def loss_critic(y_real, y_fake, penalty):
    """L = E[D(x_fake)] - E[D(x_real)] + penalty: minus the Wasserstein estimate, penalized."""
    return F.mean(y_fake) - F.mean(y_real) + penalty


def loss_generator(y_fake):
    """L_G = -E[D(G(z))]."""
    return -F.mean(y_fake)


# -- one iteration -----------------------------------------------------------------------------

def build(c):
    """Generator, critic and their optimizers for a Config."""
    return base.build(Generator(c), Critic(c),
                      lambda net: Adam(c.alpha, c.beta1, c.beta2).setup(net))


class Updater(training.Updater):
    """Algorithm 1: n_critic critic steps (one minibatch each of the batch), one G step."""

    def update(self, batch):
        c, G, D = self.config, self.models["gen"], self.models["dis"]
        x_all = self.to_device(batch)                           # (n_critic m, *x_shape)
        m = len(x_all) // c.n_critic
        sums = {"wasserstein": 0.0, "penalty": 0.0, "grad_norm": 0.0}     # device scalars: the
        # host waits for them once per iteration, not three times per critic step
        for t in range(c.n_critic):
            x_real = x_all[t * m:(t + 1) * m]                   # (m, *x_shape)
            with no_backprop_mode():
                x_fake = G(self.to_device(sample_z(c, m))).array
            eps = self.to_device(sample_eps(m, x_real.ndim))    # (m, 1, ..., 1)
            x_hat = minigan.Variable(eps * x_real + (1 - eps) * x_fake)
            penalty, norm = gradient_penalty(D, x_hat, c.lam)
            y_real, y_fake = D(x_real), D(x_fake)               # (m, 1) scores
            loss = loss_critic(y_real, y_fake, penalty)
            D.cleargrads()
            loss.backward(inputs=D.params())                    # through grad D: double backprop
            self.optimizers["dis"].update()
            sums["wasserstein"] = sums["wasserstein"] + (y_real.array.mean() - y_fake.array.mean())
            sums["penalty"] = sums["penalty"] + penalty.array
            sums["grad_norm"] = sums["grad_norm"] + norm.array.mean()

        loss_G = loss_generator(D(G(self.to_device(sample_z(c, m)))))
        G.cleargrads()
        loss_G.backward(inputs=G.params())
        self.optimizers["gen"].update()
        out = {f"dis/{k}": float(v) / c.n_critic for k, v in sums.items()}
        out["loss/gen"] = float(loss_G.array)
        return out
