"""Batches assembled ahead of time by background threads, in an order that a snapshot can resume.

Every batch is a pure function of (seed, epoch, position in the epoch): the epoch's order comes
from SeedSequence(seed, spawn_key=(0, epoch)) and each example's augmentation rng from
SeedSequence(seed, spawn_key=(1, epoch, position)). Workers therefore only change when a batch
is ready, never what it holds: 0, 1 or 8 workers give the same batches, and a resumed run
continues the exact sequence. Threads suffice because PIL decoding and numpy release the GIL.
"""
import collections
import time
from concurrent.futures import ThreadPoolExecutor

import numpy

from .errors import DatasetError


class ExampleRNG:
    """A numpy Generator made on first use: most datasets never draw, and making one costs ~40 us."""

    __slots__ = ("_seed", "_key", "_gen")

    def __init__(self, seed, key):
        self._seed, self._key, self._gen = seed, key, None

    @property
    def generator(self):
        """The real numpy.random.Generator, for code that checks the type."""
        if self._gen is None:
            ss = numpy.random.SeedSequence(self._seed, spawn_key=self._key)
            self._gen = numpy.random.Generator(numpy.random.PCG64(ss))
        return self._gen

    def __getattr__(self, name):  # only called for names not defined here: random, normal, ...
        return getattr(self.generator, name)


def epoch_order(n, seed, epoch, shuffle=True):
    """The order of the n examples in the given epoch."""
    if not shuffle:
        return numpy.arange(n)
    ss = numpy.random.SeedSequence(seed, spawn_key=(0, epoch))
    return numpy.random.Generator(numpy.random.PCG64(ss)).permutation(n)


def make_batch(dataset, indices, seed, epoch, start):
    """Stack the examples at indices into arrays; start: their positions in the epoch (an int
    for start, start+1, ..., or one position per example), which key their augmentation rngs."""
    positions = range(start, start + len(indices)) if numpy.ndim(start) == 0 else start
    examples = [dataset.get_example(int(i), ExampleRNG(seed, (1, epoch, int(k))))
                for i, k in zip(indices, positions)]
    return tuple(numpy.stack(column) for column in zip(*examples))


class BatchIterator:
    """Endless (repeat=True) or one-epoch batches of a dataset, prepared by n_workers threads."""

    def __init__(self, dataset, batch_size, shuffle=True, seed=0, repeat=True, n_workers=2,
                 prefetch=None):
        if batch_size < 1 or seed < 0:
            raise ValueError(f"batch_size must be positive and seed non-negative, not {batch_size}, {seed}")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.repeat, self.size = int(seed), repeat, len(dataset)
        # training (repeat) drops the last partial batch so every batch has the same size;
        # evaluation keeps it so every example is seen once
        self.batches_per_epoch = self.size // batch_size if repeat else -(-self.size // batch_size)
        if self.batches_per_epoch == 0:
            raise DatasetError(f"the dataset has {self.size} examples, fewer than one batch of {batch_size}")
        self.n_workers = n_workers
        self.prefetch = max(1, 2 * n_workers if prefetch is None else prefetch)
        self._executor = (ThreadPoolExecutor(n_workers, thread_name_prefix="minigan-data")
                          if n_workers > 0 else None)
        self._pending = collections.deque()  # futures of the batches after the consumer's position
        self._closed = False
        self.wait_time = 0.0  # seconds next() spent waiting for data, since construction
        self.reset()

    # -- position ---------------------------------------------------------------------------

    def reset(self):
        """Go back to the first batch of epoch 0 (wait_time keeps counting)."""
        self._discard()
        self.epoch, self.batch_in_epoch, self.iteration = 0, 0, 0
        self.is_new_epoch = False
        self._orders = {}

    @property
    def epoch_detail(self):
        """Epochs done, as a float: 2.5 is half-way through the third epoch."""
        return self.epoch + self.batch_in_epoch / self.batches_per_epoch

    def _order(self, epoch):
        if epoch not in self._orders:
            self._orders[epoch] = epoch_order(self.size, self.seed, epoch, self.shuffle)
        return self._orders[epoch]

    def _task(self, epoch, batch):
        """The arguments of make_batch for a batch of an epoch."""
        start = batch * self.batch_size
        return self.dataset, self._order(epoch)[start:start + self.batch_size], self.seed, epoch, start

    def _next_position(self, epoch, batch):
        batch += 1
        return (epoch + 1, 0) if batch == self.batches_per_epoch else (epoch, batch)

    # -- workers ----------------------------------------------------------------------------

    def _fill(self):
        """Queue batches after the consumer's position until prefetch are in flight."""
        if self._executor is None:
            return
        position = (self.epoch, self.batch_in_epoch)
        for _ in range(len(self._pending)):
            position = self._next_position(*position)
        while len(self._pending) < self.prefetch and (self.repeat or position[0] == 0):
            self._pending.append(self._executor.submit(make_batch, *self._task(*position)))
            position = self._next_position(*position)

    def _discard(self):
        """Drop the prefetched batches (running ones finish in the background and are ignored)."""
        while self._pending:
            self._pending.popleft().cancel()

    # -- iteration --------------------------------------------------------------------------

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise RuntimeError("the batch iterator is closed")
        if not self.repeat and self.epoch >= 1:
            raise StopIteration
        start = time.perf_counter()
        try:
            if self._executor is None:
                batch = make_batch(*self._task(self.epoch, self.batch_in_epoch))
            else:
                self._fill()
                batch = self._pending.popleft().result()  # a worker's exception is re-raised here
        except BaseException:
            self._discard()  # the next call retries this batch from scratch
            raise
        finally:
            self.wait_time += time.perf_counter() - start
        self.iteration += 1
        self.epoch, self.batch_in_epoch = self._next_position(self.epoch, self.batch_in_epoch)
        self.is_new_epoch = self.batch_in_epoch == 0
        for e in [e for e in self._orders if e < self.epoch]:
            del self._orders[e]
        self._fill()  # workers build the next batches while the caller computes
        return batch[0] if len(batch) == 1 else batch

    next = __next__

    # -- snapshots --------------------------------------------------------------------------

    def state_dict(self):
        """Plain ints and an int64 array (for HDF5) from which the exact sequence continues."""
        return {"seed": self.seed, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "iteration": self.iteration, "is_new_epoch": int(self.is_new_epoch),
                "batch_size": self.batch_size, "size": self.size,
                "order": numpy.asarray(self._order(self.epoch), dtype=numpy.int64)}

    def load_state_dict(self, state):
        """Continue from a state_dict; prefetched batches are discarded and recomputed."""
        size, batch_size = int(state["size"]), int(state["batch_size"])
        if (size, batch_size) != (self.size, self.batch_size):
            raise DatasetError(f"the snapshot's data order is for {size} examples in batches of "
                               f"{batch_size}, but this run has {self.size} in batches of {self.batch_size}")
        order = numpy.asarray(state["order"], dtype=numpy.int64)
        if order.shape != (size,):
            raise DatasetError(f"the snapshot's data order has shape {order.shape}, expected ({size},)")
        self._discard()
        self.seed = int(state["seed"])  # later epochs' orders and augmentations follow the snapshot
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
        self.iteration, self.is_new_epoch = int(state["iteration"]), bool(int(state["is_new_epoch"]))
        self._orders = {self.epoch: order}
        self._fill()

    # -- shutdown ---------------------------------------------------------------------------

    def close(self):
        """Stop the worker threads (waiting for the batches they are building)."""
        self._discard()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        executor = getattr(self, "_executor", None)
        if executor is not None and not getattr(self, "_closed", True):
            executor.shutdown(wait=False, cancel_futures=True)
