"""Lightweight GAN: one training step of minigan beside a PyTorch twin of the same networks with
the same weights (batch 8; 64 and 128 px; with and without the gradient penalty).

The step is the chapter's: D on augmentation-free real and fake (both heads), the reconstruction
loss of decoder 1, the penalty when asked, Adam; then G through D. The twin is the test's
(tests/lightweight_twin.py), loaded by its path. Noisy on a shared CPU.

--attn 32 (or 16,32) adds lucidrains' attention at those widths, to both (his default is 32).

Usage: python benchmarks/lightweight_speed.py [--sizes 64,128] [--batch 8] [--reps 3] [--threads 2]
                                              [--attn 32] [--gpu -1]
"""
import argparse
import statistics
import time

import numpy

import minigan
import minigan.functions as F
from minigan import Variable
from minigan.gans import lightweight as lw

import reference


def minigan_step(c, G, D, opts, x, z, noise, z_g, noise_g, gp):
    """One D step then one G step of minigan, on given images, latents and noise maps."""
    x_real = Variable(x)
    with minigan.no_backprop_mode():
        x_fake = Variable(G(z, noise).array)
    y_fake, ys_fake, _, _ = D(x_fake)
    y_real, ys_real, f8, _ = D(x_real)
    loss = (lw.loss_discriminator(y_real, y_fake) + lw.loss_discriminator(ys_real, ys_fake)
            + F.mean_squared_error(D.dec1(f8), lw.shrink(x_real, D.r1)))
    if gp:
        loss = loss + lw.gradient_penalty([y_real, ys_real, y_fake, ys_fake], [x_real, x_fake],
                                          c.gp_weight)
    D.cleargrads()
    loss.backward(inputs=D.params())
    opts["dis"].update()
    y, ys, _, _ = D(G(z_g, noise_g))
    G.cleargrads()
    (lw.loss_generator(y) + lw.loss_generator(ys)).backward(inputs=G.params())
    opts["gen"].update()
    return float(loss.array)


def torch_step(torch, c, tG, tD, oG, oD, x, z, noise, z_g, noise_g, gp):
    """The same step of the PyTorch twin (on NumPy inputs, or tensors already on its device)."""
    T = lambda a: a if torch.is_tensor(a) else torch.from_numpy(numpy.ascontiguousarray(a))
    n = len(x)
    x_real = T(x).requires_grad_(gp)
    with torch.no_grad():
        x_fake = tG(T(z), [T(m) for m in noise])
    x_fake.requires_grad_(gp)
    yf, ysf, _ = tD(x_fake)
    yr, ysr, rec = tD(x_real)
    hinge = lambda r, f: torch.relu(1 - r).mean() + torch.relu(1 + f).mean()
    k = c.size // min(128, c.size)
    target = torch.nn.functional.avg_pool2d(x_real, k) if k > 1 else x_real
    loss = hinge(yr, yf) + hinge(ysr, ysf) + ((rec - target) ** 2).mean()
    if gp:
        g = torch.autograd.grad(yr.sum() + ysr.sum() + yf.sum() + ysf.sum(), [x_real, x_fake],
                                create_graph=True)
        g = torch.cat([gi.reshape(n, -1) for gi in g])
        loss = loss + c.gp_weight * (g * g).sum(1).mean()
    oD.zero_grad()
    loss.backward()
    oD.step()
    y, ys, _ = tD(tG(T(z_g), [T(m) for m in noise_g]))
    oG.zero_grad()
    (-y.mean() - ys.mean()).backward()
    oG.step()
    return float(loss.detach())


def on_device(inputs, send):
    """The step's inputs (x, z, noise maps, z_g, noise maps) with every array sent once."""
    return tuple([send(m) for m in a] if isinstance(a, list) else send(a) for a in inputs)


def twin_step(torch, c, G, D, inputs, gp, gpu=-1):
    """The twin's step as a closure on its device (weights copied from G and D, inputs sent
    once), ending with a device sync."""
    _, tG, tD = reference.tests_module("lightweight_twin").torch_twin(c, G, D)
    dev = torch.device("cpu" if gpu < 0 else f"cuda:{gpu}")
    tG, tD = tG.float().to(dev), tD.float().to(dev)
    oG = torch.optim.Adam(tG.parameters(), c.alpha, (c.beta1, c.beta2))
    oD = torch.optim.Adam(tD.parameters(), c.alpha, (c.beta1, c.beta2))
    t_in = on_device(inputs, lambda a: torch.from_numpy(numpy.ascontiguousarray(a)).to(dev))
    sync = torch.cuda.synchronize if gpu >= 0 else (lambda: None)

    def step():
        torch_step(torch, c, tG, tD, oG, oD, *t_in, gp)
        sync()
    return step


def steps(size, batch, gp, gpu=-1, attn=(), torch=None):
    """(minigan's step, the twin's step or None without torch) as closures on one device, each
    ending with a device sync, from the same weights and inputs (case)."""
    from minigan import backend
    c, G, D, opts, inputs = case(size, batch, attn)
    twin = None if torch is None else twin_step(torch, c, G, D, inputs, gp, gpu)
    device = backend.Device(gpu)
    for net in (G, D):
        net.to_device(device)
    inputs = on_device(inputs, device.send)

    def ours():
        with device:
            minigan_step(c, G, D, opts, *inputs, gp)
            if device.is_gpu:
                device.xp.cuda.Device(device.id).synchronize()
    return ours, twin


def draws(rng, c, G, n):
    """Latents (n, n_z) and G's noise maps, float32, from rng."""
    z = rng.standard_normal((n, c.n_z)).astype(numpy.float32)
    return z, [rng.standard_normal(s).astype(numpy.float32) for s in G.noise_shapes(n)]


def timed(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def gflop(c, G, D, n):
    """Rough GFLOP per step: 2 MAC-flops x 3 (forward + backward) x the convolutions' MACs of
    G and D forward passes (G twice, D three times, ignoring the penalty and the decoders)."""
    from minigan.links.connection import Convolution2D, Deconvolution2D
    macs = {}

    def hook(net, x):
        total = [0]
        originals = {}
        for _, link in net.namedlinks():
            if isinstance(link, (Convolution2D, Deconvolution2D)):
                f = link.forward

                def wrapped(h, f=f, link=link):
                    y = f(h)
                    W = link.W.shape
                    total[0] += y.size * W[1 if isinstance(link, Convolution2D) else 0] * W[2] * W[3]
                    return y
                originals[id(link)] = (link, f)
                object.__setattr__(link, "forward", wrapped)
        with minigan.no_backprop_mode():
            net(x)
        for link, f in originals.values():
            del link.__dict__["forward"]
        return total[0]
    macs["G"] = hook(G, lw.sample_z(c, n))
    macs["D"] = hook(D, numpy.zeros((n, c.channels, c.size, c.size), numpy.float32))
    return 2 * 3 * (2 * macs["G"] + 3 * macs["D"]) / 1e9


def case(size, batch, attn=()):
    """(config, G, D, optimizers, the inputs of minigan_step) at one size: weights from seed 0,
    a uniform random batch, latents and noise from seed 1 (drawn once, not timed)."""
    c = lw.Config.for_data((3, size, size), attn_res_layers=attn)
    numpy.random.seed(0)
    models, opts = lw.build(c)
    G = models["gen"]
    x = numpy.random.uniform(-1, 1, (batch, 3, size, size)).astype(numpy.float32)
    rng = numpy.random.RandomState(1)
    return c, G, models["dis"], opts, (x,) + draws(rng, c, G, batch) + draws(rng, c, G, batch)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="", help="attention widths, e.g. 32 (default: none)")
    ap.add_argument("--gpu", type=int, default=-1, help="CUDA device (both frameworks), -1: CPU")
    reference.add_malloc_flag(ap)
    a = ap.parse_args()
    print(reference.host_memory(a), reference.machine(), sep="\n", flush=True)
    attn = tuple(int(w) for w in a.attn.split(",") if w)
    import torch
    torch.set_num_threads(a.threads)
    for size in map(int, a.sizes.split(",")):
        c, G, D, _, _ = case(size, a.batch, attn)
        count = lambda net: sum(p.size for p in net.params())
        print(f"{size} px, batch {a.batch}, attention at {list(attn)}: G {count(G):,} "
              f"D {count(D):,} parameters; "
              f"~{gflop(c, G, D, a.batch):.1f} GFLOP per step (convs, no penalty)", flush=True)
        for gp in (False, True):
            ours, twin = steps(size, a.batch, gp, a.gpu, attn, torch)
            t_m, t_t = timed(ours, a.reps), timed(twin, a.reps)
            print(f"  {'with' if gp else 'no  '} penalty: minigan {t_m:.3f} s  torch {t_t:.3f} s  "
                  f"ratio {t_m / t_t:.2f}x", flush=True)


if __name__ == "__main__":
    main()
