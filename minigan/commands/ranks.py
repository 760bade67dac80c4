"""--communicator, --sync-bn and --gpu auto: what a training command does under `mpiexec -n K`.

    mpiexec -n 2 python cli.py dcgan --communicator mpi ...      # CPU ranks
    mpiexec -n 8 python cli.py pix2pix --gpu auto --communicator nccl --sync-bn ...

--batch-size is per rank (ChainerMN's convention): K ranks train on K * batch-size examples per
iteration. Every rank runs the same command; setup_ranks checks that they did.
"""
import json
import os
import sys

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
        except distributed.CommunicatorError as e:     # met by every rank: rank 0 says it
            if launcher_rank() not in (None, 0):
                sys.stderr = open(os.devnull, "w")
            raise dist.CollectiveError(str(e)) from None
        dist.activate(comm)
        check_same_options(comm, opts)
        where = comm.gather_obj((os.getpid(), comm.host))
        if comm.rank == 0:  # a launcher that reports a dead rank by its pid: here is the map
            click.echo(f"data-parallel on {comm.size} ranks ({opts['communicator']}): " +
                       ", ".join(f"rank {r} pid {pid} on {host}"
                                 for r, (pid, host) in enumerate(where)), err=True)
    elif opts.get("sync_bn"):
        raise click.UsageError("--sync-bn needs --communicator mpi|nccl (and mpiexec -n K)")
    if opts.get("gpu") == "auto":
        gpu, error = auto_gpu(comm)
        if comm is not None:    # some ranks may have a GPU and others not: one line for all
            errors = comm.gather_obj(error)
            error = comm.bcast_obj(next((e for e in errors if e), None) if errors else None)
            if error:
                raise dist.CollectiveError(error)
        if error:
            raise backend.DeviceError(error)
        opts["gpu"] = gpu
    return comm


def launcher_rank():
    """This process's rank as the MPI launcher tells it (before MPI starts), or None."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return None


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
    """(the local GPU of this rank: its rank among the ranks on its machine, None) or
    (None, why not)."""
    local, local_size, host = (0, 1, "this machine") if comm is None else \
        (comm.local_rank, comm.local_size, comm.host)
    try:
        n = backend.get_cupy(0).cuda.runtime.getDeviceCount()
    except backend.DeviceError as e:
        return None, f"--gpu auto: {e}".replace("--gpu 0 ", "")
    if local >= n:
        return None, (f"--gpu auto: {local_size} ranks on {host}, which has {n} GPU(s); "
                      f"start at most {n} ranks per machine")
    return local, None


def prepare(comm, updater, opts):
    """The models made data-parallel: rank 0's weights everywhere (and its frozen networks),
    gradients averaged before every update, synchronized batch norm if asked, the updater told
    its communicator; then each rank its own random stream."""
    updater.comm = comm
    for net in updater.models.values():
        if opts.get("sync_bn"):
            distributed.convert_sync_batchnorm(net, comm)
        comm.bcast_data(net)        # initialization is shared: rank 0's
    for net in updater.frozen():    # e.g. ProjectedGAN's feature network: rank 0's file
        comm.bcast_data(net)
    for opt in updater.optimizers.values():
        distributed.create_multi_node_optimizer(opt, comm)
    numpy.random.seed(distributed.rank_seed(opts["seed"], comm.rank))    # noise, dropout
