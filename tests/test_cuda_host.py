"""The host harness that runs kernels/*.cu on the CPU (tests/cuda_host) proves what it claims."""
import os

import numpy
import pytest

from cuda_host import HostModule

SELFTEST = os.path.join(os.path.dirname(__file__), "cuda_host", "selftest.cu")


@pytest.fixture(scope="module", params=[numpy.float32, numpy.float64])
def selftest(request):
    return HostModule(SELFTEST, request.param), request.param


def test_shared_memory_reduction_with_syncthreads_and_atomic_add(selftest):
    mod, dtype = selftest
    x = numpy.random.RandomState(0).rand(5000).astype(dtype)
    total = numpy.zeros(1, dtype)
    # 7 blocks of 64 threads: a grid-stride loop, a tree over shared memory, one atomicAdd each
    mod.get_function("block_sum")((7,), (64,), (x, total, numpy.int32(x.size)))
    numpy.testing.assert_allclose(total[0], x.sum(dtype=numpy.float64), rtol=1e-5)


def test_dynamic_shared_memory_barrier_and_early_return(selftest):
    mod, dtype = selftest
    out = numpy.full((3, 32), -1, dtype)
    # every thread reads a slot another thread wrote: right only if the barrier really waits;
    # the 12 threads that return early must not hold it back
    mod.get_function("reverse")((3,), (32,), (out, numpy.int32(20)), shared_mem=32 * out.itemsize)
    want = numpy.array([[b * 1000 + 19 - t for t in range(20)] for b in range(3)], dtype)
    numpy.testing.assert_array_equal(out[:, :20], want)
    assert (out[:, 20:] == -1).all()


def test_a_write_outside_an_array_is_reported(selftest):
    mod, dtype = selftest
    a = numpy.zeros(8, dtype)
    mod.get_function("write_at")((1,), (1,), (a, numpy.int32(7)))
    assert a[7] == 1
    with pytest.raises(AssertionError, match="wrote outside"):
        mod.get_function("write_at")((1,), (1,), (a, numpy.int32(8)))


def test_arguments_must_have_the_kernels_c_types(selftest):
    mod, dtype = selftest
    k = mod.get_function("write_at")
    a = numpy.zeros(8, dtype)
    with pytest.raises(TypeError, match="needs a int32"):      # CuPy would pass an int64
        k((1,), (1,), (a, 3))
    with pytest.raises(TypeError, match="C-contiguous"):
        k((1,), (1,), (numpy.zeros(8, numpy.float16), numpy.int32(0)))
    with pytest.raises(TypeError, match="C-contiguous"):
        k((1,), (1,), (numpy.zeros((4, 4), dtype)[:, 1], numpy.int32(0)))
    with pytest.raises(AssertionError, match="block"):
        k((1,), (2048,), (a, numpy.int32(0)))
