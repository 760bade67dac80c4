"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training",
arXiv:2006.10738) as one differentiable op, and ADA's adaptive probability (Karras et al. 2020).

The transforms and their order follow the authors' reference code (mit-han-lab/data-efficient-
gans, DiffAugment_pytorch.py; ProjectedGAN's pg_modules/diffaug.py for the ratios): for each
image n of a batch,

  color        brightness  x + b,                              b ~ U(-0.5, 0.5)
               saturation  (x - m) s + m,  m = channel mean per pixel,        s ~ U(0, 2)
               contrast    (x - M) c + M,  M = image mean after the two above, c ~ U(0.5, 1.5)
  translation  y[h, w] = x[h + ty, w + tx], zero outside; |ty| <= round(H / 8), |tx| likewise
  cutout       zero a square of round(ratio H) x round(ratio W) around a random centre
               (ratio 0.5 in the paper, 0.2 in ProjectedGAN), clipped to the image

On 4 channels (RGBA, lucidrains' --transparent) every transform acts on alpha too and the means
m and M include it, as his rand_brightness, rand_saturation and rand_contrast do.

The mean of the saturated image is xbar + b (xbar the mean of x), so the color part is
z = c s (x - m) + c (m - xbar) + xbar + b: affine in x. For fixed parameters the whole map is
y = A x + b with A linear, so its gradient is the adjoint, gx = A^T gy (DiffAugmentGrad), and the
adjoint's own gradient is A again (DiffAugment without b): every order of derivative works.
With g = gy carried back through cutout and translation,

  gx = c s g + c (1 - s) mean_channels(g) + (1 - c) mean_image(g).

The random parameters are drawn on the host (NumPy's generator, so a snapshot restores them);
on CuPy arrays both directions are two kernel launches each (kernels/augment.cu), on NumPy arrays
the vectorized twins below.

lucidrains' lightweight-gan adds circular offsets (diff_augment.py, rand_offset), a separate op:

  offset       y[h, w] = x[(h - dy) mod H, (w - dx) mod W]    (torch.roll by dy, dx)
  offset_h     the same with dy = 0;  offset_v with dx = 0
               dx = 2 k - S, k uniform in {0, ..., S}, S = int(ratio W) (ratio 1): an even
               number in [-S, S], so a roll by up to the whole image either way; dy likewise

A roll is a permutation P, so its gradient is P^T = P^-1, the roll back (Roll again): every order
of derivative works.
"""
import dataclasses

import numpy

from . import backend, cuda
from .core import FunctionNode

TRANSFORMS = ("color", "translation", "cutout")     # the order they are applied in
OFFSETS = ("offset", "offset_h", "offset_v")        # lucidrains' circular rolls (Roll)


@dataclasses.dataclass
class AugmentParams:
    """Per-image parameters: color (N, 3) = (b, s, c); ints (N, 4) = (ty, tx, cy, cx), the shift
    and the cutout's top-left corner; cut = (height, width) of the cutout, (0, 0) for none."""
    color: numpy.ndarray
    ints: numpy.ndarray
    cut: tuple

    def on(self, xp, dtype):
        """(color, ints) as contiguous arrays of module xp (the color in dtype), memoized."""
        key = (xp.__name__, numpy.dtype(dtype))
        cache = self.__dict__.setdefault("_arrays", {})
        if key not in cache:
            cache[key] = (xp.ascontiguousarray(xp.asarray(self.color, dtype)),
                          xp.ascontiguousarray(xp.asarray(self.ints, numpy.int32)))
        return cache[key]


def parse_policy(policy):
    """'color,translation,cutout' -> the tuple of transform names (in the order applied)."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip()) if policy else ()
    unknown = [p for p in names if p not in TRANSFORMS]
    if unknown:
        raise ValueError(f"diff_augment: unknown transform(s) {unknown}; choose from {TRANSFORMS}")
    if list(names) != sorted(set(names), key=TRANSFORMS.index):
        raise ValueError(f"diff_augment: policy {policy!r} must list each transform once, in "
                         f"the order {','.join(TRANSFORMS)} (the order they are applied in)")
    return names


def _randint(rng, low, high, n):
    """Integers uniform in [low, high), from a RandomState, a Generator or numpy.random."""
    draw = getattr(rng, "integers", None) or rng.randint
    return numpy.asarray(draw(low, high, n)).astype(numpy.int64)


def sample_params(shape, policy="color,translation,cutout", ratio=0.5, translation=0.125,
                  rng=None, prob=1.0):
    """Draw the parameters of `policy` for a batch of `shape` (N, C, H, W).

    prob: each transform applies to each image with this probability (ADA's p), else it is the
    identity for that image. rng: a RandomState or Generator (default: numpy.random).
    """
    names = parse_policy(policy)
    rng = numpy.random if rng is None else rng
    N, _, H, W = shape
    color = numpy.tile([0.0, 1.0, 1.0], (N, 1))
    ints = numpy.zeros((N, 4), numpy.int64)
    cut = (0, 0)
    if "color" in names:
        color[:, 0] = rng.uniform(-0.5, 0.5, N)         # brightness
        color[:, 1] = rng.uniform(0.0, 2.0, N)          # saturation
        color[:, 2] = rng.uniform(0.5, 1.5, N)          # contrast
    if "translation" in names:
        sh, sw = int(H * translation + 0.5), int(W * translation + 0.5)
        ints[:, 0] = _randint(rng, -sh, sh + 1, N)
        ints[:, 1] = _randint(rng, -sw, sw + 1, N)
    if "cutout" in names:
        cut = (int(H * ratio + 0.5), int(W * ratio + 0.5))
        # the reference draws the centre in [0, size - (cut % 2)] and covers centre - cut // 2 on
        ints[:, 2] = _randint(rng, 0, H + 1 - cut[0] % 2, N) - cut[0] // 2
        ints[:, 3] = _randint(rng, 0, W + 1 - cut[1] % 2, N) - cut[1] // 2
    if prob < 1:            # switch each transform off, per image, with probability 1 - prob
        for name in names:
            off = rng.uniform(0.0, 1.0, N) >= prob
            if name == "color":
                color[off] = (0.0, 1.0, 1.0)
            elif name == "translation":
                ints[off, :2] = 0
            else:
                ints[off, 2:] = (H, W)                  # the square starts outside the image
    return AugmentParams(color, ints, cut)


# -- the NumPy twins ------------------------------------------------------------------------------

def _shift(a, dy, dx):
    """out[n, :, h, w] = a[n, :, h + dy[n], w + dx[n]], 0 where that lies outside the image."""
    xp = backend.get_array_module(a)
    _, _, H, W = a.shape
    rows = xp.arange(H)[None, :] + xp.asarray(dy)[:, None]           # (N, H)
    cols = xp.arange(W)[None, :] + xp.asarray(dx)[:, None]           # (N, W)
    out = xp.take_along_axis(a, xp.clip(rows, 0, H - 1)[:, None, :, None], axis=2)
    out = xp.take_along_axis(out, xp.clip(cols, 0, W - 1)[:, None, None, :], axis=3)
    inside = (((rows >= 0) & (rows < H))[:, None, :, None]
              & ((cols >= 0) & (cols < W))[:, None, None, :])
    return xp.where(inside, out, 0).astype(a.dtype, copy=False)


def _outside_cutout(p, xp, H, W):
    """(N, 1, H, W) mask, False inside each image's cutout square."""
    ints = xp.asarray(p.ints)
    r, c = xp.arange(H)[None, :], xp.arange(W)[None, :]
    rin = (r >= ints[:, 2:3]) & (r < ints[:, 2:3] + p.cut[0])
    cin = (c >= ints[:, 3:4]) & (c < ints[:, 3:4] + p.cut[1])
    return ~(rin[:, None, :, None] & cin[:, None, None, :])


def _color(p, xp, dtype):
    return [xp.asarray(p.color[:, i], dtype).reshape(-1, 1, 1, 1) for i in range(3)]


def augment_twin(x, p, linear=False):
    """y = cutout(translate(color(x))) on any xp array; linear drops the brightness b."""
    xp = backend.get_array_module(x)
    b, s, c = _color(p, xp, x.dtype)
    m = x.mean(axis=1, keepdims=True)
    xbar = x.mean(axis=(1, 2, 3), keepdims=True)
    z = c * s * (x - m) + (c * (m - xbar) + xbar + (0 if linear else b))
    ints = xp.asarray(p.ints)
    t = _shift(z, ints[:, 0], ints[:, 1])
    return xp.where(_outside_cutout(p, xp, *x.shape[2:]), t, 0).astype(x.dtype, copy=False)


def adjoint_twin(gy, p):
    """gx = A^T gy: through cutout and translation back, then the adjoint of the color map."""
    xp = backend.get_array_module(gy)
    _, s, c = _color(p, xp, gy.dtype)
    ints = xp.asarray(p.ints)
    g = xp.where(_outside_cutout(p, xp, *gy.shape[2:]), gy, 0).astype(gy.dtype, copy=False)
    g = _shift(g, -ints[:, 0], -ints[:, 1])
    m = g.mean(axis=1, keepdims=True)
    gbar = g.mean(axis=(1, 2, 3), keepdims=True)
    return c * s * g + (c * (1 - s) * m + (1 - c) * gbar)


# pixels per block of the kernels: a batch of 64 images of 64 x 64 makes 256 blocks, of
# 256 x 256 4096, enough to fill every SM of a large GPU (one block per image filled 64)
TILE_PIXELS = 1024


def _kernel(name, a, p, linear=False):
    """diff_augment or diff_augment_adjoint of a by kernels/augment.cu: the images' partial
    sums (for the color's image mean), then the map, each one launch over (tiles, images)."""
    xp = backend.get_array_module(a)
    a = xp.ascontiguousarray(a)
    color, ints = p.on(xp, a.dtype)
    if linear:
        color = color.copy()
        color[:, 0] = 0
    out = xp.empty_like(a)
    N, C, H, W = a.shape
    if out.size:
        tiles = -(-H * W // TILE_PIXELS)
        part = xp.empty((N, tiles), a.dtype)        # one partial sum per (image, tile)
        grid, block = (tiles, min(N, cuda.max_grid_y)), cuda.threads_per_block
        sizes = tuple(map(cuda.int32, (N, C, H, W) + tuple(p.cut) + (tiles,)))
        cuda.int32(C * H * W)
        cuda.launch("augment", name + "_sums", a.dtype, grid, block,
                    (a, part, color, ints) + sizes, shared_mem=block * a.dtype.itemsize)
        cuda.launch("augment", name, a.dtype, grid, block, (a, out, part, color, ints) + sizes)
    return out


# -- the differentiable op ------------------------------------------------------------------------

class DiffAugment(FunctionNode):
    """y = A x + b for fixed parameters (b dropped when linear: the adjoint's gradient)."""

    def __init__(self, params, linear=False):
        self.params, self.linear = params, linear

    def forward(self, inputs):
        x, = inputs
        if cuda.enabled(x):
            return _kernel("diff_augment", x, self.params, self.linear),
        return augment_twin(x, self.params, self.linear),

    def backward(self, indexes, grad_outputs):
        return DiffAugmentGrad(self.params).apply(grad_outputs)


class DiffAugmentGrad(FunctionNode):
    """gy -> A^T gy; linear, and its gradient is A (DiffAugment without b)."""

    def __init__(self, params):
        self.params = params

    def forward(self, inputs):
        gy, = inputs
        if cuda.enabled(gy):
            return _kernel("diff_augment_adjoint", gy, self.params),
        return adjoint_twin(gy, self.params),

    def backward(self, indexes, grad_outputs):
        return DiffAugment(self.params, linear=True).apply(grad_outputs)


def diff_augment(x, policy="color,translation,cutout", ratio=0.5, translation=0.125, rng=None,
                 params=None, prob=1.0):
    """DiffAugment of a batch x (N, C, H, W), differentiable in x.

    ratio: cutout side / image side (0.5 as the paper, 0.2 for ProjectedGAN); translation: the
    largest shift / image side; prob: per-transform, per-image probability (ADA); params: fixed
    AugmentParams (from sample_params) instead of fresh ones drawn from rng.
    """
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(f"diff_augment: x must be (N, C, H, W), got shape {shape}")
    if params is None:
        params = sample_params(shape, policy, ratio, translation, rng, prob)
    elif len(params.color) != shape[0]:
        raise ValueError(f"diff_augment: params for {len(params.color)} images, x has {shape[0]}")
    return DiffAugment(params).apply((x,))[0]


# -- lucidrains' circular offsets ------------------------------------------------------------------

def sample_offsets(shape, kind="offset", ratio=1.0, rng=None):
    """(N, 2) shifts (dy, dx) of `kind` for a batch of `shape`: 2 k - S with k uniform in
    {0, ..., S}, S = int(side * ratio), as lucidrains' rand_offset (an even roll in [-S, S])."""
    if kind not in OFFSETS:
        raise ValueError(f"offset: unknown kind {kind!r}; choose from {', '.join(OFFSETS)}")
    rng = numpy.random if rng is None else rng
    N, _, H, W = shape
    shifts = numpy.zeros((N, 2), numpy.int64)
    # his rand_offset draws the horizontal shift first; its bound is int(x.size(2) * ratio),
    # the height where the width is meant: the same for the square images he trains on
    for axis, side, on in ((1, W, kind != "offset_v"), (0, H, kind != "offset_h")):
        if on:
            s = int(side * ratio)
            shifts[:, axis] = _randint(rng, 0, s + 1, N) * 2 - s
    return shifts


def _roll(a, dy, dx):
    """out[n, :, h, w] = a[n, :, (h - dy[n]) mod H, (w - dx[n]) mod W]: torch.roll per image."""
    xp = backend.get_array_module(a)
    _, _, H, W = a.shape
    rows = (xp.arange(H)[None, :] - xp.asarray(dy)[:, None]) % H        # (N, H)
    cols = (xp.arange(W)[None, :] - xp.asarray(dx)[:, None]) % W        # (N, W)
    out = xp.take_along_axis(a, rows[:, None, :, None], axis=2)
    return xp.take_along_axis(out, cols[:, None, None, :], axis=3)


class Roll(FunctionNode):
    """y = P x, image n rolled by shifts[n] = (dy, dx); the gradient P^T = P^-1 rolls back."""

    def __init__(self, shifts):
        self.shifts = numpy.asarray(shifts, numpy.int64)

    def forward(self, inputs):
        x, = inputs
        return _roll(x, self.shifts[:, 0], self.shifts[:, 1]),

    def backward(self, indexes, grad_outputs):
        return Roll(-self.shifts).apply(grad_outputs)


def offset(x, kind="offset", ratio=1.0, rng=None, shifts=None):
    """lucidrains' rand_offset (kind 'offset'), rand_offset_h or rand_offset_v of a batch x
    (N, C, H, W): each image rolled circularly, differentiable in x; shifts: fixed (N, 2)
    (dy, dx) instead of fresh ones drawn from rng (default numpy.random)."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(f"offset: x must be (N, C, H, W), got shape {shape}")
    if shifts is None:
        shifts = sample_offsets(shape, kind, ratio, rng)
    elif numpy.shape(shifts) != (shape[0], 2):
        raise ValueError(f"offset: shifts must be ({shape[0]}, 2), got {numpy.shape(shifts)}")
    return Roll(shifts).apply((x,))[0]


def parse_types(types):
    """lucidrains' --aug-types 'cutout,translation,offset' -> the tuple of names, in order."""
    names = tuple(t.strip() for t in types.split(",") if t.strip()) if types else ()
    unknown = [t for t in names if t not in TRANSFORMS + OFFSETS]
    if unknown:
        raise ValueError(f"unknown aug type(s) {','.join(unknown)}; choose from "
                         f"{','.join(TRANSFORMS + OFFSETS)}")
    return names


def augment_types(x, types, rng=None):
    """x through lucidrains' aug types in the order given (his DiffAugment), except that each
    run of color / translation / cutout is one DiffAugment in the order of TRANSFORMS (one
    kernel launch on the GPU); each offset type is a Roll where it stands."""
    run = []
    for name in parse_types(types) + (None,):
        if name in TRANSFORMS:
            run.append(name)
            continue
        if run:
            x = diff_augment(x, ",".join(t for t in TRANSFORMS if t in run), rng=rng)
            run = []
        if name is not None:
            x = offset(x, name, rng=rng)
    return x


class AdaptiveProbability:
    """ADA's augmentation probability p (Karras et al. 2020, "Training Generative Adversarial
    Networks with Limited Data"): every `interval` updates, r = E[sign(D(x_real))] over them, and
    p <- clip(p + sign(r - target) * images / speed, 0, 1), so p can cross [0, 1] in `speed`
    images (500k in the paper) and D's overfitting measure r stays near the target (0.6)."""

    def __init__(self, target=0.6, interval=4, speed=500_000, p=0.0):
        self.target, self.interval, self.speed, self.p = target, interval, speed, p
        self._signs = self._count = self._images = self._updates = 0

    def update(self, d_real):
        """Account one batch of D's logits on real images; returns the current p."""
        d = backend.to_cpu(getattr(d_real, "array", d_real))
        self._signs += float(numpy.sign(d).sum())
        self._count += d.size
        self._images += d.shape[0]
        self._updates += 1
        if self._updates % self.interval == 0:
            r = self._signs / self._count
            step = numpy.sign(r - self.target) * self._images / self.speed
            self.p = float(numpy.clip(self.p + step, 0.0, 1.0))
            self._signs = self._count = self._images = 0
        return self.p
