"""BatchIterator: same batches whatever the workers, epochs, resume, errors, wait time, shutdown."""
import threading
import time

import h5py
import numpy
import pytest

from minigan.datasets.errors import DatasetError
from minigan.datasets.iterator import BatchIterator


class Noisy:
    """Example i is (i + uniform noise from rng, label i); optionally slow, optionally failing."""

    def __init__(self, n=10, delay=0.0, bad=None):
        self.n, self.delay, self.bad = n, delay, bad

    def __len__(self):
        return self.n

    def get_example(self, i, rng):
        if self.delay:
            # uneven delays shuffle which worker finishes first
            time.sleep(self.delay * (1 + i % 3))
        if i == self.bad:
            raise DatasetError(f"cannot decode image bad_{i}.jpg: broken data")
        return numpy.full((2,), i, numpy.float32) + rng.random(2).astype(numpy.float32), numpy.int32(i)


def take(it, k):
    return [next(it) for _ in range(k)]


def assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        for x, y in zip(a, b):
            numpy.testing.assert_array_equal(x, y)


def test_batches_do_not_depend_on_workers():
    runs = []
    for n_workers in (0, 1, 2):
        with BatchIterator(Noisy(10, delay=0.001), 3, seed=5, n_workers=n_workers) as it:
            runs.append(take(it, 8))  # three epochs and a bit
    assert_same(runs[0], runs[1])
    assert_same(runs[0], runs[2])
    x, y = runs[0][0]
    assert x.shape == (3, 2) and x.dtype == numpy.float32 and y.dtype == numpy.int32
    # the noise is the example's own: x - label lies in [0, 1) and differs between examples
    assert numpy.all((x - y[:, None] >= 0) & (x - y[:, None] < 1))


def test_epochs_shuffle_and_drop_last():
    with BatchIterator(Noisy(10), 3, seed=0, n_workers=2) as it:
        assert it.batches_per_epoch == 3  # 10 // 3: the last partial batch is dropped
        epochs = []
        for _ in range(3):
            seen = []
            for k in range(3):
                assert it.epoch_detail == pytest.approx(len(epochs) + k / 3)
                seen += list(next(it)[1])
                assert it.is_new_epoch == (k == 2)
            epochs.append(seen)
            assert it.epoch == len(epochs)
        assert it.iteration == 9
    for seen in epochs:
        assert len(set(seen)) == 9 and set(seen) <= set(range(10))
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch


def test_no_shuffle_and_one_epoch_keeps_last_partial_batch():
    with BatchIterator(Noisy(7), 3, shuffle=False, repeat=False, n_workers=1) as it:
        labels = [list(y) for _, y in it]
        assert labels == [[0, 1, 2], [3, 4, 5], [6]]
        assert it.epoch == 1 and it.is_new_epoch
        with pytest.raises(StopIteration):
            next(it)
        it.reset()
        assert [list(y) for _, y in it] == labels


def test_single_array_examples_come_back_as_one_array():
    class Points:
        def __len__(self):
            return 4

        def get_example(self, i, rng):
            return (numpy.full((2,), i, numpy.float32),)

    with BatchIterator(Points(), 2, shuffle=False, n_workers=1) as it:
        x = next(it)
    assert isinstance(x, numpy.ndarray) and x.tolist() == [[0, 0], [1, 1]]


@pytest.mark.parametrize("n_first", [2, 3, 5])  # mid-epoch, at an epoch boundary, in epoch 2
def test_state_dict_resume_continues_the_same_sequence(tmp_path, n_first):
    with BatchIterator(Noisy(10), 3, seed=7, n_workers=2) as it:
        straight = take(it, 2 * n_first)
    with BatchIterator(Noisy(10), 3, seed=7, n_workers=2) as it:
        first = take(it, n_first)
        state = it.state_dict()
        take(it, 2)  # batches consumed after the snapshot must not leak into the resumed run
    # through HDF5, as the trainer's snapshot stores it
    with h5py.File(tmp_path / "s.h5", "w") as f:
        for key, value in state.items():
            f[key] = value
    with h5py.File(tmp_path / "s.h5", "r") as f:
        loaded = {key: f[key][()] for key in f}
    with BatchIterator(Noisy(10), 3, seed=999, n_workers=1) as it:  # the snapshot's seed wins
        take(it, 1)  # prefetched batches of the old position are discarded
        it.load_state_dict(loaded)
        assert it.iteration == n_first
        second = take(it, n_first)
        assert it.iteration == 2 * n_first
    assert_same(first + second, straight)


def test_state_of_another_dataset_is_refused():
    with BatchIterator(Noisy(10), 3) as it:
        state = it.state_dict()
    with BatchIterator(Noisy(12), 3) as it:
        with pytest.raises(DatasetError, match="10 examples in batches of 3"):
            it.load_state_dict(state)


@pytest.mark.parametrize("n_workers", [0, 2])
def test_worker_exception_reaches_the_consumer(n_workers):
    with BatchIterator(Noisy(10, bad=7), 5, shuffle=False, n_workers=n_workers) as it:
        next(it)
        with pytest.raises(DatasetError, match="bad_7.jpg: broken data"):
            next(it)
        assert it.iteration == 1
        with pytest.raises(DatasetError):  # retried, not skipped
            next(it)


def test_wait_time_is_recorded():
    with BatchIterator(Noisy(8, delay=0.005), 4, n_workers=1) as it:
        assert it.wait_time == 0
        take(it, 2)
        assert it.wait_time > 0.01  # eight examples of at least 5 ms each, most of it waited for


def test_close_stops_the_threads():
    def workers():
        return [t for t in threading.enumerate() if t.name.startswith("minigan-data")]

    before = len(workers())
    it = BatchIterator(Noisy(10, delay=0.001), 2, n_workers=2)
    take(it, 2)
    assert len(workers()) > before
    it.close()
    assert len(workers()) == before
    with pytest.raises(RuntimeError, match="closed"):
        next(it)


def test_batch_larger_than_dataset():
    with pytest.raises(DatasetError, match="fewer than one batch"):
        BatchIterator(Noisy(3), 4)
