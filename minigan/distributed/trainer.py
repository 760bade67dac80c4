"""The Trainer on K ranks: rank 0 writes, every rank decides alike, a failing rank ends the job.

- Rank 0 alone writes the log, samples, plots and snapshots; the other ranks' progress output
  goes nowhere. Every iteration one small all-reduce averages the logged scalars and ORs the
  stop request (Ctrl-C reaches the ranks at different moments): so a non-finite loss, a
  rollback, a snapshot and a stop happen at the same iteration on every rank. The updater's
  own state is agreed inside update() (Updater.global_mean, Updater.shared): BEGAN's k_t moves
  by the global batch's mean losses, so it equals the one-process k_t at K b even where the
  clip to [0, 1] acts (averaging the ranks' clipped k afterwards would not), and stays bitwise
  equal on every rank.
- A snapshot holds every rank's NumPy random state (gathered to rank 0), since each rank draws
  its own noise and dropout; a resume is read by rank 0 alone (the others need not see its
  disk) and broadcast: parameters, optimizer state, updater and iterator state, and each
  rank's own random state, so a K-rank resume continues the K-rank run bit for bit.
- An error every rank meets together (a bad option, an unreadable snapshot) is a
  CollectiveError: rank 0 states it, all exit 1. Any other error on one rank is printed with
  its rank and the job aborted (MPI_Abort), since the others would wait for it forever.
"""
import contextlib
import os
import sys
import time
import traceback

import numpy

from ..training import Trainer, TrainingError, read_meta
from . import batchnorm
from .data import rank_seed


class CollectiveError(TrainingError):
    """An error raised on every rank at the same point: rank 0 says it, nobody aborts."""


def on_rank0(comm, work, expected=(TrainingError,)):
    """work() run on rank 0 only, its result on every rank; an expected error (a user's) is a
    CollectiveError on every rank; any other error propagates on rank 0 (and aborts the job)."""
    result = error = None
    if comm.rank == 0:
        try:
            result = work()
        except expected as e:
            error = e.format_message() if hasattr(e, "format_message") else str(e)
            error = " ".join(error.split()) or type(e).__name__
    result, error = comm.bcast_obj((result, error))
    if error is not None:
        raise CollectiveError(error)
    return result


@contextlib.contextmanager
def local_statistics():
    """Synchronized batch norm falls back to this rank's statistics inside (rank 0's samples)."""
    saved = batchnorm.MultiNodeBatchNormalization.forward
    batchnorm.MultiNodeBatchNormalization.forward = batchnorm.BatchNormalization.forward
    try:
        yield
    finally:
        batchnorm.MultiNodeBatchNormalization.forward = saved


class DistributedTrainer(Trainer):
    """Trainer over comm's ranks (see the module docstring); same arguments plus comm."""

    def __init__(self, updater, iterator, out, iterations, comm, **kwargs):
        self.comm = comm
        if comm.rank != 0:
            kwargs["stream"] = open(os.devnull, "w")
        super().__init__(updater, iterator, out, iterations, **kwargs)
        self.seed = rank_seed(self.seed, comm.rank)     # CuPy reseeds and rollbacks: own streams
        self.meta["ranks"] = comm.size
        self._rank_states = [numpy.random.get_state()] * (comm.size - 1)
        self._random = {}

    # -- agreement every iteration -----------------------------------------------------------
    def _agree(self, scalars):
        values = list(scalars.values()) + [float(self._stop_requested)]
        mean = self.comm.allreduce_obj(values, op="mean")
        self._stop_requested = mean[-1] > 0
        return dict(zip(scalars, mean[:-1]))

    # -- rank 0 writes -----------------------------------------------------------------------
    def _write_log(self, *args):
        if self.comm.rank == 0:
            super()._write_log(*args)

    def save_samples(self):
        if self.comm.rank == 0:
            with local_statistics():
                super().save_samples()

    def _plot(self, force=False):
        if self.comm.rank == 0:
            super()._plot(force)

    def _remove_stale_temp_files(self):
        if self.comm.rank == 0:
            super()._remove_stale_temp_files()

    # -- snapshots ---------------------------------------------------------------------------
    def _state(self):
        state = super()._state()
        state["random"].update({f"rank_{r}": s for r, s in enumerate(self._rank_states, 1)})
        self._random = state["random"]      # load_hdf5 fills this dict with the file's values
        return state

    def save_snapshot(self):
        """Every rank's random state to rank 0, which writes the file; its path on every rank."""
        states = self.comm.gather_obj(numpy.random.get_state())

        def write():
            self._rank_states = states[1:]
            return Trainer.save_snapshot(self)
        return on_rank0(self.comm, write)

    def load_snapshot(self, path):
        """Rank 0 reads the file, then broadcasts what it restored to every rank."""
        def read():
            ranks = int(read_meta(path).get("ranks", 1))
            if ranks != self.comm.size:
                raise TrainingError(f"{path} was written by a {ranks}-rank run; resume it with "
                                    f"mpiexec -n {ranks} (each rank's random stream is in it)")
            Trainer.load_snapshot(self, path)
            return [self._random["numpy"]] + [self._random[f"rank_{r}"]
                                              for r in range(1, self.comm.size)]
        states = on_rank0(self.comm, read)
        c = self.comm
        self.iteration, self.elapsed = c.bcast_obj((self.iteration, self.elapsed))
        for net in self.updater.models.values():
            c.bcast_data(net)
        for opt in self.updater.optimizers.values():
            bcast_optimizer(c, opt)
        if c.rank != 0:
            self.updater.load_state_dict(c.bcast_obj(None))
            self.iterator.load_state_dict(c.bcast_obj(None))
        else:
            c.bcast_obj(self.updater.state_dict())
            c.bcast_obj(self.iterator.state_dict())
        self._rank_states = states[1:]
        numpy.random.set_state(states[c.rank])


def bcast_optimizer(comm, opt, root=0):
    """Copy rank root's optimizer state (t, Adam's m and v) into every rank's optimizer."""
    from .communicator import _pack, _views, buckets
    opt.t = comm.bcast_obj(opt.t, root)
    arrays = [a for k, a in opt.state_dict().items() if k != "t"]
    for run in buckets(arrays):
        flat = comm._bcast(_pack(run), root)
        for a, v in zip(run, _views(flat, [a.shape for a in run])):
            a[...] = v


# -- failures ----------------------------------------------------------------------------------

_ACTIVE = {"comm": None, "stderr": None}


def activate(comm):
    """Make comm this process's communicator; ranks other than 0 go quiet (their stderr is
    kept for failure lines)."""
    _ACTIVE["comm"] = comm
    _ACTIVE["stderr"] = sys.stderr
    if comm.rank != 0:
        sys.stderr = open(os.devnull, "w")
    return comm


def active():
    """The communicator of this process's data-parallel run, or None."""
    return _ACTIVE["comm"]


def fail(error, line, expected=False):
    """A failure on this rank: a CollectiveError returns (every rank exits as in one process);
    anything else is printed with the rank (an unexpected one with its traceback) and ends the
    whole job."""
    comm = _ACTIVE["comm"]
    if comm is None or comm.size == 1 or isinstance(error, CollectiveError):
        return
    err = _ACTIVE["stderr"] or sys.__stderr__
    if not expected:
        traceback.print_exception(type(error), error, error.__traceback__, file=err)
    err.write(f"Error: rank {comm.rank} of {comm.size} on {comm.host} failed: {line}; "
              f"ending all ranks\n")
    err.flush()
    time.sleep(1.0)     # let the launcher forward the line before MPI_Abort tears the job down
    comm.abort(130 if isinstance(error, KeyboardInterrupt) else 1)
