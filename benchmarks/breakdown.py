"""Where a minigan training iteration spends its time, beside the floor of the same run.

    python benchmarks/breakdown.py [--gan pix2pix|dcgan|lightweight|projected] [--batch 1]
                                   [--size 128] [--penalty] [--iterations 3]

Runs the step under cProfile and files each function's own time under one row:

  GEMM            numpy.matmul (the convolutions' and linear layers' products) and blas.gemm
                  (the window convolutions'), with the FLOPs they did (counted per
                  call: 2 m n k) and the GFLOP/s they reached, against numpy's sgemm 2048^3
                  rate measured in the same run
  im2col/col2im   minigan/functions/im2col*.py (the gathers feeding the GEMMs), with the wait
                  on its thread pool, where the big gathers run
  depthwise       minigan/functions/depthwise*.py (EfficientNet-lite0's kxk per channel)
  normalization   minigan/functions/normalization.py and norm_jit.py
  optimizer       minigan/optimizers.py (Adam's update)
  other ops       the rest of minigan/functions/ and numpy's element-wise work they call
  engine          minigan/core.py (graph, backprop) and the links' Python

numba's compiled loops (minigan[jit]) run through jit.over_blocks, in im2col's thread pool for
big arrays; their wall time, taken outside the profiler, goes to the row of the op that ran them.

cProfile adds its own overhead to every Python call (the engine row most), so the rows are
shares of a slowed-down run; the wall time without the profiler is printed beside them.
"""
import argparse
import cProfile
import os
import pstats
import sys
import time

import numpy

import reference

ROWS = ("GEMM", "im2col/col2im", "depthwise", "normalization", "optimizer", "other ops",
        "engine")
GANS = ("pix2pix", "dcgan", "lightweight", "projected")


def default_batch(gan):
    """Each speed benchmark's own batch: 1 for pix2pix, 64 for DCGAN, 8 for the others."""
    return {"pix2pix": 1, "dcgan": 64}.get(gan, 8)


def _row(filename, name):
    """The row a profiled function belongs to. A ufunc's time (numpy.matmul's, an add's) counts
    as its Python caller's own time: the wrapper below is the GEMM row, and the element-wise
    work lands with the op that asked for it."""
    path = filename.replace(os.sep, "/")
    if path.endswith("benchmarks/breakdown.py") and name == "__call__" or \
            path.endswith("/minigan/functions/blas.py"):        # its ctypes call: its own time
        return "GEMM"
    if "/minigan/functions/im2col" in path or name == "<method 'acquire' of '_thread.lock' " \
            "objects>":
        # the step waits on a lock only for im2col's thread pool (im2col._run), whose threads'
        # work cProfile does not see: the wait is that work
        return "im2col/col2im"
    if "/minigan/functions/depthwise" in path:
        return "depthwise"
    if "/minigan/functions/normalization" in path or "/minigan/functions/norm_jit" in path:
        return "normalization"
    if "/minigan/optimizers" in path:
        return "optimizer"
    if "/minigan/core" in path or "/minigan/links/" in path or "/minigan/gans/" in path:
        return "engine"
    return "other ops"


class CountingMatmul:
    """numpy.matmul (or blas.gemm), counting the FLOPs of each product (2 m n k per matrix,
    times the batch); `flops` may be shared with another counter."""

    def __init__(self, matmul, flops=None):
        self.matmul, self.flops = matmul, flops if flops is not None else [0]

    def __call__(self, a, b, *args, **kwargs):
        a_, b_ = numpy.asarray(a), numpy.asarray(b)
        if a_.ndim >= 2 and b_.ndim >= 2:
            batch = numpy.broadcast_shapes(a_.shape[:-2], b_.shape[:-2])
            self.flops[0] += 2 * int(numpy.prod(batch)) * a_.shape[-2] * a_.shape[-1] * \
                b_.shape[-1]
        return self.matmul(a, b, *args, **kwargs)


def sgemm_rate(n=2048):
    """numpy float32 GEMM GFLOP/s at n^3, best of 3."""
    a = numpy.random.rand(n, n).astype(numpy.float32)
    a @ a
    best = min(_seconds(lambda: a @ a) for _ in range(3))
    return 2 * n ** 3 / best / 1e9


def _seconds(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _loops_outside(profile, rows):
    """A stand-in for jit.over_blocks that runs the loops unprofiled and adds their wall time to
    the row of the first caller outside the *jit.py files (else the pool's waits would land in
    im2col's row)."""
    from minigan.functions import jit

    def over_blocks(*args):
        profile.disable()
        t = time.perf_counter()
        try:
            return jit._run(*args, numpy)
        finally:
            dt = time.perf_counter() - t
            f = sys._getframe(1)
            while f.f_back is not None and f.f_code.co_filename.endswith("jit.py"):
                f = f.f_back
            rows[_row(f.f_code.co_filename, f.f_code.co_name)] += dt
            profile.enable()
    return over_blocks


def breakdown(step, iterations):
    """(seconds per row per iteration, GEMM FLOPs per iteration, wall s/it without profiling)."""
    from minigan.functions import blas, jit, norm_jit
    step()                                           # warm-up: workspaces, caches
    wall = min(_seconds(step) for _ in range(iterations))
    counting = CountingMatmul(numpy.matmul)
    numpy.matmul = counting                          # the ops call xp.matmul: counted
    blas.gemm = CountingMatmul(blas.gemm, counting.flops)
    profile = cProfile.Profile()
    rows = dict.fromkeys(ROWS, 0.0)
    plain = jit.over_blocks
    jit.over_blocks = norm_jit.over_blocks = _loops_outside(profile, rows)
    try:
        profile.enable()
        for _ in range(iterations):
            step()
        profile.disable()
    finally:
        numpy.matmul = counting.matmul
        blas.gemm = blas.gemm.matmul
        jit.over_blocks = norm_jit.over_blocks = plain
    rows = {k: v / iterations for k, v in rows.items()}
    for (filename, _, name), (_, _, tottime, _, _) in pstats.Stats(profile).stats.items():
        rows[_row(filename, name)] += tottime / iterations
    return rows, counting.flops[0] / iterations, wall


def steps(gan, batch, size, penalty=False):
    """A closure of one training iteration of `gan` on a fixed random batch (the step its speed
    benchmark times; size for Lightweight GAN and ProjectedGAN, penalty for Lightweight GAN's)."""
    if gan == "pix2pix":
        import pix2pix_speed
        return pix2pix_speed.minigan_step(batch, -1)
    if gan == "dcgan":
        import dcgan_speed
        return dcgan_speed.minigan_step(batch)
    if gan == "lightweight":
        import lightweight_speed as S
        c, G, D, opts, inputs = S.case(size, batch)
        return lambda: S.minigan_step(c, G, D, opts, *inputs, penalty)
    import projected_speed as S
    c, models, opts, x = S.case(size, batch)
    return lambda: S.minigan_step(c, models, opts, x)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gan", choices=GANS, default="pix2pix")
    ap.add_argument("--batch", type=int, default=None, help=default_batch.__doc__)
    ap.add_argument("--size", type=int, default=128, help="Lightweight GAN's and ProjectedGAN's")
    ap.add_argument("--penalty", action="store_true",
                    help="Lightweight GAN's step with its gradient penalty")
    ap.add_argument("--iterations", type=int, default=3)
    reference.add_malloc_flag(ap)
    args = ap.parse_args(argv)
    if args.penalty and args.gan != "lightweight":
        ap.error("--penalty is Lightweight GAN's (--gan lightweight)")
    print(reference.host_memory(args), reference.machine(), sep="\n", flush=True)
    if args.batch is None:
        args.batch = default_batch(args.gan)
    rate = sgemm_rate()
    rows, flops, wall = breakdown(steps(args.gan, args.batch, args.size, args.penalty),
                                  args.iterations)
    total = sum(rows.values())
    at = f", {args.size} px" if args.gan in ("lightweight", "projected") else ""
    at += ", with the penalty" if args.penalty else ""
    print(f"{args.gan}, batch {args.batch}{at}: {wall:.3f} s/it without the profiler, {total:.3f} "
          f"s/it under it; numpy sgemm 2048^3: {rate:.0f} GFLOP/s")
    print("| row | s/it (profiled) | share | note |")
    print("|---|---|---|---|")
    for name in ROWS:
        note = ""
        if name == "GEMM" and rows[name] > 0:
            achieved = flops / rows[name] / 1e9
            note = (f"{flops / 1e9:.1f} GFLOP at {achieved:.0f} GFLOP/s = {achieved / rate:.0%} "
                    f"of sgemm; at the sgemm rate {flops / 1e9 / rate:.3f} s (the GEMM floor)")
        print(f"| {name} | {rows[name]:.3f} | {rows[name] / total:.0%} | {note} |")


if __name__ == "__main__":
    main()
