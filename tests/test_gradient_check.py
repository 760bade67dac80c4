"""The checks themselves: they pass on right gradients and fail on wrong ones, to either order."""
import numpy
import pytest

import minigan.functions as F
from minigan import FunctionNode, Variable
from minigan.core import config
from minigan.gradient_check import check_backward, check_double_backward, numerical_grad


class Cube(FunctionNode):
    """x^3 with a backward that is right to first order; `detached` breaks the second order."""

    def __init__(self, wrong_first=False, detached=False, wrong_recorded=False):
        self.wrong_first, self.detached = wrong_first, detached
        self.wrong_recorded = wrong_recorded

    def forward(self, inputs):
        self.retain_inputs((0,))
        return inputs[0] ** 3,

    def backward(self, indexes, grad_outputs):
        x, = self.get_retained_inputs()
        gy, = grad_outputs
        if self.wrong_first:
            return gy * x * x * 2.9,
        if self.detached:                      # a constant: the gradient of the gradient is lost
            return gy * (3 * x.array ** 2),
        if self.wrong_recorded and config.enable_backprop:   # right on arrays, wrong as ops
            return gy * x * x * 3.1,
        return gy * x * x * 3.0,


X = numpy.random.RandomState(0).standard_normal((3, 4))


def test_numerical_grad_matches_the_formula():
    x = X.copy()
    g, = numerical_grad(lambda: (x ** 3,), [x], (numpy.ones_like(x),), eps=1e-4)
    numpy.testing.assert_allclose(g, 3 * X ** 2, rtol=1e-6)
    numpy.testing.assert_array_equal(x, X)          # restored after perturbation


def test_check_backward_accepts_right_and_rejects_wrong_gradients():
    check_backward(lambda x: Cube().apply((x,))[0], X)
    with pytest.raises(AssertionError, match="gradient of input 0"):
        check_backward(lambda x: Cube(wrong_first=True).apply((x,))[0], X)


def test_check_double_backward_rejects_a_backward_that_is_not_differentiable():
    check_double_backward(lambda x: Cube().apply((x,))[0], X)
    check_backward(lambda x: Cube(detached=True).apply((x,))[0], X)   # first order is right
    with pytest.raises(AssertionError):
        check_double_backward(lambda x: Cube(detached=True).apply((x,))[0], X)


def test_check_double_backward_rejects_a_recorded_gradient_unlike_the_plain_one():
    """An op with two backward paths (arrays; ops under create_graph) that disagree: the second
    order of the wrong path is consistent with itself, so only the first-order comparison sees it."""
    check_backward(lambda x: Cube(wrong_recorded=True).apply((x,))[0], X)
    with pytest.raises(AssertionError, match="create_graph=True gives a different"):
        check_double_backward(lambda x: Cube(wrong_recorded=True).apply((x,))[0], X)


def test_parameters_and_integer_inputs():
    w = Variable(numpy.random.RandomState(1).standard_normal(4))
    labels = numpy.array([0, 3, 1])
    check_backward(lambda x, t: F.softmax_cross_entropy(x * w, t), (X, labels), params=[w])
