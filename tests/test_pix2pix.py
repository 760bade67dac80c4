"""pix2pix: the networks of chainer-pix2pix, the losses of the paper, one update, and learning."""
import numpy
import pytest

from minigan import Variable
from minigan.datasets import BatchIterator, SyntheticFacadeDataset
from minigan.gans import pix2pix


def small(**kw):
    return pix2pix.Config(**{"in_channels": 12, "n_down": 5, "ngf": 16, "ndf": 8, **kw})


def test_default_networks_have_chainer_pix2pix_sizes():
    numpy.random.seed(0)
    G, D = pix2pix.Generator(pix2pix.Config()), pix2pix.Discriminator(pix2pix.Config())
    assert round(G.count_params() / 1e6, 1) == 54.4     # as the shared bench/README.md counts
    assert round(D.count_params() / 1e6, 2) == 2.77
    widths = [(b.c.W.shape[1], b.c.W.shape[0]) for b in G.enc.blocks]
    assert widths == [(64, 128), (128, 256), (256, 512)] + [(512, 512)] * 4
    ups = [(b.c.W.shape[0], b.c.W.shape[1]) for b in G.dec.blocks]
    assert ups == [(512, 512), (1024, 512), (1024, 512), (1024, 512), (1024, 256), (512, 128),
                   (256, 64)]
    assert [b.dropout for b in G.dec.blocks] == [True] * 3 + [False] * 4


@pytest.mark.parametrize("discriminator,patches", [("chainer", 4), ("patch70", 6)])
def test_shapes(discriminator, patches):
    c = small(discriminator=discriminator, output="tanh")
    G, D = pix2pix.Generator(c), pix2pix.DISCRIMINATORS[discriminator](c)
    x = numpy.random.RandomState(0).rand(2, 12, 64, 64).astype(numpy.float32)
    y = G(x)
    assert y.shape == (2, 3, 64, 64) and numpy.abs(y.array).max() <= 1
    assert D(x, y).shape == (2, 1, patches, patches)


def test_losses_are_the_papers():
    rng = numpy.random.RandomState(1)
    d_real, d_fake = rng.randn(2, 1, 4, 4), rng.randn(2, 1, 4, 4)
    y, y_fake = rng.randn(2, 3, 8, 8), rng.randn(2, 3, 8, 8)
    sig = lambda v: 1 / (1 + numpy.exp(-v))
    loss_d = pix2pix.loss_discriminator(Variable(d_real), Variable(d_fake))
    expected = -numpy.log(sig(d_real)).mean() - numpy.log(1 - sig(d_fake)).mean()
    numpy.testing.assert_allclose(loss_d.array, expected)
    total, l1, adv = pix2pix.loss_generator(Variable(y_fake), y, Variable(d_fake), 100, 1)
    numpy.testing.assert_allclose(l1.array, numpy.abs(y_fake - y).mean())
    numpy.testing.assert_allclose(total.array, 100 * l1.array - numpy.log(sig(d_fake)).mean())


def test_generator_step_computes_no_discriminator_gradients():
    numpy.random.seed(0)
    c = small()
    models, optimizers = pix2pix.build(c)
    G, D = models["gen"], models["dis"]
    x = numpy.random.rand(1, 12, 64, 64).astype(numpy.float32)
    y = numpy.random.rand(1, 3, 64, 64).astype(numpy.float32)
    loss_g, _, _ = pix2pix.loss_generator(G(x), y, D(x, G(x)), 100, 1)
    loss_g.backward(inputs=G.params())
    assert all(p.grad is not None for p in G.params())
    assert all(p.grad is None for p in D.params())
    before = [p.array.copy() for p in D.params()]
    up = pix2pix.Updater(c, models, optimizers)
    scalars = up.update((x, y))
    assert set(scalars) == {"loss/gen", "loss/gen_l1", "loss/gen_adv", "loss/dis"}
    assert all(numpy.isfinite(v) for v in scalars.values())
    assert any((a != p.array).any() for a, p in zip(before, D.params()))


def test_translate_leaves_statistics_and_random_stream_alone():
    numpy.random.seed(0)
    G = pix2pix.Generator(small())
    x = numpy.random.rand(1, 12, 64, 64).astype(numpy.float32)
    stats = [bn.avg_mean.copy() for bn in G.links() if hasattr(bn, "avg_mean")]
    state = numpy.random.get_state()[1].copy()
    pix2pix.translate(G, x)
    assert all((a == bn.avg_mean).all() for a, bn in zip(stats, (l for l in G.links()
                                                                  if hasattr(l, "avg_mean"))))
    assert (numpy.random.get_state()[1] == state).all()
    a = pix2pix.translate(G, x, paper_mode=False)
    numpy.testing.assert_array_equal(a, pix2pix.translate(G, x, paper_mode=False))


def test_learns_synthetic_facades():
    """150 iterations on 64x64 synthetic facades with a shallow U-Net cut validation L1 by 30%+."""
    numpy.random.seed(0)
    train = SyntheticFacadeDataset(n=100, size=64, split="train", labels="onehot")
    val = SyntheticFacadeDataset(n=100, size=64, split="val", labels="onehot")
    xv = numpy.stack([val.get_example(i)[0] for i in range(len(val))])
    yv = numpy.stack([val.get_example(i)[1] for i in range(len(val))])
    c = small()
    models, optimizers = pix2pix.build(c)
    updater = pix2pix.Updater(c, models, optimizers)
    l1 = lambda: float(numpy.abs(pix2pix.translate(models["gen"], xv) - yv).mean())
    before = l1()
    with BatchIterator(train, 1, seed=0, n_workers=0) as it:
        for _ in range(150):
            updater.update(next(it))
    after = l1()
    assert after <= 0.7 * before, (before, after)
