"""The array-module switch: NumPy on the CPU, CuPy on a CUDA device; cupy is imported lazily."""
import contextlib
import sys

import numpy

_cupy = None          # the cupy module once imported, False if it cannot be
_CUPY_HINT = "pip install -e .[cuda13] (or .[cuda12] for CUDA 12)"


def _import_cupy():
    """cupy, or None where it is not installed (imported at most once)."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
            _cupy = cupy
        except ImportError:
            _cupy = False
    return _cupy or None


def is_cupy_array(x):
    """True for a cupy.ndarray; never imports cupy just to say no (a CuPy array can only exist
    once cupy has been imported, so sys.modules tells)."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def is_array(x):
    """True for a NumPy or CuPy array (not a NumPy scalar, which cannot be written in place)."""
    return isinstance(x, numpy.ndarray) or is_cupy_array(x)


def get_array_module(*arrays):
    """numpy or cupy, whichever the arrays (or Variables) live in."""
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        for a in arrays:
            if isinstance(getattr(a, "array", a), cupy.ndarray):
                return cupy
    return numpy


def array_kind(x):
    """'cupy' or 'numpy': the family of one array, for error messages and checks."""
    return "cupy" if is_cupy_array(x) else "numpy"


def get_cupy(gpu=0):
    """cupy with device `gpu` usable, or a RuntimeError that says how to get it."""
    cupy = _import_cupy()
    if cupy is None:
        raise RuntimeError(f"--gpu {gpu} needs CuPy: {_CUPY_HINT}")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # the driver raises its own error types
        raise RuntimeError(f"--gpu {gpu}: no usable CUDA device ({e})") from None
    if not 0 <= gpu < n:
        raise RuntimeError(f"--gpu {gpu}: this machine has {n} CUDA device(s)")
    return cupy


def use_device(gpu):
    """Make CUDA device `gpu` current (a context manager); -1 means the CPU and does nothing."""
    if gpu is None or gpu < 0:
        return contextlib.nullcontext()
    return get_cupy(gpu).cuda.Device(gpu)


def to_gpu(x, device=0):
    """Copy a NumPy array to CUDA device `device` (cupy arrays already there are returned as is)."""
    cupy = get_cupy(device)
    with cupy.cuda.Device(device):
        return cupy.asarray(x)


def to_cpu(x):
    """A NumPy array from a NumPy or CuPy array."""
    if is_cupy_array(x):
        return x.get()
    return numpy.asarray(x)


def device_of(x):
    """-1 for a NumPy array, the CUDA device id for a CuPy array."""
    return x.device.id if is_cupy_array(x) else -1
