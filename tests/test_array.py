"""Shape and indexing ops: forward vs NumPy, first and second derivatives, error messages."""
import numpy
import pytest

import minigan
import minigan.functions as F
from minigan import Variable
from helpers import check_op, randn

X = randn(2, 3, 4, seed=11)


@pytest.mark.parametrize("fn,ref", [
    (lambda x: F.reshape(x, (4, -1)), lambda x: x.reshape(4, -1)),
    (lambda x: x.reshape(6, 4), lambda x: x.reshape(6, 4)),
    (F.flatten, lambda x: x.reshape(2, -1)),
    (lambda x: F.expand_dims(x, 1), lambda x: x[:, None]),
    (lambda x: F.squeeze(F.expand_dims(x, -1)), lambda x: x),
    (lambda x: F.transpose(x), lambda x: x.T),
    (lambda x: F.transpose(x, (1, 2, 0)), lambda x: x.transpose(1, 2, 0)),
    (lambda x: F.broadcast_to(x[:, :1], (5, 2, 3, 4)), lambda x: numpy.broadcast_to(x[:, :1], (5, 2, 3, 4))),
    (lambda x: F.sum_to(x, (3, 1)), lambda x: x.sum(0).sum(1, keepdims=True)),
    (lambda x: x[:, 1:3, ::2], lambda x: x[:, 1:3, ::2]),
    (lambda x: x[1, ..., None], lambda x: x[1, ..., None]),
    (lambda x: x[:, [0, 2, 0]], lambda x: x[:, [0, 2, 0]]),        # repeated: gradients add up
    (lambda x: x[x.array > 0], lambda x: x[x > 0]),
    (lambda x: F.pad(x, ((0, 0), (1, 2), (3, 0))), lambda x: numpy.pad(x, ((0, 0), (1, 2), (3, 0)))),
    (lambda x: F.pad(x, 1, value=2.0), lambda x: numpy.pad(x, 1, constant_values=2.0)),
    (lambda x: F.where(x.array > 0, x, x * 3), lambda x: numpy.where(x > 0, x, x * 3)),
], ids=["reshape", "reshape_method", "flatten", "expand_dims", "squeeze", "T", "transpose",
        "broadcast_to", "sum_to", "slices", "int_ellipsis_none", "fancy_repeat", "bool_mask",
        "pad", "pad_value", "where"])
def test_unary_shape_ops(fn, ref):
    check_op(fn, (X,), ref)


def test_cast_round_trip_and_gradient_dtype():
    x = Variable(X)
    y = F.cast(x, numpy.float32)
    assert y.dtype == numpy.float32
    F.sum(y * 2).backward()
    assert x.grad.dtype == numpy.float64
    numpy.testing.assert_array_equal(x.grad.array, 2.0)
    assert F.cast(x, numpy.float64) is x


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_stack(axis):
    a, b, c = randn(2, 3, 4, seed=1), randn(2, 3, 4, seed=2), randn(2, 3, 4, seed=3)
    check_op(lambda *v: F.concat(v, axis), (a, b, c), lambda *v: numpy.concatenate(v, axis))
    check_op(lambda *v: F.stack(v, axis), (a, b, c), lambda *v: numpy.stack(v, axis))


@pytest.mark.parametrize("sections", [3, [1, 4]])
def test_split_axis(sections):
    x = randn(2, 6, seed=4)
    check_op(lambda v: tuple(F.split_axis(v, sections, 1)), (x,),
             lambda v: tuple(numpy.split(v, sections, 1)))


def test_split_axis_with_an_unused_output():
    x = Variable(randn(2, 6, seed=5))
    a, _, c = F.split_axis(x, 3, axis=1)
    F.sum(a * 2 + c).backward()
    numpy.testing.assert_array_equal(x.grad.array, [[2, 2, 0, 0, 1, 1]] * 2)


def test_errors_name_the_op_and_shapes():
    x = Variable(numpy.ones((2, 3)))
    with pytest.raises(ValueError, match=r"reshape: cannot reshape \(2, 3\) into \(4, 2\)"):
        F.reshape(x, (4, 2))
    with pytest.raises(ValueError, match=r"broadcast_to: cannot broadcast \(2, 3\) to \(3, 3\)"):
        F.broadcast_to(x, (3, 3))
    with pytest.raises(ValueError, match=r"concat: shapes \(2, 3\) and \(3, 3\) differ outside axis 1"):
        F.concat([x, numpy.ones((3, 3))], axis=1)
    with pytest.raises(ValueError, match="split_axis: axis 1 of length 3 does not split into 2"):
        F.split_axis(x, 2, axis=1)


def test_crop_gradient_is_zero_outside():
    x = Variable(numpy.ones((1, 1, 4, 4)))
    F.sum(x[:, :, 1:3, 1:3]).backward()
    assert x.grad.array.sum() == 4 and x.grad.array[0, 0, 0].sum() == 0
    gx, = minigan.grad(F.sum(x[:, :, :2] * x[:, :, :2]), [x], create_graph=True)
    ggx, = minigan.grad(F.sum(gx), [x])
    numpy.testing.assert_array_equal(ggx.array[0, 0], [[2] * 4] * 2 + [[0] * 4] * 2)
