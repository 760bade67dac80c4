"""Batch-last convolutions for small images: (C, H, W, N) layout, one GEMM per product.

In NCHW, a batch of N small images costs N small GEMMs of P = oh ow columns each, and im2col
copies runs of only ow floats. With the batch as the last axis every copy of im2col.gather
and scatter moves runs of ow N floats, and each product is one GEMM over all N P columns:

  convolution   y (Co, oh ow N) = W (Co, K) @ col(x) (K, oh ow N),   K = C kh kw
  transposed    col (M, H W N) = W^T (M, Ci) @ x (Ci, H W N), then col2im,   M = Co kh kw
  its W-grad    gW (Co, K)     = gy (Co, oh ow N) @ col(x)^T (oh ow N, K)

The layout costs a transpose in and one out; im2col.route decides where it pays (DCGAN's MNIST
step: benchmarks/README.md). NumPy only (CuPy arrays keep the raw kernels of im2col.py); no
groups, no dilation.
"""
import numpy

from . import im2col as _im

def _to_last(x, slot):
    """(N, C, H, W) -> (C, H, W, N), contiguous, in a workspace."""
    xl = _im.scratch(numpy, x.shape[1:] + x.shape[:1], x.dtype, slot)
    xl[...] = x.transpose(1, 2, 3, 0)
    return xl


def _from_last(y):
    """(C, H, W, N) -> a new (N, C, H, W) array (a copy even where C = H = W = 1: y is scratch)."""
    return y.transpose(3, 0, 1, 2).copy()


def im2col(xl, kh, kw, s, p, oh, ow):
    """(C, H, W, N) -> (C, kh, kw, oh, ow, N) columns, in a workspace."""
    col = _im.scratch(numpy, xl.shape[:1] + (kh, kw, oh, ow) + xl.shape[3:], xl.dtype, "last_col")
    _im.gather(xl, col, s[0], s[1], p[0], p[1])     # the batch rides along as a trailing axis
    return col


def col2im(col, s, p, h, w):
    """(C, kh, kw, oh, ow, N) -> (C, h, w, N) image in a workspace: the adjoint of im2col."""
    img = _im.scratch(numpy, col.shape[:1] + (h, w) + col.shape[5:], col.dtype, "last_img")
    _im.scatter(col, img, s[0], s[1], p[0], p[1])
    return img


def conv(x, W, s, p, oh, ow):
    """y (N, Co, oh, ow) = W @ im2col(x), without bias."""
    Co, C, kh, kw = W.shape
    col = im2col(_to_last(x, "last_in"), kh, kw, s, p, oh, ow)
    y = _im.scratch(numpy, (Co, oh, ow, x.shape[0]), x.dtype, "last_out")
    numpy.matmul(W.reshape(Co, -1), col.reshape(C * kh * kw, -1), out=y.reshape(Co, -1))
    return _from_last(y)


def deconv(x, W, s, p, oh, ow):
    """y (N, Co, oh, ow) = col2im(W^T @ x), without bias; W is (Ci, Co, kh, kw)."""
    N, Ci, H, Wd = x.shape
    _, Co, kh, kw = W.shape
    col = _im.scratch(numpy, (Co, kh, kw, H, Wd, N), x.dtype, "last_col")
    xl = _to_last(x, "last_in")
    numpy.matmul(W.reshape(Ci, -1).T, xl.reshape(Ci, -1), out=col.reshape(Co * kh * kw, -1))
    return _from_last(col2im(col, s, p, oh, ow))


def grad_w(x, gy, kh, kw, s, p):
    """gW (Co, C, kh, kw) = gy @ im2col(x)^T, summed over the batch by the one GEMM."""
    C = x.shape[1]
    Co, oh, ow = gy.shape[1:]
    col = im2col(_to_last(x, "last_in"), kh, kw, s, p, oh, ow)
    gyl = _to_last(gy, "last_out")
    return numpy.matmul(gyl.reshape(Co, -1), col.reshape(C * kh * kw, -1).T).reshape(
        Co, C, kh, kw)
