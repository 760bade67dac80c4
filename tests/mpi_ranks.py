"""K steps of a GAN in float64 on one rank of `mpiexec -n K` (or alone), for test_distributed.py.

    mpiexec -n 2 python tests/mpi_ranks.py gan mpi 4 3 OUT.npz       # 2 ranks x batch 4
    python tests/mpi_ranks.py gan single 8 3 OUT.npz                 # 1 process x batch 8

Kinds: gan, pix2pix, wgan-gp (2 critic minibatches), began, lightweight (gradient accumulation
2, EMA every step, penalty every 2nd, augmentation p 0.5) and projected (2 rounds of batch_gpu;
a small frozen stand-in for EfficientNet-lite0, see FeatureStandIn). `batch` is b, the examples
of one rank in one minibatch (for projected: batch_gpu).

The per-example draws (noise z, WGAN-GP's eps, G's noise maps, DiffAugment's parameters, the
dropout masks) are drawn for the whole global minibatch from one stream per kind that every rank
shares, and each rank keeps its own rows: so the 2-rank run sees exactly the numbers the
1-process run sees, and the two must agree to rounding. (In real runs each rank draws its own;
this replaces only the draws, not the code under test: data sharding per minibatch, gradient
all-reduce, synchronized batch norm, the multi-node optimizer, the updaters' global_mean and
shared per-batch decisions, which rank 0 draws from NumPy's generator, seeded alike here and in
the 1-process run.) After every step the ranks' parameters, persistents (batch norm statistics,
spectral-norm vectors, the EMA of G, the frozen networks) and updater state (BEGAN's k_t) must
be bitwise equal.
"""
import hashlib
import sys

import numpy

import minigan.functions as F
from minigan import augment, distributed
from minigan.backend import is_array
from minigan.commands import ranks as rank_setup
from minigan.core import config
from minigan.datasets import BatchIterator, RingDataset, SyntheticFacadeDataset
from minigan.gans import began, gan, lightweight, pix2pix, projected, wgan_gp
from minigan.links import BatchNormalization, Chain, fastgan

MODULES = {"gan": gan, "pix2pix": pix2pix, "wgan-gp": wgan_gp, "began": began,
           "lightweight": lightweight, "projected": projected}
MINIBATCHES = {"wgan-gp": 2, "lightweight": 2, "projected": 2}


class Float64:
    """A dataset whose examples are float64."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def get_example(self, i, rng=None):
        return tuple(a.astype(numpy.float64) for a in self.ds.get_example(i, rng))


class Blobs:
    """n smooth float64 images (C, S, S) in [-1, 1], example i from RandomState(i)."""

    def __init__(self, n, channels, size):
        self.n, self.channels, self.size = n, channels, size

    def __len__(self):
        return self.n

    def get_example(self, i, rng=None):
        r = numpy.random.RandomState(i)
        t = numpy.linspace(0, 1, self.size)
        f, p = r.uniform(1, 3, (2, self.channels, 1, 1)), r.uniform(0, 6, (2, self.channels, 1, 1))
        x = numpy.sin(f[0] * 6 * t[:, None] + p[0]) * numpy.cos(f[1] * 6 * t[None] + p[1])
        return (x.astype(numpy.float64),)


class FeatureStandIn(Chain):
    """EfficientNet-lite0's taps in shape (24, 40, 112, 320 channels at 56, 28, 14, 7 px, the
    strides of a 224 px input), from bilinear resizes and seeded frozen 1x1 convolutions: what
    D needs of the feature network, at a fraction of its cost (the real weights give the same
    shapes; test_projected's twins check D on them)."""

    def __init__(self, seed=7):
        super().__init__()
        rng = numpy.random.RandomState(seed)
        for i, ch in enumerate(projected.TAP_CHANNELS):
            setattr(self, f"tap{i}", projected.random_conv(3, ch, rng, numpy.float64))

    def taps(self, x, resize=False):
        return [F.tanh(getattr(self, f"tap{i}")(F.resize_images(x, (56 >> i, 56 >> i))))
                for i in range(4)]


def to_float64(net, opt=None):
    """Parameters and persistents in float64; the optimizer's state made again."""
    for _, p in net.namedparams():
        p.array = p.array.astype(numpy.float64)
    for _, link in net.namedlinks():
        for name in link._persistent:
            value = getattr(link, name)
            if isinstance(value, numpy.ndarray) and value.dtype.kind == "f":
                setattr(link, name, value.astype(numpy.float64))
    if opt is not None:
        opt.setup(net)


def rows(draw, rank, ranks, n):
    """draw(ranks * n), this rank's n rows of it."""
    return draw(ranks * n)[rank * n:(rank + 1) * n]


def share_draws(rank, ranks):
    """The per-example draws made for ranks * n rows from shared streams; this rank's n rows."""
    z_rng, drop_rng, eps_rng, noise_rng, aug_rng = (numpy.random.RandomState(s)
                                                     for s in range(1, 6))
    dropout, params, inject = F.dropout, augment.sample_params, fastgan.NoiseInjection.forward

    for module in MODULES.values():
        if hasattr(module, "sample_z"):
            module.sample_z = (lambda draw: lambda c, n, rng=None: rows(
                lambda k: draw(c, k, z_rng).astype(numpy.float64), rank, ranks, n))(
                    module.sample_z)
    wgan_gp.sample_eps = (lambda draw: lambda m, ndim, rng=None: rows(
        lambda k: draw(k, ndim, eps_rng), rank, ranks, m))(wgan_gp.sample_eps)

    def shared_dropout(x, ratio=0.5, mask=None):
        if not config.train or ratio == 0:
            return dropout(x, ratio)
        keep = rows(lambda k: drop_rng.random_sample((k,) + x.shape[1:]), rank, ranks, len(x))
        return dropout(x, ratio, (keep >= ratio) * (1 / (1 - ratio)))

    def shared_params(shape, policy="color,translation,cutout", ratio=0.5, translation=0.125,
                      rng=None, prob=1.0):
        n = shape[0]
        p = params((ranks * n,) + tuple(shape[1:]), policy, ratio, translation, aug_rng, prob)
        mine = slice(rank * n, (rank + 1) * n)
        return augment.AugmentParams(p.color[mine], p.ints[mine], p.cut)

    def shared_noise(self, x, noise=None):
        if noise is None:
            N, _, H, W = x.shape
            noise = rows(lambda k: noise_rng.standard_normal((k, 1, H, W)), rank, ranks, N)
        return inject(self, x, noise)
    F.dropout, augment.sample_params = shared_dropout, shared_params
    fastgan.NoiseInjection.forward = shared_noise


def own_float64_z():
    """Each rank's own noise z (its NumPy stream), in float64."""
    for module in MODULES.values():
        if hasattr(module, "sample_z"):
            module.sample_z = (lambda draw: lambda c, n, rng=numpy.random: draw(c, n, rng)
                               .astype(numpy.float64))(module.sample_z)


def build(kind, b, ranks):
    """(module, Config, dataset, build kwargs) of a small float64 run at b per rank."""
    if kind == "gan":
        return gan, gan.Config.for_data((2,)), Float64(RingDataset(n=512, seed=0)), {}
    if kind == "wgan-gp":
        c = wgan_gp.Config.for_data((2,), n_critic=MINIBATCHES[kind], n_hidden=16)
        return wgan_gp, c, Float64(RingDataset(n=512, seed=0)), {}
    if kind == "began":
        return began, began.Config.for_data((1, 16, 16), n=4, n_h=4, n_z=4), Blobs(64, 1, 16), {}
    if kind == "lightweight":
        c = lightweight.Config.for_data((3, 32, 32), fmap_max=4, n_z=4, aug_prob=0.5,
                                        gradient_accumulate_every=MINIBATCHES[kind], gp_every=2,
                                        ema_start=0, ema_every=1, ema_reset_every=3)
        return lightweight, c, Blobs(64, 3, 32), {}
    if kind == "projected":             # batch: this rank's batch_gpu; the same total batch
        total = MINIBATCHES[kind] * b * ranks       # 2 rounds of b on each of the ranks
        c = projected.Config.for_data((3, 16, 16), ngf=4, ndf=4, n_z=4, cout=4, batch=total,
                                      batch_gpu=b)
        return projected, c, Blobs(64, 3, 16), {"features": FeatureStandIn()}
    ds = SyntheticFacadeDataset(n=16, size=16, labels="color", seed=0)
    return pix2pix, pix2pix.Config.for_data(((3, 16, 16), (3, 16, 16)), n_down=2, ngf=4,
                                             ndf=2), Float64(ds), {}


def arrays(models, updater, rank_local=False):
    """name -> array of every parameter and array persistent of the models, the frozen
    networks and the updater's numeric state; rank_local (the ranks' digest) leaves out the
    running statistics of unsynchronized batch norms, which follow each rank's own batches."""
    out = {}
    nets = dict(models, **{f"frozen{i}": n for i, n in enumerate(updater.frozen())})
    for name, net in nets.items():
        for path, p in net.namedparams():
            out[f"{name}{path}"] = p.array
        for path, link in net.namedlinks():
            if rank_local and type(link) is BatchNormalization:
                continue
            for k in link._persistent:
                if is_array(getattr(link, k)):
                    out[f"{name}{path}/{k}"] = getattr(link, k)
    for k, v in updater.state_dict().items():
        out[f"state/{k}"] = numpy.asarray(v, numpy.float64)
    return out


def digest(named):
    h = hashlib.sha256()
    for k in sorted(named):
        h.update(k.encode() + numpy.ascontiguousarray(named[k]).tobytes())
    return h.hexdigest()


def main(kind, mode, batch, steps, out, sync_bn="0", draws="shared"):
    """draws 'own': each rank its own random stream, as real runs (the ranks must still stay
    bitwise equal; the result is not the 1-process one)."""
    comm = distributed.MpiCommunicator() if mode == "mpi" else None
    rank, ranks = (comm.rank, comm.size) if comm else (0, 1)
    if draws == "shared":
        share_draws(rank, ranks)
    else:
        own_float64_z()
    numpy.random.seed(0)
    module, c, ds, extra = build(kind, batch, ranks)
    models, optimizers = module.build(c, **extra)
    for name in models:
        to_float64(models[name], optimizers.get(name))
    for net in extra.values():
        to_float64(net)
    updater = module.Updater(c, models, optimizers)
    n = MINIBATCHES.get(kind, 1)
    if comm:
        if sync_bn == "1":
            nets = [models[k] for k in ("gen", "dis") if k in models]
            assert all(distributed.convert_sync_batchnorm(net, comm) > 0 for net in nets) or \
                kind == "gan"
        rank_setup.prepare(comm, updater, {"seed": 0})     # what the commands run
        if draws == "shared" and rank == 0:     # the shared decisions: rank 0's draws, as
            numpy.random.seed(0)                # in one process; the others keep their own
        it = distributed.scatter_dataset(ds, comm, batch * n, seed=0, minibatches=n,
                                         n_workers=0)
    else:
        numpy.random.seed(0)
        it = BatchIterator(ds, batch * n, seed=0, n_workers=0)
    for step in range(steps):
        updater.update(next(it))
        if comm:
            digests = comm.gather_obj(digest(arrays(models, updater, rank_local=True)))
            if rank == 0 and len(set(digests)) != 1:
                print(f"step {step}: the ranks' parameters differ", flush=True)
                comm.abort(3)
    if rank == 0:
        numpy.savez(out, **arrays(models, updater))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:])
