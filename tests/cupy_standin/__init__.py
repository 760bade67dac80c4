"""A strict CuPy stand-in: installed as sys.modules['cupy'], minigan's GPU code paths run on the
CPU, and what CuPy would refuse is an error here.

install(monkeypatch) returns the module; its `state` (cupy_standin.array.State) holds the
current device, the host syncs and transfers counted, and the incompatibilities met. The
namespace is CuPy's (namespace.txt, read from a real cupy), computed by NumPy; RawModule runs
minigan's kernels on host threads (tests/cuda_host). numpy.asarray & co. on a device array raise
CuPy's TypeError: on a NumPy subclass they would otherwise copy silently.
"""
import sys
import types

import numpy

from minigan import backend
from minigan import cuda as minigan_cuda

from . import array, cuda, functions, namespace
from .array import Incompatible, State, ndarray  # noqa: F401 (the package's interface)

_CONVERTERS = ("asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray")


def make(n_devices=2, strict=True, host_random=False):
    """A fresh stand-in cupy module with its own State."""
    array.state = State(n_devices, strict)
    array.namespace = namespace.load()
    mod = functions.fill(types.ModuleType("cupy"))
    mod.__version__ = "14.2.0-standin"
    mod.cuda = cuda.module()
    mod.random = functions.random_module(host_random)
    mod.RawModule, mod.RawKernel = cuda.RawModule, cuda.RawKernel
    mod.get_default_memory_pool = mod.cuda.get_default_memory_pool
    mod.state = array.state
    return mod


def _refusing(name, original):
    def convert(a, *args, **kwargs):
        if array.holds_device_array(a):
            array.state.refuse(f"numpy.{name}(device array): Implicit conversion to a NumPy "
                               "array is not allowed. Please use `.get()` to construct a NumPy "
                               "array explicitly.")
            a = array.unwrap(a, f"numpy.{name}")
        return original(a, *args, **kwargs)
    convert.__name__ = name
    return convert


def install(monkeypatch, n_devices=2, strict=True, host_random=False, small_launches=True):
    """The stand-in as cupy for one test: in sys.modules, in minigan.backend, minigan.cuda's
    caches emptied; small_launches: 32-thread blocks and few blocks, so the host threads stay
    few and the kernels' grid-stride loops go round."""
    mod = make(n_devices, strict, host_random)
    monkeypatch.setitem(sys.modules, "cupy", mod)
    monkeypatch.setattr(backend, "_cupy", mod)
    monkeypatch.setattr(backend, "_probed", set())
    monkeypatch.setattr(minigan_cuda, "_modules", {})
    monkeypatch.setattr(minigan_cuda, "_functions", {})
    if small_launches:
        monkeypatch.setattr(minigan_cuda, "threads_per_block", 32)
        monkeypatch.setattr(minigan_cuda, "max_blocks", 3)
        monkeypatch.setattr(minigan_cuda, "max_grid_y", 4)
    for name in _CONVERTERS:
        monkeypatch.setattr(numpy, name, _refusing(name, getattr(numpy, name)))
    return mod
