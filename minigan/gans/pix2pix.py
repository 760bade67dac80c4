"""pix2pix: image-to-image translation with a conditional GAN.

Isola, Zhu, Zhou and Efros, "Image-to-Image Translation with Conditional Adversarial Networks",
CVPR 2017 (arXiv:1611.07004). The networks and defaults follow chainer-pix2pix (mattya), the
Chainer implementation users know; where the paper differs it is an option.

What is new: the discriminator sees the input x together with an output y and judges N x N
patches, so it models high frequencies, while an L1 term ties the output to the target at low
frequencies. The generator is a U-Net: skip connections carry the input's structure across.

Losses, for an input x, its target y and the generator's output G(x) (z is dropout noise):

    L_cGAN(G, D) = E[log D(x, y)] + E[log(1 - D(x, G(x)))]
    L_L1(G)      = E[|y - G(x)|]
    G* = arg min_G max_D  L_cGAN(G, D) + lambda L_L1(G)

With D returning logits, log D = -softplus(-D) and log(1 - D) = -softplus(D). G uses the
non-saturating form (maximize log D(x, G(x))):

    L_D = mean softplus(-D(x, y)) + mean softplus(D(x, G(x)))
    L_G = lambda1 mean |G(x) - y| + lambda2 mean softplus(-D(x, G(x)))

In the code, as in every chapter, images are x_* and D's outputs y_*: the input is x, the
paper's target y is x_real and G(x) is x_fake; y_real = D(x, x_real), y_fake = D(x, x_fake).

Defaults and their sources:
    lambda1 = 100, lambda2 = 1        paper section 4 (lambda = 100), chainer-pix2pix updater
    Adam(alpha=2e-4, beta1=0.5)       paper section 3.3 and chainer-pix2pix
    weight decay 1e-5                 chainer-pix2pix (an L2 hook on every parameter)
    weights N(0, 0.02), BN eps 2e-5   paper section 6.2; Chainer's BatchNormalization default
    batch size 1                      paper (with batch size 1, batch norm is instance norm)
    256 x 256 crops of images resized to 286, random flips   paper section 6.2
    U-Net: C64-C128-C256-C512-C512-C512-C512-C512 encoder, dropout 0.5 in the first 3 decoder
    blocks; chainer-pix2pix's first layer is a 3 x 3 convolution and the output is linear
    (the paper's is tanh: output='tanh'). Discriminator: chainer-pix2pix's two-stem network
    with 16 x 16 patch logits at 256 x 256 (the paper's 70 x 70 PatchGAN: discriminator='patch70').
    At test time the paper keeps dropout and batch statistics on ("we apply dropout at test
    time, and we apply batch normalization using the statistics of the test batch"): translate()
    does the same unless asked for the deterministic mode.
"""
import contextlib
import dataclasses

import numpy

from .. import functions as F
from .. import links as L
from .. import training
from ..core import as_array, no_backprop_mode, using_config
from ..initializers import Normal
from ..optimizers import Adam, WeightDecay
from . import base


@dataclasses.dataclass
class Config(base.Config):
    in_channels: int = 12       # CMP one-hot label map (3 for a colour label map or a photo)
    out_channels: int = 3
    n_down: int = 7             # U-Net depth: 256 / 2^7 = a 2 x 2 bottleneck
    ngf: int = 64               # generator width; widths double up to 8 * ngf
    ndf: int = 32               # width of each discriminator stem
    discriminator: str = "chainer"   # or 'patch70' (the paper's)
    output: str = "linear"      # or 'tanh' (the paper's)
    lambda1: float = 100.0      # weight of the L1 term
    lambda2: float = 1.0        # weight of the adversarial term
    alpha: float = 2e-4
    beta1: float = 0.5
    weight_decay: float = 1e-5

    @classmethod
    def for_data(cls, shape, **overrides):
        """The networks for examples of shape ((C_in, H, W), (C_out, H, W)): input and target."""
        (c_in, h, w), (c_out, _, _) = shape
        c = cls.create(**{"in_channels": c_in, "out_channels": c_out, **overrides})
        if h % 2 ** c.n_down or w % 2 ** c.n_down:
            fits = max(k for k in range(1, c.n_down + 1) if h % 2 ** k == 0 and w % 2 ** k == 0) \
                if h % 2 == 0 and w % 2 == 0 else None
            hint = f"; try --n-down {fits}" if fits else ""
            raise base.ConfigError(f"pix2pix: image size {h} x {w} is not divisible by "
                                   f"2^{c.n_down} (--n-down {c.n_down}){hint}")
        return c


def lrelu(h):
    return F.leaky_relu(h, 0.2)


# -- networks ----------------------------------------------------------------------------------

class Encoder(L.Chain):
    """conv 3x3 + leaky ReLU, then n_down CBR blocks (4x4 stride-2 conv, BN, leaky ReLU)."""

    def __init__(self, c):
        super().__init__()
        self.widths = [min(c.ngf * 2 ** i, 8 * c.ngf) for i in range(c.n_down + 1)]
        self.c0 = L.Convolution2D(c.in_channels, c.ngf, 3, 1, 1, initialW=Normal(0.02))
        self.blocks = L.Sequential(*[
            L.CBR(self.widths[i], self.widths[i + 1], "down", activation=lrelu)
            for i in range(c.n_down)])

    def forward(self, x):
        hs = [lrelu(self.c0(x))]                            # (N, 64, H, W)
        for block in self.blocks:
            hs.append(block(hs[-1]))                        # (N, C_i, H / 2^i, W / 2^i)
        return hs


class Decoder(L.Chain):
    """n_down CBR up blocks (4x4 stride-2 transposed conv, BN, dropout in the first 3, ReLU),
    each after the first fed with the matching encoder features, then conv 3x3 to the output."""

    def __init__(self, c, widths):
        super().__init__()
        n = c.n_down
        ins = [widths[n]] + [2 * widths[n - j] for j in range(1, n)]
        outs = [widths[n - 1 - j] for j in range(n)]
        self.blocks = L.Sequential(*[
            L.CBR(ins[j], outs[j], "up", activation=F.relu, dropout=j < 3) for j in range(n)])
        self.c_out = L.Convolution2D(2 * widths[0], c.out_channels, 3, 1, 1,
                                     initialW=Normal(0.02))
        self.output = c.output

    def forward(self, hs):
        h = self.blocks[0](hs[-1])
        for j in range(1, len(self.blocks)):
            h = self.blocks[j](F.concat([h, hs[-j - 1]]))    # skip connection
        y = self.c_out(F.concat([h, hs[0]]))                 # (N, out_channels, H, W)
        return F.tanh(y) if self.output == "tanh" else y


class Generator(L.Chain):
    """The U-Net G(x)."""

    def __init__(self, c):
        super().__init__()
        self.enc = Encoder(c)
        self.dec = Decoder(c, self.enc.widths)

    def forward(self, x):
        return self.dec(self.enc(x))


class Discriminator(L.Chain):
    """chainer-pix2pix's D(x, y): a stem for each of x and y (4x4 stride-2 conv + leaky ReLU,
    no norm), concatenated, CBR 64->128->256->512, conv 3x3 -> one logit per patch."""

    def __init__(self, c):
        super().__init__()
        d = c.ndf
        self.c0_0 = L.CBR(c.in_channels, d, "down", bn=False, activation=lrelu)
        self.c0_1 = L.CBR(c.out_channels, d, "down", bn=False, activation=lrelu)
        self.body = L.Sequential(L.CBR(2 * d, 4 * d, "down", activation=lrelu),
                                 L.CBR(4 * d, 8 * d, "down", activation=lrelu),
                                 L.CBR(8 * d, 16 * d, "down", activation=lrelu))
        self.c_out = L.Convolution2D(16 * d, 1, 3, 1, 1, initialW=Normal(0.02))

    def forward(self, x, image):
        h = F.concat([self.c0_0(x), self.c0_1(image)])          # (N, 2 ndf, H/2, W/2)
        return self.c_out(self.body(h))                      # (N, 1, H/16, W/16)


class PatchGAN70(L.Chain):
    """The paper's 70 x 70 PatchGAN on concat(x, y): C64-C128-C256-C512 (4x4 convs, stride 2
    except the last, no BN in the first), then a 4x4 stride-1 conv to one logit per patch."""

    def __init__(self, c):
        super().__init__()
        w = Normal(0.02)
        conv = lambda i, o, s: L.Convolution2D(i, o, 4, s, 1, initialW=w)
        self.c1 = conv(c.in_channels + c.out_channels, 64, 2)
        self.c2, self.bn2 = conv(64, 128, 2), L.BatchNormalization(128)
        self.c3, self.bn3 = conv(128, 256, 2), L.BatchNormalization(256)
        self.c4, self.bn4 = conv(256, 512, 1), L.BatchNormalization(512)
        self.c_out = conv(512, 1, 1)

    def forward(self, x, image):
        h = lrelu(self.c1(F.concat([x, image])))
        h = lrelu(self.bn2(self.c2(h)))
        h = lrelu(self.bn3(self.c3(h)))
        h = lrelu(self.bn4(self.c4(h)))
        return self.c_out(h)                                 # (N, 1, 30, 30) at 256 x 256


DISCRIMINATORS = {"chainer": Discriminator, "patch70": PatchGAN70}


# -- losses ------------------------------------------------------------------------------------

def loss_discriminator(y_real, y_fake):
    """L_D = -E[log D(x, y)] - E[log(1 - D(x, G(x)))] on logits."""
    return F.mean(F.softplus(-y_real)) + F.mean(F.softplus(y_fake))


def loss_generator(x_fake, x_real, y_fake, lambda1, lambda2):
    """L_G = lambda1 E|G(x) - y| + lambda2 (-E[log D(x, G(x))]); returns (total, L1, adversarial)."""
    l1 = F.mean_absolute_error(x_fake, x_real)
    adv = F.mean(F.softplus(-y_fake))
    return lambda1 * l1 + lambda2 * adv, l1, adv


# -- one iteration -----------------------------------------------------------------------------

def build(c):
    """Generator, discriminator and their optimizers (Adam with weight decay) for a Config."""
    def adam(net):
        opt = Adam(alpha=c.alpha, beta1=c.beta1).setup(net)
        opt.add_hook(WeightDecay(c.weight_decay))
        return opt
    return base.build(Generator(c), DISCRIMINATORS[c.discriminator](c), adam)


class Updater(training.Updater):
    """G step through D, then D step, on one batch (chainer-pix2pix's order)."""

    def update(self, batch):
        c, G, D = self.config, self.models["gen"], self.models["dis"]
        x, x_real = self.to_device(*batch)                   # (N, C_in, H, W), (N, C_out, H, W)
        x_fake = G(x)
        y_fake = D(x, x_fake)                                # (N, 1, h, w) patch logits
        y_real = D(x, x_real)
        loss_G, l1, adv = loss_generator(x_fake, x_real, y_fake, c.lambda1, c.lambda2)
        loss_D = loss_discriminator(y_real, y_fake)

        G.cleargrads()
        loss_G.backward(inputs=G.params())                   # through D, but no D gradients
        self.optimizers["gen"].update()
        D.cleargrads()
        loss_D.backward(inputs=D.params())                   # stops at G(x): no G work
        self.optimizers["dis"].update()
        return {"loss/gen": float(loss_G.array), "loss/gen_l1": float(l1.array),
                "loss/gen_adv": float(adv.array), "loss/dis": float(loss_D.array)}


@contextlib.contextmanager
def _untouched(link):
    """Run G in training mode without moving its BN statistics or the random stream."""
    saved = [(l, n, as_array(getattr(l, n)).copy()) for l in link.links() for n in l._persistent
             if hasattr(as_array(getattr(l, n)), "copy")]
    state = numpy.random.get_state()
    try:
        yield
    finally:
        for l, n, value in saved:
            getattr(l, n)[...] = value
        numpy.random.set_state(state)


def translate(G, x, paper_mode=True):
    """G(x) for inference. paper_mode: dropout and batch statistics on, as the paper tests;
    else running statistics and no dropout (deterministic)."""
    with no_backprop_mode(), using_config("train", paper_mode), _untouched(G):
        return as_array(G(x))
