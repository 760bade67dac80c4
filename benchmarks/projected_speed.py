"""ProjectedGAN: one training step of minigan beside a PyTorch twin of the same networks with the
same weights (128 px, batch 8, float32, on the CPU).

The step is the chapter's without DiffAugment: G through D (the frozen EfficientNet-lite0 at
224 px, the random projections, four discriminators) and Adam; then D on fake and real, hinge,
Adam. The twins are the tests' (tests/projected_twin.py for G and D's head,
tests/test_efficientnet.py for the feature network), loaded by their paths. Noisy on a shared CPU.

Usage: python benchmarks/projected_speed.py [--size 128] [--batch 8] [--ngf 128] [--reps 2]
       [--threads 2]
"""
import argparse
import statistics
import time

import numpy

import minigan
from minigan import Variable
from minigan.gans import projected as P
from minigan.models.weights import efficientnet_lite0_file

import reference


def minigan_step(c, models, opts, x_real):
    G, D = models["gen"], models["dis"]
    n = len(x_real)
    G.cleargrads()
    P.loss_generator(D(G(P.sample_z(c, n)))).backward(inputs=G.params())
    opts["gen"].update()
    D.cleargrads()
    with minigan.no_backprop_mode():
        x_fake = G(P.sample_z(c, n)).array
    P.loss_dis_fake(D(Variable(x_fake))).backward(inputs=D.params())
    P.loss_dis_real(D(Variable(x_real))).backward(inputs=D.params())
    opts["dis"].update()


def torch_step(torch, tG, head, enet, opt_G, opt_D, x_real, n_z):
    tf = torch.nn.functional
    D = lambda x: head(enet(x)[1])
    n = len(x_real)
    opt_G.zero_grad(set_to_none=True)
    (-D(tG(torch.randn(n, n_z))).mean()).backward()
    opt_G.step()
    opt_D.zero_grad(set_to_none=True)
    with torch.no_grad():
        x_fake = tG(torch.randn(n, n_z))
    tf.relu(1 + D(x_fake)).mean().backward()
    tf.relu(1 - D(x_real)).mean().backward()
    opt_D.step()


def timed(fn, reps):
    fn()                                    # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def case(size, batch, ngf=128):
    """(config, models, optimizers, a uniform random real batch) at one size, from seed 0."""
    numpy.random.seed(0)
    c = P.Config.for_data((3, size, size), ngf=ngf, batch=batch, batch_gpu=batch)
    models, opts = P.build(c)
    x = numpy.random.uniform(-1, 1, (batch, 3, size, size)).astype(numpy.float32)
    return c, models, opts, x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ngf", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    reference.add_malloc_flag(ap)
    a = ap.parse_args()
    print(reference.host_memory(a), reference.machine(), sep="\n", flush=True)
    import torch
    torch.set_num_threads(a.threads)
    c, models, opts, x = case(a.size, a.batch, a.ngf)
    tG, head = reference.tests_module("projected_twin").twins(torch, models["gen"], models["dis"])
    tG, head = tG.float(), head.float()
    enet = reference.tests_module("test_efficientnet").twin(torch, efficientnet_lite0_file())
    enet.requires_grad_(False)
    r = c.d_reg_interval / (c.d_reg_interval + 1)
    opt_G = torch.optim.Adam(tG.parameters(), c.alpha, betas=(c.beta1, c.beta2))
    opt_D = torch.optim.Adam(head.parameters(), c.alpha * r, betas=(c.beta1, c.beta2 ** r))
    ours = timed(lambda: minigan_step(c, models, opts, x), a.reps)
    theirs = timed(lambda: torch_step(torch, tG, head, enet, opt_G, opt_D, torch.tensor(x),
                                      c.n_z), a.reps)
    print(f"projected step {a.size} px, batch {a.batch}, ngf {a.ngf}, {a.threads} threads: "
          f"minigan {ours:.2f} s, torch {theirs:.2f} s, ratio {ours / theirs:.2f}x "
          f"(median of {a.reps}; a shared CPU: noisy)")


if __name__ == "__main__":
    main()
