"""Losses against NumPy formulas, with first and second derivatives."""
import numpy
import pytest

import minigan.functions as F
from minigan import Variable
from helpers import check_op, randn


def _log_softmax(x):
    m = x.max(1, keepdims=True)
    return x - m - numpy.log(numpy.exp(x - m).sum(1, keepdims=True))


def test_mean_absolute_and_squared_error():
    x, t = randn(3, 4, seed=1), randn(3, 4, seed=2)
    check_op(F.mean_absolute_error, (x, t), lambda a, b: numpy.abs(a - b).mean())
    check_op(F.mean_squared_error, (x, t), lambda a, b: ((a - b) ** 2).mean())


def test_sigmoid_cross_entropy():
    x, t = randn(4, 5, seed=3) * 3, (randn(4, 5, seed=4) > 0).astype(numpy.float64)
    s = lambda a: 1 / (1 + numpy.exp(-a))
    ref = lambda a, b: -(b * numpy.log(s(a)) + (1 - b) * numpy.log(1 - s(a))).mean()
    check_op(F.sigmoid_cross_entropy, (x, t), ref)


def test_softmax_cross_entropy():
    x, t = randn(6, 4, seed=5) * 2, numpy.array([0, 3, 1, 1, 2, 0])
    ref = lambda a, b: -_log_softmax(a)[numpy.arange(6), b].mean()
    check_op(F.softmax_cross_entropy, (x, t), ref)
    check_op(F.log_softmax, (x,), _log_softmax)


def test_loss_shape_errors():
    with pytest.raises(ValueError, match=r"mean_absolute_error: x \(2, 3\) and t \(3, 2\)"):
        F.mean_absolute_error(Variable(numpy.ones((2, 3))), numpy.ones((3, 2)))
    with pytest.raises(ValueError, match="softmax_cross_entropy: x must be"):
        F.softmax_cross_entropy(Variable(numpy.ones((2, 3))), numpy.zeros(3, int))
