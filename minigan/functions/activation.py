"""Activation functions. Masks are constants, so each backward is differentiable again."""
import math

import numpy

from .. import backend, cuda
from ..core import FunctionNode, as_variable, config
from . import jit
from .array import concat, split_axis
from .math import clip, erf, mul


def _xp(x):
    return backend.get_array_module(x)


class ReLU(FunctionNode):
    def forward(self, inputs):
        self.retain_outputs((0,))
        x, = inputs
        return _xp(x).maximum(x, 0),

    def backward(self, indexes, grad_outputs):
        y, = self.get_retained_outputs()
        gy, = grad_outputs
        if not config.enable_backprop and jit.takes(y.array, gy.array):    # one pass
            return jit.relu_grad(y.array, gy.array),
        return gy * (y.array > 0).astype(gy.dtype),


class LeakyReLU(FunctionNode):
    def __init__(self, slope):
        self.slope = slope

    def forward(self, inputs):
        x, = inputs
        self.retain_inputs((0,))
        if not _leaky_fast(x, self.slope):
            return _xp(x).where(x >= 0, x, x * x.dtype.type(self.slope)),     # the definition
        if cuda.enabled(x):         # one pass instead of a mask, a product and a select
            return _leaky_kernel("leaky_relu_forward", self.slope, x),
        if jit.takes(x):            # the same, compiled for the CPU
            return jit.leaky_relu(x, self.slope),
        # for 0 < slope <= 1, max(x, slope x) is the select, without where's slow branches
        y = x * x.dtype.type(self.slope)
        return _xp(x).maximum(x, y, out=y),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        gy, = grad_outputs
        xp, slope = _xp(x.array), gy.dtype.type(self.slope)
        if not _leaky_fast(x.array, self.slope):
            return gy * xp.where(x.array >= 0, gy.dtype.type(1), slope),     # the definition
        if cuda.enabled(x.array) and not config.enable_backprop:    # plain arrays suffice
            return _leaky_kernel("leaky_relu_backward", self.slope, x.array, gy.array),
        if not config.enable_backprop and jit.takes(x.array, gy.array):
            return jit.leaky_relu_grad(x.array, gy.array, self.slope),
        mask = (x.array >= 0).astype(gy.dtype)      # dy/dx = max([x >= 0], slope)
        return gy * xp.maximum(mask, slope, out=mask),


def _leaky_fast(x, slope):
    """Whether leaky ReLU may take its faster forms (the kernel, or max instead of where)."""
    return 0 < slope <= 1 or cuda.enabled(x)     # slope 0: max(inf, 0 inf) would be NaN


def _leaky_kernel(name, slope, *arrays):
    """leaky_relu(x), or gy leaky_relu'(x) given (x, gy), by kernels/activation.cu."""
    xp = _xp(arrays[0])
    arrays = tuple(xp.ascontiguousarray(a) for a in arrays)
    out = xp.empty_like(arrays[0])
    n = out.size
    if n:
        cuda.launch("activation", name, out.dtype, cuda.grid_for(n), cuda.threads_per_block,
                    arrays + (out, numpy.int64(n), out.dtype.type(slope)))
    return out


class ELU(FunctionNode):
    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, inputs):
        x, = inputs
        self.retain_inputs((0,))
        self.retain_outputs((0,))
        xp = _xp(x)
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0))).astype(x.dtype),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        y, = self.get_retained_outputs()
        gy, = grad_outputs
        # dy/dx = 1 for x > 0, alpha e^x = y + alpha otherwise; y keeps it differentiable
        pos = (x.array > 0).astype(gy.dtype)
        return gy * pos + gy * (y + self.alpha) * (1 - pos),


class Tanh(FunctionNode):
    def forward(self, inputs):
        self.retain_outputs((0,))
        return _xp(inputs[0]).tanh(inputs[0]),

    def backward(self, indexes, grad_outputs):
        y, = self.get_retained_outputs()
        return grad_outputs[0] * (1 - y * y),        # tanh' = 1 - tanh^2


def _sigmoid(x):
    """1 / (1 + e^-x) on an array, as tanh(x / 2) / 2 + 1/2: no overflow; one new array."""
    half = x.dtype.type(0.5)
    s = _xp(x).tanh(x * half)
    s *= half
    s += half
    return s


class Sigmoid(FunctionNode):
    def forward(self, inputs):
        self.retain_outputs((0,))
        x, = inputs
        return _sigmoid(x),

    def backward(self, indexes, grad_outputs):
        y, = self.get_retained_outputs()
        return grad_outputs[0] * y * (1 - y),        # sigma' = sigma (1 - sigma)


class GLU(FunctionNode):
    """y = a sigmoid(b), with a and b the two halves of x along axis: one node where the split,
    the sigmoid and the product were four, and a backward of four passes on arrays."""

    def __init__(self, axis):
        self.axis = axis

    def _halves(self, x):
        n = x.shape[self.axis] // 2
        index = (slice(None),) * self.axis
        return x[index + (slice(None, n),)], x[index + (slice(n, None),)]

    def _rows(self, x):
        """x as (lead, 2, rest): a = [:, 0], b = [:, 1] (a view of a contiguous x)."""
        lead = math.prod(x.shape[:self.axis])
        return x.reshape(lead, 2, x.size // (2 * lead))

    def _compiled(self, *arrays):
        return jit.takes(*arrays) and arrays[0].flags.c_contiguous

    def forward(self, inputs):
        x, = inputs
        self.retain_inputs((0,))
        a, b = self._halves(x)
        if self._compiled(x):       # one threaded pass over blocks (tanh by NumPy in each)
            y, self.s = jit.glu(self._rows(x))
            return y.reshape(a.shape),
        self.s = _sigmoid(b)        # kept for the array backward (the graph kept it too)
        return a * self.s,

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        gy, = grad_outputs
        if not config.enable_backprop:
            # dy/da = s, dy/db = a s (1 - s): written into the two halves of one gradient
            xp = _xp(gy.array)
            if self._compiled(x.array, gy.array):
                x3 = self._rows(x.array)
                s = self.s.reshape(x3.shape[0], -1)     # s is contiguous on either path
                gy2 = numpy.ascontiguousarray(gy.array).reshape(s.shape)
                return jit.glu_grad(x3, s, gy2).reshape(x.shape),
            a = self._halves(x.array)[0]
            s = self.s.reshape(a.shape)
            gx = xp.empty(x.shape, gy.dtype)
            ga, gb = self._halves(gx)
            xp.multiply(gy.array, s, out=ga)
            xp.subtract(s.dtype.type(1), s, out=gb)
            gb *= ga
            gb *= a
            return gx,
        a, b = split_axis(x, 2, self.axis)      # under create_graph: the same with ops
        s = sigmoid(b)
        ga = gy * s
        return concat((ga, ga * a * (1 - s)), self.axis),


class Softplus(FunctionNode):
    def __init__(self, beta):
        self.beta = beta

    def forward(self, inputs):
        self.retain_inputs((0,))
        x, = inputs
        b = x.dtype.type(self.beta)
        return _xp(x).logaddexp(0, x * b) / b,       # log(1 + e^(beta x)) / beta, stable

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        return grad_outputs[0] * sigmoid(x * self.beta),


def relu(x):
    """max(x, 0)."""
    return ReLU().apply((x,))[0]


def leaky_relu(x, slope=0.2):
    """max(x, slope * x), elementwise."""
    return LeakyReLU(slope).apply((x,))[0]


def elu(x, alpha=1.0):
    """x for x > 0, alpha (e^x - 1) otherwise (Clevert et al. 2015)."""
    return ELU(alpha).apply((x,))[0]


def relu6(x):
    """min(max(x, 0), 6)."""
    return clip(x, 0.0, 6.0)


def tanh(x):
    """Hyperbolic tangent."""
    return Tanh().apply((x,))[0]


def sigmoid(x):
    """1 / (1 + e^-x)."""
    return Sigmoid().apply((x,))[0]


def softplus(x, beta=1.0):
    """log(1 + e^(beta x)) / beta: a smooth relu."""
    return Softplus(beta).apply((x,))[0]


def swish(x, beta=1.0):
    """x sigmoid(beta x) (Ramachandran et al. 2017; SiLU for beta = 1)."""
    return mul(x, sigmoid(x * beta))


def gelu(x):
    """x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, Phi the normal CDF (Hendrycks and Gimpel 2016;
    torch's nn.GELU(), not its tanh approximation). Built of erf, so every order works."""
    return x * (erf(x * (1 / math.sqrt(2))) + 1.0) * 0.5


def glu(x, axis=1):
    """a * sigmoid(b) where a, b are the two halves of x along axis (Dauphin et al. 2017)."""
    x = as_variable(x)
    axis %= x.ndim
    if x.shape[axis] % 2:
        raise ValueError(f"glu: axis {axis} of length {x.shape[axis]} does not split in halves")
    return GLU(axis).apply((x,))[0]
