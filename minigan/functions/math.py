"""Arithmetic with broadcasting, powers, exponentials and reductions."""
import math

import numpy

from .. import backend
from ..core import FunctionNode, Variable, as_variable
from . import jit
from .array import broadcast_to, reshape, sum_to


def _xp(x):
    return backend.get_array_module(x)


def _operands(name, a, b):
    """a and b ready for a binary op: constants take the dtype of the Variable, shapes broadcast."""
    if not isinstance(a, Variable) and not isinstance(b, Variable):
        raise TypeError(f"{name}: at least one operand must be a Variable")
    like = a if isinstance(a, Variable) else b
    a, b = _constant(a, like), _constant(b, like)
    if a.dtype != b.dtype:
        raise TypeError(f"{name}: dtypes {a.dtype} and {b.dtype} differ; cast one (F.cast)")
    try:
        numpy.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast "
                         "together") from None
    return a, b


def _constant(c, like):
    """A non-Variable operand in like's dtype: scalars become arrays on like's device, arrays keep
    theirs (so that mixing devices is reported by FunctionNode.apply)."""
    if isinstance(c, Variable):
        return c
    if isinstance(c, numpy.ndarray) or backend.is_cupy_array(c):
        return c if c.dtype == like.dtype else c.astype(like.dtype)
    return _xp(like.array).asarray(c, dtype=like.dtype)


class Add(FunctionNode):
    def forward(self, inputs):
        a, b = inputs
        return a + b,

    def backward(self, indexes, grad_outputs):
        gy, = grad_outputs
        return sum_to(gy, self.inputs[0].shape), sum_to(gy, self.inputs[1].shape)


class Sub(FunctionNode):
    def forward(self, inputs):
        a, b = inputs
        return a - b,

    def backward(self, indexes, grad_outputs):
        gy, = grad_outputs
        return sum_to(gy, self.inputs[0].shape), sum_to(-gy, self.inputs[1].shape)


class Mul(FunctionNode):
    def forward(self, inputs):
        self.retain_inputs((0, 1))
        a, b = inputs
        return a * b,

    def backward(self, indexes, grad_outputs):
        a, b = self.get_retained_inputs()
        gy, = grad_outputs
        ga = sum_to(gy * b, a.shape) if 0 in indexes else None
        gb = sum_to(gy * a, b.shape) if 1 in indexes else None
        return ga, gb


class Div(FunctionNode):
    def forward(self, inputs):
        self.retain_inputs((0, 1))
        a, b = inputs
        return a / b,

    def backward(self, indexes, grad_outputs):
        a, b = self.get_retained_inputs()
        gy, = grad_outputs
        ga = gy / b                                  # d(a/b)/da = 1/b
        gb = sum_to(-ga * a / b, b.shape) if 1 in indexes else None   # d(a/b)/db = -a/b^2
        return sum_to(ga, a.shape), gb


class Neg(FunctionNode):
    def forward(self, inputs):
        return -inputs[0],

    def backward(self, indexes, grad_outputs):
        return -grad_outputs[0],


class Pow(FunctionNode):
    """a ** b with both operands differentiable."""

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        self.retain_outputs((0,))
        a, b = inputs
        return a ** b,

    def backward(self, indexes, grad_outputs):
        a, b = self.get_retained_inputs()
        y, = self.get_retained_outputs()
        gy, = grad_outputs
        ga = sum_to(gy * b * a ** (b - 1), a.shape) if 0 in indexes else None  # b a^(b-1)
        gb = sum_to(gy * y * log(a), b.shape) if 1 in indexes else None        # a^b log a
        return ga, gb


class PowConst(FunctionNode):
    """x ** c for a constant exponent c."""

    def __init__(self, c):
        self.c = c

    def forward(self, inputs):
        self.retain_inputs((0,))
        x, = inputs
        return x ** x.dtype.type(self.c),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        gy, = grad_outputs
        if self.c == 2:
            return gy * x * 2.0,
        return gy * self.c * x ** (self.c - 1),


def add(a, b):
    """a + b, broadcasting."""
    return Add().apply(_operands("add", a, b))[0]


def sub(a, b):
    """a - b, broadcasting."""
    return Sub().apply(_operands("sub", a, b))[0]


def mul(a, b):
    """a * b elementwise, broadcasting."""
    return Mul().apply(_operands("mul", a, b))[0]


def div(a, b):
    """a / b elementwise, broadcasting."""
    return Div().apply(_operands("div", a, b))[0]


def neg(x):
    """-x."""
    return Neg().apply((x,))[0]


def pow(a, b):
    """a ** b; a constant exponent takes a cheaper path."""
    if isinstance(a, Variable) and numpy.isscalar(b):
        return PowConst(b).apply((a,))[0]
    return Pow().apply(_operands("pow", a, b))[0]


class MatMul(FunctionNode):
    def forward(self, inputs):
        self.retain_inputs((0, 1))
        a, b = inputs
        return _xp(a).matmul(a, b),

    def backward(self, indexes, grad_outputs):
        a, b = self.get_retained_inputs()
        gy, = grad_outputs
        swap = lambda v: v.transpose(tuple(range(v.ndim - 2)) + (v.ndim - 1, v.ndim - 2))
        ga = sum_to(matmul(gy, swap(b)), a.shape) if 0 in indexes else None
        gb = sum_to(matmul(swap(a), gy), b.shape) if 1 in indexes else None
        return ga, gb


def matmul(a, b):
    """Matrix product of the last two axes, broadcasting over the leading ones."""
    a, b = as_variable(a), as_variable(b)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not chain (both need 2+ "
                         "axes and a.shape[-1] == b.shape[-2])")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: dtypes {a.dtype} and {b.dtype} differ")
    return MatMul().apply((a, b))[0]


class Exp(FunctionNode):
    def forward(self, inputs):
        self.retain_outputs((0,))
        return _xp(inputs[0]).exp(inputs[0]),

    def backward(self, indexes, grad_outputs):
        y, = self.get_retained_outputs()
        return grad_outputs[0] * y,


def _erf(x):
    """erf of an array: cupyx on CuPy, a compiled loop with numba, else math.erf per element
    (NumPy has no erf; exact, but about 100 ns a value)."""
    xp = _xp(x)
    if xp is not numpy:
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(x)
    if jit.takes(x):
        return jit.erf(x)
    return numpy.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)


class Erf(FunctionNode):
    def forward(self, inputs):
        self.retain_inputs((0,))
        return _erf(inputs[0]),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()      # d erf / dx = 2 / sqrt(pi) e^(-x^2)
        return grad_outputs[0] * (exp(-(x * x)) * (2 / math.sqrt(math.pi))),


class Log(FunctionNode):
    def forward(self, inputs):
        self.retain_inputs((0,))
        return _xp(inputs[0]).log(inputs[0]),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        return grad_outputs[0] / x,


class Sqrt(FunctionNode):
    def forward(self, inputs):
        self.retain_outputs((0,))
        return _xp(inputs[0]).sqrt(inputs[0]),

    def backward(self, indexes, grad_outputs):
        y, = self.get_retained_outputs()
        return grad_outputs[0] / (y * 2.0),     # d sqrt(x) = 1 / (2 sqrt(x))


class Abs(FunctionNode):
    def forward(self, inputs):
        self.retain_inputs((0,))
        return _xp(inputs[0]).abs(inputs[0]),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        return grad_outputs[0] * _xp(x.array).sign(x.array),


class Clip(FunctionNode):
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, inputs):
        self.retain_inputs((0,))
        x = inputs[0]
        # bounds in x's dtype: Python floats send NumPy's clip down a path 4x slower on float32
        lo, hi = (None if v is None else x.dtype.type(v) for v in (self.lo, self.hi))
        return _xp(x).clip(x, lo, hi),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        gy, = grad_outputs
        inside = (x.array >= self.lo) & (x.array <= self.hi)
        return gy * inside.astype(gy.dtype),


def exp(x):
    """e ** x."""
    return Exp().apply((x,))[0]


def erf(x):
    """The error function, 2 / sqrt(pi) int_0^x e^(-t^2) dt."""
    return Erf().apply((x,))[0]


def log(x):
    """Natural logarithm."""
    return Log().apply((x,))[0]


def sqrt(x):
    """Square root."""
    return Sqrt().apply((x,))[0]


def abs(x):  # noqa: A001  (F.abs, as numpy.abs)
    """|x|; the gradient at 0 is 0."""
    return Abs().apply((x,))[0]


def square(x):
    """x ** 2."""
    return PowConst(2).apply((x,))[0]


def clip(x, x_min, x_max):
    """x limited to [x_min, x_max]; no gradient flows where it was clipped."""
    return Clip(x_min, x_max).apply((x,))[0]


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else axis
    return tuple(sorted(a % ndim for a in axis))


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(FunctionNode):
    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, inputs):
        return inputs[0].sum(axis=self.axes, keepdims=self.keepdims),

    def backward(self, indexes, grad_outputs):
        shape = self.inputs[0].shape
        gy = reshape(grad_outputs[0], _keepdims_shape(shape, self.axes))
        return broadcast_to(gy, shape),


def sum(x, axis=None, keepdims=False):  # noqa: A001
    """Sum over the given axes (all by default)."""
    x = as_variable(x)
    return Sum(_axes(axis, x.ndim), keepdims).apply((x,))[0]


def mean(x, axis=None, keepdims=False):
    """Mean over the given axes (all by default)."""
    x = as_variable(x)
    axes = _axes(axis, x.ndim)
    n = int(numpy.prod([x.shape[a] for a in axes]))
    return sum(x, axes, keepdims) * (1.0 / n)


class Max(FunctionNode):
    """max (or min) over axes; the gradient goes to every element equal to the extremum."""

    def __init__(self, axes, keepdims, use_min=False):
        self.axes, self.keepdims, self.use_min = axes, keepdims, use_min

    def forward(self, inputs):
        x, = inputs
        self.retain_inputs((0,))
        self.retain_outputs((0,))
        reduce = x.min if self.use_min else x.max
        return reduce(axis=self.axes, keepdims=self.keepdims),

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        y, = self.get_retained_outputs()
        shape = _keepdims_shape(x.shape, self.axes)
        mask = (x.array == y.array.reshape(shape)).astype(x.dtype)
        return broadcast_to(reshape(grad_outputs[0], shape), x.shape) * mask,


def max(x, axis=None, keepdims=False):  # noqa: A001
    """Maximum over the given axes (all by default)."""
    x = as_variable(x)
    return Max(_axes(axis, x.ndim), keepdims).apply((x,))[0]


def min(x, axis=None, keepdims=False):  # noqa: A001
    """Minimum over the given axes (all by default)."""
    x = as_variable(x)
    return Max(_axes(axis, x.ndim), keepdims, use_min=True).apply((x,))[0]


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) over axes, computed stably around the maximum."""
    x = as_variable(x)
    axes = _axes(axis, x.ndim)
    m = x.array.max(axis=axes, keepdims=True)        # a constant shift: no gradient needed
    y = log(sum(exp(x - m), axes, keepdims=True)) + m
    return y if keepdims else reshape(y, [n for i, n in enumerate(y.shape) if i not in axes])

