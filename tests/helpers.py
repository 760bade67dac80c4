"""One helper per kind of check, so each op's test is one line (tinygrad's helper_test_op manner)."""
import numpy

from minigan import Variable
from minigan.gradient_check import check_backward, check_double_backward


def randn(*shape, seed=0, dtype=numpy.float64, low=None):
    """Reproducible normal samples; with `low`, samples are pushed away below it (e.g. for log)."""
    x = numpy.random.RandomState(seed).standard_normal(shape).astype(dtype)
    return numpy.abs(x) + low if low is not None else x


def check_op(fn, inputs, reference=None, double=True, atol=1e-5, rtol=1e-4, **kw):
    """Check fn's forward against a NumPy reference, then its first (and second) derivatives.

    fn takes Variables; reference takes the same arrays and returns the expected array(s).
    """
    inputs = tuple(inputs)
    if reference is not None:
        ys = fn(*[Variable(x) for x in inputs])
        ys = ys if isinstance(ys, (tuple, list)) else (ys,)
        expected = reference(*inputs)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        for y, e in zip(ys, expected):
            assert y.shape == numpy.shape(e), f"shape {y.shape} != expected {numpy.shape(e)}"
            numpy.testing.assert_allclose(y.array, e, rtol=1e-7, atol=1e-10)
    check_backward(fn, inputs, atol=atol, rtol=rtol, **kw)
    if double:
        check_double_backward(fn, inputs, atol=atol * 10, rtol=rtol * 10, **kw)
