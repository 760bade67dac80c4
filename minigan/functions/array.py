"""Shape and indexing ops: reshape, transpose, broadcast, sum_to, concat, split, getitem, pad, where."""
import math

import numpy

from .. import backend
from ..core import FunctionNode, as_array, as_variable


def _xp(x):
    return backend.get_array_module(x)


class Reshape(FunctionNode):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, inputs):
        x, = inputs
        return x.reshape(self.shape),

    def backward(self, indexes, grad_outputs):
        return reshape(grad_outputs[0], self.inputs[0].shape),


def reshape(x, shape):
    """x with a new shape (one entry may be -1)."""
    shape = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
    old = as_array(x).shape
    if old == shape:
        return as_variable(x)
    size, known = math.prod(old), math.prod(n for n in shape if n != -1)
    free = shape.count(-1)
    if free > 1 or (free and (known == 0 or size % known)) or (not free and known != size):
        raise ValueError(f"reshape: cannot reshape {old} into {shape}")
    return Reshape(shape).apply((x,))[0]


def flatten(x):
    """(N, ...) -> (N, prod(...))."""
    return reshape(x, (as_array(x).shape[0], -1))


def expand_dims(x, axis):
    shape = list(as_array(x).shape)
    shape.insert(axis if axis >= 0 else len(shape) + axis + 1, 1)
    return reshape(x, shape)


def squeeze(x, axis=None):
    shape = as_array(x).shape
    axes = range(len(shape)) if axis is None else [a % len(shape) for a in numpy.atleast_1d(axis)]
    return reshape(x, [s for i, s in enumerate(shape) if not (i in axes and s == 1)])


class Transpose(FunctionNode):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, inputs):
        return inputs[0].transpose(self.axes),

    def backward(self, indexes, grad_outputs):
        inverse = tuple(numpy.argsort(self.axes)) if self.axes is not None else None
        return transpose(grad_outputs[0], inverse),


def transpose(x, axes=None):
    """Permute the axes (reverse them when axes is None)."""
    return Transpose(None if axes is None else tuple(axes)).apply((x,))[0]


class BroadcastTo(FunctionNode):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, inputs):
        return _xp(inputs[0]).broadcast_to(inputs[0], self.shape),

    def backward(self, indexes, grad_outputs):
        return sum_to(grad_outputs[0], self.inputs[0].shape),


def broadcast_to(x, shape):
    """x repeated along new leading axes and axes of length 1, NumPy broadcasting rules."""
    shape = tuple(shape)
    if as_array(x).shape == shape:
        return as_variable(x)
    try:
        numpy.broadcast_shapes(as_array(x).shape, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast {as_array(x).shape} to {shape}") from None
    return BroadcastTo(shape).apply((x,))[0]


class SumTo(FunctionNode):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, inputs):
        x, = inputs
        lead = x.ndim - len(self.shape)
        axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(self.shape)
                                          if n == 1 and x.shape[lead + i] != 1)
        y = x.sum(axes, keepdims=True)
        return y.reshape(self.shape) if lead else y,

    def backward(self, indexes, grad_outputs):
        return broadcast_to(grad_outputs[0], self.inputs[0].shape),


def sum_to(x, shape):
    """Sum x down to `shape`: the adjoint of broadcast_to."""
    shape = tuple(shape)
    if as_array(x).shape == shape:
        return as_variable(x)
    return SumTo(shape).apply((x,))[0]


class Concat(FunctionNode):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, inputs):
        return _xp(inputs[0]).concatenate(inputs, axis=self.axis),

    def backward(self, indexes, grad_outputs):
        sizes = [n.shape[self.axis] for n in self.inputs]
        return split_axis(grad_outputs[0], list(numpy.cumsum(sizes)[:-1]), self.axis)


def concat(xs, axis=1):
    """Join arrays along an existing axis (channels by default)."""
    shapes = [as_array(x).shape for x in xs]
    ndim = len(shapes[0])
    axis = axis % ndim
    for s in shapes[1:]:
        if len(s) != ndim or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]:
            raise ValueError(f"concat: shapes {shapes[0]} and {s} differ outside axis {axis}")
    return Concat(axis).apply(tuple(xs))[0]


def stack(xs, axis=0):
    """Join arrays along a new axis."""
    return concat([expand_dims(x, axis) for x in xs], axis)


class SplitAxis(FunctionNode):
    def __init__(self, indices, axis):
        self.indices, self.axis = indices, axis

    def forward(self, inputs):
        x, = inputs
        self._xp = _xp(x)
        return tuple(self._xp.split(x, self.indices, self.axis))

    def backward(self, indexes, grad_outputs):
        x = self.inputs[0]
        bounds = [0] + list(self.indices) + [x.shape[self.axis]]
        gys = []
        for i, gy in enumerate(grad_outputs):
            if gy is None:   # an output nobody used: its gradient is zero
                shape = list(x.shape)
                shape[self.axis] = bounds[i + 1] - bounds[i]
                gy = self._xp.zeros(shape, x.dtype)
            gys.append(gy)
        return concat(gys, self.axis),


def split_axis(x, indices_or_sections, axis=1):
    """Split x along axis into equal sections (an int) or at the given indices (a list)."""
    x = as_variable(x)
    n = x.shape[axis]
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise ValueError(f"split_axis: axis {axis} of length {n} does not split into "
                             f"{indices_or_sections} equal parts")
        step = n // indices_or_sections
        indices = [step * i for i in range(1, indices_or_sections)]
    else:
        indices = [int(i) for i in indices_or_sections]
    return SplitAxis(indices, axis % x.ndim).apply((x,))


class GetItem(FunctionNode):
    def __init__(self, index):
        self.index = index

    def forward(self, inputs):
        return inputs[0][self.index],

    def backward(self, indexes, grad_outputs):
        return GetItemGrad(self.index, self.inputs[0].shape).apply(grad_outputs)


class GetItemGrad(FunctionNode):
    """The adjoint of x[index]: scatter-add gy into zeros of x's shape."""

    def __init__(self, index, shape):
        self.index, self.shape = index, shape

    def forward(self, inputs):
        gy, = inputs
        xp = _xp(gy)
        gx = xp.zeros(self.shape, gy.dtype)
        if _is_basic(self.index):
            gx[self.index] = gy
        else:  # advanced indexing may repeat an element: accumulate
            xp.add.at(gx, self.index, gy)
        return gx,

    def backward(self, indexes, grad_outputs):
        return get_item(grad_outputs[0], self.index),


def _is_basic(index):
    index = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice, numpy.integer)) for i in index)


def get_item(x, index):
    """x[index]: slices (crops), integers, None, Ellipsis, or integer/boolean arrays."""
    if isinstance(index, list):
        index = numpy.asarray(index)
    return GetItem(index).apply((x,))[0]


class Pad(FunctionNode):
    def __init__(self, pad_width, value):
        self.pad_width, self.value = pad_width, value

    def forward(self, inputs):
        x, = inputs
        return _xp(x).pad(x, self.pad_width, mode="constant", constant_values=self.value),

    def backward(self, indexes, grad_outputs):
        inner = tuple(slice(lo, lo + n) for (lo, _), n in zip(self.pad_width, self.inputs[0].shape))
        return get_item(grad_outputs[0], inner),


def pad(x, pad_width, value=0):
    """Constant padding; pad_width as numpy.pad takes it: an int, a pair, or a pair per axis."""
    ndim = as_array(x).ndim
    pad_width = tuple(tuple(int(v) for v in p) for p in numpy.broadcast_to(pad_width, (ndim, 2)))
    return Pad(pad_width, value).apply((x,))[0]


class Where(FunctionNode):
    def __init__(self, condition):
        self.condition = condition

    def forward(self, inputs):
        a, b = inputs
        return _xp(a).where(self.condition, a, b),

    def backward(self, indexes, grad_outputs):
        gy, = grad_outputs
        zero = _xp(gy.array).zeros((), gy.dtype)
        ga = Where(self.condition).apply((gy, zero))[0]
        gb = Where(self.condition).apply((zero, gy))[0]
        return (sum_to(ga, self.inputs[0].shape), sum_to(gb, self.inputs[1].shape))


def where(condition, a, b):
    """a where the (constant, boolean) condition holds, else b; broadcasting."""
    from .math import _operands
    a, b = _operands("where", a, b)
    return Where(as_array(condition)).apply((a, b))[0]


class Cast(FunctionNode):
    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, inputs):
        return inputs[0].astype(self.dtype, copy=False),

    def backward(self, indexes, grad_outputs):
        return cast(grad_outputs[0], self.inputs[0].dtype),


def cast(x, dtype):
    """x converted to another floating dtype."""
    if as_array(x).dtype == dtype:
        return as_variable(x)
    return Cast(numpy.dtype(dtype)).apply((x,))[0]
