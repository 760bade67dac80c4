"""The array-module switch and the device: NumPy on the CPU, CuPy on CUDA device N.

A run names its device once (`Device(gpu)`, -1 the CPU) and enters it once (`with device:`), so
that ops, cuBLAS, the raw kernels and CuPy's random generator all run on device N; moving an
array is one call (`device.send(x)`, `to_device(x, device)`), never an `if gpu < 0` at the
call site. cupy is imported lazily and is optional.
"""
import sys

import numpy

_cupy = None          # the cupy module once imported, False if it cannot be
_CUPY_HINT = "pip install -e .[cuda13] (or .[cuda12] for CUDA 12)"
_probed = set()       # devices whose CUDA libraries were found usable


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


def is_host_float(x):
    """True for a plain NumPy float32 or float64 array: what the CPU's BLAS and compiled loops
    take (not CuPy, not an ndarray subclass such as the tests' device stand-in)."""
    return type(x) is numpy.ndarray and x.dtype in (numpy.float32, numpy.float64)


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


class DeviceError(RuntimeError):
    """A device this machine cannot give (no CuPy, no such GPU): one line for the user."""


def get_cupy(gpu=0):
    """cupy with device `gpu` usable, or a DeviceError that says how to get it."""
    cupy = _import_cupy()
    if cupy is None:
        raise DeviceError(f"--gpu {gpu} needs CuPy: {_CUPY_HINT}")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # the driver raises its own error types
        raise DeviceError(f"--gpu {gpu}: no usable CUDA device ({e})") from None
    if not 0 <= gpu < n:
        raise DeviceError(f"--gpu {gpu}: this machine has {n} CUDA device(s)")
    if gpu not in _probed:
        probe(cupy, gpu)
        _probed.add(gpu)
    return cupy


def _cuda_version(v):
    return f"{v // 1000}.{v % 1000 // 10}"


def probe(cupy, gpu):
    """Try, once, what a run needs on device gpu: a driver new enough for CuPy's CUDA, cuBLAS,
    cuRAND and NVRTC. A missing one is a DeviceError naming the extra that installs it, before
    any work (not a traceback at the first matrix product)."""
    runtime, driver = cupy.cuda.runtime.runtimeGetVersion(), cupy.cuda.runtime.driverGetVersion()
    extra = f"pip install -e .[cuda{runtime // 1000}]"
    if driver // 1000 < runtime // 1000:
        raise DeviceError(f"--gpu {gpu}: the NVIDIA driver supports CUDA {_cuda_version(driver)}"
                          f", this CuPy needs CUDA {runtime // 1000}: update the driver, or "
                          f"install the CuPy of CUDA {driver // 1000} "
                          f"(pip install -e .[cuda{driver // 1000}])")
    libraries = (("cuBLAS", lambda: cupy.cuda.device.get_cublas_handle()),
                 ("cuRAND", lambda: cupy.random.RandomState(0).standard_normal(1)),
                 ("NVRTC", lambda: cupy.cuda.nvrtc.getVersion()))
    with cupy.cuda.Device(gpu):
        for name, check in libraries:
            try:
                check()
            except Exception as e:      # ImportError, OSError, CuPy's own errors
                why = (str(e).splitlines() or [""])[0][:160]
                raise DeviceError(f"--gpu {gpu}: the CUDA library {name} is missing or unusable "
                                  f"({type(e).__name__}: {why}); {extra} installs CuPy with "
                                  "the CUDA libraries it loads") from None


class Device:
    """Where a run computes: the CPU (id -1) or CUDA device `id`. `with device:` makes it current
    for everything inside (a no-op on the CPU); `device.send(x)` puts an array on it."""

    def __init__(self, id=-1):
        id = id.id if isinstance(id, Device) else id
        if isinstance(id, bool) or not isinstance(id, int) or id < -1:
            raise DeviceError(f"--gpu {id}: give -1 for the CPU or a CUDA device id (0, 1, ...)")
        self.id = id
        self._cupy = get_cupy(id) if id >= 0 else None
        self._entered = []

    @property
    def is_gpu(self):
        return self.id >= 0

    @property
    def xp(self):
        """numpy or cupy: the array module of this device."""
        return self._cupy or numpy

    def send(self, x):
        """x (a NumPy or CuPy array) on this device; already there, it is returned as is."""
        if not self.is_gpu:
            return to_cpu(x)
        if is_cupy_array(x) and x.device.id == self.id:
            return x
        with self._cupy.cuda.Device(self.id):
            return self._cupy.asarray(x)

    def __enter__(self):
        if self.is_gpu:
            ctx = self._cupy.cuda.Device(self.id)
            ctx.__enter__()
            self._entered.append(ctx)
        return self

    def __exit__(self, *exc):
        if self.is_gpu:
            self._entered.pop().__exit__(*exc)
        return False

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return "Device(cpu)" if self.id < 0 else f"Device(cuda:{self.id})"


CPU = Device(-1)


def as_device(device):
    """A Device from a Device, an int (-1 for the CPU) or None (the CPU)."""
    return device if isinstance(device, Device) else Device(-1 if device is None else device)


def to_device(x, device):
    """x on `device` (a Device or an id, -1 for the CPU)."""
    return as_device(device).send(x)


def to_gpu(x, device=0):
    """Copy an array to CUDA device `device` (cupy arrays already there are returned as is)."""
    return Device(device).send(x)


def to_cpu(x):
    """A NumPy array from a NumPy or CuPy array."""
    if is_cupy_array(x):
        return x.get()
    return numpy.asarray(x)


def device_of(x):
    """-1 for a NumPy array, the CUDA device id for a CuPy array."""
    return x.device.id if is_cupy_array(x) else -1
