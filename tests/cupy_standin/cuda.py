"""cupy.cuda for the stand-in: devices as context managers, the runtime queries minigan makes,
and RawModule, whose kernels run on host threads through tests/cuda_host."""
import re
import types

import numpy

import cuda_host
from minigan import cuda as minigan_cuda

from . import array as A
from .array import CUDARuntimeError, Device, ndarray  # noqa: F401 (cupy.cuda's)


def _real_dtype(options):
    for opt in options:
        m = re.fullmatch(r"-DREAL=(\w+)", opt)
        if m:
            return {"float": numpy.float32, "double": numpy.float64}[m.group(1)]
    raise ValueError(f"RawModule options {options} name no REAL type (-DREAL=...)")


def _family_of(code):
    """The kernels/<family>.cu whose text is code (the host build is made from the file)."""
    for family in minigan_cuda.families():
        with open(minigan_cuda.source_path(family), encoding="utf-8") as f:
            if f.read() == code:
                return family
    raise ValueError("RawModule: code is not one of minigan's kernels/*.cu")


class RawModule:
    """cupy.RawModule(code=, options=): compiled for the current device; its kernels run by the
    host emulation."""

    def __init__(self, code=None, *, path=None, options=(), backend="nvrtc",
                 translate_cucomplex=False, enable_cooperative_groups=False,
                 name_expressions=None, jitify=False):
        self.device = A.state.current
        self.host = cuda_host.host_module(_family_of(code), _real_dtype(options))

    def get_function(self, name):
        return RawKernel(self, name)


class RawKernel:
    """A kernel of a RawModule: kernel(grid, block, args, shared_mem=0), args checked as CuPy
    would pass them to the device."""

    def __init__(self, module, name):
        self.module, self.name = module, name
        self.host = module.host.get_function(name)

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None,
                 enable_cooperative_groups=False):
        where = f"kernel {self.name}"
        if self.module.device != A.state.current:
            A.state.refuse(f"{where}: compiled for device {self.module.device}, launched on "
                           f"device {A.state.current}", ValueError)
        plain = []
        for i, a in enumerate(args):
            if isinstance(a, ndarray):
                plain.append(A.unwrap(a, where))
            elif isinstance(a, numpy.ndarray):
                A.state.refuse(f"{where}: argument {i} is a NumPy array (a host pointer)")
                plain.append(a)
            elif type(a) in (bool, int, float):     # numpy.float64 is a float too: exact types
                A.state.refuse(f"{where}: argument {i} is a Python {type(a).__name__}; CuPy "
                               "passes it as a 64-bit value (give a numpy.int32 or the REAL type)")
                plain.append(a)
            else:
                plain.append(a)
        A.state.launches[self.name] += 1
        try:
            self.host(grid, block, tuple(plain), shared_mem=shared_mem)
        except TypeError as e:      # the host harness checks each argument's exact C type
            A.state.refuse(f"{where}: {e}")


def module():
    """The cupy.cuda namespace."""
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: A.state.n_devices, getDevice=lambda: A.state.current,
        runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 13000,
        CUDARuntimeError=CUDARuntimeError)
    pool = types.SimpleNamespace(used_bytes=lambda: 0, total_bytes=lambda: 0,
                                 free_all_blocks=lambda: None)
    return types.SimpleNamespace(
        Device=Device, runtime=runtime, get_device_id=lambda: A.state.current,
        device=types.SimpleNamespace(get_cublas_handle=lambda: 1, Device=Device),
        nvrtc=types.SimpleNamespace(getVersion=lambda: (13, 0)),
        get_default_memory_pool=lambda: pool, is_available=lambda: True)
