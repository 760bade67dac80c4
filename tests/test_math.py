"""Arithmetic, elementwise math and reductions: forward vs NumPy, first and second derivatives."""
import numpy
import pytest

import minigan.functions as F
from minigan import Variable
from helpers import check_op, randn

SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((5,), ())]


@pytest.mark.parametrize("sa,sb", SHAPES)
@pytest.mark.parametrize("fn,ref", [
    (lambda a, b: a + b, numpy.add),
    (lambda a, b: a - b, numpy.subtract),
    (lambda a, b: a * b, numpy.multiply),
    (lambda a, b: a / b, numpy.divide),
    (F.pow, numpy.power),
], ids=["add", "sub", "mul", "div", "pow"])
def test_binary_broadcasting(fn, ref, sa, sb):
    a, b = randn(*sa, seed=1, low=0.5), randn(*sb, seed=2, low=0.5)
    check_op(fn, (a, b), ref)


@pytest.mark.parametrize("fn,ref,low", [
    (F.neg, numpy.negative, None),
    (F.exp, numpy.exp, None),
    (F.log, numpy.log, 0.5),
    (F.sqrt, numpy.sqrt, 0.5),
    (F.abs, numpy.abs, 0.1),
    (F.square, numpy.square, None),
    (lambda x: x ** 3, lambda x: x ** 3, None),
    (lambda x: 2.0 ** x, lambda x: 2.0 ** x, None),
    (lambda x: 1.5 / x, lambda x: 1.5 / x, 0.5),
    (lambda x: 3.0 - x, lambda x: 3.0 - x, None),
], ids=["neg", "exp", "log", "sqrt", "abs", "square", "pow3", "rpow", "rdiv", "rsub"])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4)])
def test_unary(fn, ref, low, shape):
    x = randn(*shape, seed=3, low=low)
    if fn is F.abs:
        x *= numpy.sign(randn(*shape, seed=4))      # both signs, away from the kink at 0
    check_op(fn, (x,), ref)


def test_clip_away_from_edges():
    x = numpy.array([-2.0, -0.4, 0.1, 0.6, 3.0])
    check_op(lambda v: F.clip(v, -0.5, 0.7), (x,), lambda v: numpy.clip(v, -0.5, 0.7))


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 2), False),
                                           (-1, True)])
@pytest.mark.parametrize("op,ref", [(F.sum, numpy.sum), (F.mean, numpy.mean), (F.max, numpy.max),
                                    (F.min, numpy.min), (F.logsumexp, None)])
def test_reductions(op, ref, axis, keepdims):
    x = randn(2, 3, 4, seed=5)
    if ref is None:
        def ref(a, axis, keepdims):
            m = a.max(axis=axis, keepdims=True)
            out = numpy.log(numpy.exp(a - m).sum(axis=axis, keepdims=True)) + m
            return out if keepdims else numpy.squeeze(out, axis=axis)
    check_op(lambda v: op(v, axis, keepdims), (x,), lambda a: ref(a, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 2))])
def test_matmul(sa, sb):
    check_op(F.matmul, (randn(*sa, seed=6), randn(*sb, seed=7)), numpy.matmul)


def test_operators_and_constants_keep_dtype():
    x = Variable(numpy.ones((2, 3), numpy.float32))
    for y in (x + 1, 1 + x, x * 2.5, x / 3, 3 / x, x - 1, 1 - x, -x, x ** 2, 2 ** x,
              x + numpy.ones(3)):
        assert y.dtype == numpy.float32
    assert (numpy.ones((2, 3), numpy.float32) * x).dtype == numpy.float32
    assert isinstance(numpy.ones((2, 3), numpy.float32) + x, Variable)


def test_shape_mismatch_names_op_and_shapes():
    a, b = Variable(numpy.ones((2, 3))), Variable(numpy.ones((4,)))
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\)"):
        a + b
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(2, 3\)"):
        F.matmul(a, Variable(numpy.ones((2, 3))))
    with pytest.raises(TypeError, match="dtypes float64 and float32"):
        a * Variable(numpy.ones((2, 3), numpy.float32))


def test_max_gradient_goes_to_the_maximum():
    x = Variable(numpy.array([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]]))
    F.sum(F.max(x, axis=1)).backward()
    numpy.testing.assert_array_equal(x.grad.array, [[0, 1, 0], [1, 0, 0]])
