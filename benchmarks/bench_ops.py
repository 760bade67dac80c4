"""Per-layer forward+backward times of pix2pix's convolutions in minigan and PyTorch, side by side.

Each row runs one layer of mattya/chainer-pix2pix's U-net generator at batch 1, 256x256 input, as
in training: the forward pass, then the gradients of the input and of the weights (and bias).
Batch normalization (train mode, forward + backward) follows at each layer's output size when
F.batch_normalization exists. minigan and PyTorch alternate rep by rep in the same run, since
this VM's speed drifts by about 15%; the table shows medians and the ratio minigan / torch.

Usage: python benchmarks/bench_ops.py [--reps 5] [--warmup 2] [--layers enc,dec.c6,bn]
                                      [--threads 2] [--batch 1] [--no-torch] [--wait-idle 30]
                                      [--gemm]
--gemm adds each layer's three products as bare GEMMs over the batch (gemm_case): the floor of
an im2col-based form of the layer's shapes, beside PyTorch's time.
"""
import argparse
import os
import statistics
import sys
import time

import numpy

import minigan.functions as F
from minigan.core import Variable

import reference


def pix2pix_layers():
    """(name, kind, cin, cout, k, s, p, input size) of the generator's convolutions.

    As flops.py and torch_pix2pix.py in the shared bench folder: enc.c7 maps 4x4 to 2x2, so the
    decoder's deconvolutions take 2, 4, ..., 128 pixels; dec.c7 is the last 3x3 conv.
    """
    layers = [("enc.c0", "conv", 12, 64, 3, 1, 1, 256)]
    ch, size = [64, 128, 256, 512, 512, 512, 512, 512], 256
    for i in range(7):
        layers.append((f"enc.c{i + 1}", "conv", ch[i], ch[i + 1], 4, 2, 1, size))
        size //= 2
    dec = [(512, 512), (1024, 512), (1024, 512), (1024, 512), (1024, 256), (512, 128), (256, 64)]
    for i, (ci, co) in enumerate(dec):
        layers.append((f"dec.c{i}", "deconv", ci, co, 4, 2, 1, size))
        size *= 2
    layers.append(("dec.c7", "conv", 128, 3, 3, 1, 1, size))   # no batch norm after it
    return layers


def out_size(kind, k, s, p, size):
    return (size + 2 * p - k) // s + 1 if kind == "conv" else s * (size - 1) + k - 2 * p


def gflop(kind, cin, cout, k, size, osize, n):
    """Forward + grad-input + grad-weight FLOPs, 2 per multiply-add (padding included)."""
    pixels = osize if kind == "conv" else size
    return 3 * 2 * n * cin * cout * k * k * pixels ** 2 / 1e9


def minigan_case(kind, cin, cout, k, s, p, size, n, rng):
    x = Variable(rng.standard_normal((n, cin, size, size), dtype=numpy.float32))
    shape = (cout, cin, k, k) if kind == "conv" else (cin, cout, k, k)
    W = Variable((0.02 * rng.standard_normal(shape)).astype(numpy.float32))
    b = Variable(numpy.zeros(cout, numpy.float32))
    op = F.convolution_2d if kind == "conv" else F.deconvolution_2d
    gy = rng.standard_normal((n, cout) + (out_size(kind, k, s, p, size),) * 2, dtype=numpy.float32)

    def step():
        for v in (x, W, b):
            v.cleargrad()
        y = op(x, W, b, stride=s, pad=p)
        y.grad = gy
        y.backward()
    return step


def torch_case(torch, kind, cin, cout, k, s, p, size, n):
    tf = torch.nn.functional
    x = torch.randn(n, cin, size, size, requires_grad=True)
    shape = (cout, cin, k, k) if kind == "conv" else (cin, cout, k, k)
    W = (0.02 * torch.randn(shape)).requires_grad_()
    b = torch.zeros(cout, requires_grad=True)
    op = tf.conv2d if kind == "conv" else tf.conv_transpose2d
    gy = torch.randn((n, cout) + (out_size(kind, k, s, p, size),) * 2)

    def step():
        y = op(x, W, b, stride=s, padding=p)
        torch.autograd.grad(y, (x, W, b), gy)
    return step


def gemm_case(kind, cin, cout, k, size, osize, n, rng):
    """The layer's three products as bare GEMMs over the whole batch, their operands ready:
    y = W col, gcol = W^T gy, gW = gy col^T with col (K, N P). What an im2col-based form of
    these shapes would cost with its copies free, so a 4 x 4 stride-2 row whose GEMMs alone
    exceed PyTorch's convolution cannot reach it by any such form. (A stride-1 layer's flipped
    twin multiplies other shapes: dec.c7's 128 -> 3 runs below this.)"""
    # a transposed convolution is the x-gradient of the convolution from its output side
    co, ci, pixels = (cout, cin, osize) if kind == "conv" else (cin, cout, size)
    f32 = numpy.float32
    W = rng.standard_normal((co, ci * k * k), dtype=f32)
    col = rng.standard_normal((ci * k * k, n * pixels ** 2), dtype=f32)
    gy = rng.standard_normal((co, n * pixels ** 2), dtype=f32)
    y, gcol, gW = numpy.empty_like(gy), numpy.empty_like(col), numpy.empty_like(W)

    def step():
        numpy.matmul(W, col, out=y)
        numpy.matmul(W.T, gy, out=gcol)
        numpy.matmul(gy, col.T, out=gW)
    return step


def minigan_bn_case(c, size, n, rng):
    x = Variable(rng.standard_normal((n, c, size, size), dtype=numpy.float32))
    gamma, beta = Variable(numpy.ones(c, numpy.float32)), Variable(numpy.zeros(c, numpy.float32))
    mean, var = numpy.zeros(c, numpy.float32), numpy.ones(c, numpy.float32)
    gy = rng.standard_normal(x.shape, dtype=numpy.float32)

    def step():
        for v in (x, gamma, beta):
            v.cleargrad()
        y = F.batch_normalization(x, gamma, beta, eps=2e-5, running_mean=mean, running_var=var,
                                  decay=0.9)
        y.grad = gy
        y.backward()
    return step


def torch_bn_case(torch, c, size, n):
    x = torch.randn(n, c, size, size, requires_grad=True)
    gamma, beta = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)
    mean, var = torch.zeros(c), torch.ones(c)
    gy = torch.randn(x.shape)

    def step():
        y = torch.nn.functional.batch_norm(x, mean, var, gamma, beta, True, 0.1, 2e-5)
        torch.autograd.grad(y, (x, gamma, beta), gy)
    return step


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cpu_jiffies():
    """(busy, total) CPU jiffies of the whole machine, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(n) for n in f.readline().split()[1:]]
    except OSError:
        return None
    return sum(v) - v[3] - v[4], sum(v)


def wait_idle(limit_s, threshold=0.05):
    """Wait up to limit_s until other processes use under `threshold` of the CPUs for 1 s."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        j0 = _cpu_jiffies()
        if j0 is None:
            return
        time.sleep(1.0)
        j1 = _cpu_jiffies()
        if (j1[0] - j0[0]) <= threshold * max(1, j1[1] - j0[1]):
            return


def measure_pair(a, b, warmup, reps):
    """Median seconds of a() and b(), alternating rep by rep so that drift hits both alike.

    Each timed call follows an untimed call of the same side: a side's first call after the
    other's pays for the other's threads winding down (PyTorch's OpenMP threads spin after a
    parallel region) and for waking its own, which on a 2-core machine is most of a short row
    (a 4.9 ms batch norm read 8.7 ms right after PyTorch's, and PyTorch's 5.5 read 6.6). Before
    that call the machine idles reference.SETTLE_S, longer than OpenBLAS's threads spin after
    a GEMM (reference.alternate).

    Also returns the share of the machine's CPU time that other processes used meanwhile
    (other helpers' test runs on a shared 2-core VM make a row meaningless).
    """
    for _ in range(warmup):
        a()
        b and b()
    ta, tb = [], []
    j0, t0 = _cpu_jiffies(), os.times()
    for _ in range(reps):
        time.sleep(reference.SETTLE_S)      # OpenBLAS's idle threads spin ~2^28 cycles
        a()
        ta.append(timed(a))
        if b:
            time.sleep(reference.SETTLE_S)
            b()
            tb.append(timed(b))
    j1, t1 = _cpu_jiffies(), os.times()
    foreign = None
    if j0 and j1 and j1[1] > j0[1]:
        ours = (t1.user + t1.system - t0.user - t0.system) * os.sysconf("SC_CLK_TCK")
        foreign = max(0.0, (j1[0] - j0[0] - ours) / (j1[1] - j0[1]))
    return statistics.median(ta), (statistics.median(tb) if b else None), foreign


def _row(name, shape, gf, tm, tt, tg=None):
    """One table line: times in ms, ratio minigan / torch, minigan's GFLOP/s; with tg (--gemm)
    the bare GEMMs' ms and their ratio to torch."""
    ratio = f"{tm / tt:6.2f}" if tt else "     -"
    flops = f"{gf:6.2f}" if gf else " " * 6
    rate = f"{gf / tm:8.1f}" if gf else " " * 8
    torch_ms = f"{tt * 1e3:9.2f}" if tt else " " * 8 + "-"
    gemm = ""
    if tg:
        gemm = f" {tg * 1e3:8.2f} " + (f"{tg / tt:8.2f}" if tt else " " * 7 + "-")
    return f"{name:<10} {shape:<34} {flops} {tm * 1e3:9.2f} {torch_ms} {ratio} {rate}{gemm}"


def environment(torch):
    lines = [f"python {sys.version.split()[0]}, numpy {numpy.__version__}"]
    try:
        import threadpoolctl
        for info in threadpoolctl.threadpool_info():
            lines.append(f"  {info['internal_api']} {info.get('version')} "
                         f"({info.get('architecture')}), {info['num_threads']} threads: "
                         f"{os.path.basename(info['filepath'])}")
    except ImportError:
        lines.append("  (pip install threadpoolctl to report the BLAS in use)")
    if torch is not None:
        lines.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--layers", default="",
                    help="comma-separated name prefixes, e.g. enc.c1,dec,bn (default: all)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--gemm", action="store_true",
                    help="also time each layer's three products as bare GEMMs over the batch "
                         "(gemm_case)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="before each row, wait up to S seconds for other processes to go idle")
    reference.add_malloc_flag(ap)
    args = ap.parse_args(argv)
    print(reference.host_memory(args), reference.machine(), sep="\n", flush=True)

    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            print("PyTorch is not installed: minigan times only (pip install torch==2.13.0)")
    print(environment(torch))
    wanted = [w for w in args.layers.split(",") if w]
    pick = lambda name: not wanted or any(name.startswith(w) for w in wanted)  # noqa: E731
    bn_error = (None if hasattr(F, "batch_normalization") else
                "F.batch_normalization is not available yet")
    rng = numpy.random.default_rng(0)
    rows, n = [], args.batch

    for name, kind, cin, cout, k, s, p, size in pix2pix_layers():
        osize = out_size(kind, k, s, p, size)
        if pick(name):
            wait_idle(args.wait_idle)
            a = minigan_case(kind, cin, cout, k, s, p, size, n, rng)
            b = torch and torch_case(torch, kind, cin, cout, k, s, p, size, n)
            g = args.gemm and gemm_case(kind, cin, cout, k, size, osize, n, rng)
            rows.append((name, f"{kind} {cin}->{cout} k{k}s{s}p{p} {size}->{osize}",
                         gflop(kind, cin, cout, k, size, osize, n),
                         *measure_pair(a, b, args.warmup, args.reps),
                         g and measure_pair(g, None, args.warmup, args.reps)[0]))
        bn = "bn." + name
        if bn_error is None and pick(bn) and name != "dec.c7":
            wait_idle(args.wait_idle)
            a = minigan_bn_case(cout, osize, n, rng)
            b = torch and torch_bn_case(torch, cout, osize, n)
            try:
                rows.append((bn, f"batchnorm {cout}x{osize}x{osize}", None,
                             *measure_pair(a, b, args.warmup, args.reps), None))
            except Exception as e:      # another module's work in progress must not hide ours
                bn_error = f"F.batch_normalization failed: {type(e).__name__}: {e}"

    print(f"\nbatch {n}, forward + backward (grads of x, W, b), median of {args.reps} reps "
          f"after {args.warmup} warm-up, ms")
    print(f"{'layer':<10} {'shape':<34} {'GFLOP':>6} {'minigan':>9} {'torch':>9} {'ratio':>6} "
          f"{'GFLOP/s':>8}" + (f" {'GEMM':>8} {'/ torch':>8}" if args.gemm else "")
          + f" {'other load':>10}")
    noisy = []
    for group in ("conv", "bn"):
        sel = [r for r in rows if r[0].startswith("bn.") == (group == "bn")]
        for name, shape, gf, tm, tt, foreign, tg in sel:
            if foreign and foreign > 0.05:
                noisy.append(name)
            load = "" if foreign is None else f"{100 * foreign:9.0f}%"
            print(_row(name, shape, gf, tm, tt, tg) + f" {load}")
        if sel:
            print(_row(f"sum {group}", "", sum(r[2] or 0 for r in sel), sum(r[3] for r in sel),
                       sum(r[4] or 0 for r in sel), sum(r[6] or 0 for r in sel)))
    if noisy:
        print(f"other processes used more than 5% of the CPUs during: {', '.join(noisy)}; "
              "rerun when the machine is idle")
    if bn_error:
        print(f"batch normalization rows skipped: {bn_error}")


if __name__ == "__main__":
    main()
