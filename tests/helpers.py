"""One helper per kind of check, so each op's test is one line (tinygrad's helper_test_op manner)."""
import os

import numpy
import pytest

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


# -- real data and the command line ---------------------------------------------------------------

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ../shared/data beside the checkout (or inside it, or $MINIGAN_TEST_DATA); tests that need it skip
_BESIDE = os.path.normpath(os.path.join(_REPO, "..", "shared", "data"))
SHARED = os.environ.get("MINIGAN_TEST_DATA") or next(
    (p for p in (_BESIDE, os.path.join(_REPO, "shared", "data")) if os.path.isdir(p)), _BESIDE)


def shared(name):
    """The real data folder SHARED/name, or a skip saying it is absent."""
    path = os.path.join(SHARED, name)
    if not os.path.isdir(path):
        pytest.skip(f"real data folder {path} not present")
    return path


def torch_reference(name):
    """(torch, the shared bench's module `name`), or a skip saying which is missing; its sibling
    `common` module is registered first, as the references import it by name."""
    import importlib.util
    import sys
    torch = pytest.importorskip("torch", reason="the PyTorch reference needs torch")
    bench = os.path.join(SHARED, "..", "bench")
    if not os.path.isfile(os.path.join(bench, name + ".py")):
        pytest.skip(f"PyTorch reference {name}.py not present in {bench}")
    for mod in ("common", name):
        spec = importlib.util.spec_from_file_location(mod, os.path.join(bench, mod + ".py"))
        sys.modules[mod] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[mod])
    return torch, sys.modules[name]


def run(*args, prog_name="minigan"):
    """(exit code, output) of `minigan ARGS` (or `python cli.py ARGS`: prog_name='cli.py'), in
    process."""
    from click.testing import CliRunner
    from minigan.cli import main
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False,
                                prog_name=prog_name)
    return result.exit_code, result.output


def error_line(output):
    """The one `Error:` line a bad input must print."""
    lines = [l for l in output.splitlines() if l.startswith("Error:")]
    assert len(lines) == 1, output
    return lines[0]
