"""The zoo's GAN files: network shapes, the losses as in the papers, one update of each, DCGAN
equal to the PyTorch reference of the benchmark, WGAN-GP's penalty, BEGAN's controller and state."""
import numpy
import pytest

import minigan.functions as F
from helpers import torch_reference
from minigan import Variable
from minigan.gans import began, dcgan, gan, wgan_gp
from minigan.serializers import load_hdf5, save_hdf5

SMALL = {
    "gan/mnist": (gan, gan.Config(n_hidden=16), gan.Updater, (1, 28, 28)),
    "gan/toy": (gan, gan.Config.for_data((2,), n_hidden=16), gan.Updater, (2,)),
    "dcgan/mnist": (dcgan, dcgan.Config(n_z=8), dcgan.Updater, (1, 28, 28)),
    "dcgan/radford": (dcgan, dcgan.Config(arch="radford", size=16, channels=3, ngf=4, ndf=4),
                      dcgan.Updater, (3, 16, 16)),
    "wgan-gp/mnist": (wgan_gp, wgan_gp.Config(n_z=8, n_critic=2), wgan_gp.Updater,
                      (1, 28, 28)),
    "wgan-gp/radford": (wgan_gp, wgan_gp.Config(arch="radford", x_shape=(3, 16, 16), ngf=4, ndf=4,
                                                n_critic=2), wgan_gp.Updater, (3, 16, 16)),
    "wgan-gp/mlp": (wgan_gp, wgan_gp.Config(arch="mlp", x_shape=(2,), n_z=2, n_hidden=16,
                                            n_critic=2), wgan_gp.Updater, (2,)),
    "began/28": (began, began.Config(size=28, channels=1, n=4, n_h=8, n_z=8),
                 began.Updater, (1, 28, 28)),
    "began/16": (began, began.Config(size=16, n=4, n_h=8, n_z=8), began.Updater, (3, 16, 16)),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_and_one_update_of_every_network(name):
    module, c, Updater, shape = SMALL[name]
    numpy.random.seed(0)
    models, optimizers = module.build(c)
    G, D = models["gen"], models["dis"]
    x_fake = G(module.sample_z(c, 4))
    assert x_fake.shape == (4,) + shape
    y = D(x_fake)
    assert y.shape == ((4,) + shape if module is began else (4, 1))   # BEGAN's D reconstructs
    factor = getattr(c, "n_critic", 1)
    batch = numpy.random.uniform(-1, 1, (4 * factor,) + shape).astype(numpy.float32)
    before = [p.array.copy() for p in list(G.params()) + list(D.params())]
    scalars = Updater(c, models, optimizers).update(batch)
    assert scalars and all(numpy.isfinite(v) for v in scalars.values())
    after = list(G.params()) + list(D.params())
    assert all((a != p.array).any() for a, p in zip(before, after)), "a parameter never moved"
    assert numpy.isfinite(module.generate(G, module.sample_z(c, 2))).all()


def test_vanilla_gan_networks_are_the_documented_mlps():
    G, D = gan.Generator(gan.Config()), gan.Discriminator(gan.Config())
    assert [(l.W.shape, l.b is None) for l in G.layers] == [((100, 20), False), ((784, 100), False)]
    assert [(l.W.shape, l.b is None) for l in D.hidden] == [((100, 784), True)]
    assert D.out.W.shape == (1, 100)
    assert (G.c.slope, D.c.dropout, G.c.output) == (0.01, 0.5, "tanh")


def test_vanilla_and_dcgan_losses_are_binary_cross_entropy_on_logits():
    rng = numpy.random.RandomState(0)
    y_real, y_fake = rng.randn(8, 1), rng.randn(8, 1)
    sig = lambda v: 1 / (1 + numpy.exp(-v))
    expected_d = -numpy.log(sig(y_real)).mean() - numpy.log(1 - sig(y_fake)).mean()
    expected_g = -numpy.log(sig(y_fake)).mean()
    for module in (gan, dcgan):
        numpy.testing.assert_allclose(
            module.loss_discriminator(Variable(y_real), Variable(y_fake)).array, expected_d)
        numpy.testing.assert_allclose(module.loss_generator(Variable(y_fake)).array, expected_g)


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = <w, x> has gradient w everywhere: the penalty is lambda (|w| - 1)^2."""
    w = numpy.array([[3.0, 4.0]])                       # |w| = 5
    D = lambda x: F.linear(x, w)
    x_hat = Variable(numpy.random.RandomState(0).randn(6, 2))
    penalty, norm = wgan_gp.gradient_penalty(D, x_hat, lam=10.0)
    numpy.testing.assert_allclose(norm.array, 5.0)
    numpy.testing.assert_allclose(penalty.array, 10.0 * 16)
    loss = wgan_gp.loss_critic(Variable(numpy.ones((6, 1))), Variable(numpy.zeros((6, 1))),
                               penalty)
    numpy.testing.assert_allclose(loss.array, -1 + 160)


def test_gradient_penalty_reaches_the_critic_s_weights():
    """d/dw of lambda (|w| - 1)^2 = 2 lambda (|w| - 1) w / |w|: double backprop through linear."""
    w = Variable(numpy.array([[3.0, 4.0]]))
    x_hat = Variable(numpy.random.RandomState(1).randn(5, 2))
    penalty, _ = wgan_gp.gradient_penalty(lambda x: F.linear(x, w), x_hat, lam=10.0)
    penalty.backward(inputs=[w])
    numpy.testing.assert_allclose(w.grad.array, 2 * 10 * 4 * w.array / 5)


def test_wgan_gp_takes_n_critic_minibatches_per_iteration():
    module, c, Updater, shape = SMALL["wgan-gp/mlp"]
    numpy.random.seed(0)
    models, optimizers = module.build(c)
    x = numpy.random.randn(6 * c.n_critic, 2).astype(numpy.float32)
    Updater(c, models, optimizers).update(x)
    assert optimizers["dis"].t == c.n_critic and optimizers["gen"].t == 1


def test_began_controller_convergence_measure_and_schedule():
    assert began.update_k(0.0, 0.2, 0.5, 0.5, 0.001) == 0.0        # clipped at 0
    assert began.update_k(0.9999, 1.0, 0.0, 0.5, 0.001) == 1.0     # clipped at 1
    numpy.testing.assert_allclose(began.update_k(0.5, 0.4, 0.1, 0.5, 0.001), 0.5 + 0.001 * 0.1)
    numpy.testing.assert_allclose(began.convergence(0.4, 0.3, 0.5), 0.4 + 0.1)
    c = began.Config(alpha=1e-4, alpha_min=2e-5, alpha_step=10)
    assert [began.learning_rate(c, t) for t in (0, 9, 10, 25, 100)] == [1e-4, 1e-4, 5e-5,
                                                                         2.5e-5, 2e-5]
    assert began.scales(64) == (8, 4) and began.scales(28) == (7, 3) and began.scales(16) == (8, 2)
    for size in (36, 8):
        with pytest.raises(ValueError, match="must be b"):
            began.scales(size)


def test_began_losses_and_k_in_a_snapshot(tmp_path):
    module, c, Updater, shape = SMALL["began/16"]
    numpy.random.seed(0)
    models, optimizers = module.build(c)
    D = models["dis"]
    x = numpy.random.uniform(-1, 1, (4,) + shape).astype(numpy.float32)
    numpy.testing.assert_allclose(began.L_rec(D, x).array, numpy.abs(D(x).array - x).mean(),
                                  rtol=1e-6)
    up = Updater(c, models, optimizers)
    up.k = 0.25
    out = up.update(x)
    assert out["k"] == 0.25 and 0 <= up.k <= 1
    numpy.testing.assert_allclose(out["loss/dis"], out["L_x"] - 0.25 * out["L_Gz"], rtol=1e-5)
    save_hdf5(str(tmp_path / "s.h5"), {"updater": up.state_dict()})
    state = load_hdf5(str(tmp_path / "s.h5"), {"updater": {"k": 0.0}})
    fresh = Updater(c, models, optimizers)
    fresh.load_state_dict(state["updater"])
    assert fresh.k == up.k


# -- DCGAN equals the benchmark's PyTorch reference --------------------------------------------

def _reference():
    return torch_reference("torch_dcgan")


def _copy_weights(torch_net, net):
    """torch's '3.weight' -> minigan's '/net/3/W' (or BN's gamma); the indexes agree."""
    names = dict(net.namedparams())
    for key, value in torch_net.state_dict().items():
        index, kind = key.split(".")
        if kind in ("weight", "bias"):
            p = names.get(f"/net/{index}/{'W' if kind == 'weight' else 'b'}") or \
                names[f"/net/{index}/{'gamma' if kind == 'weight' else 'beta'}"]
            p.array[...] = value.numpy()
    return len(names)


def _twins():
    """(torch, the reference's G, D and real batch of 8, minigan's G and D with its weights)."""
    torch, ref = _reference()
    Gt, Dt, _, _, real_t = ref.build(8)
    models, _ = dcgan.build(dcgan.Config())
    G, D = models["gen"], models["dis"]
    assert _copy_weights(Gt, G) == len(list(Gt.parameters()))
    assert _copy_weights(Dt, D) == len(list(Dt.parameters()))
    return torch, Gt, Dt, real_t, G, D


def test_dcgan_equals_the_pytorch_reference_step():
    """Same weights, z and batch: equal outputs, losses, and gradients of G and of D."""
    torch, Gt, Dt, real_t, G, D = _twins()
    z = numpy.random.RandomState(0).randn(8, 100).astype(numpy.float32)
    real = real_t.numpy()

    fake_t = Gt(torch.tensor(z).reshape(8, 100, 1, 1))
    p_fake, p_real = Dt(fake_t), Dt(real_t)
    bce = torch.nn.functional.binary_cross_entropy
    loss_g_t = bce(p_fake, torch.ones_like(p_fake))
    loss_d_t = bce(p_real, torch.ones_like(p_real)) + bce(p_fake, torch.zeros_like(p_fake))
    g_grads = torch.autograd.grad(loss_g_t, list(Gt.parameters()), retain_graph=True)
    d_grads = torch.autograd.grad(loss_d_t, list(Dt.parameters()))

    x_fake = G(z)
    y_fake, y_real = D(x_fake), D(real)
    # float32 through four layers and three batch norms: the two sums round differently, by up
    # to 2.3e-5 on one CI machine (4e-7 on another); the float64 test below checks the math
    numpy.testing.assert_allclose(x_fake.array, fake_t.detach().numpy(), atol=1e-4)
    numpy.testing.assert_allclose(1 / (1 + numpy.exp(-y_fake.array)),
                                  p_fake.detach().numpy().reshape(8, 1), atol=1e-4)
    loss_g = dcgan.loss_generator(y_fake)
    loss_d = dcgan.loss_discriminator(y_real, y_fake)
    numpy.testing.assert_allclose(loss_g.array, loss_g_t.item(), rtol=1e-5)
    numpy.testing.assert_allclose(loss_d.array, loss_d_t.item(), rtol=1e-5)
    loss_g.backward(inputs=G.params())
    loss_d.backward(inputs=D.params())
    for net, grads in ((G, g_grads), (D, d_grads)):
        # the biases before a BN have (almost) zero gradients: compare at the net's scale
        scale = max(float(numpy.abs(g.numpy()).max()) for g in grads)
        for (name, p), g in zip(net.namedparams(), grads):
            numpy.testing.assert_allclose(p.grad.array, g.numpy(), rtol=1e-3, atol=1e-4 * scale,
                                          err_msg=name)


def _as_float64(net):
    """The link with its parameters and persistents (BN's running statistics) in float64."""
    return net._move(lambda a: a.astype(numpy.float64), net.device)


def test_dcgan_equals_the_pytorch_reference_in_float64():
    """In float64 rounding is gone: G's images and D's logits equal the reference to 1e-10."""
    torch, Gt, Dt, real_t, G, D = _twins()
    G, D, Gt, Dt = _as_float64(G), _as_float64(D), Gt.double(), Dt.double()
    z = numpy.random.RandomState(0).randn(8, 100)
    fake_t = Gt(torch.tensor(z).reshape(8, 100, 1, 1))
    x_fake = G(z)
    assert x_fake.dtype == numpy.float64
    numpy.testing.assert_allclose(x_fake.array, fake_t.detach().numpy(), atol=1e-10, rtol=0)
    # the reference's D ends in a sigmoid; minigan's gives the logit
    for x, x_t in ((x_fake.array, fake_t), (real_t.double().numpy(), real_t.double())):
        p = 1 / (1 + numpy.exp(-D(x).array))
        numpy.testing.assert_allclose(p, Dt(x_t).detach().numpy().reshape(8, 1), atol=1e-10,
                                      rtol=0)


def test_radford_dcgan_has_the_paper_s_64x64_layout():
    c = dcgan.Config(arch="radford", size=64, channels=3)
    G, D = dcgan.Generator(c), dcgan.Discriminator(c)
    assert [l.W.shape[:2] for l in G.net if hasattr(l, "W")] == [
        (100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    assert [l.W.shape[:2] for l in D.net if hasattr(l, "W")] == [
        (64, 3), (128, 64), (256, 128), (512, 256), (1, 512)]
    assert round(G.count_params() / 1e6, 2) == 3.58 and round(D.count_params() / 1e6, 2) == 2.77
    w = G.net[3].W.array                               # N(0, 0.02)
    assert abs(w.std() - 0.02) < 0.001 and abs(w.mean()) < 0.001
    with pytest.raises(ValueError, match="4 \\* 2\\^k"):
        dcgan.Generator(dcgan.Config(arch="radford", size=48))
