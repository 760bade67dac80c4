"""Weight initializers: callables `init(shape, dtype) -> numpy array`, drawn from numpy.random.

They draw from NumPy's global RandomState, so `numpy.random.seed(s)` makes a model's
initialization reproducible. Arrays are made on the CPU; `link.to_gpu()` moves them.

Fans follow Chainer (and PyTorch): for a weight of shape (a, b, k1, k2, ...),
fan_in = b * k1 * k2 * ... and fan_out = a * k1 * k2 * ...
For a convolution W (C_out, C_in, kh, kw), fan_in = C_in kh kw is the number of inputs that feed
one output. For a transposed convolution W (C_in, C_out, kh, kw) the same rule reads the second
axis, fan_in = C_out kh kw: the transposed convolution is the backward of a convolution from
C_out to C_in channels, and it starts at that convolution's scale (as in Chainer and PyTorch).
"""
import math

import numpy


def get_fans(shape):
    """(fan_in, fan_out) of a weight of `shape` (at least 2-D)."""
    if len(shape) < 2:
        raise ValueError(f"fans need a weight of at least 2 dimensions, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])        # kh * kw for a convolution, 1 for a matrix
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape, fan_option):
    fan_in, fan_out = get_fans(shape)
    if fan_option == "fan_in":
        return fan_in
    if fan_option == "fan_out":
        return fan_out
    raise ValueError(f"fan_option must be 'fan_in' or 'fan_out', got {fan_option!r}")


class Initializer:
    """Base: `init(shape, dtype=float32)` returns a new array."""

    def __call__(self, shape, dtype=numpy.float32):
        return numpy.asarray(self.generate(tuple(shape)), dtype=dtype)

    def generate(self, shape):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Initializer):
    """Every element equal to `value`."""

    def __init__(self, value):
        self.value = value

    def generate(self, shape):
        return numpy.full(shape, self.value)


class Zero(Constant):
    """All zeros (the default bias)."""

    def __init__(self):
        super().__init__(0.0)


class One(Constant):
    """All ones (batch normalization's gamma)."""

    def __init__(self):
        super().__init__(1.0)


class Normal(Initializer):
    """N(0, scale^2); Normal(0.02) is the DCGAN / pix2pix weight init."""

    def __init__(self, scale=0.05):
        self.scale = scale

    def generate(self, shape):
        return numpy.random.normal(0.0, self.scale, size=shape)


class Uniform(Initializer):
    """U(-scale, scale)."""

    def __init__(self, scale=0.05):
        self.scale = scale

    def generate(self, shape):
        return numpy.random.uniform(-self.scale, self.scale, size=shape)


class LeCunNormal(Initializer):
    """N(0, scale^2 / fan_in) (LeCun et al. 1998); Chainer's default for weights."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def generate(self, shape):
        std = self.scale * math.sqrt(1.0 / get_fans(shape)[0])
        return numpy.random.normal(0.0, std, size=shape)


class HeNormal(Initializer):
    """N(0, scale^2 * 2 / fan) (He et al. 2015), fan = fan_in or fan_out."""

    def __init__(self, scale=1.0, fan_option="fan_in"):
        self.scale, self.fan_option = scale, fan_option

    def generate(self, shape):
        std = self.scale * math.sqrt(2.0 / _fan(shape, self.fan_option))
        return numpy.random.normal(0.0, std, size=shape)


class GlorotNormal(Initializer):
    """N(0, scale^2 * 2 / (fan_in + fan_out)) (Glorot and Bengio 2010)."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def generate(self, shape):
        fan_in, fan_out = get_fans(shape)
        std = self.scale * math.sqrt(2.0 / (fan_in + fan_out))
        return numpy.random.normal(0.0, std, size=shape)


class GlorotUniform(Initializer):
    """U(-s, s), s = scale * sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio 2010)."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def generate(self, shape):
        fan_in, fan_out = get_fans(shape)
        s = self.scale * math.sqrt(6.0 / (fan_in + fan_out))
        return numpy.random.uniform(-s, s, size=shape)


def generate_array(initializer, shape, dtype=numpy.float32):
    """A new CPU array of `shape` and `dtype` from an initializer, a scalar or an array (copied)."""
    shape, dtype = tuple(shape), numpy.dtype(dtype)
    if numpy.isscalar(initializer):
        initializer = Constant(initializer)
    if callable(initializer):
        array = initializer(shape, dtype)
    else:
        array = numpy.array(initializer, dtype=dtype)      # an array given as the initial value
    if array.shape != shape or array.dtype != dtype:
        raise ValueError(f"initializer {initializer!r} gave {array.dtype}{array.shape}, "
                         f"expected {dtype}{shape}")
    return array
