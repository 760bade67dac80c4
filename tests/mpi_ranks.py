"""K steps of a GAN in float64 on one rank of `mpiexec -n K` (or alone), for test_distributed.py.

    mpiexec -n 2 python tests/mpi_ranks.py gan mpi 4 3 OUT.npz       # 2 ranks x batch 4
    python tests/mpi_ranks.py gan single 8 3 OUT.npz                 # 1 process x batch 8

The noise z and the dropout masks are drawn for the whole global batch from one stream that
every rank shares, and each rank keeps its own rows: so the 2-rank run sees exactly the numbers
the 1-process run sees, and the two must agree to rounding. (In real runs each rank draws its
own; this replaces only the draws, not the code under test: data sharding, gradient
all-reduce, synchronized batch norm, the multi-node optimizer.) After every step the ranks'
parameters must be bitwise equal.
"""
import hashlib
import sys

import numpy

import minigan.functions as F
from minigan import distributed
from minigan.core import config
from minigan.datasets import BatchIterator, RingDataset, SyntheticFacadeDataset
from minigan.gans import gan, pix2pix


class Float64:
    """A dataset whose examples are float64."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def get_example(self, i, rng=None):
        return tuple(a.astype(numpy.float64) for a in self.ds.get_example(i, rng))


def to_float64(net, opt):
    """Parameters and persistents in float64; the optimizer's state made again."""
    for _, p in net.namedparams():
        p.array = p.array.astype(numpy.float64)
    for _, link in net.namedlinks():
        for name in link._persistent:
            value = getattr(link, name)
            if isinstance(value, numpy.ndarray):
                setattr(link, name, value.astype(numpy.float64))
    opt.setup(net)


def share_draws(rank, ranks):
    """z and dropout masks drawn for ranks * n rows from a shared stream; this rank's n rows."""
    z_rng, drop_rng = numpy.random.RandomState(1), numpy.random.RandomState(2)
    dropout = F.dropout

    def sample_z(c, n, rng=None):
        return z_rng.standard_normal((ranks * n, c.n_z))[rank * n:(rank + 1) * n]

    def shared_dropout(x, ratio=0.5, mask=None):
        if not config.train or ratio == 0:
            return dropout(x, ratio)
        n = x.shape[0]
        keep = drop_rng.random_sample((ranks * n,) + x.shape[1:])[rank * n:(rank + 1) * n]
        return dropout(x, ratio, (keep >= ratio) * (1 / (1 - ratio)))
    gan.sample_z = sample_z
    F.dropout = shared_dropout


def build(kind):
    """(module, Config, dataset) of a small float64 run."""
    if kind == "gan":
        return gan, gan.Config.for_data((2,)), Float64(RingDataset(n=512, seed=0))
    ds = SyntheticFacadeDataset(n=16, size=16, labels="color", seed=0)
    return pix2pix, pix2pix.Config.for_data(((3, 16, 16), (3, 16, 16)), n_down=2, ngf=4,
                                             ndf=2), Float64(ds)


def digest(models):
    h = hashlib.sha256()
    for name in sorted(models):
        for _, p in models[name].namedparams():
            h.update(p.array.tobytes())
    return h.hexdigest()


def main(kind, mode, batch, steps, out, sync_bn="0"):
    comm = distributed.MpiCommunicator() if mode == "mpi" else None
    rank, ranks = (comm.rank, comm.size) if comm else (0, 1)
    share_draws(rank, ranks)
    numpy.random.seed(0)
    module, c, ds = build(kind)
    models, optimizers = module.build(c)
    for name in models:
        to_float64(models[name], optimizers[name])
    if comm:
        for name, net in models.items():
            if sync_bn == "1":
                assert distributed.convert_sync_batchnorm(net, comm) > 0 or kind == "gan"
            comm.bcast_data(net)
            distributed.create_multi_node_optimizer(optimizers[name], comm)
        it = distributed.scatter_dataset(ds, comm, batch, seed=0, n_workers=0)
    else:
        it = BatchIterator(ds, batch, seed=0, n_workers=0)
    updater = module.Updater(c, models, optimizers)
    for step in range(steps):
        updater.update(next(it))
        if comm:
            digests = comm.gather_obj(digest(models))
            if rank == 0 and len(set(digests)) != 1:
                print(f"step {step}: the ranks' parameters differ", flush=True)
                comm.abort(3)
    if rank == 0:
        numpy.savez(out, **{f"{name}{path}": p.array for name, net in models.items()
                            for path, p in net.namedparams()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:])
