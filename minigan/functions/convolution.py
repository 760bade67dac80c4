"""2-D convolution and transposed convolution: im2col + one GEMM, col2im for the transpose.

Notation: x (N, C, H, W), W (Cout, C/G, kh, kw), y (N, Cout, oh, ow), G groups, s stride, p pad,
d dilation; K = (C/G) kh kw is the reduction length and P = oh ow the number of output pixels.

  convolution    y[n, o]  = W[o] (K) . col(x)[n, :, y, x] + b[o]  ->  y = W (Cout, K) @ col (K, P)
  its x-gradient gx       = col2im(W^T (K, Cout) @ gy (Cout, P))      = deconvolution_2d(gy, W)
  its W-gradient gW       = gy (Cout, P) @ col(x)^T (P, K)           = Convolution2DGradW(x, gy)

The transposed convolution (deconvolution_2d) is the x-gradient of a convolution, so its forward
is GEMM + col2im and its gradients are a convolution (gx) and Convolution2DGradW (gW). Every
backward is written with these three differentiable nodes, so every order of derivative works.

A kernel that covers the unpadded image (one output pixel; or, transposed, a 1 x 1 input) is a
linear layer: each product is then one GEMM over the batch in NCHW as it is (_is_dense; DCGAN's
first and last layers). Otherwise each product opens with the plain path above; im2col.route
picks one of two faster forms where they pay, and every form is tested equal to the plain one
to every order:
- 'flipped': with stride 1 a convolution equals a transposed one with the kernel turned by 180
  degrees (_flip_t), so a product builds the fewer columns, C kh kw per output pixel or Cout kh kw
  per input pixel (pix2pix's last 128 -> 3 layer; never a dense product such as DCGAN's
  ConvT(100 -> 128) from 1 x 1, whose padded 7 x 7 twin would do 16 times the work);
- 'batch_last': N samples of few output pixels in a (C, H, W, N) layout, one GEMM for the whole
  batch (im2col_last.py).
Before the route, a product on big images with enough channels on both sides builds no columns:
a 4 x 4 stride-2 pad-1 one takes space_to_depth.py's form (four GEMMs over windows of the image's
phases), a stride-1 one conv_windows.py's (kh kw GEMMs over windows of the padded image), and
a 3 x 3 stride-1 one with many channels winograd.py's (Winograd's F(4 x 4, 3 x 3): 36 GEMMs
over 4 x 4 tiles, 2.25 products per output and channel pair instead of 9). Where the route is
batch-last, a 4 x 4 stride-2 product runs the phase form over the batch-last buffer instead of
im2col_last's columns. The measured gains are in benchmarks/README.md.
"""
import operator

from .. import backend
from ..core import FunctionNode, as_array
from . import blas as _blas
from . import im2col as _im
from . import im2col_last as _last
from . import conv_windows as _win
from . import space_to_depth as _s2d
from . import winograd as _wino
from .depthwise import depthwise_convolution_2d
from .math import sum as _sum


def _pair(v, name, op):
    """(v, v) for an int (NumPy ints too), else v as a tuple of two ints."""
    try:
        pair = (operator.index(v),) * 2
    except TypeError:
        try:
            pair = tuple(map(operator.index, v))
        except TypeError:
            pair = ()
    if len(pair) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    return pair


def _add_bias(y, b):
    """y += b over the channel axis, in place; returns y."""
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def _is_pointwise(kh, kw, s, p):
    """1x1 kernel, stride 1, no padding: the columns are the image itself."""
    return kh == kw == 1 and s == (1, 1) and p == (0, 0)


def _is_dense(image, ksize, p, d, G):
    """The kernel covers the unpadded image exactly (one output pixel): the convolution is a
    linear layer, y (N, Cout) = x (N, C H W) @ W (Cout, C kh kw)^T, and its transpose from a
    1 x 1 image likewise (DCGAN's first and last layers). Then its products are single GEMMs
    over the batch in NCHW as it is, with no columns, no transposes and no per-sample calls."""
    return G == 1 and p == (0, 0) and d == (1, 1) and tuple(image) == tuple(ksize)


def _columns(x, kh, kw, s, p, d, oh, ow, slot="col"):
    """im2col(x) as (N, C, kh, kw, oh, ow), in a workspace on the CPU (x itself when pointwise)."""
    if _is_pointwise(kh, kw, s, p):
        return x
    xp = backend.get_array_module(x)
    col = _im.scratch(xp, x.shape[:2] + (kh, kw, oh, ow), x.dtype, slot)
    return _im.im2col(x, kh, kw, s[0], s[1], p[0], p[1], oh, ow, d[0], d[1], out=col)


def _flip_t(W, G):
    """W (A, B/G, kh, kw) -> (B, A/G, kh, kw): swap the channel axes per group, turn taps by 180.

    With it a stride-1 convolution with pad p is a transposed one with pad d(k-1) - p and back:
    conv(x, W, p) = deconv(x, _flip_t(W), d(k-1) - p). Its own inverse.
    """
    A, Bg, kh, kw = W.shape
    V = W.reshape(G, A // G, Bg, kh, kw).swapaxes(1, 2).reshape(G * Bg, A // G, kh, kw)
    return V[:, :, ::-1, ::-1]


def _conv_route(x, Co, kh, kw, s, p, d, G, oh, ow, col=None):
    """im2col.route for y = conv(x): its im2col copies C oh ow values per tap, the flipped
    twin's Cout H W (the two tests in _deconv are this one's exact negation, or each form would
    hand the op back to the other)."""
    N, C, H, W = x.shape
    return _im.route(x, (kh, kw), s, p, d, G, C * oh * ow, Co * H * W, oh * ow, col)


def _conv(x, W, b, s, p, d, G, col=None):
    """y = W @ im2col(x) + b, per group; col may be precomputed columns of x."""
    xp = backend.get_array_module(x)
    N, C, H, Wd = x.shape
    Co, Cg, kh, kw = W.shape
    oh, ow = _im.conv_outsize(H, kh, s[0], p[0], d[0]), _im.conv_outsize(Wd, kw, s[1], p[1], d[1])
    if _is_dense((H, Wd), (kh, kw), p, d, G):
        y = xp.matmul(x.reshape(N, -1), W.reshape(Co, -1).T)
        return _add_bias(y.reshape(N, Co, 1, 1), b)
    if col is None and _s2d.takes((H, Wd), (oh, ow), C, Co, (kh, kw), s, p, d, G, x):
        return _add_bias(_s2d.conv(x, W), b)
    if col is None and _wino.takes(x.shape, Co, (kh, kw), s, p, d, G, x):
        return _add_bias(_wino.conv(x, W, p, (oh, ow)), b)
    if col is None and _win.takes(x.shape, Co, (kh, kw), s, p, d, G, x):
        return _add_bias(_win.conv(x, W, p), b)
    how = _conv_route(x, Co, kh, kw, s, p, d, G, oh, ow, col)
    if how == "nchw":
        K, P = Cg * kh * kw, oh * ow
        if col is None:
            col = _columns(x, kh, kw, s, p, d, oh, ow)
        y = xp.empty((N, Co, oh, ow), x.dtype)
        # (G, Cout/G, K) @ (N, G, K, P) -> (N, G, Cout/G, P): one BLAS call per (n, g), in NCHW
        xp.matmul(W.reshape(G, Co // G, K), col.reshape(N, G, K, P),
                  out=y.reshape(N, G, Co // G, P))
    elif how == "flipped":
        return _deconv(x, _flip_t(W, G), b, s, _im.flipped_pad((kh, kw), s, p, d), d, G, (oh, ow))
    elif _s2d.takes_last((H, Wd), (oh, ow), C, Co, (kh, kw), s, p, d, G, x):
        y = _s2d.conv(x, W, last=True)
    else:
        y = _last.conv(x, W, s, p, oh, ow)
    _add_bias(y, b)
    return y


def _deconv(x, W, b, s, p, d, G, outsize, gM=None):
    """y = col2im(W^T @ x) + b, per group: the x-gradient of a convolution (gM: x's Winograd
    tiles, built by a backward that shares them with the W-gradient)."""
    xp = backend.get_array_module(x)
    N, Ci, H, Wd = x.shape
    _, Cg, kh, kw = W.shape
    oh, ow = outsize
    M = Cg * kh * kw
    if (H, Wd) == (1, 1) and _is_dense(outsize, (kh, kw), p, d, G):
        y = xp.matmul(x.reshape(N, Ci), W.reshape(Ci, M))
        return _add_bias(y.reshape(N, Cg, kh, kw), b)
    if _s2d.takes(outsize, (H, Wd), Cg, Ci, (kh, kw), s, p, d, G, x):
        return _add_bias(_s2d.conv_grad_x(x, W), b)
    if gM is not None or _wino.takes((N, Cg) + tuple(outsize), Ci, (kh, kw), s, p, d, G, x):
        return _add_bias(_wino.conv_grad_x(x, W, p, outsize, gM), b)
    if _win.takes((N, Cg) + tuple(outsize), Ci, (kh, kw), s, p, d, G, x):
        # stride 1: the outsize is the default
        return _add_bias(_win.conv_grad_x(x, W, p, outsize), b)
    # GEMM-then-col2im writes G Cg H W values per tap; the flipped twin's im2col copies Ci oh ow
    how = _im.route(x, (kh, kw), s, p, d, G, G * Cg * H * Wd, Ci * oh * ow, H * Wd)
    if how == "nchw":
        Wt = W.reshape(G, Ci // G, M).swapaxes(1, 2)    # (G, M, Ci/G); BLAS reads it transposed
        xg = x.reshape(N, G, Ci // G, H * Wd)
        if _is_pointwise(kh, kw, s, p):                  # then outsize == (H, W) too
            y = xp.empty((N, G * Cg, oh, ow), x.dtype)
            xp.matmul(Wt, xg, out=y.reshape(N, G, M, H * Wd))
        else:
            col = _im.scratch(xp, (N, G, M, H * Wd), x.dtype, "col")
            xp.matmul(Wt, xg, out=col)
            y = _im.col2im(col.reshape(N, G * Cg, kh, kw, H, Wd), s[0], s[1], p[0], p[1], oh, ow,
                           d[0], d[1])
    elif how == "flipped":
        return _conv(x, _flip_t(W, G), b, s, _im.flipped_pad((kh, kw), s, p, d), d, G)
    elif _s2d.takes_last(outsize, (H, Wd), Cg, Ci, (kh, kw), s, p, d, G, x):
        y = _s2d.conv_grad_x(x, W, last=True)
    else:
        y = _last.deconv(x, W, s, p, oh, ow)
    _add_bias(y, b)
    return y


def _conv_grad_w(x, gy, kh, kw, s, p, d, G, col=None, gM=None):
    """gW = gy (Cout, P) @ im2col(x)^T (P, K), summed over the batch (gM as in _deconv)."""
    xp = backend.get_array_module(x)
    N, C, H, W = x.shape
    Co, oh, ow = gy.shape[1:]
    if _is_dense((H, W), (kh, kw), p, d, G):
        return xp.matmul(gy.reshape(N, Co).T, x.reshape(N, -1)).reshape(Co, C, kh, kw)
    if col is None and _s2d.takes((H, W), (oh, ow), C, Co, (kh, kw), s, p, d, G, x):
        return _s2d.conv_grad_w(x, gy)
    if gM is not None or (col is None and _wino.takes(x.shape, Co, (kh, kw), s, p, d, G, x)):
        return _wino.conv_grad_w(x, gy, p, gM)
    if col is None and _win.takes(x.shape, Co, (kh, kw), s, p, d, G, x):
        return _win.conv_grad_w(x, gy, p, (kh, kw))
    how = _conv_route(x, Co, kh, kw, s, p, d, G, oh, ow, col)     # the same test as in _conv
    if how == "flipped":
        # gW[o, c, i, j] = sum_y gy[o, y] x[c, y + d i - p] = sum_h x[c, h] gy[o, h - d i + p]:
        # the columns of gy (flipped pad) instead of those of x, then the taps turned back
        pf = _im.flipped_pad((kh, kw), s, p, d)
        return xp.ascontiguousarray(_flip_t(_conv_grad_w(gy, x, kh, kw, s, pf, d, G), G))
    if how == "batch_last":
        if _s2d.takes_last((H, W), (oh, ow), C, Co, (kh, kw), s, p, d, G, x):
            return _s2d.conv_grad_w(x, gy, last=True)
        return _last.grad_w(x, gy, kh, kw, s, p)
    K, P = C // G * kh * kw, oh * ow
    if col is None:
        col = _columns(x, kh, kw, s, p, d, oh, ow)
    colT = col.reshape(N, G, K, P).swapaxes(2, 3)    # a transposed view: no copy, BLAS flag
    gyg = gy.reshape(N, G, Co // G, P)
    gW = xp.empty((G, Co // G, K), x.dtype)
    if N == 1:
        xp.matmul(gyg[0], colT[0], out=gW)
    elif _blas.takes(x):
        # sum_n gy[n] @ col[n]^T accumulated in place (beta = 1): no N copies of gW to sum
        for n in range(N):
            for g in range(G):
                _blas.gemm(gyg[n, g], colT[n, g], gW[g], beta=float(n > 0))
    else:
        xp.matmul(gyg, colT).sum(axis=0, out=gW)
    return gW.reshape(Co, C // G, kh, kw)


class Convolution2DFunction(FunctionNode):
    def __init__(self, stride, pad, dilate, groups, col=None):
        self.stride, self.pad, self.dilate, self.groups = stride, pad, dilate, groups
        self.col = col      # precomputed columns of x (shared with a Convolution2DGradW)

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        b = inputs[2] if len(inputs) == 3 else None
        col, self.col = self.col, None
        return _conv(x, W, b, self.stride, self.pad, self.dilate, self.groups, col),

    def backward(self, indexes, grad_outputs):
        x, W = self.get_retained_inputs()
        gy, = grad_outputs
        s, p, d, G = self.stride, self.pad, self.dilate, self.groups
        gx = gW = gb = None
        gM = None
        if 0 in indexes and 1 in indexes and _winograd_both(x.array, W.shape, s, p, d, G):
            gM = _wino.gy_tiles(gy.array)   # both gradients transform gy alike: once here
        if 0 in indexes:        # skipped when x needs no gradient (e.g. the input image)
            gx = Deconvolution2DFunction(s, p, x.shape[2:], d, G, gM).apply((gy, W))[0]
        if 1 in indexes:
            gW = Convolution2DGradW(W.shape[2:], s, p, d, G, gM=gM).apply((x, gy))[0]
        if 2 in indexes:
            gb = _sum(gy, axis=(0, 2, 3))
        return (gx, gW, gb)[:len(self.inputs)]


def _winograd_both(x, w_shape, s, p, d, G):
    """True when a convolution's x-gradient and W-gradient both take the Winograd form: the
    routes of _deconv and _conv_grad_w test the same shapes, a dense product first (the
    space-to-depth form before it needs a 4 x 4 kernel, Winograd's a 3 x 3 one)."""
    Co, _, kh, kw = w_shape
    return (not _is_dense(x.shape[2:], (kh, kw), p, d, G)
            and _wino.takes(x.shape, Co, (kh, kw), s, p, d, G, x))


class Deconvolution2DFunction(FunctionNode):
    def __init__(self, stride, pad, outsize, dilate, groups, gM=None):
        self.stride, self.pad, self.outsize = stride, pad, outsize
        self.dilate, self.groups = dilate, groups
        self.gM = gM        # x's Winograd tiles (shared with a Convolution2DGradW)

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        b = inputs[2] if len(inputs) == 3 else None
        gM, self.gM = self.gM, None
        return _deconv(x, W, b, self.stride, self.pad, self.dilate, self.groups, self.outsize,
                       gM),

    def backward(self, indexes, grad_outputs):
        x, W = self.get_retained_inputs()
        gy, = grad_outputs
        s, p, d, G = self.stride, self.pad, self.dilate, self.groups
        kh, kw = W.shape[2:]
        col = None
        if 0 in indexes and 1 in indexes and not _is_dense(gy.shape[2:], (kh, kw), p, d, G) and \
                not _win.takes(gy.shape, x.shape[1], (kh, kw), s, p, d, G, gy.array) and \
                _conv_route(gy.array, x.shape[1], kh, kw, s, p, d, G, *x.shape[2:]) == "nchw":
            # gx = conv(gy, W) and gW = gy-columns @ x^T read the same columns of gy: build once
            # (the other forms read no such columns; the stride-1 window form, which builds
            # none, goes first; space_to_depth's two products would build its phases twice, and
            # measured no faster than these shared columns)
            col = _columns(gy.array, kh, kw, s, p, d, *x.shape[2:], slot="shared_col")
        gx = gW = gb = None
        if 0 in indexes:
            f = Convolution2DFunction(s, p, d, G, col)
            gx = f.apply((gy, W))[0]
        if 1 in indexes:
            gW = Convolution2DGradW((kh, kw), s, p, d, G, col).apply((gy, x))[0]
        if 2 in indexes:
            gb = _sum(gy, axis=(0, 2, 3))
        return (gx, gW, gb)[:len(self.inputs)]


class Convolution2DGradW(FunctionNode):
    """(x, gy) -> gW of a convolution; bilinear, so its own gradients are a deconv and a conv."""

    def __init__(self, ksize, stride, pad, dilate, groups, col=None, gM=None):
        self.ksize, self.stride, self.pad, self.dilate, self.groups = (ksize, stride, pad,
                                                                       dilate, groups)
        self.col, self.gM = col, gM     # shared columns of x, or gy's Winograd tiles

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, gy = inputs
        col, self.col = self.col, None
        gM, self.gM = self.gM, None
        return _conv_grad_w(x, gy, *self.ksize, self.stride, self.pad, self.dilate, self.groups,
                            col, gM),

    def backward(self, indexes, grad_outputs):
        x, gy = self.get_retained_inputs()
        ggW, = grad_outputs
        s, p, d, G = self.stride, self.pad, self.dilate, self.groups
        # <gW, ggW> = <gy, conv(x, ggW)> = <x, deconv(gy, ggW)>
        ggx = deconvolution_2d(gy, ggW, None, s, p, x.shape[2:], d, G) if 0 in indexes else None
        ggy = convolution_2d(x, ggW, None, s, p, d, G) if 1 in indexes else None
        return ggx, ggy


def _check(op, x, W, b, groups, channels_axis):
    """Shape, dtype and groups checks shared by both ops."""
    xs, ws = as_array(x).shape, as_array(W).shape
    if len(xs) != 4 or len(ws) != 4:
        layout = "(Cout, C/groups, kh, kw)" if channels_axis else "(C, Cout/groups, kh, kw)"
        raise ValueError(f"{op}: x {xs} and W {ws} must both be 4-D: (N, C, H, W) and {layout}")
    if not hasattr(groups, "__index__") or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    C = xs[1]
    expects = ws[1] * groups if channels_axis else ws[0]
    cout = ws[0] if channels_axis else ws[1] * groups
    if C % groups or (ws[0] % groups):
        raise ValueError(f"{op}: groups={groups} must divide the input channels ({C} in x {xs}) "
                         f"and W's first axis ({ws[0]} in W {ws})")
    if C != expects:
        raise ValueError(f"{op}: x {xs} has {C} channels but W {ws} expects {expects} "
                         f"(groups={groups})")
    if b is not None and as_array(b).shape != (cout,):
        raise ValueError(f"{op}: b {as_array(b).shape} must have shape ({cout},) for W {ws}")
    dtypes = {as_array(v).dtype for v in (x, W, b) if v is not None}
    if len(dtypes) > 1:
        raise TypeError(f"{op}: x, W and b must share one dtype, got {sorted(map(str, dtypes))}")


def _check_steps(op, s, p, d):
    if min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"{op}: stride {s} and dilate {d} must be >= 1, pad {p} >= 0")


def is_depthwise(x_shape, w_shape, groups):
    """One filter per channel (groups == C == Cout): depthwise.py's shifted sums beat im2col."""
    return groups == x_shape[1] == w_shape[0]


def convolution_2d(x, W, b=None, stride=1, pad=0, dilate=1, groups=1):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with W (Cout, C/groups, kh, kw)."""
    op = "convolution_2d"
    s, p, d = _pair(stride, "stride", op), _pair(pad, "pad", op), _pair(dilate, "dilate", op)
    _check(op, x, W, b, groups, True)
    _check_steps(op, s, p, d)
    H, Wd = as_array(x).shape[2:]
    kh, kw = as_array(W).shape[2:]
    oh, ow = _im.conv_outsize(H, kh, s[0], p[0], d[0]), _im.conv_outsize(Wd, kw, s[1], p[1], d[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"{op}: x {as_array(x).shape} and W {as_array(W).shape} with stride {s}, "
                         f"pad {p}, dilate {d} give an empty output ({oh}, {ow})")
    if is_depthwise(as_array(x).shape, as_array(W).shape, groups):
        return depthwise_convolution_2d(x, W, b, s, p, d)
    inputs = (x, W) if b is None else (x, W, b)
    return Convolution2DFunction(s, p, d, groups).apply(inputs)[0]


def deconvolution_2d(x, W, b=None, stride=1, pad=0, outsize=None, dilate=1, groups=1):
    """Transposed convolution of x (N, C, H, W) with W (C, Cout/groups, kh, kw).

    The output is s(H-1) + d(k-1) + 1 - 2p per side, or outsize (oh, ow) when given: any size
    up to s-1 larger, as PyTorch's output_padding (the sizes a stride-s convolution maps to H).
    """
    op = "deconvolution_2d"
    s, p, d = _pair(stride, "stride", op), _pair(pad, "pad", op), _pair(dilate, "dilate", op)
    _check(op, x, W, b, groups, False)
    _check_steps(op, s, p, d)
    xs, ws = as_array(x).shape, as_array(W).shape
    default = tuple(_im.deconv_outsize(n, k, si, pi, di)
                    for n, k, si, pi, di in zip(xs[2:], ws[2:], s, p, d))
    outsize = default if outsize is None else _pair(outsize, "outsize", op)
    if any(not (lo <= n < lo + si) or n < 1 for n, lo, si in zip(outsize, default, s)):
        ranges = ", ".join(f"[{lo}, {lo + si - 1}]" for lo, si in zip(default, s))
        raise ValueError(f"{op}: outsize {outsize} is invalid for x {xs} and W {ws} with stride "
                         f"{s}, pad {p}, dilate {d}: each side must lie in {ranges}")
    inputs = (x, W) if b is None else (x, W, b)
    return Deconvolution2DFunction(s, p, outsize, d, groups).apply(inputs)[0]
