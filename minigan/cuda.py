"""Raw CUDA kernels: kernels/<family>.cu compiled once per device and dtype, launched by name.

Each .cu file is plain CUDA C with `extern "C" __global__` entry points written for a type REAL;
module() compiles it with cupy.RawModule and -DREAL=float or -DREAL=double (CuPy caches the
binaries on disk as well). The ops call launch() only where enabled(x) says so, i.e. on CuPy
arrays; the NumPy path beside each call is the kernel's twin, and the tests run the kernels'
logic on the CPU by replacing module() with a host build (tests/cuda_host).

Launch shapes: threads_per_block threads per block; grid-stride loops get grid_for(n) blocks.
Scalars are passed as NumPy scalars of the kernel's C type (numpy.int32 for int, the array's
dtype for REAL): CuPy would pass a Python int as a 64-bit integer.
"""
import os

import numpy

from . import backend

threads_per_block = 256
max_blocks = 4096           # for grid-stride loops: enough to fill any current GPU several times
max_grid_y = 65535          # CUDA's limit on gridDim.y and gridDim.z

_REAL = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}
_HERE = os.path.dirname(os.path.abspath(__file__))
# an installed wheel ships the .cu files inside the package; a checkout keeps them at the top
_KERNEL_DIRS = (os.path.join(_HERE, "kernels"), os.path.join(os.path.dirname(_HERE), "kernels"))
_modules = {}
_functions = {}


def enabled(x):
    """True where an op runs its raw kernel: x is a float32 or float64 CuPy array."""
    return backend.is_cupy_array(x) and x.dtype in _REAL


def kernel_dir():
    """The folder holding the .cu files, in an installed package or in a checkout."""
    for d in _KERNEL_DIRS:
        if os.path.isfile(os.path.join(d, "conv.cu")):
            return d
    raise FileNotFoundError(f"minigan's CUDA kernels are missing: looked in {_KERNEL_DIRS}")


def source_path(family):
    """Path of kernels/<family>.cu."""
    return os.path.join(kernel_dir(), f"{family}.cu")


def families():
    """Names of every kernel file (without .cu)."""
    return sorted(f[:-3] for f in os.listdir(kernel_dir()) if f.endswith(".cu"))


def compile_options(dtype):
    """NVRTC options for one dtype: the file is built once per REAL type."""
    return (f"-DREAL={_REAL[numpy.dtype(dtype)]}",)


def module(family, dtype):
    """kernels/<family>.cu compiled for dtype on the current device (a cupy.RawModule), memoized."""
    cupy = backend._import_cupy() or backend.get_cupy(0)     # the latter raises the hint
    key = (cupy.cuda.runtime.getDevice(), family, numpy.dtype(dtype))
    mod = _modules.get(key)
    if mod is None:
        with open(source_path(family), encoding="utf-8") as f:
            code = f.read()
        mod = _modules[key] = cupy.RawModule(code=code, options=compile_options(dtype))
    return mod


def function(family, name, dtype):
    """Kernel `name` of kernels/<family>.cu for dtype, memoized per module."""
    mod = module(family, dtype)
    key = (id(mod), name)
    fn = _functions.get(key)
    if fn is None:
        fn = _functions[key] = (mod, mod.get_function(name))    # mod kept alive with its id
    return fn[1]


def grid_for(n, block=None):
    """Blocks for a grid-stride loop over n items: one per block of threads, capped."""
    block = block or threads_per_block
    return int(max(1, min(-(-n // block), max_blocks)))


def _dim3(v):
    return tuple(int(a) for a in v) if isinstance(v, tuple) else (int(v),)


def launch(family, name, dtype, grid, block, args, shared_mem=0):
    """Run kernel `name` of kernels/<family>.cu (compiled for dtype) on grid x block threads."""
    function(family, name, dtype)(_dim3(grid), _dim3(block), tuple(args),
                                  shared_mem=int(shared_mem))


def int32(n):
    """n as a C int, refusing values that do not fit (the kernels index with 32-bit ints)."""
    if not -2 ** 31 <= n < 2 ** 31:
        raise OverflowError(f"{n} does not fit the kernels' 32-bit int")
    return numpy.int32(n)
