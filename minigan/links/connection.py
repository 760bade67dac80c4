"""Layers with weights: Linear, Convolution2D, Deconvolution2D (Chainer's names and defaults).

Weights default to LeCunNormal (Chainer's default), biases to zero. `initialW` and
`initial_bias` take an initializer, a scalar or an array. Parameters are float32 unless `dtype`
says otherwise (gradient checks use float64).
"""
import numpy

from .. import functions as F
from ..initializers import LeCunNormal, Zero
from .link import Link


def _pair(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def _init(given, default):
    # not `given or default`: an array or the scalar 0 is a valid initial value
    return default if given is None else given


class Linear(Link):
    """y = x W^T + b with W (out_size, in_size)."""

    def __init__(self, in_size, out_size, nobias=False, initialW=None, initial_bias=None,
                 dtype=numpy.float32):
        super().__init__()
        self.in_size, self.out_size = in_size, out_size
        self.add_param("W", (out_size, in_size), _init(initialW, LeCunNormal()), dtype)
        self.b = None
        if not nobias:
            self.add_param("b", (out_size,), _init(initial_bias, Zero()), dtype)

    def forward(self, x):
        return F.linear(x, self.W, self.b)


class Convolution2D(Link):
    """2-D convolution; W (out_channels, in_channels / groups, kh, kw)."""

    def __init__(self, in_channels, out_channels, ksize, stride=1, pad=0, nobias=False,
                 initialW=None, initial_bias=None, dilate=1, groups=1, dtype=numpy.float32):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Convolution2D: channels {in_channels} -> {out_channels} are not "
                             f"divisible by groups={groups}")
        self.stride, self.pad, self.dilate, self.groups = stride, pad, dilate, groups
        kh, kw = _pair(ksize)
        self.add_param("W", (out_channels, in_channels // groups, kh, kw),
                       _init(initialW, LeCunNormal()), dtype)
        self.b = None
        if not nobias:
            self.add_param("b", (out_channels,), _init(initial_bias, Zero()), dtype)

    def forward(self, x):
        return F.convolution_2d(x, self.W, self.b, stride=self.stride, pad=self.pad,
                                dilate=self.dilate, groups=self.groups)


class Deconvolution2D(Link):
    """2-D transposed convolution; W (in_channels, out_channels / groups, kh, kw).

    The output size is (H - 1) * stride - 2 * pad + dilate * (kh - 1) + 1 unless `outsize`
    picks one of the sizes that a stride > 1 leaves open.
    """

    def __init__(self, in_channels, out_channels, ksize, stride=1, pad=0, nobias=False,
                 outsize=None, initialW=None, initial_bias=None, dilate=1, groups=1,
                 dtype=numpy.float32):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Deconvolution2D: channels {in_channels} -> {out_channels} are not "
                             f"divisible by groups={groups}")
        self.stride, self.pad, self.outsize = stride, pad, outsize
        self.dilate, self.groups = dilate, groups
        kh, kw = _pair(ksize)
        self.add_param("W", (in_channels, out_channels // groups, kh, kw),
                       _init(initialW, LeCunNormal()), dtype)
        self.b = None
        if not nobias:
            self.add_param("b", (out_channels,), _init(initial_bias, Zero()), dtype)

    def forward(self, x):
        return F.deconvolution_2d(x, self.W, self.b, stride=self.stride, pad=self.pad,
                                  outsize=self.outsize, dilate=self.dilate, groups=self.groups)
