"""im2col / col2im: the gathers that turn a convolution into one matrix product (GEMM), and the
choice of which form each convolution product takes (route).

Layout: col[n, c, i, j, y, x] = x[n, c, sy*y + dy*i - ph, sx*x + dx*j - pw] (0 outside the image),
i.e. (N, C, kh, kw, oh, ow), so that W (Cout, C*kh*kw) @ col (C*kh*kw, oh*ow) is already NCHW.
col2im is the adjoint: it sums every tap that lands on a pixel.

How the copies are made fast on the CPU (the measurements behind each step are in
benchmarks/README.md, "Why im2col is built as it is"):
- Phase split: in padded coordinates tap i reads row sy*y + dy*i, i.e. row y + (dy*i)//sy of the
  "phase" (dy*i) % sy of the image (its rows a, a+sy, a+2sy, ...). Splitting the padded image
  into its sy*sx phases once makes every tap copy a unit-stride window of one phase, and builds
  the padding into the phases (no padded copy of the whole image; a sliding window view or
  strided tap copies stream x from memory once per tap, and stride-2 reads waste half of it).
- Per block of channels (about 1 MB of image), so the phases stay in cache while the taps read
  them; smaller blocks lose more to Python overhead than they gain.
- The blocks are spread over threads (numpy releases the GIL in copies and adds), but only for
  big columns: below 16 MB the hand-off, and BLAS's threads still spinning after the GEMM before,
  cost more than they give.
- The columns go into a reused workspace: a fresh array costs page faults every call.
col2im mirrors it: per channel block, the taps of each phase are summed in one small cached
buffer (2x2 taps per phase for a 4x4 stride-2 kernel), then written once, strided, into the image
(instead of kh kw strided read-modify-writes of it).
On CuPy arrays both run as raw kernels instead (kernels/conv.cu, _conv_kernel below): one
launch each, one thread per output pixel (im2col) or image pixel (col2im, a gather: no atomics).
The NumPy work is done by gather and scatter on planes (B, H, W, ...), which may carry trailing
axes: im2col_last.py passes (C, H, W, N) images, the batch riding along in every copy.
"""
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy

from .. import backend, cuda

_CHUNK_BYTES = 1 << 20      # image bytes per block of channels (smaller blocks: more Python
                            # overhead than cache gain)
_PARALLEL_BYTES = 1 << 24   # below this many column bytes threads cost more than they give
_WORKSPACE_MAX = 1 << 30    # bigger temporaries are allocated afresh, not kept
_local = threading.local()
_pool = None
_pool_lock = threading.Lock()


def _forget_pool():
    global _pool
    _pool = None                # a forked child has no pool threads: make a new pool there


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def conv_outsize(size, k, s, p, d=1):
    """Output length of a convolution: floor((size + 2p - d(k-1) - 1) / s) + 1."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def deconv_outsize(size, k, s, p, d=1):
    """Default output length of a transposed convolution: s(size-1) + d(k-1) + 1 - 2p."""
    return s * (size - 1) + d * (k - 1) + 1 - 2 * p


def scratch(xp, shape, dtype, slot):
    """An uninitialised temporary; with NumPy, this thread's reused buffer `slot` (no page faults).

    It stays valid until the next scratch() call for the same slot in the same thread.
    """
    nbytes = math.prod(shape) * numpy.dtype(dtype).itemsize
    if xp is not numpy or nbytes > _WORKSPACE_MAX:
        return xp.empty(shape, dtype)
    bufs = _local.__dict__.setdefault("bufs", {})
    buf = bufs.get(slot)
    if buf is None or buf.nbytes < nbytes:
        buf = bufs[slot] = numpy.empty(max(nbytes, 64), numpy.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def _threads():
    return min(len(os.sched_getaffinity(0)), 8) if hasattr(os, "sched_getaffinity") else 1


def _run(fn, n, item_bytes, total_bytes, xp):
    """fn(lo, hi) over range(n) in blocks of ~_CHUNK_BYTES; in the thread pool for big work."""
    global _pool
    if xp is not numpy:
        return fn(0, n)
    per = max(1, _CHUNK_BYTES // max(item_bytes, 1))
    threads = _threads() if total_bytes >= _PARALLEL_BYTES else 1
    if threads > 1:
        per = min(per, -(-n // threads))
    blocks = [(lo, min(n, lo + per)) for lo in range(0, n, per)]
    if threads == 1 or len(blocks) == 1:
        for lo, hi in blocks:
            fn(lo, hi)
        return
    if _pool is None:
        with _pool_lock:
            _pool = _pool or ThreadPoolExecutor(_threads(), thread_name_prefix="minigan-im2col")
    for f in [_pool.submit(fn, lo, hi) for lo, hi in blocks]:
        f.result()


class _Geometry:
    """Where each tap reads, per axis: tap i reads phase a_i, rows r_i + y of it (y < out)."""

    def __init__(self, size, k, s, p, d, out):
        self.size, self.s, self.p, self.out = size, s, p, out
        self.phase = [(d * i) % s for i in range(k)]
        self.offset = [(d * i) // s for i in range(k)]
        self.length = max(self.offset) + out            # rows of a phase buffer

    def valid(self, a):
        """Range [m0, m1) of phase-a rows that lie inside the image, and the first image row."""
        m0 = max(0, -(-(self.p - a) // self.s))
        m1 = min(self.length, (self.size - 1 + self.p - a) // self.s + 1)
        return m0, max(m0, m1), a + self.s * m0 - self.p

    def covers(self):
        """True when the used phases' valid rows cover every image row."""
        used = set(self.phase)
        for a in range(self.s):
            n_rows = len(range((a - self.p) % self.s, self.size, self.s))
            m0, m1, _ = self.valid(a)
            if n_rows and (a not in used or m1 - m0 != n_rows):
                return False
        return True


def _fill_phase(x, P, gy, gx, a, b):
    """P = phase (a, b) of the zero-padded x (B, H, W, ...): P[m, q] = xpad[a + sy*m, b + sx*q]."""
    m0, m1, h0 = gy.valid(a)
    q0, q1, w0 = gx.valid(b)
    P[:, :m0] = 0
    P[:, m1:] = 0
    P[:, m0:m1, :q0] = 0
    P[:, m0:m1, q1:] = 0
    if m1 > m0 and q1 > q0:
        P[:, m0:m1, q0:q1] = x[:, h0:h0 + gy.s * (m1 - m0 - 1) + 1:gy.s,
                               w0:w0 + gx.s * (q1 - q0 - 1) + 1:gx.s]


def im2col(x, kh, kw, sy, sx, ph, pw, oh, ow, dy=1, dx=1, out=None):
    """(N, C, H, W) -> (N, C, kh, kw, oh, ow) columns; out may be a preallocated result."""
    if cuda.enabled(x):
        return _conv_kernel("im2col", x, x.shape[:2] + (kh, kw, oh, ow), x.shape[2:],
                            (sy, sx, ph, pw, dy, dx), out)
    xp = backend.get_array_module(x)
    N, C, H, W = x.shape
    col = xp.empty((N, C, kh, kw, oh, ow), x.dtype) if out is None else out
    gather(x.reshape(N * C, H, W), col.reshape(N * C, kh, kw, oh, ow), sy, sx, ph, pw, dy, dx)
    return col


def gather(xs, cols, sy, sx, ph, pw, dy=1, dx=1):
    """cols[b, i, j, y, x] = xs[b, sy y + dy i - ph, sx x + dx j - pw] (0 outside), in place.

    xs (B, H, W, ...) are planes that may carry trailing axes (the batch, in im2col_last), cols
    is (B, kh, kw, oh, ow, ...).
    """
    if cols.size == 0:
        return
    xp = backend.get_array_module(xs)
    H, W = xs.shape[1:3]
    kh, kw, oh, ow = cols.shape[1:5]
    gy, gx = _Geometry(H, kh, sy, ph, dy, oh), _Geometry(W, kw, sx, pw, dx, ow)
    # stride 1 without padding: the only phase is the image itself, no copy needed
    direct = sy == sx == 1 and ph == pw == 0
    phases = sorted({(a, b) for a in gy.phase for b in gx.phase})

    def block(lo, hi):
        src = {}
        for a, b in phases:
            if direct:
                src[a, b] = xs[lo:hi]
            else:
                P = scratch(xp, (hi - lo, gy.length, gx.length) + xs.shape[3:], xs.dtype,
                            f"phase{a},{b}")
                _fill_phase(xs[lo:hi], P, gy, gx, a, b)
                src[a, b] = P
        for i in range(kh):
            r = gy.offset[i]
            for j in range(kw):
                t = gx.offset[j]
                cols[lo:hi, i, j] = src[gy.phase[i], gx.phase[j]][:, r:r + oh, t:t + ow]

    _run(block, len(xs), xs[0].nbytes, cols.nbytes, xp)


def col2im(col, sy, sx, ph, pw, h, w, dy=1, dx=1, out=None):
    """(N, C, kh, kw, oh, ow) columns -> (N, C, h, w) image, summing overlapping taps."""
    if cuda.enabled(col):
        return _conv_kernel("col2im", col, col.shape[:2] + (h, w), (h, w),
                            (sy, sx, ph, pw, dy, dx), out)
    xp = backend.get_array_module(col)
    N, C, kh, kw, oh, ow = col.shape
    img = xp.empty((N, C, h, w), col.dtype) if out is None else out
    if img.size:
        scatter(col.reshape(N * C, kh, kw, oh, ow), img.reshape(N * C, h, w), sy, sx, ph, pw,
                dy, dx)
    return img


def scatter(cols, imgs, sy, sx, ph, pw, dy=1, dx=1):
    """The adjoint of gather: imgs (B, h, w, ...) = the sum of the taps in cols that land there."""
    xp = backend.get_array_module(cols)
    h, w = imgs.shape[1:3]
    kh, kw, oh, ow = cols.shape[1:5]
    gy, gx = _Geometry(h, kh, sy, ph, dy, oh), _Geometry(w, kw, sx, pw, dx, ow)
    if not (gy.covers() and gx.covers()):
        imgs[...] = 0           # some pixels receive no tap (e.g. stride > kernel)
    if cols.size == 0:
        return
    phases = sorted({(a, b) for a in gy.phase for b in gx.phase})

    def block(lo, hi):
        for a, b in phases:
            # one phase at a time: a single buffer, which stays in cache
            P = scratch(xp, (hi - lo, gy.length, gx.length) + imgs.shape[3:], cols.dtype, "acc")
            P[...] = 0
            # sum this phase's taps in the (cached) phase buffer, then write it once
            for i in range(kh):
                if gy.phase[i] != a:
                    continue
                r = gy.offset[i]
                for j in range(kw):
                    if gx.phase[j] == b:
                        t = gx.offset[j]
                        P[:, r:r + oh, t:t + ow] += cols[lo:hi, i, j]
            m0, m1, h0 = gy.valid(a)
            q0, q1, w0 = gx.valid(b)
            if m1 > m0 and q1 > q0:
                imgs[lo:hi, h0:h0 + sy * (m1 - m0 - 1) + 1:sy,
                     w0:w0 + sx * (q1 - q0 - 1) + 1:sx] = P[:, m0:m1, q0:q1]

    _run(block, len(imgs), imgs[0].nbytes, cols.nbytes, xp)


def _conv_kernel(name, a, out_shape, image_size, steps, out):
    """im2col or col2im of `a` by kernels/conv.cu, into out (or a new array).

    The grid strides over a plane's pixels along x (output pixels for im2col, image pixels for
    col2im) and over the N C planes along y; steps = (sy, sx, ph, pw, dy, dx).
    """
    xp = backend.get_array_module(a)
    a = xp.ascontiguousarray(a)
    res = out if out is not None and out.flags.c_contiguous else xp.empty(out_shape, a.dtype)
    cols = a.shape if name == "col2im" else out_shape        # (N, C, kh, kw, oh, ow)
    if a.size == 0:
        res[...] = 0                # col2im of no columns
    elif res.size:
        pixels = math.prod(cols[4:]) if name == "im2col" else math.prod(image_size)
        cuda.int32(math.prod(cols[2:]))             # a plane's columns use 32-bit offsets
        planes = cuda.int32(cols[0] * cols[1])
        grid = (cuda.grid_for(pixels), min(int(planes), cuda.max_grid_y))
        sizes = tuple(image_size) + tuple(cols[2:4]) + tuple(steps) + tuple(cols[4:])
        cuda.launch("conv", name, a.dtype, grid, cuda.threads_per_block,
                    (a, res, planes) + tuple(map(cuda.int32, sizes)))
    if out is not None and res is not out:
        out[...] = res
        res = out
    return res


# -- which form a convolution product takes ----------------------------------------------------
# The batch-last layout (im2col_last.py) wins from MIN_BATCH samples of at most MAX_COLUMNS GEMM
# columns each (the crossover, measured at 32 to 512 channels: benchmarks/README.md).
MAX_COLUMNS = 64
MIN_BATCH = 4


def flipped_pad(ksize, s, p, d):
    """The pad d(k-1) - p of a product's stride-1 flipped twin, or None where it has none.

    With stride 1 a convolution with pad p equals a transposed one with the kernel turned by 180
    degrees and pad d(k-1) - p, and back (convolution._flip_t)."""
    pads = tuple(di * (k - 1) - pi for k, pi, di in zip(ksize, p, d))
    return pads if s == (1, 1) and min(pads) >= 0 and tuple(ksize) != (1, 1) else None


def batch_last(x, groups, dilate, columns):
    """Whether x (N, C, H, W) goes batch-last, given the product's GEMM columns per sample."""
    # CuPy arrays (and the tests' emulated device arrays) keep to the raw kernels
    return (isinstance(x, numpy.ndarray) and not cuda.enabled(x) and groups == 1
            and dilate == (1, 1) and x.shape[0] >= MIN_BATCH and columns <= MAX_COLUMNS)


def route(x, ksize, s, p, d, groups, copies, flipped_copies, columns, col=None):
    """How one product of a convolution (y, its x-gradient or its W-gradient) runs:

      'nchw'        the reference: im2col, then one GEMM per sample and group
      'flipped'     its stride-1 twin with the kernel turned by 180 degrees, where that twin's
                    im2col copies fewer values (flipped_copies < copies, both per tap): columns
                    cost memory traffic, and that, not the GEMM, makes a conv slow when one side
                    has few channels
      'batch_last'  one GEMM over the whole batch (im2col_last.py), for many samples of few
                    GEMM columns each, where N small GEMMs run far below BLAS's rate

    col: columns of x already built (by a caller sharing them): then 'nchw'.
    """
    if col is not None:
        return "nchw"
    if flipped_pad(ksize, s, p, d) and flipped_copies < copies:
        return "flipped"
    if batch_last(x, groups, d, columns):
        return "batch_last"
    return "nchw"
