"""The GPU check in one command, within about 6 minutes: `pytest -m gpu`, then seconds per pix2pix
iteration (256 x 256, batch 1 and 16) in minigan and in PyTorch (cuDNN) on the same GPU,
DiffAugment forward + backward on 64 x 3 x 256 x 256 against the card's peak memory bandwidth,
and a Lightweight GAN step (128 px, batch 8, with and without the penalty) beside its twin.

    PYTHONPATH=. python benchmarks/gpu_check.py [--gpu 0] [--skip-tests] [--budget 360]

Needs CuPy, numpy, h5py, pillow, click, pytest; PyTorch (minigan only without it), matplotlib
(loss.png, skipped with a line without it) and tqdm are optional; it installs nothing. The PyTorch pix2pix is the shared reference torch_pix2pix.py, looked for in
$MINIGAN_TORCH_REF, shared/bench and ../shared/bench. Prints a Markdown table at the end.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import numpy

import reference

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
START = time.time()


def left(budget):
    return budget - (time.time() - START)


def run_tests(budget):
    """`pytest -m gpu` in a subprocess: its summary line and the seconds it took."""
    t = time.time()
    limit = max(30, min(170, left(budget) - 110))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p",
                            "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                           timeout=limit, env={**os.environ, "PYTHONPATH": ROOT})
        lines = (r.stdout + r.stderr).strip().splitlines()
        failures = [l for l in lines if l.startswith(("FAILED", "ERROR"))]
        print("\n".join(lines[-40:]), file=sys.stderr)
        summary = lines[-1].strip("= ") if lines else "no output"
        if failures:
            summary += "; " + "; ".join(failures[:5])
    except subprocess.TimeoutExpired:
        summary = f"timed out after {limit:.0f} s"
    return summary, time.time() - t


def seconds_per_step(step, budget, warmup=2, reps=5, reserve=60):
    """Median seconds of step() after warm-up, with fewer reps when time runs short."""
    for _ in range(warmup):
        step()
    times = []
    while len(times) < reps and (not times or left(budget) > reserve + 2 * max(times)):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def pix2pix_rows(gpu, budget):
    import pix2pix_speed as bench
    ref = reference.torch_ref_dir()
    rows = []
    for batch in (1, 16):
        if left(budget) < 60:
            rows.append((f"pix2pix 256x256, batch {batch}", "skipped: out of time"))
            continue
        ours = seconds_per_step(bench.minigan_step(batch, gpu), budget)
        theirs = bench.torch_step(batch, gpu, ref) if ref else None
        if theirs:
            t = seconds_per_step(theirs, budget)
            versus = f"PyTorch {t * 1e3:.1f} ms/it, minigan / PyTorch {ours / t:.2f}"
        else:
            versus = "PyTorch not measured (no torch, or no torch_pix2pix.py: set " \
                     "MINIGAN_TORCH_REF or copy the bench folder to shared/bench)"
        rows.append((f"pix2pix 256x256, batch {batch}", f"minigan {ours * 1e3:.1f} ms/it, {versus}"))
        _free_memory()
    return rows


def lightweight_rows(gpu, budget):
    """Lightweight GAN's step at 128 px, batch 8, with and without the penalty, beside the twin
    (issue 11's GPU target: <= 1.0x PyTorch eager)."""
    import lightweight_speed as bench
    try:
        import torch
    except ImportError:
        torch = None
    rows = []
    for gp in (False, True):
        name = f"Lightweight GAN 128 px, batch 8, {'with' if gp else 'no'} penalty"
        if left(budget) < 60:
            rows.append((name, "skipped: out of time"))
            continue
        ours, twin = bench.steps(128, 8, gp, gpu, torch=torch)
        t_m = seconds_per_step(ours, budget)
        if twin is None:
            rows.append((name, f"minigan {t_m * 1e3:.1f} ms/step, PyTorch not installed"))
        else:
            t_t = seconds_per_step(twin, budget)
            rows.append((name, f"minigan {t_m * 1e3:.1f} ms/step, PyTorch {t_t * 1e3:.1f} "
                               f"ms/step, minigan / PyTorch {t_m / t_t:.2f}"))
        _free_memory()
    return rows


def _free_memory():
    import cupy
    cupy.get_default_memory_pool().free_all_blocks()
    try:
        import torch
        torch.cuda.empty_cache()
    except ImportError:
        pass


def peak_bandwidth(cupy, gpu):
    """Peak memory bandwidth in bytes/s: 2 (double data rate) x clock x bus width."""
    props = cupy.cuda.runtime.getDeviceProperties(gpu)
    rt = cupy.cuda.runtime
    clock = props.get("memoryClockRate") or rt.deviceGetAttribute(rt.cudaDevAttrMemoryClockRate,
                                                                   gpu)
    bus = props.get("memoryBusWidth") or rt.deviceGetAttribute(rt.cudaDevAttrGlobalMemoryBusWidth,
                                                               gpu)
    name = props.get("name", b"")
    return 2 * clock * 1e3 * bus / 8, name.decode() if isinstance(name, bytes) else str(name)


def timed_gpu(cupy, fn, reps=20):
    """Median milliseconds of fn() by CUDA events."""
    fn()
    times = []
    for _ in range(reps):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def augment_rows(gpu):
    import cupy
    from minigan import augment
    shape = (64, 3, 256, 256)
    with cupy.cuda.Device(gpu):
        x = cupy.random.standard_normal(shape, dtype=cupy.float32)
        gy = cupy.random.standard_normal(shape, dtype=cupy.float32)
        p = augment.sample_params(shape, rng=numpy.random.RandomState(0))
        fwd = lambda: augment._kernel("diff_augment", x, p)
        bwd = lambda: augment._kernel("diff_augment_adjoint", gy, p)
        t_f, t_b = timed_gpu(cupy, fwd), timed_gpu(cupy, bwd)
        t_copy = timed_gpu(cupy, lambda: x.copy())
        peak, name = peak_bandwidth(cupy, gpu)
    # the least traffic a pass can have: read the input once, write the output once
    moved = 2 * x.nbytes
    rate = lambda ms: moved / (ms * 1e-3)
    fb = 2 * moved / ((t_f + t_b) * 1e-3)
    return [("GPU", f"{name}, peak memory bandwidth {peak / 1e9:.0f} GB/s, "
                    f"cupy copy {rate(t_copy) / 1e9:.0f} GB/s ({rate(t_copy) / peak:.0%})"),
            ("DiffAugment 64x3x256x256 forward", f"{t_f:.3f} ms, {rate(t_f) / 1e9:.0f} GB/s "
                                                 f"({rate(t_f) / peak:.0%} of peak)"),
            ("DiffAugment backward (adjoint)", f"{t_b:.3f} ms, {rate(t_b) / 1e9:.0f} GB/s "
                                               f"({rate(t_b) / peak:.0%} of peak)"),
            ("DiffAugment forward + backward", f"{t_f + t_b:.3f} ms, {fb / 1e9:.0f} GB/s "
                                               f"({fb / peak:.0%} of peak; GB/s count one read "
                                               f"and one write of the batch per pass)")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--budget", type=float, default=360, help="seconds for the whole check")
    args = ap.parse_args(argv)
    rows = []
    if not args.skip_tests:
        summary, seconds = run_tests(args.budget)
        rows.append(("pytest -m gpu", f"{summary} ({seconds:.0f} s)"))
    parts = [("DiffAugment", lambda: augment_rows(args.gpu)),
             ("pix2pix", lambda: pix2pix_rows(args.gpu, args.budget)),
             ("Lightweight GAN", lambda: lightweight_rows(args.gpu, args.budget))]
    for name, part in parts:
        try:
            rows += part()
        except Exception as e:      # report and go on: the table is the point
            message = re.sub(r"\s+", " ", f"{type(e).__name__}: {e}")[:300]
            rows.append((name, f"error: {message}"))
    print(f"\nminigan GPU check (GPU {args.gpu}, {time.time() - START:.0f} s)\n")
    print("| check | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
