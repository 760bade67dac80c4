"""Seconds per pix2pix training iteration (256 x 256), minigan beside the PyTorch reference.

Both train chainer-pix2pix's networks (U-Net G: 54.4M parameters; two-stem D) on the same kind of
batch (a 12-channel one-hot label map and a target in [-1, 1]) with the same scheme: G forward,
D on fake and on real, G step through D, D step (Adam 2e-4, beta1 0.5). The two alternate in
blocks of repetitions in one process, since this VM's speed drifts by +-15% between runs, with
a pause before each switch (reference.alternate: the other's worker threads stop spinning).

    python benchmarks/pix2pix_speed.py [--batch 1,4] [--reps 5] [--warmup 2] [--gpu -1]
        [--torch-ref DIR]    (the folder of torch_pix2pix.py, see reference.py; torch is optional)
"""
import argparse
import statistics
import sys
import time

import numpy

import reference
from minigan.gans import pix2pix


def minigan_step(batch, gpu):
    """A closure running one minigan iteration on a fixed random batch."""
    numpy.random.seed(0)
    c = pix2pix.Config()
    models, optimizers = pix2pix.build(c)
    # no weight decay hook: the PyTorch reference trains without it
    for opt in optimizers.values():
        opt.hooks.clear()
    up = pix2pix.Updater(c, models, optimizers, gpu)
    rng = numpy.random.RandomState(0)
    labels = rng.randint(0, 12, (batch, 256, 256))
    x = (labels[:, None] == numpy.arange(12)[None, :, None, None]).astype(numpy.float32)
    y = (rng.rand(batch, 3, 256, 256) * 2 - 1).astype(numpy.float32)
    x, y = up.to_device(x, y)              # once: to_device then keeps them
    device = up.device

    def step():
        with device:
            up.update((x, y))
            if device.is_gpu:
                device.xp.cuda.Device(device.id).synchronize()
    return step


def torch_step(batch, gpu, ref_dir):
    """A closure running one iteration of the PyTorch reference, or None without torch."""
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: minigan only (pip install torch==2.13.0)", file=sys.stderr)
        return None
    if ref_dir is None:
        print("no torch_pix2pix.py found: minigan only (give --torch-ref)", file=sys.stderr)
        return None
    ref = reference.load("torch_pix2pix", ref_dir)
    dev = torch.device("cpu" if gpu < 0 else f"cuda:{gpu}")
    G, D, _, _, x, real = ref.build(batch)
    G, D, x, real = G.to(dev), D.to(dev), x.to(dev), real.to(dev)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    sync = torch.cuda.synchronize if gpu >= 0 else None

    def step():
        ref.iteration_shared(G, D, opt_g, opt_d, x, real)
        if sync:
            sync()
    return step


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", default="1,4", help="comma-separated batch sizes")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--block", type=int, default=1, help="repetitions in a row before switching")
    ap.add_argument("--gpu", type=int, default=-1)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--torch-ref", default=None, help="the folder of torch_pix2pix.py")
    reference.add_malloc_flag(ap)
    args = ap.parse_args(argv)
    print(reference.host_memory(args), reference.machine(), sep="\n", flush=True)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        ref_dir = reference.torch_ref_dir(args.torch_ref)
        ours, theirs = minigan_step(batch, args.gpu), torch_step(batch, args.gpu, ref_dir)
        for fn in (ours, theirs):
            if fn:
                timed(fn, args.warmup)
        times = reference.alternate({"ours": ours, **({"theirs": theirs} if theirs else {})},
                                    args.reps, args.block)
        t_ours, t_theirs = times["ours"], times.get("theirs")
        m = statistics.median(t_ours)
        t = statistics.median(t_theirs) if theirs else float("nan")
        rows.append((batch, m, min(t_ours), t, min(t_theirs) if theirs else float("nan")))
        print(f"batch {batch}: minigan {m:.3f} s, torch {t:.3f} s, ratio {m / t:.2f}",
              file=sys.stderr, flush=True)
    print(f"\npix2pix iteration, 256x256, {'CPU' if args.gpu < 0 else f'GPU {args.gpu}'}, "
          f"median of {args.reps} (min in brackets)")
    print("| batch | minigan s/it | PyTorch s/it | minigan / PyTorch |")
    print("|---|---|---|---|")
    for batch, m, mmin, t, tmin in rows:
        print(f"| {batch} | {m:.3f} ({mmin:.3f}) | {t:.3f} ({tmin:.3f}) | {m / t:.2f} |")


if __name__ == "__main__":
    main()
