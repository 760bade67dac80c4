"""The zoo learns: the vanilla GAN and WGAN-GP cover the 8-Gaussian ring, BEGAN's controller and
convergence measure behave, DCGAN trains on real MNIST digits without NaN or collapse. Fixed seeds,
small networks, a few hundred steps each."""

import numpy
import pytest

from helpers import shared
from minigan.datasets import BatchIterator, ImageFolderDataset, MnistDataset, RingDataset
from minigan.datasets import find_mnist, mode_coverage, ring_centers
from minigan.gans import began, dcgan, gan, wgan_gp
from minigan.optimizers import ExponentialMovingAverage


# the ring's Gaussians: std 0.05 (3 sigma = 0.15; neighbouring modes lie 1.53 apart)
STD = 0.05


@pytest.fixture(autouse=True)
def one_blas_thread():
    """One BLAS thread: the runs are then the same on every machine (a GAN's trajectory depends
    on the last bits of each product), and small products run faster (measured on 2 shared
    cores: a toy GAN step took 15 ms with one OpenBLAS thread, 120 ms with two)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def train(module, config, Updater, dataset, batch_size, steps, seed=0, ema=None):
    """(models, list of logged scalars) after `steps` updates; with ema, models["ema"] is an
    exponential moving average of G's weights with that decay."""
    numpy.random.seed(seed)
    models, optimizers = module.build(config)
    updater = Updater(config, models, optimizers)
    average = ExponentialMovingAverage(models["gen"], ema) if ema else None
    log = []
    with BatchIterator(dataset, batch_size, seed=seed, n_workers=0) as it:
        for _ in range(steps):
            log.append(updater.update(next(it)))
            if average:
                average.update()
    if average:
        models = {**models, "ema": average.avg}
    return models, log


def ring_quality(module, config, G):
    samples = module.generate(G, module.sample_z(config, 2000, numpy.random.RandomState(1)))
    return mode_coverage(samples, ring_centers(), std=STD)


def test_vanilla_gan_covers_the_ring():
    # samples come from the moving average of G's weights (Polyak averaging, as ProGAN and
    # StyleGAN sample): at this learning rate Adam's jitter alone spreads G's raw samples by
    # about 3 sigma (measured over seeds 0-2: 62-75% within 3 sigma averaged, 31-60% raw)
    c = gan.Config.for_data((2,), alpha=2e-3)
    models, log = train(gan, c, gan.Updater, RingDataset(n=10_000, std=STD), 256, 1500,
                        ema=0.99)
    modes, good = ring_quality(gan, c, models["ema"])
    assert modes >= 6 and good >= 0.5, (modes, good)


def test_wgan_gp_covers_the_ring_and_its_gradient_norm_moves_toward_1():
    # lambda = 1, beta1 = 0.5, n_critic = 3: with lambda = 10 the norm sits at 1 but a small
    # critic then learns the ring slowly; the paper's own toy code uses lambda = 0.1 and
    # beta1 = 0.5. Measured over seeds 0-2: 59-62% within 3 sigma, all 8 modes
    c = wgan_gp.Config(arch="mlp", x_shape=(2,), n_z=2, n_hidden=64, n_layers=2, lam=1.0,
                       n_critic=3, alpha=1e-3, beta1=0.5)
    models, log = train(wgan_gp, c, wgan_gp.Updater, RingDataset(n=10_000, std=STD),
                        128 * c.n_critic, 1000)
    modes, good = ring_quality(wgan_gp, c, models["gen"])
    assert modes >= 6 and good >= 0.5, (modes, good)
    # the mean distance from 1 over the first and the last 50 steps: 0.19-0.33 and 0.04-0.05
    # over seeds 0-2 with either OpenBLAS kernel set (Haswell's, SkylakeX's); lambda = 0 gives
    # 3.6 and 11.7. The first step alone (1.10 at seed 0) made the test hang on the last bits
    deviation = numpy.abs(numpy.array([r["dis/grad_norm"] for r in log]) - 1)
    start, end = deviation[:50].mean(), deviation[-50:].mean()
    assert end < 0.5 * start, (start, end)


def _faces(size):
    """256 real faces of the team's data (M_global's fall is measured on them; on smooth random
    images it did not fall by a fifth in 80 steps, so without the data the test skips)."""
    ds = ImageFolderDataset(shared("faces64"), size=size)
    ds.files = ds.files[:256]
    return ds


def test_began_keeps_k_in_0_1_and_m_global_falls():
    c = began.Config(size=16, n=8, n_h=16, n_z=16, alpha=5e-4)
    _, log = train(began, c, began.Updater, _faces(16), 16, 80)
    ks = [r["k"] for r in log]
    assert all(0.0 <= k <= 1.0 for k in ks)
    assert max(ks) > 0                                  # the controller did act
    m = [r["M_global"] for r in log]
    assert numpy.mean(m[-20:]) < 0.8 * numpy.mean(m[:20]), (m[:20], m[-20:])


def test_dcgan_trains_on_500_mnist_digits_without_nan_or_collapse():
    root = find_mnist(shared("mnist"))
    ds = MnistDataset(root, n=500)
    c = dcgan.Config()
    models, log = train(dcgan, c, dcgan.Updater, ds, 8, 200)
    assert all(numpy.isfinite(v) for r in log for v in r.values())
    # in the first hundreds of steps D is right 93-100% of the time here (as in the PyTorch
    # reference with the same networks and data); collapse would pin its accuracy at 1 and its
    # loss at 0. How often it dips below 1 depends on the last bits of every product, so the
    # test asks only that it is not pinned, that the loss is not ~0, and that samples differ
    accuracy = numpy.array([r["dis/accuracy"] for r in log[-100:]])
    assert (accuracy < 1).any(), accuracy
    assert numpy.mean([r["loss/dis"] for r in log[-50:]]) > 0.01
    x = dcgan.generate(models["gen"], dcgan.sample_z(c, 64, numpy.random.RandomState(1)))
    assert numpy.isfinite(x).all()
    assert x.std(axis=0).mean() > 0.1                   # the samples differ from one another
    assert x.mean() < 0                                 # mostly background, as digits are
