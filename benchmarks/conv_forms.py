"""A convolution's forward + backward (x- and W-gradients) with and without the window forms
(space_to_depth.py, conv_windows.py), alternating in one process (MINIGAN_BLAS=1 / 0), or with
and without Winograd's form of the 3 x 3 layers (winograd.py; MINIGAN_WINOGRAD=1 / 0).

    python benchmarks/conv_forms.py [--reps 5] [--batch 1,4,8] [--winograd]

The shapes: pix2pix's 4 x 4 stride-2 layers that take the space-to-depth form and its
neighbours below the threshold, and Lightweight GAN's 3 x 3 stride-1 ones. Prints the median
milliseconds of each form and the median over repetitions of their ratio (windows / im2col, or
winograd / windows).
"""
import argparse
import os
import statistics

import numpy

import ab
import minigan.functions as F
import reference
from minigan import Variable

# (name, transposed, C in, C out, image side, kernel, stride, pad)
LAYERS = [
    ("enc.c1", False, 64, 128, 256, 4, 2, 1), ("enc.c2", False, 128, 256, 128, 4, 2, 1),
    ("enc.c3", False, 256, 512, 64, 4, 2, 1), ("dec.c4", True, 1024, 256, 32, 4, 2, 1),
    ("dec.c5", True, 512, 128, 64, 4, 2, 1), ("dec.c6", True, 256, 64, 128, 4, 2, 1),
    ("3x3 128", False, 128, 128, 128, 3, 1, 1), ("3x3 256", False, 256, 256, 64, 3, 1, 1),
    ("3x3 64", False, 64, 64, 128, 3, 1, 1), ("3x3 512", False, 512, 512, 32, 3, 1, 1),
    ("3x3 64 256px", False, 64, 64, 256, 3, 1, 1), ("3x3 256 32px", False, 256, 256, 32, 3, 1, 1),
]


def step(n, deconv, cin, cout, size, k, s, p):
    """A closure of forward + backward of one layer on random float32 data."""
    rng = numpy.random.default_rng(0)
    x = Variable(rng.standard_normal((n, cin, size, size), dtype=numpy.float32))
    shape = (cin, cout, k, k) if deconv else (cout, cin, k, k)
    W = Variable(0.05 * rng.standard_normal(shape, dtype=numpy.float32))
    op = F.deconvolution_2d if deconv else F.convolution_2d

    def run():
        x.cleargrad()
        W.cleargrad()
        y = op(x, W, None, s, p)
        y.grad = numpy.ones_like(y.array)
        y.backward()
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--winograd", action="store_true",
                    help="Winograd against the window forms, on the 3 x 3 layers")
    reference.add_malloc_flag(ap)
    args = ap.parse_args(argv)
    print(reference.host_memory(args), reference.machine(), sep="\n", flush=True)
    env, names = (("MINIGAN_WINOGRAD", ("winograd", "windows")) if args.winograd else
                  ("MINIGAN_BLAS", ("windows", "im2col")))
    print(f"| layer | batch | {names[0]} ms | {names[1]} ms | {names[0]} / {names[1]} |")
    print("|---|---|---|---|---|")
    for n in (int(b) for b in args.batch.split(",")):
        for name, *layer in LAYERS:
            kernel = layer[4]
            if args.winograd and kernel != 3:
                continue
            times = ab.alternate(step(n, *layer), env, ("1", "0"), args.reps)
            ratio = ab.median_ratio(times["1"], times["0"])
            print(f"| {name} | {n} | {statistics.median(times['1']) * 1e3:.0f} | "
                  f"{statistics.median(times['0']) * 1e3:.0f} | {ratio:.2f} |", flush=True)
    os.environ.pop(env)


if __name__ == "__main__":
    main()
