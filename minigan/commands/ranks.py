"""--communicator, --sync-bn and --gpu auto: what a training command does under `mpiexec -n K`.

    mpiexec -n 2 python cli.py dcgan --communicator mpi ...      # CPU ranks
    mpiexec -n 8 python cli.py pix2pix --gpu auto --communicator nccl --sync-bn ...

--batch-size is per rank (ChainerMN's convention): K ranks train on K * batch-size examples per
iteration. Every rank runs the same command; setup_ranks checks that they did.
"""
import json

import click
import numpy

from .. import backend
from .. import distributed
from ..distributed import trainer as dist


class GpuId(click.ParamType):
    """An int (-1 the CPU, N a CUDA device) or 'auto' (the rank's local GPU)."""
    name = "integer|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a device id nor 'auto'", param, ctx)


OPTIONS = [
    click.option("--gpu", type=GpuId(), default=-1, show_default=True,
                 help="CUDA device id; -1 trains on the CPU; auto: the rank's local GPU "
                      "(under mpiexec, rank r on a machine takes its GPU r)."),
    click.option("--communicator", type=click.Choice(distributed.COMMUNICATORS), default=None,
                 help="Data-parallel training under mpiexec -n K: mpi (CPU ranks, or GPUs "
                      "through the host) or nccl (GPU ranks); --batch-size is per rank. Needs "
                      "pip install -e .[mpi]."),
    click.option("--sync-bn", is_flag=True,
                 help="With --communicator: batch norm statistics over all ranks' batches "
                      "(for small per-rank batches, e.g. pix2pix at batch 1 per GPU)."),
]


def setup_ranks(opts):
    """The communicator of this run (None without --communicator); resolves --gpu auto."""
    comm = None
    if opts.get("communicator"):
        try:
            comm = distributed.create_communicator(opts["communicator"])
        except distributed.CommunicatorError as e:
            raise dist.CollectiveError(str(e)) from None   # the same line on every rank
        dist.activate(comm)
        check_same_options(comm, opts)
    elif opts.get("sync_bn"):
        raise click.UsageError("--sync-bn needs --communicator mpi|nccl (and mpiexec -n K)")
    if opts.get("gpu") == "auto":
        opts["gpu"] = auto_gpu(comm)
    return comm


def check_same_options(comm, opts):
    """Every rank was given the same options (a broadcast check): else one line from rank 0."""
    mine = json.dumps(opts, sort_keys=True, default=str)
    everyone = comm.gather_obj(mine)
    message = None
    if comm.rank == 0:
        for r, theirs in enumerate(everyone):
            if theirs != mine:
                a, b = json.loads(mine), json.loads(theirs)
                diff = ", ".join(f"--{k.replace('_', '-')} {a.get(k)!r} on rank 0 but "
                                 f"{b.get(k)!r} on rank {r}"
                                 for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
                message = f"the ranks were started with different options: {diff}"
                break
    message = comm.bcast_obj(message)
    if message:
        raise dist.CollectiveError(message)


def auto_gpu(comm):
    """The local GPU of this rank: its rank among the ranks on its machine."""
    local, local_size, host = (0, 1, "this machine") if comm is None else \
        (comm.local_rank, comm.local_size, comm.host)
    cupy = backend.get_cupy(0) if backend._import_cupy() is not None else None
    if cupy is None:
        raise backend.DeviceError(f"--gpu auto needs CuPy: {backend._CUPY_HINT}")
    n = cupy.cuda.runtime.getDeviceCount()
    if local >= n:
        raise backend.DeviceError(f"--gpu auto: {local_size} ranks on {host} but it has {n} "
                                  f"GPU(s); start at most {n} ranks per machine")
    return local


def prepare(comm, updater, opts):
    """The models made data-parallel: rank 0's weights everywhere, gradients averaged before
    every update, synchronized batch norm if asked; then each rank its own random stream."""
    for net in updater.models.values():
        if opts.get("sync_bn"):
            distributed.convert_sync_batchnorm(net, comm)
        comm.bcast_data(net)        # initialization is shared: rank 0's
    for opt in updater.optimizers.values():
        distributed.create_multi_node_optimizer(opt, comm)
    numpy.random.seed(distributed.rank_seed(opts["seed"], comm.rank))    # noise, dropout
