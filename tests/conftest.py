"""Shared fixtures; GPU tests are skipped (with the reason) where no CUDA device is usable."""
import numpy
import pytest


def _gpu_reason():
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
        return None
    except Exception as e:  # ImportError, or the driver's own error
        return f"no usable CUDA device ({type(e).__name__}: {e})"


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            reason = reason or _gpu_reason()
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def rng():
    return numpy.random.RandomState(0)
