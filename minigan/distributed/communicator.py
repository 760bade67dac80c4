"""Communicators with ChainerMN's verbs: bcast_data, allreduce_grad, and small-object collectives.

    comm = MpiCommunicator()            # under `mpiexec -n K`
    comm.bcast_data(model)              # every rank starts from rank 0's parameters
    loss.backward(); comm.allreduce_grad(model); optimizer.update()

Gradients are averaged: with each rank's loss a mean over its own b examples, the mean of the K
ranks' gradients is the gradient of the mean over all K b examples, so K ranks at batch b step
like one process at batch K b. Arrays travel in few large messages ("buckets") packed in the
order of Link.namedparams, which every rank walks the same way, so the packing agrees.
SingleCommunicator is the same API for one process (size 1, every collective the identity): the
in-process stand-in for tests and for code that runs with or without MPI.
"""
import os
import socket

import numpy

from .. import backend

BUCKET_BYTES = 64 << 20     # a message this large runs at the link's bandwidth, not its latency
MPI_HINT = "pip install -e .[mpi] (mpi4py and the mpich wheel, which provides mpiexec)"


class CommunicatorError(RuntimeError):
    """A communicator this run cannot have (no mpi4py, no CuPy for NCCL): one line."""


def import_mpi():
    """mpi4py's MPI module, or a CommunicatorError saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise CommunicatorError(f"--communicator needs mpi4py ({e}): {MPI_HINT}") from None
    return MPI


def _params(model):
    """The parameters an optimizer may change, in the fixed namedparams order."""
    return [p for _, p in model.namedparams() if getattr(p, "update_enabled", True)]


def _persistent_arrays(model):
    """(link, name) of every array-valued persistent (batch norm's running statistics)."""
    return [(link, name) for _, link in model.namedlinks() for name in link._persistent
            if backend.is_array(getattr(link, name))]


def buckets(arrays, limit=BUCKET_BYTES):
    """Split a list of arrays (in order) into runs of one dtype of at most ~limit bytes each."""
    runs, run, size = [], [], 0
    for a in arrays:
        if run and (a.dtype != run[0].dtype or size + a.nbytes > limit):
            runs.append(run)
            run, size = [], 0
        run.append(a)
        size += a.nbytes
    return runs + [run] if run else runs


def _pack(arrays):
    """One contiguous 1-D array holding the arrays one after another."""
    xp = backend.get_array_module(arrays[0])
    flat = xp.empty(sum(a.size for a in arrays), arrays[0].dtype)
    offset = 0
    for a in arrays:
        flat[offset:offset + a.size] = a.reshape(-1)
        offset += a.size
    return flat


def _views(flat, shapes):
    """The pieces of a packed array, back in their shapes (views, no copy)."""
    out, offset = [], 0
    for shape in shapes:
        n = int(numpy.prod(shape))
        out.append(flat[offset:offset + n].reshape(shape))
        offset += n
    return out


class Communicator:
    """The verbs, written once over four primitives that subclasses provide: _allreduce_sum
    and _bcast on 1-D arrays (in place), bcast_obj and gather_obj on small picklable values."""

    rank, size, local_rank, local_size, host = 0, 1, 0, 1, "localhost"

    # -- primitives --------------------------------------------------------------------------
    def _allreduce_sum(self, flat):
        return flat

    def _bcast(self, flat, root=0):
        return flat

    def bcast_obj(self, obj, root=0):
        """A small value of rank root, on every rank (pickled)."""
        return obj

    def gather_obj(self, obj, root=0):
        """[value of rank 0, ..., of rank K-1] on rank root, None elsewhere."""
        return [obj]

    def barrier(self):
        """Wait until every rank is here."""

    def abort(self, code=1):
        """End every rank of the job now (after a failure that would leave the others waiting)."""
        os._exit(code)

    # -- arrays ------------------------------------------------------------------------------
    def allreduce(self, array, op="mean"):
        """The sum ('sum') or mean ('mean') over ranks of an array, as a new array."""
        flat = self._allreduce_sum(array.astype(array.dtype, copy=True).reshape(-1))
        if op == "mean" and self.size > 1:
            flat *= flat.dtype.type(1.0 / self.size)
        return flat.reshape(array.shape)

    def bcast_data(self, model, root=0):
        """Copy rank root's parameters and persistent values into every rank's model."""
        arrays = [p.array for p in _params(model)]
        persistent = _persistent_arrays(model)
        arrays += [getattr(link, name) for link, name in persistent]
        for run in buckets(arrays):
            flat = self._bcast(_pack(run), root)
            for a, v in zip(run, _views(flat, [a.shape for a in run])):
                a[...] = v
        scalars = [(link, name) for _, link in model.namedlinks() for name in link._persistent
                   if (link, name) not in persistent]
        values = self.bcast_obj([getattr(link, name) for link, name in scalars], root)
        for (link, name), v in zip(scalars, values):
            setattr(link, name, v)

    def allreduce_grad(self, model):
        """Replace each parameter's gradient by its mean over ranks, in few large messages.

        Which parameters have a gradient is agreed first (one tiny all-reduce): one missing on
        some ranks counts as zeros there, so every rank packs the same arrays in the same order;
        one missing everywhere stays None (the optimizer then leaves it alone, as it would in one
        process). The new gradients are views of the reduced buffers."""
        params = _params(model)
        if self.size == 1 or not params:
            return
        has = numpy.array([p.grad is not None for p in params], numpy.int32)
        has = self._allreduce_sum(has)
        params = [p for p, n in zip(params, has) if n > 0]
        grads = []
        for p in params:
            g = p.grad.array if p.grad is not None else \
                backend.get_array_module(p.array).zeros_like(p.array)
            grads.append(g.astype(p.dtype, copy=False))
        runs = buckets(grads)
        for run_params, run in zip(_split_like(params, runs), runs):
            flat = self._allreduce_sum(_pack(run))
            flat *= flat.dtype.type(1.0 / self.size)
            for p, g in zip(run_params, _views(flat, [a.shape for a in run])):
                p.grad = g

    # -- small values ------------------------------------------------------------------------
    def allreduce_obj(self, value, op="sum"):
        """The sum (or 'mean') over ranks of a number or of a dict of numbers (float64)."""
        if isinstance(value, dict):
            keys = sorted(value)
            reduced = self.allreduce_obj([float(value[k]) for k in keys], op)
            return dict(zip(keys, reduced))
        many = isinstance(value, (list, tuple))
        flat = numpy.asarray(value if many else [value], numpy.float64)
        flat = self._allreduce_sum(flat.copy())
        if op == "mean":
            flat /= self.size
        return [float(v) for v in flat] if many else float(flat[0])

    def __repr__(self):
        return f"{type(self).__name__}(rank {self.rank} of {self.size})"


def _split_like(items, runs):
    """items cut into consecutive groups of the runs' lengths."""
    out, i = [], 0
    for run in runs:
        out.append(items[i:i + len(run)])
        i += len(run)
    return out


class SingleCommunicator(Communicator):
    """One process, no MPI: every collective is the identity (tests, fallbacks)."""


def local_rank_of(comm, mpi):
    """(local rank, local size): from the launcher's environment when it says, else a split of
    the communicator by host (ranks on one machine share its GPUs)."""
    for var, size_var in (("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
                          ("MPI_LOCALRANKID", "MPI_LOCALNRANKS")):
        if var in os.environ and size_var in os.environ:
            return int(os.environ[var]), int(os.environ[size_var])
    local = comm.Split_type(mpi.COMM_TYPE_SHARED, key=comm.rank)
    try:
        return local.rank, local.size
    finally:
        local.Free()


class MpiCommunicator(Communicator):
    """Collectives over MPI (mpi4py) on host arrays: Allreduce and Bcast of contiguous buffers."""

    def __init__(self, mpi_comm=None):
        self.MPI = import_mpi()
        self.mpi_comm = mpi_comm if mpi_comm is not None else self.MPI.COMM_WORLD
        self.rank, self.size = self.mpi_comm.rank, self.mpi_comm.size
        self.local_rank, self.local_size = local_rank_of(self.mpi_comm, self.MPI)
        self.host = socket.gethostname()

    def _host(self, flat):
        """flat as a contiguous NumPy array (MPI sends host memory; NCCL overrides for GPUs)."""
        return numpy.ascontiguousarray(backend.to_cpu(flat))

    def _allreduce_sum(self, flat):
        host = self._host(flat)
        self.mpi_comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return host if host is flat else _like(host, flat)

    def _bcast(self, flat, root=0):
        host = self._host(flat)
        self.mpi_comm.Bcast(host, root=root)
        return host if host is flat else _like(host, flat)

    def bcast_obj(self, obj, root=0):
        return self.mpi_comm.bcast(obj, root=root)

    def gather_obj(self, obj, root=0):
        return self.mpi_comm.gather(obj, root=root)

    def barrier(self):
        self.mpi_comm.Barrier()

    def abort(self, code=1):
        self.mpi_comm.Abort(code)


def _like(host, flat):
    """A host array back on the device of `flat`."""
    return backend.to_device(host, backend.device_of(flat))
