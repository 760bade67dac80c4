"""Lightweight GAN (FastGAN): few-shot high-resolution synthesis with a light G and a
self-supervised D.

Liu, Zhu, Song and Elgammal, "Towards Faster and Stabilized GAN Training for High-fidelity
Few-shot Image Synthesis", ICLR 2021 (arXiv:2101.04775); the command line and training schedule
follow lucidrains' lightweight-gan 1.2.1, the tool its users come from.

What is new:
  - skip-layer excitation (SLE): a low-resolution feature gates the channels of one 16 times
    larger, SLE(low, high) = high * sigmoid(conv1x1(swish(conv4x4(pool4(low))))), for the pairs
    8->128, 16->256, 32->512, 64->1024 (paper Figure 3): a short gradient path across scales at
    the cost of a channel-wise product;
  - a self-supervised D: on real images, simple decoders reconstruct the whole image from D's
    8 x 8 feature and a random quadrant from the matching quadrant of its 16 x 16 feature, so D
    must learn features that describe the image, which is what keeps it from overfitting a
    hundred images (paper section 3.2);
  - a G of single-conv up-blocks and a D of two-branch down-blocks (minigan/links/fastgan.py):
    a step costs a fraction of StyleGAN2's, so a few hours on one GPU suffice.

Losses (hinge, paper eq. 4, 5), on D's two heads (the 8 x 8 feature's and lucidrains' small head
on the image resized to 32 x 32), with x_real and x_fake both DiffAugmented before D:

    L_D = sum_heads E relu(1 - D(x_real)) + E relu(1 + D(x_fake))  +  L_recon  (+ L_gp)
    L_recon = || dec1(f_8) - T1(x_real) ||^2 + || dec2(crop_q(f_16)) - T2(crop_q(x_real)) ||^2
    L_G = -sum_heads E D(G(z))
    L_gp = 10 E ||grad_x D(x)||^2 over the real batch and the augmented fake batch, every 4th
           step (lucidrains 1.2.1; the gradient of both heads' sums), by double backprop

T1, T2 resize to the decoders' size (128 px, or the image's / the quadrant's when smaller) by
average pooling. The paper's L_recon is LPIPS; this uses MSE as lucidrains (LPIPS needs network
weights this project cannot ship), or L1 (recon_loss='l1').

Defaults and their sources:
    z ~ N(0, I), 256 dimensions                          lucidrains (latent_dim)
    G widths at 256 px 4:256 8:512 16:512 32:256 64:128 128:64 256:32, min(512, 8192 / res)
                                                         lucidrains (fmap_max 512, coef 12)
    D widths min(512, 4096 / res): 8:512 16:256 32:128    lucidrains' D table
    SLE pairs 8->128 ... 64->1024; below 128 px one pair 8->size so the idea is present
                                                         paper (the small-size pair: minigan)
    D output 5 x 5 logits (disc_output_size 5) or 1 x 1   paper / lucidrains' CLI
    Adam(2e-4, betas (0.5, 0.9))                          lucidrains (the paper: 2e-4, 0.5, 0.999)
    gradient penalty 10 every 4 steps; hflip + DiffAugment with probability aug_prob per batch,
      types cutout,translation (also color and his circular offset, offset_h, offset_v, in
      the order given; color, translation, cutout side by side run in that order)
                                                         lucidrains 1.2.1
    channels 3; 1 greyscale; 4 transparent (RGBA: the color augmentation treats alpha as a
      fourth colour, its means include it, as his)       lucidrains 1.2.1
    EMA of G: beta 0.995, every 10 steps after step 20000, reset to G at steps 1000 k + 2 up to
      25000                                              lucidrains 1.2.1 (BN statistics copied)
    weights N(0, 0.02), BN eps 1e-5 momentum 0.1          the FastGAN code
Options of lucidrains 1.2.1, off by default as there:
    antialias: the [1 2 1]^2 / 16 blur after each upsampling of G and before each downsampling of
      D (links/fastgan.py);
    dual_contrast_loss (Yu et al., "Dual Contrastive Loss and Attention for GANs", ICCV 2021) in
      place of the hinge, on both heads: each real logit is told apart from all the fake ones by
      a softmax, and each fake from the reals, L_D = E_i[-r_i + log(e^r_i + sum_j e^f_j)] +
      E_i[f_i + log(e^-f_i + sum_j e^-r_j)]; G's loss swaps the roles, so its step reads a real
      batch too. One logit per image: disc_output_size 1 (lucidrains asserts it).
    attn_res_layers (lucidrains' default [32] on his command line, and minigan's command's):
      x + A(ChannelNorm(x)) with lucidrains' attention (links/attention.py: linear attention plus
      full attention in 3 x 3 neighbourhoods) on the feature maps of the listed widths, before
      G's up-block and D's down-block that read them; with any width listed, D's small head has
      lucidrains' two attention layers too (his are always there). The Config's default is
      none, which is the paper's networks.
"""
import dataclasses

import numpy

import minigan
from .. import functions as F
from .. import links as L
from .. import training
from ..augment import augment_types, parse_types
from ..core import Variable, no_backprop_mode, using_config
from ..links import fastgan as B
from ..links.attention import ResidualAttention
from ..optimizers import Adam, ExponentialMovingAverage
from . import base
from .base import sample_z  # noqa: F401 (this GAN's noise)


def paper_sle(size):
    """The paper's SLE pairs (low, high) that fit size; one pair 8 -> size below 128 px."""
    pairs = tuple((low, 16 * low) for low in (8, 16, 32, 64) if 16 * low <= size)
    return pairs or (((8, size),) if size >= 16 else ())


@dataclasses.dataclass
class Config(base.Config):
    size: int = 256
    channels: int = 3               # 1 greyscale, 3 RGB, 4 transparent
    n_z: int = 256
    fmap_max: int = 512
    sle: tuple = ((8, 128), (16, 256))
    disc_output_size: int = 5
    recon_loss: str = "mse"         # 'mse' (lucidrains) or 'l1'
    gp_every: int = 4               # 0: no gradient penalty
    gp_weight: float = 10.0
    aug_prob: float = 0.0           # per batch; the command applies lucidrains' rule when unset
    aug_types: str = "cutout,translation"
    gradient_accumulate_every: int = 1
    alpha: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.9
    ema_beta: float = 0.995
    ema_every: int = 10
    ema_start: int = 20000
    ema_reset_every: int = 1000
    ema_reset_until: int = 25000
    antialias: bool = False
    dual_contrast_loss: bool = False
    attn_res_layers: tuple = ()     # widths of the maps that get attention (lucidrains: [32])

    @classmethod
    def for_data(cls, shape, **overrides):
        """Square images of a power-of-2 side >= 32 with 1, 3 or 4 channels."""
        ch, size = base.square_images(shape, "lightweight")
        size = overrides.get("size", size)
        base.square_images((ch, size, size), "lightweight", min_size=32)
        if ch not in (1, 3, 4):
            raise base.ConfigError(f"lightweight: {ch} channels; 1 (greyscale), 3 or 4 "
                                   "(transparent)")
        fields = {"size": size, "channels": ch, "sle": paper_sle(size), **overrides}
        return cls.create(**fields)

    def __post_init__(self):
        self.sle = tuple(tuple(p) for p in self.sle)
        self.attn_res_layers = tuple(int(w) for w in self.attn_res_layers)
        if any(w < 4 or w & (w - 1) for w in self.attn_res_layers):
            raise base.ConfigError(f"lightweight: attn_res_layers {list(self.attn_res_layers)}: "
                                   "widths are powers of 2, at least 4")
        if self.disc_output_size not in (1, 5):
            raise base.ConfigError("lightweight: disc_output_size must be 1 or 5")
        if self.dual_contrast_loss and self.disc_output_size != 1:
            raise base.ConfigError("lightweight: the dual contrastive loss takes one logit per "
                                   "image: use it with disc_output_size 1 (--disc-output-size 1)")
        if self.recon_loss not in ("mse", "l1"):
            raise base.ConfigError("lightweight: recon_loss must be 'mse' or 'l1'")
        try:
            parse_types(self.aug_types)
        except ValueError as e:
            raise base.ConfigError(f"lightweight: {e}") from None

    def minibatches(self):
        """Each accumulation step has its own batch; the dual contrastive G step one more."""
        return self.gradient_accumulate_every * (2 if self.dual_contrast_loss else 1)


# no FLAGS: its command (commands/lightweight.py) speaks lucidrains' flags, not the zoo's

# -- networks ----------------------------------------------------------------------------------

def g_width(c, res):
    """G's channels at resolution res: n_z at 4, then min(fmap_max, 8192 / res)."""
    return c.n_z if res == 4 else min(c.fmap_max, 8192 // res)


def d_width(c, res):
    """D's channels at resolution res: min(fmap_max, 4096 / res)."""
    return min(c.fmap_max, 4096 // res)


def resolutions(size, start):
    """start, 2 start, ..., size."""
    out = [start]
    while out[-1] < size:
        out.append(out[-1] * 2)
    return out


class Generator(L.Chain):
    """G(z): z (N, n_z) -> (N, C, size, size) in [-1, 1]."""

    def __init__(self, c, dtype=numpy.float32):
        super().__init__()
        self.res = resolutions(c.size, 8)
        self.init = B.InitBlock(c.n_z, g_width(c, 4), dtype)           # (N, n_z, 4, 4)
        widths = [g_width(c, r) for r in [4] + self.res]
        self.ups = L.Sequential(*[B.UpBlock(a, b, antialias=c.antialias, dtype=dtype)
                                  for a, b in zip(widths, widths[1:])])
        self.sle = {high: low for low, high in c.sle}
        for low, high in c.sle:
            setattr(self, f"sle{high}", B.SLE(g_width(c, low), g_width(c, high), dtype))
        self.out = B.conv(widths[-1], c.channels, 3, 1, 1, nobias=False, dtype=dtype)
        self.attn = [r // 2 for r in self.res if r // 2 in c.attn_res_layers]
        for w in self.attn:                 # on the up-block's input of width w
            setattr(self, f"attn{w}", ResidualAttention(g_width(c, w), dtype=dtype))

    def noise_shapes(self, n):
        """The shapes of the noise maps of the up-blocks, (N, 1, res, res) each."""
        return [(n, 1, r, r) for r in self.res]

    def forward(self, z, noise=None):
        """noise: None (NumPy's global generator), a RandomState to draw from, or the maps."""
        if noise is not None and not isinstance(noise, (list, tuple)):
            noise = [noise.standard_normal(s) for s in self.noise_shapes(len(z))]
        h = self.init(z)
        feats = {4: h}
        for i, r in enumerate(self.res):
            if r // 2 in self.attn:
                h = getattr(self, f"attn{r // 2}")(h)
            h = self.ups[i](h, None if noise is None else noise[i])    # (N, C_r, r, r)
            if r in self.sle:
                h = getattr(self, f"sle{r}")(feats[self.sle[r]], h)
            feats[r] = h
        return F.tanh(self.out(h))                                      # (N, C, size, size)


class Discriminator(L.Chain):
    """D(x) -> (logits (N, 1, k, k), small head's (N, 1, 1, 1), f_8 (N, ., 8, 8), f_16)."""

    def __init__(self, c, dtype=numpy.float32):
        super().__init__()
        self.size = c.size
        res = resolutions(c.size, 8)[::-1]                              # size ... 16, 8
        self.stem = B.conv(c.channels, d_width(c, c.size), 3, 1, 1, nobias=False, dtype=dtype)
        self.downs = L.Sequential(*[B.DownBlock(d_width(c, a), d_width(c, b), dtype, c.antialias)
                                    for a, b in zip(res, res[1:])])
        c8 = d_width(c, 8)
        if c.disc_output_size == 5:         # paper: 8 -> 5 by a valid 4 x 4 conv
            self.logits = L.Sequential(B.conv(c8, c8, 1, dtype=dtype), B.bn(c8, dtype=dtype),
                                       B.lrelu, B.conv(c8, 1, 4, nobias=False, dtype=dtype))
        else:                               # lucidrains: 8 -> 4 -> 1
            self.logits = L.Sequential(B.conv(c8, c8, 3, 2, 1, dtype=dtype), B.bn(c8, dtype=dtype),
                                       B.lrelu, B.conv(c8, 1, 4, nobias=False, dtype=dtype))
        self.blur = B.maybe_blur(c.antialias and c.disc_output_size == 1)   # before the s2 conv
        self.attn = [a for a in res[:-1] if a in c.attn_res_layers]
        for w in self.attn:                 # on the down-block's input of width w
            setattr(self, f"attn{w}", ResidualAttention(d_width(c, w), dtype=dtype))
        # lucidrains' second head on the image at 32 x 32 (his two attention layers, with any)
        s1, s2 = min(c.fmap_max, 64), min(c.fmap_max, 32)
        attn = lambda ch: [ResidualAttention(ch, dtype=dtype)] if c.attn_res_layers else []
        self.small = L.Sequential(B.conv(c.channels, s1, 3, 1, 1, nobias=False, dtype=dtype),
                                  B.lrelu, *attn(s1), B.DownBlock(s1, s2, dtype, c.antialias),
                                  *attn(s2), lambda h: F.adaptive_average_pooling_2d(h, 4),
                                  B.conv(s2, 1, 4, nobias=False, dtype=dtype))
        self.r1, self.r2 = min(128, c.size), min(128, c.size // 2)
        self.dec1 = B.SimpleDecoder(c8, c.channels, (self.r1 // 8).bit_length() - 1, dtype)
        self.dec2 = B.SimpleDecoder(d_width(c, 16), c.channels,
                                    (self.r2 // 8).bit_length() - 1, dtype)

    def forward(self, x):
        h = B.lrelu(self.stem(x))                                       # (N, ., size, size)
        f16 = None
        for block in self.downs:
            if h.shape[2] in self.attn:
                h = getattr(self, f"attn{h.shape[2]}")(h)
            h = block(h)
            if h.shape[2] == 16:
                f16 = h
        y = self.logits(self.blur(h))                                   # (N, 1, k, k)
        y_small = self.small(shrink(x, 32))                             # (N, 1, 1, 1)
        return y, y_small, h, f16


def shrink(x, size):
    """x (N, C, S, S) average-pooled to (N, C, size, size); S / size is a power of 2."""
    k = x.shape[2] // size
    return x if k == 1 else F.average_pooling_2d(x, k)


# -- losses ------------------------------------------------------------------------------------

def loss_discriminator(y_real, y_fake):
    """Hinge: E relu(1 - D(x_real)) + E relu(1 + D(x_fake))."""
    return F.mean(F.relu(1.0 - y_real)) + F.mean(F.relu(1.0 + y_fake))


def loss_generator(y_fake):
    """L_G = -E D(G(z))."""
    return -F.mean(y_fake)


def loss_dual_contrastive(y_a, y_b):
    """E_i[-a_i + log(e^a_i + sum_j e^b_j)] + E_i[b_i + log(e^-b_i + sum_j e^-a_j)] over the
    logits a (told apart from all the b by a softmax) and b: D's loss with a = real, b = fake,
    G's with a = fake, b = real (Yu et al. 2021, lucidrains' dual_contrastive_loss)."""
    a, b = F.reshape(y_a, (-1,)), F.reshape(y_b, (-1,))

    def half(t1, t2):       # softmax cross-entropy of [t1_i, t2_1 .. t2_M] for class 0
        rows = F.concat([F.reshape(t1, (-1, 1)),
                         F.broadcast_to(F.reshape(t2, (1, -1)), (len(t1), len(t2)))], axis=1)
        return F.mean(F.logsumexp(rows, axis=1) - t1)
    return half(a, b) + half(-b, -a)


def loss_reconstruction(D, x, f8, f16, quadrant, kind="mse"):
    """Decoder 1 rebuilds x from f_8; decoder 2 the quadrant (qy, qx) of x from f_16's."""
    dist = F.mean_squared_error if kind == "mse" else F.mean_absolute_error
    loss = dist(D.dec1(f8), shrink(x, D.r1))
    qy, qx = quadrant
    h, s = f16.shape[2] // 2, x.shape[2] // 2
    part = F.get_item(f16, (slice(None), slice(None), slice(qy * h, (qy + 1) * h),
                            slice(qx * h, (qx + 1) * h)))                # (N, ., 8, 8)
    crop = F.get_item(x, (slice(None), slice(None), slice(qy * s, (qy + 1) * s),
                          slice(qx * s, (qx + 1) * s)))                  # (N, C, S/2, S/2)
    return loss + dist(D.dec2(part), shrink(crop, D.r2))


def gradient_penalty(outputs, inputs, weight):
    """weight E ||grad_x sum(outputs)||^2 over the images of all inputs, differentiable."""
    total = sum(F.sum(y) for y in outputs)
    grads = minigan.grad(total, inputs, create_graph=True)
    g = F.concat([F.reshape(gi, (len(gi), -1)) for gi in grads], axis=0)   # (2N, C H W)
    return weight * F.mean(F.sum(g * g, axis=1))


def augment(c, x, coin=numpy.random.uniform):
    """lucidrains' AugWrapper: with probability aug_prob per batch, a horizontal flip of the
    whole batch with probability 1/2, then aug_types (DiffAugment runs and offsets, in order).
    coin() draws the two per-batch decisions (the Updater's are shared by all ranks: one global
    batch); the augmentations draw each image's own parameters."""
    if not (c.aug_prob > 0 and coin() < c.aug_prob):
        return x
    if coin() >= 0.5:
        x = F.get_item(x, (slice(None), slice(None), slice(None), slice(None, None, -1)))
    return augment_types(x, c.aug_types)


# -- one iteration -----------------------------------------------------------------------------

def build(c):
    """G, D, the EMA of G (a copy of G to start) and Adam for G and D."""
    G, D = Generator(c), Discriminator(c)
    models = {"gen": G, "dis": D, "gen_ema": G.copy()}
    opt = lambda net: Adam(c.alpha, c.beta1, c.beta2).setup(net)
    return models, {"gen": opt(G), "dis": opt(D)}


def generate(G, z, rng=None):
    """G(z) as an array, in test mode (BN's running statistics); noise from rng if given."""
    with no_backprop_mode(), using_config("train", False):
        return G(z, rng).array


class Updater(training.Updater):
    """lucidrains' Trainer.train step: D (hinge + recon (+ penalty)), G, then the EMA.

    On K ranks each accumulation step is one global minibatch of K m images: the per-batch
    draws (augment or not, flip or not, the reconstructed quadrant) are rank 0's, shared; the
    gradients are all-reduced once per optimizer step, after the accumulated backward passes
    (the multi-node optimizer's hook); G and so its EMA stay equal on every rank."""

    def __init__(self, config, models, optimizers, device=-1):
        super().__init__(config, models, optimizers, device)
        self.ema = ExponentialMovingAverage(models["gen"], config.ema_beta)
        self.ema.avg = models["gen_ema"]
        self.step, self.last_penalty = 0, 0.0

    def coin(self):
        """A uniform draw in [0, 1) for a decision about the whole (global) batch."""
        return self.shared(numpy.random.uniform)

    def state_dict(self):
        return {"step": self.step, "last_penalty": self.last_penalty}

    def load_state_dict(self, state):
        self.step, self.last_penalty = int(state["step"]), float(state["last_penalty"])

    def update(self, batch):
        c, G, D = self.config, self.models["gen"], self.models["dis"]
        acc = c.gradient_accumulate_every
        x_all = self.to_device(batch)           # (acc m, C, S, S), twice that with dual contrast
        m = len(x_all) // c.minibatches()
        dual = c.dual_contrast_loss
        loss_d = loss_dual_contrastive if dual else loss_discriminator
        penalize = c.gp_every > 0 and self.step % c.gp_every == 0
        sums = {"loss/dis": 0.0, "loss/dis_small": 0.0, "loss/recon": 0.0, "loss/gen": 0.0}
        aug = lambda x: augment(c, x, self.coin)
        D.cleargrads()
        for t in range(acc):
            x_real = Variable(x_all[t * m:(t + 1) * m])                 # (m, C, S, S)
            with no_backprop_mode():
                x_fake = aug(Variable(G(self.to_device(sample_z(c, m))).array))
            x_fake = Variable(x_fake.array)             # D's input: the penalty's other point
            y_fake, ys_fake, _, _ = D(x_fake)
            x_in = aug(x_real)
            y_real, ys_real, f8, f16 = D(x_in)
            quadrant = divmod(self.shared(lambda: int(numpy.random.randint(4))), 2)
            recon = loss_reconstruction(D, x_in, f8, f16, quadrant, c.recon_loss)
            divergence = loss_d(y_real, y_fake)
            divergence_small = loss_d(ys_real, ys_fake)
            loss = divergence + divergence_small + recon
            if penalize:
                penalty = gradient_penalty([y_real, ys_real, y_fake, ys_fake], [x_real, x_fake],
                                           c.gp_weight)
                loss = loss + penalty
                self.last_penalty = self.global_mean(penalty.array)
            (loss / acc).backward(inputs=D.params())
            sums["loss/dis"] += float(divergence.array) / acc
            sums["loss/dis_small"] += float(divergence_small.array) / acc
            sums["loss/recon"] += float(recon.array) / acc
        self.optimizers["dis"].update()

        G.cleargrads()
        for t in range(acc):
            y_fake, ys_fake, _, _ = D(aug(G(self.to_device(sample_z(c, m)))))
            if dual:            # G's logits told apart from a real batch's, the roles swapped
                x_real = Variable(x_all[(acc + t) * m:(acc + t + 1) * m])
                with no_backprop_mode():        # constants for G: no graph through D
                    y_real, ys_real, _, _ = D(aug(x_real))
                heads = loss_dual_contrastive(y_fake, y_real), loss_dual_contrastive(ys_fake,
                                                                                     ys_real)
            else:
                heads = loss_generator(y_fake), loss_generator(ys_fake)
            ((heads[0] + heads[1]) / acc).backward(inputs=G.params())
            sums["loss/gen"] += float(heads[0].array) / acc
        self.optimizers["gen"].update()

        # lucidrains' schedule: average every ema_every steps after ema_start; before
        # ema_reset_until, restart the average from G every ema_reset_every steps (at k + 2)
        s = self.step
        if s % c.ema_every == 0 and s > c.ema_start:
            self.ema.update()
        if s <= c.ema_reset_until and s % c.ema_reset_every == 2 % c.ema_reset_every:
            self.ema.reset()
        self.step += 1
        return {**sums, "dis/penalty": self.last_penalty}
