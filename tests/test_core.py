"""The engine: graph recording, backprop order and accumulation, grad(), configs, memory."""
import sys
import threading
import weakref

import numpy
import pytest

import minigan
import minigan.functions as F
from minigan import FunctionNode, Variable


def test_backward_sums_gradients_over_all_paths():
    x = Variable(numpy.array([1.0, 2.0, 3.0]))
    a = x * x                      # x reaches y through a (twice) and directly
    y = F.sum(a * a + x)           # y = sum x^4 + x
    y.backward()
    numpy.testing.assert_allclose(x.grad.array, 4 * x.array ** 3 + 1)


def test_backward_accumulates_into_leaves_until_cleared():
    x = Variable(numpy.array([2.0]))
    (x * 3).backward()
    (x * 3).backward()
    assert x.grad.array.item() == 6.0
    x.cleargrad()
    assert x.grad is None


def test_rank_order_runs_each_node_once_with_its_full_gradient():
    calls = []

    class Spy(FunctionNode):
        def forward(self, inputs):
            return inputs[0] * 1,

        def backward(self, indexes, grad_outputs):
            calls.append(grad_outputs[0].array.copy())
            return grad_outputs[0],

    x = Variable(numpy.ones(2))
    h = Spy().apply((x,))[0]
    branches = [h * 2, F.exp(h) * 0 + h, h * 3]   # three consumers at different depths
    F.sum(branches[0] + branches[1] + branches[2]).backward()
    assert len(calls) == 1
    numpy.testing.assert_allclose(calls[0], [6.0, 6.0])


def test_grad_returns_variables_and_leaves_grad_alone():
    x, w = Variable(numpy.array([1.0, 2.0])), Variable(numpy.array([3.0, 4.0]))
    y = F.sum(x * w)
    gx, = minigan.grad(y, [x])
    numpy.testing.assert_allclose(gx.array, w.array)
    assert x.grad is None and w.grad is None
    unrelated = Variable(numpy.ones(2))
    assert minigan.grad(y, [unrelated]) == [None]


def test_grad_of_an_intermediate_and_with_grad_outputs():
    x = Variable(numpy.array([1.0, 2.0]))
    h = x * 2
    y = h * h
    gh, gx = minigan.grad([y], [h, x], [numpy.array([1.0, 10.0])])
    numpy.testing.assert_allclose(gh.array, 2 * h.array * [1, 10])
    numpy.testing.assert_allclose(gx.array, 4 * gh.array / 2)


def test_grad_skips_input_gradients_that_reach_no_target():
    seen = []

    class Spy(FunctionNode):
        def forward(self, inputs):
            return inputs[0] * inputs[1],

        def backward(self, indexes, grad_outputs):
            seen.append(indexes)
            return grad_outputs[0], grad_outputs[0]

    a, b = Variable(numpy.ones(3)), Variable(numpy.ones(3))
    y = F.sum(Spy().apply((a, b))[0])
    minigan.grad(y, [a])
    c = numpy.ones(3)                                     # a constant: never needs a gradient
    F.sum(Spy().apply((a, c))[0]).backward()
    assert seen == [(0,), (0,)]


def test_double_backprop_by_create_graph():
    x = Variable(numpy.array([0.3, -1.2]))
    gx, = minigan.grad(F.sum(F.tanh(x) ** 3), [x], create_graph=True)
    assert gx.creator is not None
    ggx, = minigan.grad(F.sum(gx), [x])
    t = numpy.tanh(x.array)
    # d/dx [3 t^2 (1 - t^2)] = (6 t - 12 t^3)(1 - t^2)
    numpy.testing.assert_allclose(ggx.array, (6 * t - 12 * t ** 3) * (1 - t ** 2))


def test_create_graph_false_records_nothing():
    x = Variable(numpy.array([1.0, 2.0]))
    gx, = minigan.grad(F.sum(F.exp(x)), [x])
    assert gx.creator is None and not gx.requires_grad


def test_no_backprop_mode_and_using_config():
    x = Variable(numpy.ones(2))
    with minigan.no_backprop_mode():
        y = x * 2
        with minigan.force_backprop_mode():
            z = x * 2
    assert y.creator is None and z.creator is not None
    assert minigan.config.train
    with minigan.using_config("train", False):
        assert not minigan.config.train
    assert minigan.config.train
    with pytest.raises(AttributeError, match="unknown config option"):
        with minigan.using_config("trian", False):
            pass


def test_config_is_per_thread():
    seen = []
    with minigan.no_backprop_mode():
        t = threading.Thread(target=lambda: seen.append(minigan.config.enable_backprop))
        t.start()
        t.join()
    assert seen == [True]


def test_constants_need_no_graph():
    y = F.exp(numpy.ones(3))
    assert y.creator is None and not y.requires_grad


def test_intermediate_arrays_are_freed_unless_retained():
    x = Variable(numpy.ones(1000))
    a = x + 1                       # add keeps no array for its backward
    ref = weakref.ref(a.array)
    y = F.sum(a)
    del a
    assert ref() is None
    y.backward()                    # the graph still works without a's array
    numpy.testing.assert_allclose(x.grad.array, 1.0)


def test_retained_inputs_stay_connected_after_the_user_drops_them():
    x = Variable(numpy.array([0.5, 1.5]))
    h = x * 3
    y = F.log(h)                    # log keeps h for backward; h is dropped below
    del h
    gx, = minigan.grad(F.sum(y), [x], create_graph=True)   # = 1/x
    ggx, = minigan.grad(F.sum(gx), [x])
    numpy.testing.assert_allclose(ggx.array, -1 / x.array ** 2)


def test_unchain_backward_cuts_the_graph():
    x = Variable(numpy.ones(2))
    y = F.exp(x * 2)
    y.unchain_backward()
    assert y.creator is None
    F.sum(y).backward()
    assert x.grad is None


def test_backward_of_non_scalar_needs_a_gradient():
    y = Variable(numpy.ones(3)) * 2
    with pytest.raises(ValueError, match="needs its .grad set"):
        y.backward()
    y.grad = numpy.array([1.0, 2.0, 3.0])
    y.backward()


def test_retain_grad_keeps_intermediate_gradients():
    x = Variable(numpy.array([1.0, 2.0]))
    h = x * 3
    F.sum(h * h).backward(retain_grad=True)
    numpy.testing.assert_allclose(h.grad.array, 2 * h.array)


def test_variable_rejects_non_arrays():
    with pytest.raises(TypeError, match="numpy or cupy array"):
        Variable([1.0, 2.0])


def test_mixing_numpy_and_cupy_is_refused(monkeypatch):
    class FakeCupyArray(numpy.ndarray):
        """Stands in for cupy.ndarray on a machine without a GPU."""

    class FakeCupy:
        ndarray = FakeCupyArray

    fake = numpy.ones(3).view(FakeCupyArray)
    monkeypatch.setitem(sys.modules, "cupy", FakeCupy)
    with pytest.raises(TypeError, match=r"Add: inputs mix NumPy and CuPy arrays.*to_gpu"):
        Variable(numpy.ones(3)) + fake


@pytest.mark.gpu
def test_mixing_numpy_and_cupy_is_refused_on_a_device():
    import cupy
    with pytest.raises(TypeError, match="mix NumPy and CuPy"):
        Variable(numpy.ones(3, numpy.float32)) + Variable(cupy.ones(3, cupy.float32))


def test_backward_shape_errors_name_the_op():
    class Wrong(FunctionNode):
        def forward(self, inputs):
            return inputs[0].sum(keepdims=True),

        def backward(self, indexes, grad_outputs):
            return grad_outputs[0],             # wrong: should broadcast to the input's shape

    y = Wrong().apply((Variable(numpy.ones(3)),))[0]
    with pytest.raises(ValueError, match=r"Wrong.backward: gradient of input 0 has shape \(1,\)"):
        y.backward()


def test_backward_with_inputs_fills_only_those():
    a, b = Variable(numpy.array([1.0, 2.0])), Variable(numpy.array([3.0, 4.0]))
    y = F.sum(a * b)
    y.backward(inputs=[a])
    numpy.testing.assert_allclose(a.grad.array, b.array)
    assert b.grad is None
    y.backward(inputs=[a])                              # accumulates like backward()
    numpy.testing.assert_allclose(a.grad.array, 2 * b.array)


def test_deepcopy_gives_an_independent_leaf():
    import copy
    x = Variable(numpy.ones(3))
    x.extra = "kept"
    y = copy.deepcopy(x * 2)
    assert y.creator is None and y.requires_grad
    z = copy.deepcopy(x)
    assert z.extra == "kept" and z.array is not x.array
    F.sum(z * 3).backward()
    assert x.grad is None and z.grad.array.tolist() == [3.0, 3.0, 3.0]
