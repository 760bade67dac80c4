"""Seconds to compute the FID features (EfficientNet-lite0, 1280-d; or Inception-v3, 2048-d) of
N images, minigan beside its PyTorch twin.

The images (faces64 from the shared data, or any --data folder) are decoded and resized once, as
minigan.metrics prepares them for the network (224 x 224 PIL bicubic on float pixels; 299 x 299
bilinear for Inception); that step is timed on its own. Then the two networks take the same
batches, no gradient, in stretches of 5
batches in turn, ABBA (this VM's speed drifts, so only figures taken side by side compare),
with a pause at each switch: run right after the other, each meets the other's threads still
spinning (minigan right after PyTorch, batch 50: 7.5 s against 6.8 s after a 0.5 s pause). The PyTorch twin is
the one tests/test_efficientnet.py builds from torch.nn modules and the same .pth file (loaded
by path). The features of the two are compared as a check.

--features inception times pytorch-fid's Inception-v3 with the random weights of
tests/inception_twin.py (the real file needs `python cli.py download inception`; the speed does
not depend on the weights): minigan's network is built from the twin's state dict.

--taps N also times what ProjectedGAN asks of the network: the four feature maps of N random
256 x 256 images and the gradient of a weighted sum of them w.r.t. the images (no weight
gradients), a few reps each.

Usage: python benchmarks/fid_speed.py [--n 1000] [--batch 50] [--threads 2] [--data DIR]
                                      [--no-torch] [--taps 8] [--features inception]
(minigan as installed: pip install -e ., or PYTHONPATH=. without the install)
"""
import argparse
import os
import time

import numpy

import minigan
import reference
from minigan import metrics
from minigan.models import weights
from minigan.models.efficientnet_lite import efficientnet_lite0

DATA = os.environ.get("MINIGAN_TEST_DATA") or reference.shared_dir("data")


def load_twin(threads):
    """The PyTorch twin of tests/test_efficientnet.py, in eval mode."""
    import torch
    torch.set_num_threads(threads)
    return reference.tests_module("test_efficientnet").twin(torch, weights.efficientnet_lite0_file())


def torch_features(threads):
    """x -> pooled features with the twin."""
    import torch
    model = load_twin(threads)

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x), resize=False)[0].numpy()
    return run


def torch_taps(threads):
    """x -> d sum_i <taps_i(x), r_i> / dx with the twin."""
    import torch
    net = load_twin(threads)

    def run(x, rs):
        xt = torch.from_numpy(x).requires_grad_()
        taps = net(xt, resize=False)[1]
        sum((t * torch.from_numpy(r)).sum() for t, r in zip(taps, rs)).backward()
        return xt.grad.numpy()
    return run


def minigan_taps():
    """x -> d sum_i <taps_i(x), r_i> / dx with minigan."""
    net = efficientnet_lite0()

    def run(x, rs):
        xv = minigan.Variable(x)
        return minigan.grad(net.taps(xv), [xv], list(rs))[0].array
    return run


def time_taps(n, reps, use_torch, threads):
    """Print the best of reps of both, side by side."""
    rng = numpy.random.RandomState(0)
    x = rng.uniform(-1, 1, (n, 3, 256, 256)).astype(numpy.float32)
    shapes = [(n, 24, 64, 64), (n, 40, 32, 32), (n, 112, 16, 16), (n, 320, 8, 8)]
    rs = [rng.standard_normal(s).astype(numpy.float32) for s in shapes]
    runs = {"minigan": minigan_taps()}
    if use_torch:
        runs["pytorch"] = torch_taps(threads)
    best, grads = {}, {}
    for name, run in runs.items():
        grads[name] = run(x, rs)            # warm-up
    for rep in range(reps):
        for name in (list(runs) if rep % 2 == 0 else list(runs)[::-1]):
            time.sleep(0.5)                     # let the other's threads stop spinning
            t = time.perf_counter()
            runs[name](x, rs)
            best[name] = min(best.get(name, 1e9), time.perf_counter() - t)
    print(f"ProjectedGAN maps + input gradient, {n} x 3 x 256 x 256 (best of {reps}):")
    for name, s in best.items():
        print(f"  {name:8s} {s:8.3f} s")
    if use_torch:
        g, e = grads["minigan"], grads["pytorch"]
        print(f"  ratio minigan / pytorch: {best['minigan'] / best['pytorch']:.2f}   "
              f"(max |gradient difference| / max |gradient| "
              f"{numpy.abs(g - e).max() / numpy.abs(e).max():.1e}: float32, ReLU6 kinks)")


def minigan_features(net):
    """x -> pooled features with minigan's net."""
    def run(x):
        with minigan.no_backprop_mode():
            return net(x, resize=False).array
    return run


def inception_pair(threads, use_torch):
    """{name: x -> features} of minigan's Inception-v3 and the test twin, the twin's weights."""
    import torch
    from minigan.models.inception import InceptionV3
    torch.set_num_threads(threads)
    twin = reference.tests_module("inception_twin").build(torch)
    runs = {"minigan": minigan_features(
        InceptionV3({k: v.numpy() for k, v in twin.state_dict().items()}))}

    def run(x):                       # the twin takes pytorch-fid's [0, 1] input
        with torch.no_grad():
            return twin(torch.from_numpy((x + 1) / 2), resize=False).numpy()
    if use_torch:
        runs["pytorch"] = run
    return runs


def feature_runs(args):
    """{name: x -> features} of the chosen network in minigan and, unless --no-torch, torch."""
    if args.features == "inception":
        return inception_pair(args.threads, not args.no_torch)
    runs = {"minigan": minigan_features(efficientnet_lite0())}
    if not args.no_torch:
        runs["pytorch"] = torch_features(args.threads)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="images")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--data", default=os.path.join(DATA, "faces64"))
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--taps", type=int, default=0, metavar="N",
                    help="also time ProjectedGAN's maps + input gradient for N images")
    ap.add_argument("--reps", type=int, default=3, help="with --taps")
    ap.add_argument("--features", choices=("efficientnet-lite0", "inception"),
                    default="efficientnet-lite0")
    reference.add_malloc_flag(ap)
    args = ap.parse_args()
    print(reference.host_memory(args), reference.machine(), sep="\n", flush=True)
    _, size, label, prepare = metrics.FEATURES[args.features]

    files = metrics.folder_files(args.data)
    files = (files * (args.n // len(files) + 1))[:args.n]
    t = time.perf_counter()
    x = numpy.stack([metrics.read_image(f, size, prepare) for f in files])
    prep = time.perf_counter() - t
    print(f"{args.n} images from {args.data}: decode + resize to {size} {prep:.2f} s "
          f"({prep / args.n * 1e3:.1f} ms per image)")

    runs = feature_runs(args)
    for run in runs.values():             # warm up: workspaces, threads, caches
        run(x[:args.batch])
    seconds = dict.fromkeys(runs, 0.0)
    feats = {k: [None] * len(range(0, args.n, args.batch)) for k in runs}
    batches = [numpy.ascontiguousarray(x[lo:lo + args.batch]) for lo in range(0, args.n,
                                                                             args.batch)]
    # stretches of 5 batches in turn, the order flipped each time (A B B A ...), with a pause
    # at each switch: a framework run right after the other meets its threads still spinning
    for k, lo in enumerate(range(0, len(batches), 5)):
        for name in (list(runs) if k % 2 == 0 else list(runs)[::-1]):
            time.sleep(0.5)
            t = time.perf_counter()
            for i in range(lo, min(lo + 5, len(batches))):
                feats[name][i] = runs[name](batches[i])
            seconds[name] += time.perf_counter() - t

    print(f"{label} features of {args.n} images, batch {args.batch} (noisy: the CPU is shared):")
    for name, s in seconds.items():
        print(f"  {name:8s} {s:8.2f} s   {s / args.n * 1e3:6.1f} ms per image")
    if "pytorch" in seconds:
        a, b = (numpy.concatenate(feats[k]) for k in ("minigan", "pytorch"))
        print(f"  ratio minigan / pytorch: {seconds['minigan'] / seconds['pytorch']:.2f}   "
              f"(max |feature difference| {numpy.abs(a - b).max():.2e})")
    if args.taps:
        time_taps(args.taps, args.reps, not args.no_torch, args.threads)


if __name__ == "__main__":
    main()
