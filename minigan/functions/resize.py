"""Resizing images: nearest-neighbour upsampling by an integer factor and bilinear resize.

Both are linear and separable (see pooling.py): nearest upsampling repeats pixels (`Repeat`, whose
adjoint sums blocks), bilinear resize is y = A_h x A_w^T with two taps per row of A.
"""
import numpy

from ..core import as_variable
from .pooling import Repeat, Separable, _check_4d, _pair


def bilinear_matrix(n_in, n_out, align_corners):
    """Row i holds the two weights of torch.nn.functional.interpolate(mode='bilinear') at i.

    align_corners:  src = i (n_in - 1) / (n_out - 1)   (corners map to corners)
    otherwise:      src = max((i + 1/2) n_in / n_out - 1/2, 0)   (pixel centres; PyTorch clamps)
    y_i = (1 - f) x[i0] + f x[i1], i0 = floor(src), i1 = min(i0 + 1, n_in - 1), f = src - i0.
    """
    i = numpy.arange(n_out, dtype=numpy.float64)
    if align_corners:
        src = i * ((n_in - 1) / (n_out - 1)) if n_out > 1 else numpy.zeros(n_out)
    else:
        src = numpy.maximum((i + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = numpy.minimum(numpy.floor(src).astype(numpy.int64), n_in - 1)
    i1 = numpy.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    m = numpy.zeros((n_out, n_in))
    rows = numpy.arange(n_out)
    numpy.add.at(m, (rows, i0), 1 - frac)
    numpy.add.at(m, (rows, i1), frac)       # i1 == i0 at the last pixel: the weights add to 1
    return m


def upsample_nearest(x, scale=2):
    """Each pixel repeated into a scale x scale block (nearest-neighbour, integer factor)."""
    x = as_variable(x)
    _check_4d("upsample_nearest", x)
    if not isinstance(scale, (int, numpy.integer)) or scale < 1:
        raise ValueError(f"upsample_nearest: scale must be a positive int, got {scale!r}")
    return Repeat(int(scale), int(scale)).apply((x,))[0]


def resize_images(x, output_shape, align_corners=True):
    """Bilinear resize of (N, C, H, W) to output_shape (oh, ow), up or down, as PyTorch does."""
    x = as_variable(x)
    _check_4d("resize_images", x)
    oh, ow = _pair(output_shape, "resize_images", "output_shape")
    if min(oh, ow) < 1:
        raise ValueError(f"resize_images: output_shape {(oh, ow)} must be positive")
    h, w = x.shape[2:]
    align = bool(align_corners)
    return Separable((bilinear_matrix, h, oh, align),
                     (bilinear_matrix, w, ow, align)).apply((x,))[0]
