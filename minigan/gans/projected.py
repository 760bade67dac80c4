"""ProjectedGAN: discriminators on random projections of a frozen ImageNet network's features.

Sauer, Chitta, Müller and Geiger, "Projected GANs Converge Faster", NeurIPS 2021
(arXiv:2111.01007); everything below follows the official code, autonomousvision/projected-gan
(pg_modules/projector.py, discriminator.py, networks_fastgan.py, blocks.py; training/loss.py,
training_loop.py; train.py for the defaults).

What is new:
  - D does not see pixels: a frozen EfficientNet-lite0 (ImageNet) gives feature maps at strides
    4, 8, 16, 32 (24, 40, 112, 320 channels), and D judges random, frozen projections of them;
  - cross-channel mixing (CCM): a random 1x1 conv per scale, 24->64, 40->128, 112->256, 320->512;
  - cross-scale mixing (CSM), top-down as a feature pyramid: P_3 = conv1x1(up2(C_3)),
    P_i = conv1x1(up2(C_i + P_{i+1})), up2 bilinear with aligned corners, each 1x1 conv halving
    the channels (the finest keeps them): 64, 64, 128, 256 channels at 2x the tap resolution;
  - four small discriminators, one per scale, each of spectral-norm DownBlocks (conv 4x4 s2, BN,
    LReLU 0.2) to 8 x 8 (nominally: at 224 px input the maps are 7 x 7) and a 4x4 conv to
    logits; the logits of all four are concatenated. The projections make D's task harder to
    overfit and spread its attention over the features, which is why training converges faster.

Losses (hinge, training/loss.py), x DiffAugmented (color, translation, cutout 0.2) before D:

    L_D = E relu(1 - D(x_real)) + E relu(1 + D(G(z)))        (real and fake in separate passes)
    L_G = -E D(G(z))                    z ~ N(0, I), normalized to its second moment in G

G (networks_fastgan.py, the FastGAN generator with spectral norm on every conv, no tanh):
    nfc(res) = ngf * {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 1/2, 512: 1/4, 1024: 1/8}
    init ConvT 4x4 -> BN -> GLU; per resolution an up-block ('fastgan_lite': up, conv, BN, GLU;
    'fastgan': two convs with noise); SLE 4->64, 8->128, 16->256, 32->512; conv 3x3 to RGB.

Defaults and their sources:
    ngf 128, z 256 dims, cfg fastgan_lite                 train.py / networks_fastgan.Generator
    Adam(2e-4, betas (0, 0.99), eps 1e-8) for G and D     train.py (fastgan configs)
    D's Adam as lazy regularization with D_reg_interval 16 leaves it (training_loop.py's default,
      though ProjectedGAN has no regularizer): lr 2e-4 * 16/17, beta2 0.99^(16/17)
    gradients of the batch_gpu rounds summed, not averaged training_loop.py (Adam barely cares)
    EMA of G: half-life ema_kimg = batch * 10 / 32 kimg, ramp-up 0.05: beta = 0.5^(batch /
      min(ema_kimg 1000, nimg 0.05)); BN statistics and spectral-norm vectors copied
                                                          train.py, training_loop.py
    images under 224 px resized to 224 (bilinear) before the feature network; larger ones as
      they are (interp224 = resolution < 224)             train.py, discriminator.py
    D channels {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32} by nominal
      resolution 128, 64, 32, 16 (fixed, as projector.py fixes im_res = 256); ndf: all one width
                                                          discriminator.SingleDisc
    CCM/CSM weights: PyTorch's default conv init U(+-1/sqrt(fan_in)), frozen; the networks under
      spectral norm: N(0, 0.02) (the FastGAN blocks'; spectral norm divides the scale out)
minigan's extension: images under 128 px (the official G builds 128 px at least): G stops at the
image size and keeps the SLE pairs that fit.
"""
import dataclasses
import math

import numpy

from .. import functions as F
from .. import links as L
from .. import training
from ..augment import TRANSFORMS, diff_augment
from ..core import Variable, no_backprop_mode, using_config
from ..initializers import Uniform
from ..links import fastgan as B
from ..links.spectral_norm import spectral_norm
from ..models.efficientnet_lite import FrozenConv
from ..optimizers import Adam, ExponentialMovingAverage
from . import base
from .base import sample_z  # noqa: F401 (this GAN's noise)

NFC = {2: 16, 4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
SLE_PAIRS = ((4, 64), (8, 128), (16, 256), (32, 512))
TAP_CHANNELS = (24, 40, 112, 320)
D_CHANNELS = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32}
D_RESOLUTIONS = (128, 64, 32, 16)       # nominal: 256 // (4, 8, 16, 32), doubled by the CSM


@dataclasses.dataclass
class Config(base.Config):
    size: int = 256
    channels: int = 3
    n_z: int = 256
    ngf: int = 128
    lite: bool = True               # --cfg fastgan_lite; False: fastgan (two convs + noise)
    ndf: int = 0                    # 0: SingleDisc's channel table; n: every D layer n wide
    cout: int = 64
    interp224: bool = True
    batch: int = 64
    batch_gpu: int = 8
    alpha: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.99
    d_reg_interval: int = 16        # 0: plain Adam for D
    ema_kimg: float = 20.0
    ema_rampup: float = 0.05        # 0: none
    aug_policy: str = "color,translation,cutout"
    cutout: float = 0.2

    @classmethod
    def for_data(cls, shape, **overrides):
        """Square RGB images of a power-of-2 side >= 16; EMA half-life batch * 10 / 32 kimg."""
        ch, h = base.square_images(shape, "projected", min_size=16)
        if ch != 3:
            raise base.ConfigError(f"projected: {ch} channels; the feature network takes RGB (3)")
        batch = overrides.get("batch", cls.batch)
        fields = {"size": h, "channels": ch, "interp224": h < 224, "ema_kimg": batch * 10 / 32,
                  **overrides}
        return cls.create(**fields)

    def __post_init__(self):
        if self.batch % self.batch_gpu:
            raise base.ConfigError(f"projected: batch {self.batch} must be a multiple of "
                                   f"batch_gpu {self.batch_gpu}")
        if not self.interp224 and self.size < 128:
            raise base.ConfigError("projected: below 128 px the features must be taken at 224 "
                                   "px (interp224)")
        unknown = [t for t in self.aug_policy.split(",") if t and t not in TRANSFORMS]
        if unknown:
            raise base.ConfigError(f"projected: aug type(s) {','.join(unknown)} not supported")

    def minibatches(self):
        return self.batch // self.batch_gpu         # rounds of batch_gpu images per iteration


FLAGS = {}
DATASETS = ("folder",)
TRAINING = {"iterations": 25_000_000 // 64, "batch_size": 64}


# -- G: FastGAN with spectral norm -------------------------------------------------------------

def nfc(c, res):
    """G's channels at resolution res."""
    return int(NFC[res] * c.ngf)


def resolutions(size):
    """8, 16, ..., size."""
    return [2 ** k for k in range(3, int(math.log2(size)) + 1)]


class Generator(L.Chain):
    """G(z): z (N, n_z) -> (N, C, size, size), images about [-1, 1] (no tanh, as the code)."""

    def __init__(self, c, dtype=numpy.float32):
        super().__init__()
        self.lite, self.res = c.lite, resolutions(c.size)
        self.init = B.InitBlock(c.n_z, nfc(c, 2), dtype)                 # (N, nfc 4, 4, 4)
        up = (lambda a, b: B.UpBlock(a, b, noise=False, dtype=dtype)) if c.lite else \
            (lambda a, b: B.UpBlockBig(a, b, dtype))
        self.ups = L.Sequential(*[up(nfc(c, r // 2), nfc(c, r)) for r in self.res])
        self.sle = {high: low for low, high in SLE_PAIRS if high <= c.size}
        for high, low in self.sle.items():
            setattr(self, f"se{high}", B.SLE(nfc(c, low), nfc(c, high), dtype))
        self.to_big = B.conv(nfc(c, c.size), c.channels, 3, 1, 1, nobias=False, dtype=dtype)
        spectral_norm(self)                                             # every conv

    def noise_shapes(self, n):
        """Shapes of the noise maps, two per up-block of 'fastgan' (none for the lite G)."""
        return [] if self.lite else [(n, 1, r, r) for r in self.res for _ in range(2)]

    def forward(self, z, noise=None):
        """noise: None (drawn from NumPy's generator) or the maps of noise_shapes."""
        rms = F.sqrt(F.mean(z * z, axis=1, keepdims=True) + 1e-8)      # (N, 1)
        h = self.init(z / F.broadcast_to(rms, z.shape))                 # second moment 1
        feats = {4: h}
        for i, r in enumerate(self.res):
            if self.lite:
                h = self.ups[i](h)
            else:
                h = self.ups[i](h, (None, None) if noise is None else noise[2 * i:2 * i + 2])
            if r in self.sle:
                h = getattr(self, f"se{r}")(feats[self.sle[r]], h)
            feats[r] = h                                                # (N, nfc r, r, r)
        return self.to_big(h)                                           # (N, C, size, size)


# -- D: frozen features, random projections, four discriminators -------------------------------

def random_conv(a, b, rng, dtype):
    """A frozen 1x1 conv with bias, PyTorch's default init: U(-1/sqrt(a), 1/sqrt(a))."""
    bound = 1 / math.sqrt(a)
    W = rng.uniform(-bound, bound, (b, a, 1, 1)).astype(dtype)
    return FrozenConv(W, rng.uniform(-bound, bound, b).astype(dtype))


class Projector(L.Chain):
    """CCM then CSM of the four taps: (24, 40, 112, 320) ch -> (64, 64, 128, 256) ch at 2x."""

    def __init__(self, c, rng=numpy.random, dtype=numpy.float32):
        super().__init__()
        mixed = [c.cout * 2 ** i for i in range(4)]                     # 64, 128, 256, 512
        for i, (a, b) in enumerate(zip(TAP_CHANNELS, mixed)):
            setattr(self, f"ccm{i}", random_conv(a, b, rng, dtype))
        self.channels = [mixed[0]] + [b // 2 for b in mixed[1:]]        # 64, 64, 128, 256
        for i in (3, 2, 1, 0):
            setattr(self, f"csm{i}", random_conv(mixed[i], self.channels[i], rng, dtype))

    def forward(self, taps):
        """The four maps, finest first; each coarser fused map added before the upsampling."""
        mixed = [getattr(self, f"ccm{i}")(t) for i, t in enumerate(taps)]
        out, h = [None] * 4, None
        for i in (3, 2, 1, 0):
            h = mixed[i] if h is None else mixed[i] + h
            H, W = h.shape[2:]
            h = getattr(self, f"csm{i}")(F.resize_images(h, (2 * H, 2 * W), align_corners=True))
            out[i] = h
        return out


class MiniDiscriminator(L.Chain):
    """One scale's D: DownBlocks from nominal res start to 8, then a 4x4 conv to logits."""

    def __init__(self, c_in, start, ndf=0, dtype=numpy.float32):
        super().__init__()
        width = dict(D_CHANNELS) if not ndf else {k: ndf for k in D_CHANNELS}
        width[start] = c_in
        layers, r = [], start
        while r > 8:
            layers += [B.conv(width[r], width[r // 2], 4, 2, 1, nobias=False, dtype=dtype),
                       B.bn(width[r // 2], dtype=dtype), B.lrelu]
            r //= 2
        layers.append(B.conv(width[8], 1, 4, dtype=dtype))
        self.main = spectral_norm(L.Sequential(*layers))

    def forward(self, h):
        y = self.main(h)                                                # (N, 1, k, k)
        return F.reshape(y, (len(y), -1))


class Discriminator(L.Chain):
    """D(x) -> (N, n_logits): four discriminators on the projected EfficientNet-lite0 features."""

    def __init__(self, c, dtype=numpy.float32, features=None):
        super().__init__()
        self.interp224 = c.interp224
        self.projector = Projector(c, dtype=dtype)
        for i, (ch, res) in enumerate(zip(self.projector.channels, D_RESOLUTIONS)):
            setattr(self, f"disc{i}", MiniDiscriminator(ch, res, c.ndf, dtype))
        # the frozen network is not a child: it is the package's weights, not saved in snapshots
        object.__setattr__(self, "_features", features)

    def feature_network(self):
        """The frozen network whose taps D reads: the one given, else EfficientNet-lite0."""
        if self._features is not None:
            return self._features
        from ..models.efficientnet_lite import efficientnet_lite0
        return efficientnet_lite0(self.device)

    def taps(self, x):
        """EfficientNet-lite0's four maps of x (at 224 px when interp224)."""
        return self.feature_network().taps(x, resize=self.interp224)

    def head(self, taps):
        """The logits from the four taps: projections, then one discriminator per scale."""
        maps = self.projector(taps)
        return F.concat([getattr(self, f"disc{i}")(h) for i, h in enumerate(maps)], axis=1)

    def forward(self, x):
        return self.head(self.taps(x))


# -- losses ------------------------------------------------------------------------------------

def loss_dis_real(y_real):
    """E relu(1 - D(x_real))."""
    return F.mean(F.relu(1.0 - y_real))


def loss_dis_fake(y_fake):
    """E relu(1 + D(G(z)))."""
    return F.mean(F.relu(1.0 + y_fake))


def loss_generator(y_fake):
    """L_G = -E D(G(z))."""
    return -F.mean(y_fake)


def augment(c, x):
    """DiffAugment of D's input, always (discriminator.py: diffaug=True), cutout 0.2."""
    return diff_augment(x, c.aug_policy, ratio=c.cutout) if c.aug_policy else x


# -- one iteration -----------------------------------------------------------------------------

def build(c, features=None):
    """G, D, the EMA of G and Adam for each (D's with the lazy-regularization scaling)."""
    G, D = Generator(c), Discriminator(c, features=features)
    models = {"gen": G, "dis": D, "gen_ema": G.copy()}
    r = c.d_reg_interval / (c.d_reg_interval + 1) if c.d_reg_interval else 1.0
    return models, {"gen": Adam(c.alpha, c.beta1, c.beta2).setup(G),
                    "dis": Adam(c.alpha * r, c.beta1 ** r, c.beta2 ** r).setup(D)}


def generate(G, z, rng=None):
    """G(z) as an array in test mode; the noise maps ('fastgan') from rng if given."""
    noise = None if rng is None else [rng.standard_normal(s) for s in G.noise_shapes(len(z))]
    with no_backprop_mode(), using_config("train", False):
        return G(z, noise).array


def ema_beta(c, nimg):
    """training_loop.py: 0.5^(batch / ema_nimg), ema_nimg = min(ema_kimg 1000, nimg rampup)."""
    ema_nimg = c.ema_kimg * 1000
    if c.ema_rampup:
        ema_nimg = min(ema_nimg, nimg * c.ema_rampup)
    return 0.5 ** (c.batch / max(ema_nimg, 1e-8))


class Updater(training.Updater):
    """training_loop.py's iteration: the G phase, the D phase (fake, then real), the EMA.

    On K ranks (training_loop.py's num_gpus) each rank takes batch / K images per iteration in
    rounds of batch_gpu; the round gradients add up on each rank and are averaged over the
    ranks (the multi-node optimizer's hook), as the official code does: K ranks at batch_gpu m
    equal one process at batch_gpu K m, the same batch. The EMA counts the images of all ranks.
    The frozen parts are equal everywhere: the random projections are persistents (broadcast
    with D) and the feature network is broadcast from rank 0 (frozen())."""

    def __init__(self, config, models, optimizers, device=-1):
        super().__init__(config, models, optimizers, device)
        self.ema = ExponentialMovingAverage(models["gen"])
        self.ema.avg = models["gen_ema"]
        self.nimg = 0

    def frozen(self):
        return (self.models["dis"].feature_network(),)

    def state_dict(self):
        return {"nimg": self.nimg}

    def load_state_dict(self, state):
        self.nimg = int(state["nimg"])

    def update(self, batch):
        c, G, D = self.config, self.models["gen"], self.models["dis"]
        x_all = self.to_device(batch)                                   # (batch, C, S, S)
        m = c.batch_gpu
        rounds = len(x_all) // m
        sums = {"loss/gen": 0.0, "loss/dis": 0.0, "scores/real": 0.0, "scores/fake": 0.0}
        G.cleargrads()          # each round's gradient is added (training_loop.py: no 1/rounds)
        for _ in range(rounds):
            y_fake = D(augment(c, G(self.to_device(sample_z(c, m)))))
            loss_G = loss_generator(y_fake)
            loss_G.backward(inputs=G.params())
            sums["loss/gen"] += float(loss_G.array) / rounds
        self.optimizers["gen"].update()

        D.cleargrads()
        for t in range(rounds):
            with no_backprop_mode():
                x_fake = G(self.to_device(sample_z(c, m))).array
            y_fake = D(augment(c, Variable(x_fake)))
            loss_fake = loss_dis_fake(y_fake)
            loss_fake.backward(inputs=D.params())
            y_real = D(augment(c, Variable(x_all[t * m:(t + 1) * m])))
            loss_real = loss_dis_real(y_real)
            loss_real.backward(inputs=D.params())
            sums["loss/dis"] += float((loss_fake + loss_real).array) / rounds
            sums["scores/real"] += float(y_real.array.mean()) / rounds
            sums["scores/fake"] += float(y_fake.array.mean()) / rounds
        self.optimizers["dis"].update()

        # G_ema <- lerp(G, G_ema, beta) at the images seen before this step; buffers copied
        self.ema.decay = ema_beta(c, self.nimg)
        self.ema.update()
        self.nimg += len(x_all) * self.ranks                          # images of all ranks
        return sums
