"""One training step under two or more settings of an environment variable, alternating every
iteration in one process, so the VM's drift hits each setting alike.

    python benchmarks/ab.py --env MINIGAN_BLAS=1,0 [--gan pix2pix] [--batch 1] [--reps 6]
    python benchmarks/ab.py --env MINIGAN_JIT=1,0 --gan lightweight --size 64 [--penalty]

The variables minigan reads on every call: MINIGAN_JIT (numba's loops), MINIGAN_BLAS (blas.py,
so the space-to-depth convolutions). Prints each setting's median and min, and the median over
iterations of its time over the first setting's.
"""
import argparse
import os
import statistics
import time

import breakdown
import reference


def alternate(step, name, values, reps):
    """{value: seconds of each step} with os.environ[name] = value, the values in turn per
    repetition, after one warm-up step under each (compilation, workspaces)."""
    times = {v: [] for v in values}
    for v in values:
        os.environ[name] = v
        step()
    for _ in range(reps):
        for v in values:
            os.environ[name] = v
            t = time.perf_counter()
            step()
            times[v].append(time.perf_counter() - t)
    return times


def median_ratio(times, base):
    """The median over repetitions of times[i] / base[i]."""
    return statistics.median(a / b for a, b in zip(times, base))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", required=True, help="NAME=value1,value2[,...]")
    ap.add_argument("--gan", choices=breakdown.GANS, default="pix2pix")
    ap.add_argument("--batch", type=int, default=None, help=breakdown.default_batch.__doc__)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--penalty", action="store_true",
                    help="Lightweight GAN's step with its gradient penalty on D")
    reference.add_malloc_flag(ap)
    args = ap.parse_args(argv)
    name, _, values = args.env.partition("=")
    values = values.split(",")
    if not name or len(values) < 2:
        ap.error("--env wants NAME=value1,value2")
    print(reference.host_memory(args), reference.machine(), sep="\n", flush=True)
    batch = args.batch or breakdown.default_batch(args.gan)
    step = breakdown.steps(args.gan, batch, args.size, args.penalty)
    times = alternate(step, name, values, args.reps)
    first = times[values[0]]
    print(f"{args.gan}, batch {batch}: {args.reps} iterations per setting, alternating")
    print(f"| {name} | median s/it | min s/it | / {name}={values[0]} (median of pairs) |")
    print("|---|---|---|---|")
    for v in values:
        print(f"| {v} | {statistics.median(times[v]):.3f} | {min(times[v]):.3f} | "
              f"{median_ratio(times[v], first):.3f} |")


if __name__ == "__main__":
    main()
