"""Each rank its own part of every epoch, and each rank its own random stream.

The epoch's order is the one BatchIterator draws from the shared seed (SeedSequence(seed,
(0, epoch))), the same on every rank. Global batch i of K ranks at b examples each is
order[i K b:(i + 1) K b], and rank r takes its r-th slice of b: the shards are disjoint,
change every epoch, and together are exactly the batch of one process at K b. Each example's
augmentation rng is keyed by its position in the epoch, as in one process, so the ranks' crops
and flips differ from one another and equal those of the single-process run.
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

    def __init__(self, dataset, batch_size, rank, ranks, **kwargs):
        self.rank, self.ranks = rank, ranks
        super().__init__(dataset, batch_size, **kwargs)
        self.batches_per_epoch = self.size // (batch_size * ranks)
        if self.batches_per_epoch == 0:
            raise DatasetError(f"the dataset has {self.size} examples, fewer than one batch of "
                               f"{batch_size} on each of {ranks} ranks")

    def _task(self, epoch, batch):
        start = (batch * self.ranks + self.rank) * self.batch_size     # position in the epoch
        return (self.dataset, self._order(epoch)[start:start + self.batch_size], self.seed,
                epoch, start)


def scatter_dataset(dataset, comm, batch_size, seed=0, **kwargs):
    """ChainerMN's scatter_dataset, as the iterator over this rank's shard (see above)."""
    return ShardIterator(dataset, batch_size, comm.rank, comm.size, seed=seed, **kwargs)
