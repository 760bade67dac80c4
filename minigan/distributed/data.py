"""Each rank its own part of every epoch, and each rank its own random stream.

The epoch's order is the one BatchIterator draws from the shared seed (SeedSequence(seed,
(0, epoch))), the same on every rank. Global batch i of K ranks at b examples each is
order[i K b:(i + 1) K b], and rank r takes its r-th slice of b: the shards are disjoint,
change every epoch, and together are exactly the batch of one process at K b. Each example's
augmentation rng is keyed by its position in the epoch, as in one process, so the ranks' crops
and flips differ from one another and equal those of the single-process run.

An iteration that consumes n minibatches (WGAN-GP's n_critic critic steps, Lightweight GAN's
gradient accumulation, ProjectedGAN's rounds) gets a batch of n b examples per rank, and the
slicing is per minibatch: global minibatch t of the iteration is the one-process minibatch t
at K b (order[i n K b + t K b:][:K b]), and rank r's minibatch t is its r-th slice of b. So each
critic step / accumulation step of K ranks sees exactly the examples of the same step at K b.
"""
import numpy

from ..datasets import BatchIterator, DatasetError


def rank_seed(seed, rank):
    """The seed of rank's own random stream (noise z, dropout): seed itself on rank 0, so a
    1-rank run draws what an undistributed one does, an independent child seed elsewhere."""
    if rank == 0:
        return seed
    return int(numpy.random.SeedSequence(seed, spawn_key=(2, rank)).generate_state(1)[0])


class ShardIterator(BatchIterator):
    """BatchIterator over rank's slice of each global batch of ranks * batch_size examples."""

    def __init__(self, dataset, batch_size, rank, ranks, minibatches=1, **kwargs):
        """batch_size: this rank's examples per iteration, minibatches of batch_size / n."""
        if batch_size % minibatches:
            raise ValueError(f"batch_size {batch_size} is not {minibatches} minibatches")
        self.rank, self.ranks, self.minibatches = rank, ranks, minibatches
        super().__init__(dataset, batch_size, **kwargs)
        self.batches_per_epoch = self.size // (batch_size * ranks)
        if self.batches_per_epoch == 0:
            raise DatasetError(f"the dataset has {self.size} examples, fewer than one batch of "
                               f"{batch_size} on each of {ranks} ranks")

    def positions(self, batch):
        """This rank's positions in the epoch for iteration `batch` (see the module docstring)."""
        b = self.batch_size // self.minibatches                 # per rank and minibatch
        first = batch * self.ranks * self.batch_size + self.rank * b
        return (first + numpy.arange(self.minibatches)[:, None] * self.ranks * b +
                numpy.arange(b)[None]).reshape(-1)

    def _task(self, epoch, batch):
        where = self.positions(batch)
        return self.dataset, self._order(epoch)[where], self.seed, epoch, where


def scatter_dataset(dataset, comm, batch_size, seed=0, minibatches=1, **kwargs):
    """ChainerMN's scatter_dataset, as the iterator over this rank's shard (see above)."""
    return ShardIterator(dataset, batch_size, comm.rank, comm.size, minibatches, seed=seed,
                         **kwargs)
