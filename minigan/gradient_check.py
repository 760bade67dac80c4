"""Numerical gradients and the checks that prove an op's backward (and double backward) right.

check_backward compares, for each input in turn, the analytic directional derivative
<grad_x L, d> with the central difference (L(x + eps d) - L(x - eps d)) / (2 eps) along a random
direction d, where L = sum_j <y_j, gy_j>. Two forward passes per input instead of two per element,
and a wrong gradient is caught for almost every d. check_double_backward applies check_backward to
the function (x, gy) -> grad(f(x), x, gy, create_graph=True).
"""
import numpy

from . import backend
from .core import Variable, as_array, grad


def numerical_grad(f, inputs, grad_outputs, eps=1e-3):
    """Central-difference gradient of sum_j <f()_j, grad_outputs_j> w.r.t. each array in inputs.

    f takes no arguments and reads the input arrays, which are perturbed in place and restored.
    """
    grads = []
    for x in inputs:
        g = numpy.zeros(x.shape, dtype=numpy.float64)
        flat = x.reshape(-1)                # a view: writes reach x
        for i in range(flat.size):
            orig = flat[i].copy()
            flat[i] = orig + eps
            plus = _dot(f(), grad_outputs)
            flat[i] = orig - eps
            minus = _dot(f(), grad_outputs)
            flat[i] = orig
            g.reshape(-1)[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def _dot(ys, gys):
    return sum(float((backend.to_cpu(as_array(y)).astype(numpy.float64) *
                      backend.to_cpu(as_array(gy)).astype(numpy.float64)).sum())
               for y, gy in zip(ys, gys))


def _tuple(ys):
    return tuple(ys) if isinstance(ys, (tuple, list)) else (ys,)


def _is_float(a):
    return numpy.issubdtype(a.dtype, numpy.floating)


def check_backward(func, x_data, y_grad=None, params=(), eps=1e-3, atol=1e-5, rtol=1e-4,
                   no_grads=None, seed=0):
    """Assert that func's analytic gradients match central differences.

    func: takes Variables (one per entry of x_data), returns a Variable or a tuple of them.
    x_data: an array or a tuple of arrays (float64 recommended); non-float ones are constants.
    y_grad: gradients of the outputs, random if None (a tuple, or one array for one output).
    params: Variables (e.g. a Link's parameters) whose gradients are checked too.
    no_grads: a bool per input; True skips that input.
    """
    x_data = _tuple(x_data)
    params = tuple(params)
    xp = backend.get_array_module(*x_data)
    rng = numpy.random.RandomState(seed)
    if no_grads is None:
        no_grads = [not _is_float(x) for x in x_data]
    xs = [x if skip else Variable(x) for x, skip in zip(x_data, no_grads)]

    ys = _tuple(func(*xs))
    if y_grad is None:
        y_grad = tuple(xp.asarray(rng.standard_normal(y.shape)).astype(y.dtype) for y in ys)
    y_grad = _tuple(y_grad)
    if len(y_grad) != len(ys):
        raise ValueError(f"check_backward: {len(ys)} outputs but {len(y_grad)} y_grad arrays")
    for y, gy in zip(ys, y_grad):
        if gy is not None and y.shape != gy.shape:
            raise ValueError(f"check_backward: output {y.shape} but y_grad {gy.shape}")
    pairs = [(y, gy) for y, gy in zip(ys, y_grad) if gy is not None]
    checked = [(f"input {i}", x) for i, (x, skip) in enumerate(zip(xs, no_grads)) if not skip]
    checked += [(f"parameter {p.name or i}", p) for i, p in enumerate(params)]
    analytic = grad([y for y, _ in pairs], [v for _, v in checked], [gy for _, gy in pairs])

    def loss():
        with_vars = [x if skip else Variable(x.array) for x, skip in zip(xs, no_grads)]
        return _dot(_tuple(func(*with_vars)), y_grad)

    for (what, v), g in zip(checked, analytic):
        d = xp.asarray(rng.standard_normal(v.shape)).astype(v.dtype)
        d /= max(float(numpy.sqrt(float((d * d).sum()))), 1e-12)
        expected_dir = 0.0 if g is None else float((g.array * d).sum())
        orig = v.array.copy()
        v.array[...] = orig + eps * d
        plus = loss()
        v.array[...] = orig - eps * d
        minus = loss()
        v.array[...] = orig
        numeric_dir = (plus - minus) / (2 * eps)
        if not abs(numeric_dir - expected_dir) <= atol + rtol * abs(numeric_dir):
            raise AssertionError(
                f"check_backward: gradient of {what} (shape {v.shape}) is wrong: directional "
                f"derivative analytic {expected_dir:.8g} vs numerical {numeric_dir:.8g} "
                f"(atol {atol}, rtol {rtol})")


def check_double_backward(func, x_data, y_grad=None, x_grad_grad=None, params=(), eps=1e-3,
                          atol=1e-4, rtol=1e-3, seed=0):
    """Assert that the gradient of func is itself differentiated correctly (second order).

    Checks the function (x..., gy...) -> grad(func(x), x + params, gy, create_graph=True), i.e.
    second derivatives w.r.t. x and params, and the (linear) dependence on gy.
    """
    x_data = _tuple(x_data)
    params = tuple(params)
    xp = backend.get_array_module(*x_data)
    rng = numpy.random.RandomState(seed + 1)
    n_x = len(x_data)
    ys = _tuple(func(*[Variable(x) for x in x_data]))
    if y_grad is None:
        y_grad = tuple(xp.asarray(rng.standard_normal(y.shape)).astype(y.dtype) for y in ys)
    y_grad = _tuple(y_grad)

    def first_order(*args):
        xs, gys = args[:n_x], args[n_x:]
        ys = _tuple(func(*xs))
        wrt = [x for x in xs if isinstance(x, Variable)] + list(params)   # not integer labels
        gxs = grad(list(ys), wrt, list(gys), create_graph=True)
        return tuple(g if g is not None else Variable(xp.zeros(v.shape, v.dtype), requires_grad=False)
                     for g, v in zip(gxs, wrt))

    _same_first_order(func, first_order, x_data, y_grad, params)
    check_backward(first_order, x_data + y_grad, x_grad_grad, params=params, eps=eps, atol=atol,
                   rtol=rtol, seed=seed + 2)


def _same_first_order(func, first_order, x_data, y_grad, params):
    """The gradient recorded for a second order (create_graph=True) equals the plain one: an op
    may compute the two on different paths (fused arrays, recorded ops), and the second-order
    check alone cannot see a wrong first-order value on the recorded path."""
    xs = [Variable(x) if _is_float(x) else x for x in x_data]
    ys = _tuple(func(*xs))
    wrt = [x for x in xs if isinstance(x, Variable)] + list(params)
    plain = grad(list(ys), wrt, list(y_grad))
    recorded = first_order(*[Variable(x) if _is_float(x) else x for x in x_data],
                           *[Variable(g) for g in y_grad])
    for i, (a, b) in enumerate(zip(plain, recorded)):
        if a is None:
            continue
        a, b = backend.to_cpu(as_array(a)), backend.to_cpu(as_array(b))
        tol = 1e-9 if a.dtype == numpy.float64 else 1e-4
        scale = max(float(numpy.abs(a).max(initial=0)), 1e-300)
        if not numpy.allclose(a, b, rtol=tol, atol=tol * scale):
            raise AssertionError(f"gradient {i}: create_graph=True gives a different first-order "
                                 f"value (max |diff| {numpy.abs(a - b).max():.3g})")
