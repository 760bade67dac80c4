"""WGAN-GP's gradient penalty on a small convolutional critic equals PyTorch's, value and gradients.

The penalty differentiates the critic's input gradient, so this exercises double backprop through
convolution, instance normalization, leaky ReLU, linear and the reductions together.
"""
import numpy
import pytest

import minigan
import minigan.functions as F
from minigan import Variable

torch = pytest.importorskip("torch", reason="PyTorch reference tests need: pip install torch==2.13.0")


def _weights(rng):
    # no convolution bias: instance norm removes any per-channel constant, so its gradient is 0
    shapes = {"c1_W": (8, 3, 4, 4), "n1_g": (8,), "n1_b": (8,),
              "c2_W": (16, 8, 4, 4), "n2_g": (16,), "n2_b": (16,),
              "l_W": (1, 64), "l_b": (1,)}
    w = {k: rng.standard_normal(s).astype(numpy.float32) * 0.3 for k, s in shapes.items()}
    w["n1_g"] += 1
    w["n2_g"] += 1
    return w


def critic_minigan(p, x):
    h = F.convolution_2d(x, p["c1_W"], stride=2, pad=1)          # (N, 8, 4, 4)
    h = F.leaky_relu(F.instance_normalization(h, p["n1_g"], p["n1_b"]), 0.2)
    h = F.convolution_2d(h, p["c2_W"], stride=2, pad=1)          # (N, 16, 2, 2)
    h = F.leaky_relu(F.instance_normalization(h, p["n2_g"], p["n2_b"]), 0.2)
    return F.linear(h, p["l_W"], p["l_b"])                                   # (N, 1)


def critic_torch(p, x):
    nnf = torch.nn.functional
    h = nnf.conv2d(x, p["c1_W"], stride=2, padding=1)
    h = nnf.leaky_relu(nnf.instance_norm(h, weight=p["n1_g"], bias=p["n1_b"], eps=1e-5), 0.2)
    h = nnf.conv2d(h, p["c2_W"], stride=2, padding=1)
    h = nnf.leaky_relu(nnf.instance_norm(h, weight=p["n2_g"], bias=p["n2_b"], eps=1e-5), 0.2)
    return nnf.linear(h.flatten(1), p["l_W"], p["l_b"])


def test_wgan_gp_critic_loss_and_gradients_match_pytorch():
    rng = numpy.random.RandomState(0)
    w = _weights(rng)
    real = rng.standard_normal((4, 3, 8, 8)).astype(numpy.float32)
    fake = rng.standard_normal((4, 3, 8, 8)).astype(numpy.float32)
    eps = rng.uniform(size=(4, 1, 1, 1)).astype(numpy.float32)
    lam = 10.0

    p = {k: Variable(v.copy()) for k, v in w.items()}
    x_hat = Variable(eps * real + (1 - eps) * fake)
    g, = minigan.grad(F.sum(critic_minigan(p, x_hat)), [x_hat], create_graph=True)
    norm = F.sqrt(F.sum(g * g, axis=(1, 2, 3)))
    penalty = lam * F.mean((norm - 1) ** 2)
    loss = F.mean(critic_minigan(p, fake)) - F.mean(critic_minigan(p, real)) + penalty
    loss.backward()

    pt = {k: torch.tensor(v, requires_grad=True) for k, v in w.items()}
    xt = torch.tensor(eps * real + (1 - eps) * fake, requires_grad=True)
    gt, = torch.autograd.grad(critic_torch(pt, xt).sum(), xt, create_graph=True)
    penalty_t = lam * ((gt.flatten(1).norm(dim=1) - 1) ** 2).mean()
    loss_t = (critic_torch(pt, torch.tensor(fake)).mean()
              - critic_torch(pt, torch.tensor(real)).mean() + penalty_t)
    loss_t.backward()

    assert penalty.array > 1e-3                        # a penalty that actually bites
    numpy.testing.assert_allclose(penalty.array, penalty_t.item(), rtol=1e-4)
    numpy.testing.assert_allclose(loss.array, loss_t.item(), rtol=1e-4, atol=1e-5)
    for k in w:
        scale = numpy.abs(pt[k].grad.numpy()).max()
        numpy.testing.assert_allclose(p[k].grad.array, pt[k].grad.numpy(), rtol=1e-4,
                                      atol=1e-5 * scale, err_msg=k)
