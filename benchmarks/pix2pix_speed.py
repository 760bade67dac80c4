"""Seconds per pix2pix training iteration (256 x 256), minigan beside the PyTorch reference.

Both train chainer-pix2pix's networks (U-Net G: 54.4M parameters; two-stem D) on the same kind of
batch (a 12-channel one-hot label map and a target in [-1, 1]) with the same scheme: G forward,
D on fake and on real, G step through D, D step (Adam 2e-4, beta1 0.5). The two alternate in
blocks of repetitions in one process, since this VM's speed drifts by +-15% between runs.

    python benchmarks/pix2pix_speed.py [--batch 1,4] [--reps 5] [--warmup 2] [--gpu -1]
        [--torch-ref ../shared/bench]    (the folder of torch_pix2pix.py; torch is optional)
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

import numpy

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from minigan import backend  # noqa: E402
from minigan.gans import pix2pix  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


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
    if gpu >= 0:
        x, y = backend.to_gpu(x, gpu), backend.to_gpu(y, gpu)    # to_device then keeps them
        sync = backend.get_cupy(gpu).cuda.Device(gpu).synchronize
    else:
        sync = None

    def step():
        up.update((x, y))
        if sync:
            sync()
    return step


def torch_step(batch, gpu, ref_dir):
    """A closure running one iteration of the PyTorch reference, or None without torch."""
    path = os.path.join(ref_dir, "torch_pix2pix.py")
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: minigan only (pip install torch==2.13.0)", file=sys.stderr)
        return None
    if not os.path.exists(path):
        print(f"no {path}: minigan only (give --torch-ref)", file=sys.stderr)
        return None
    sys.path.insert(0, ref_dir)
    spec = importlib.util.spec_from_file_location("torch_pix2pix", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
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
    ap.add_argument("--torch-ref", default=os.path.join(HERE, "..", "..", "shared", "bench"))
    args = ap.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        ours, theirs = minigan_step(batch, args.gpu), torch_step(batch, args.gpu, args.torch_ref)
        for fn in (ours, theirs):
            if fn:
                timed(fn, args.warmup)
        t_ours, t_theirs = [], []
        while len(t_ours) < args.reps:
            t_ours += timed(ours, args.block)
            if theirs:
                t_theirs += timed(theirs, args.block)
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
