"""blas.gemm (cblas through ctypes, on strided views) against numpy.matmul."""
import numpy
import pytest

from minigan.functions import blas

pytestmark = pytest.mark.skipif(not blas.available(), reason="no OpenBLAS with cblas loaded "
                                "(NumPy built against another BLAS): blas.gemm is unused")


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
def test_gemm_on_windows_and_transposed_views(dtype, ta, tb, beta):
    """c = alpha a b + beta c where a, b are windows of wider buffers (leading dimension >
    columns), or their transposes, and c is a window too; nothing outside c changes."""
    rng = numpy.random.RandomState(0)
    m, k, n = 7, 5, 9
    abuf = rng.standard_normal((k if ta else m, 20)).astype(dtype)
    bbuf = rng.standard_normal((n if tb else k, 30)).astype(dtype)
    a = abuf[:, 3:3 + m].T if ta else abuf[:, 3:3 + k]
    b = bbuf[:, 2:2 + k].T if tb else bbuf[:, 2:2 + n]
    cbuf = rng.standard_normal((m, 15)).astype(dtype)
    want = cbuf.copy()
    want[:, 4:4 + n] = 1.5 * (a.astype(numpy.float64) @ b) + beta * cbuf[:, 4:4 + n]
    blas.gemm(a, b, cbuf[:, 4:4 + n], beta=beta, alpha=1.5)
    tol = 1e-5 if dtype == numpy.float32 else 1e-13
    numpy.testing.assert_allclose(cbuf, want, rtol=tol, atol=tol)


def test_gemm_copies_views_blas_cannot_read():
    rng = numpy.random.RandomState(1)
    a = rng.standard_normal((4, 6))[::-1, ::2]           # negative and non-unit strides
    b = rng.standard_normal((3, 5))
    c = numpy.zeros((4, 5))
    numpy.testing.assert_allclose(blas.gemm(a, b, c), a @ b, rtol=1e-13)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1)])
def test_gemm_reads_length_1_axes_of_any_stride(shape):
    """A broadcast view (stride 0) that NumPy calls contiguous, as a gradient of a sum is."""
    rng = numpy.random.RandomState(2)
    a = numpy.broadcast_to(numpy.float32(1.5), shape)
    for m in (a, numpy.lib.stride_tricks.as_strided(numpy.ones(1, numpy.float32) * 2, shape,
                                                    (0, 4) if shape[0] == 1 else (4, 0))):
        b = rng.standard_normal((shape[1], 3)).astype(numpy.float32)
        c = numpy.zeros((shape[0], 3), numpy.float32)
        numpy.testing.assert_allclose(blas.gemm(m, b, c), numpy.asarray(m) @ b, rtol=1e-6)
        bt = rng.standard_normal((3, shape[0])).astype(numpy.float32)
        c = numpy.zeros((3, shape[1]), numpy.float32)
        numpy.testing.assert_allclose(blas.gemm(bt, m, c), bt @ numpy.asarray(m), rtol=1e-6)


def test_gemm_empty_and_zero_k():
    c = numpy.ones((2, 3), numpy.float32)
    blas.gemm(numpy.zeros((2, 0), numpy.float32), numpy.zeros((0, 3), numpy.float32), c, beta=0.5)
    numpy.testing.assert_array_equal(c, 0.5)
    blas.gemm(numpy.zeros((0, 4)), numpy.zeros((4, 3)), numpy.zeros((0, 3)))


@pytest.mark.parametrize("a, b, c, message", [
    ((2, 3), (4, 5), (2, 5), "gemm: float64"),
    ((2, 3), (3, 5), (2, 4), "gemm: float64"),
])
def test_gemm_shape_errors(a, b, c, message):
    with pytest.raises(ValueError, match=message):
        blas.gemm(numpy.zeros(a), numpy.zeros(b), numpy.zeros(c))


def test_gemm_refuses_an_output_it_cannot_write_in_place():
    c = numpy.zeros((3, 4))
    with pytest.raises(ValueError, match="unit-stride rows"):
        blas.gemm(numpy.zeros((4, 2)), numpy.zeros((2, 3)), c.T)
    with pytest.raises(ValueError, match="gemm: float32"):
        blas.gemm(numpy.zeros((3, 2), numpy.float32), numpy.zeros((2, 4)), c)


def test_mixed_dtypes_refused():
    with pytest.raises(ValueError):
        blas.gemm(numpy.zeros((2, 2), numpy.float32), numpy.zeros((2, 2)), numpy.zeros((2, 2)))


def test_minigan_blas_0_turns_it_off(monkeypatch):
    monkeypatch.setattr(blas, "_gemm", None)
    monkeypatch.setenv("MINIGAN_BLAS", "0")
    assert not blas.available()
    monkeypatch.setattr(blas, "_gemm", None)
    monkeypatch.setenv("MINIGAN_BLAS", "1")
    assert blas.available()


def test_gemm_runs_before_anyone_asked_available(monkeypatch):
    monkeypatch.setattr(blas, "_gemm", None)
    c = numpy.zeros((2, 2), numpy.float32)
    blas.gemm(numpy.eye(2, dtype=numpy.float32), numpy.ones((2, 2), numpy.float32), c)
    numpy.testing.assert_array_equal(c, 1)


def test_corename_is_the_kernel_set_openblas_chose():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    ours = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"]
    if not ours:
        assert blas.corename() is None
        return
    assert blas.corename() == ours[0]["architecture"]      # read by threadpoolctl on its own
