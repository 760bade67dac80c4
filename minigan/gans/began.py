"""BEGAN: the discriminator is an autoencoder, and the game is played on reconstruction losses.

Berthelot, Schumm and Metz, "BEGAN: Boundary Equilibrium Generative Adversarial Networks", 2017
(arXiv:1703.10717).

What is new: D is an autoencoder and L(v) = mean |v - D(v)| its reconstruction loss. D learns to
reconstruct real images well and generated ones badly; G learns to make images D reconstructs
well. The balance gamma = E[L(G(z))] / E[L(x)] (diversity) is held by a proportional controller
k_t that decides how much D attends to the fake images:

    L_D = L(x) - k_t L(G(z))
    L_G = L(G(z))
    k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1)

and M_global = L(x) + |gamma L(x) - L(G(z))| measures convergence (it falls as images improve).

Networks (paper Figure 1; no batch norm anywhere, ELU activations, 3 x 3 convolutions):
    decoder / generator: h (N, n_h) -> FC -> (N, n, b, b) with b = 8 at 64 x 64; then per scale
      two conv 3x3 + ELU and a 2x nearest upsampling, and a conv 3x3 to the image channels at the
      end (a linear output, as in the paper).
    encoder: conv 3x3 + ELU to n channels, then per scale two conv 3x3 + ELU at n, 2n, 3n, ...
      channels, with a stride-2 conv 3x3 (+ ELU) to the next width between scales; at b x b a
      fully connected layer to h (the bottleneck of n_h = 64).
    D(x) = decoder(encoder(x)); G has the decoder's architecture with its own weights.

Defaults and their sources:
    gamma = 0.5, lambda_k = 0.001, k_0 = 0, n_h = n_z = 64, z ~ U(-1, 1)    paper section 4
    n = 64 filters                                                 paper (64 or 128 were used)
    Adam(beta1=0.5), learning rate 1e-4                            paper section 4 ("initial
      learning rate of 0.0001, decayed by a factor of 2 when the measure of convergence stalls")
    learning rate halved every 100,000 iterations down to 2e-5     the schedule of the widely used
      TensorFlow implementation (carpedm20/BEGAN-tensorflow): a fixed schedule, so a resumed run
      follows it exactly
    batch size 16                                                  paper section 4
    image size 64 x 64 (also any size = b * 2^k with b in 4..8, e.g. 28 = 7 * 4 or 32 = 8 * 4)
"""
import dataclasses

import numpy

from .. import functions as F
from .. import links as L
from .. import training
from ..optimizers import Adam
from . import base
from .base import generate  # noqa: F401 (this GAN's sampling)


@dataclasses.dataclass
class Config(base.Config):
    size: int = 64
    channels: int = 3
    n: int = 64                 # filters per conv; the encoder's widths are n, 2n, 3n, ...
    n_h: int = 64               # the autoencoder's bottleneck (h)
    n_z: int = 64               # G's input
    gamma: float = 0.5          # diversity ratio E[L(G(z))] / E[L(x)]
    lambda_k: float = 0.001     # the controller's gain
    alpha: float = 1e-4         # initial learning rate
    alpha_min: float = 2e-5     # the schedule's floor
    alpha_step: int = 100_000   # halve the learning rate every this many iterations
    beta1: float = 0.5

    def __post_init__(self):
        if not 0 <= self.gamma <= 1:
            raise base.ConfigError(f"BEGAN: gamma must lie in [0, 1], got {self.gamma}")

    @classmethod
    def for_data(cls, shape, **overrides):
        """The paper's networks at the images' size and channels."""
        ch, size = base.square_images(shape, "began")
        scales(size)                # a size the networks cannot take fails here, in one line
        return cls.create(**{"size": size, "channels": ch, **overrides})


FLAGS = {"n": "Filters per convolution (the encoder grows n, 2n, 3n, ...).",
         "gamma": "Diversity ratio E[L(G(z))] / E[L(x)]."}
DATASETS = ("folder", "mnist")
TRAINING = {"iterations": 100_000, "batch_size": 16}


def scales(size):
    """(b, number of scales): size = b * 2^(scales - 1), b in 4..8 as large as it can be."""
    b, k = size, 0
    while b > 8 and b % 2 == 0:
        b, k = b // 2, k + 1
    if not 4 <= b <= 8 or k == 0:
        raise base.ConfigError(f"BEGAN: image size {size} must be b * 2^k with 4 <= b <= 8 and k >= 1 "
                         "(e.g. 28, 32, 64, 128)")
    return b, k + 1


def conv3(a, b, stride=1):
    return L.Convolution2D(a, b, 3, stride, 1)


# -- networks ----------------------------------------------------------------------------------

class Decoder(L.Chain):
    """h (N, n_in) -> images (N, C, size, size): FC to b x b x n, [conv, ELU, conv, ELU, up]..."""

    def __init__(self, c, n_in):
        super().__init__()
        self.b, n_scales = scales(c.size)
        self.n = c.n
        self.fc = L.Linear(n_in, c.n * self.b * self.b)
        self.convs = L.Sequential(*[conv3(c.n, c.n) for _ in range(2 * n_scales)])
        self.out = conv3(c.n, c.channels)

    def forward(self, h):
        x = F.reshape(self.fc(h), (len(h), self.n, self.b, self.b))    # (N, n, b, b)
        for i in range(0, len(self.convs), 2):
            if i:
                x = F.upsample_nearest(x, 2)                            # (N, n, 2H, 2W)
            x = F.elu(self.convs[i + 1](F.elu(self.convs[i](x))))
        return self.out(x)                                              # (N, C, size, size)


class Encoder(L.Chain):
    """images (N, C, size, size) -> h (N, n_h): conv 3x3 stages at n, 2n, 3n, ... channels with
    stride-2 downsampling between them, then FC."""

    def __init__(self, c):
        super().__init__()
        self.b, n_scales = scales(c.size)
        widths = [c.n * (i + 1) for i in range(n_scales)]              # n, 2n, 3n, ...
        self.c0 = conv3(c.channels, c.n)
        layers = []
        for i, w in enumerate(widths):
            layers += [conv3(w if i else c.n, w), conv3(w, w)]
            if i + 1 < n_scales:
                layers.append(conv3(w, widths[i + 1], stride=2))       # halves H and W
        self.convs = L.Sequential(*layers)
        self.fc = L.Linear(widths[-1] * self.b * self.b, c.n_h)

    def forward(self, x):
        h = F.elu(self.c0(x))                                           # (N, n, size, size)
        for conv in self.convs:
            h = F.elu(conv(h))                                          # (N, k n, H, W)
        return self.fc(h)                                               # (N, n_h)


class Generator(L.Chain):
    """G(z): z (N, n_z) -> images, the decoder's architecture with its own weights."""

    def __init__(self, c):
        super().__init__()
        self.dec = Decoder(c, c.n_z)

    def forward(self, z):
        return self.dec(z)


class Discriminator(L.Chain):
    """D(x) = decoder(encoder(x)): the autoencoder's reconstruction of x."""

    def __init__(self, c):
        super().__init__()
        self.enc = Encoder(c)
        self.dec = Decoder(c, c.n_h)

    def forward(self, x):
        return self.dec(self.enc(x))


def sample_z(c, n, rng=numpy.random):
    """n noise vectors z ~ U(-1, 1), float32 (N, n_z), from rng (numpy's global one by default)."""
    return rng.uniform(-1.0, 1.0, (n, c.n_z)).astype(numpy.float32)


# -- losses ------------------------------------------------------------------------------------

def L_rec(D, v):
    """L(v) = mean |v - D(v)|, the autoencoder's reconstruction loss."""
    return F.mean_absolute_error(D(v), v)


def loss_discriminator(L_x, L_Gz, k):
    """L_D = L(x) - k_t L(G(z))."""
    return L_x - k * L_Gz


def loss_generator(L_Gz):
    """L_G = L(G(z))."""
    return L_Gz


def update_k(k, L_x, L_Gz, gamma, lambda_k):
    """k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1)."""
    return min(max(k + lambda_k * (gamma * L_x - L_Gz), 0.0), 1.0)


def convergence(L_x, L_Gz, gamma):
    """M_global = L(x) + |gamma L(x) - L(G(z))|."""
    return L_x + abs(gamma * L_x - L_Gz)


def learning_rate(c, iteration):
    """alpha halved every alpha_step iterations, never below alpha_min."""
    return max(c.alpha * 0.5 ** (iteration // c.alpha_step), c.alpha_min)


# -- one iteration -----------------------------------------------------------------------------

def build(c):
    """Generator, discriminator and their optimizers for a Config."""
    return base.build(Generator(c), Discriminator(c), lambda net: Adam(c.alpha, c.beta1).setup(net))


class Updater(training.Updater):
    """One forward pass; G's step and D's step from it; then the k_t controller."""

    def __init__(self, config, models, optimizers, device=-1):
        super().__init__(config, models, optimizers, device)
        self.k = 0.0                                            # k_0

    def update(self, batch):
        c, G, D = self.config, self.models["gen"], self.models["dis"]
        alpha = learning_rate(c, self.optimizers["gen"].t)      # t: iterations done (snapshotted)
        for opt in self.optimizers.values():
            opt.alpha = alpha
        x_real = self.to_device(batch)                          # (N, C, H, W)
        x_fake = G(self.to_device(sample_z(c, len(x_real))))    # (N, C, H, W)
        L_x, L_Gz = L_rec(D, x_real), L_rec(D, x_fake)
        loss_D = loss_discriminator(L_x, L_Gz, self.k)
        loss_G = loss_generator(L_Gz)

        G.cleargrads()
        loss_G.backward(inputs=G.params())                      # through D, no D gradients
        self.optimizers["gen"].update()
        D.cleargrads()
        loss_D.backward(inputs=D.params())                      # stops at G(z)
        self.optimizers["dis"].update()

        # the controller reads the batch-mean losses of the whole global batch (the mean of
        # the ranks' means): averaging each rank's clipped k instead would differ wherever the
        # clip acts, e.g. at k_0 = 0 when one rank's move is negative and another's positive
        L_x, L_Gz = self.global_mean(L_x.array, L_Gz.array)
        k_used = self.k
        self.k = update_k(self.k, L_x, L_Gz, c.gamma, c.lambda_k)
        return {"k": k_used, "M_global": convergence(L_x, L_Gz, c.gamma), "L_x": L_x,
                "L_Gz": L_Gz, "loss/dis": float(loss_D.array), "loss/gen": float(loss_G.array)}

    def state_dict(self):
        return {"k": self.k}

    def load_state_dict(self, state):
        self.k = float(state["k"])

