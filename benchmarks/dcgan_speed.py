"""Seconds per DCGAN training step (batch 64, 28 x 28 MNIST networks) in minigan and PyTorch.

Both frameworks run the same step in the same process, rep by rep in turn (this VM's speed
drifts by about 15%, so only figures taken side by side compare), with a pause before each
switch so that neither runs beside the other's spinning worker threads, and an untimed step
after it (reference.alternate): G(z), D on the fake and the real
batch, G's backward and Adam step, D's backward and Adam step (the 'shared' scheme of
the shared bench/torch_dcgan.py (found as reference.py says), when present; otherwise the same
networks and step are rebuilt here). The real batch is a fixed random tensor: data loading is not
timed. The floor is the step's nominal 3.40 GFLOP (bench README) over numpy's sgemm 2048^3 rate,
measured in the same run.

Usage: python benchmarks/dcgan_speed.py [--batch 64] [--reps 15] [--warmup 3] [--threads 2]
                                        [--no-torch] [--profile N] [--torch-ref DIR]
To time another checkout (e.g. a patched copy), run it with PYTHONPATH=that/checkout.
"""
import argparse
import os
import statistics
import sys
import time

import numpy

import reference
from minigan.gans import dcgan

NOMINAL_GFLOP_B64 = 3.40    # the shared bench/README.md, figure 4 (scales with the batch)


def minigan_step(batch, seed=0):
    """A callable running one minigan DCGAN step on a fixed real batch."""
    numpy.random.seed(seed)
    c = dcgan.Config()
    models, optimizers = dcgan.build(c)
    updater = dcgan.Updater(c, models, optimizers)
    real = (numpy.random.rand(batch, 1, 28, 28) * 2 - 1).astype(numpy.float32)
    return lambda: updater.update(real)


def _load_reference(ref_dir):
    """torch_dcgan.py as a module, or None where it is not found."""
    return reference.load("torch_dcgan", ref_dir) if ref_dir else None


def _builtin_reference():
    """The reference's networks and shared step, rebuilt (when the file is not at hand)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as TF

    def build(batch, seed=0):
        torch.manual_seed(seed)
        lrelu = lambda: nn.LeakyReLU(0.2)
        G = nn.Sequential(nn.ConvTranspose2d(100, 128, 4, 1, 0), nn.BatchNorm2d(128), lrelu(),
                          nn.ConvTranspose2d(128, 64, 3, 2, 1), nn.BatchNorm2d(64), lrelu(),
                          nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32), lrelu(),
                          nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Tanh())
        D = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), lrelu(),
                          nn.Conv2d(32, 64, 4, 2, 1), nn.BatchNorm2d(64), lrelu(),
                          nn.Conv2d(64, 128, 3, 2, 1), nn.BatchNorm2d(128), lrelu(),
                          nn.Conv2d(128, 1, 4, 1, 0), nn.Sigmoid())
        for m in list(G) + list(D):
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        adam = lambda net: torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
        return G, D, adam(G), adam(D), torch.rand(batch, 1, 28, 28) * 2 - 1

    def step_shared(G, D, opt_g, opt_d, real):
        n = real.shape[0]
        ones, zeros = torch.ones(n, 1, 1, 1), torch.zeros(n, 1, 1, 1)
        fake = G(torch.randn(n, 100, 1, 1))
        y_fake, y_real = D(fake), D(real)
        loss_g = TF.binary_cross_entropy(y_fake, ones)
        loss_d = TF.binary_cross_entropy(y_real, ones) + TF.binary_cross_entropy(y_fake, zeros)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward(inputs=list(G.parameters()), retain_graph=True)
        opt_g.step()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward(inputs=list(D.parameters()))
        opt_d.step()

    return argparse.Namespace(build=build, step_shared=step_shared)


def torch_step(batch, threads, path):
    """A callable running one PyTorch step, and where its definition came from."""
    import torch
    torch.set_num_threads(threads)
    ref_dir = reference.torch_ref_dir(path, needs="torch_dcgan.py")
    ref = _load_reference(ref_dir)
    source = f"{ref_dir}/torch_dcgan.py" if ref is not None else "built-in copy of the reference"
    ref = ref or _builtin_reference()
    G, D, opt_g, opt_d, real = ref.build(batch)
    return (lambda: ref.step_shared(G, D, opt_g, opt_d, real)), source


def sgemm_rate(n=2048, reps=3):
    """numpy float32 GEMM GFLOP/s at n^3 (best of reps)."""
    a = numpy.random.rand(n, n).astype(numpy.float32)
    b = numpy.random.rand(n, n).astype(numpy.float32)
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _time(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def profile(step, n, top=25):
    """cProfile of n minigan steps: the functions with the most time of their own."""
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        step()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="Afterwards, cProfile N minigan steps.")
    ap.add_argument("--torch-ref", default=None, help="the folder of torch_dcgan.py")
    reference.add_malloc_flag(ap)
    args = ap.parse_args(argv)
    print(reference.host_memory(args), reference.machine(), sep="\n", flush=True)

    steps = {"minigan": minigan_step(args.batch)}
    source = None
    if not args.no_torch:
        steps["pytorch"], source = torch_step(args.batch, args.threads, args.torch_ref)
    for fn in steps.values():
        for _ in range(args.warmup):
            fn()
    # in turn (the VM's drift hits both alike), each timed step after an untimed one
    times = reference.alternate(steps, args.reps, warm=1)
    rate = sgemm_rate()
    floor = NOMINAL_GFLOP_B64 * args.batch / 64 / rate

    import minigan
    print(f"DCGAN step, batch {args.batch}, 28 x 28 MNIST networks, {args.reps} reps alternating"
          f" (median, min, max); minigan: {os.path.dirname(minigan.__file__)}; PyTorch: "
          f"{source or 'not run'}")
    print(f"{'framework':<10} {'s/step':>8} {'min':>8} {'max':>8} {'/ floor':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<10} {med:8.4f} {min(ts):8.4f} {max(ts):8.4f} {med / floor:8.2f}")
    if "pytorch" in times:
        ratio = statistics.median(times["minigan"]) / statistics.median(times["pytorch"])
        pair = statistics.median(a / b for a, b in zip(times["minigan"], times["pytorch"]))
        print(f"ratio minigan / pytorch: {ratio:.2f} (median of per-rep ratios {pair:.2f})")
    print(f"floor: {NOMINAL_GFLOP_B64 * args.batch / 64:.2f} GFLOP at numpy sgemm "
          f"{rate:.0f} GFLOP/s = {floor:.4f} s")
    if args.profile:
        profile(steps["minigan"], args.profile)


if __name__ == "__main__":
    main(sys.argv[1:])
