"""Run kernels/*.cu on the CPU: compile a file as C++ with cuda_host.h, call its kernels by ctypes.

For every `extern "C" __global__ void name(params)` the build appends a host entry point
`mg_host_name(grid, block, shared bytes, params)` that runs mg::launch (cuda_host.h): one host
thread per CUDA thread of a block, blocks one after another. A ctypes call releases the GIL, so
the threads really run concurrently and meet at __syncthreads.

HostModule(family, dtype).get_function(name) returns a HostKernel, called like a CuPy RawKernel:
kernel(grid, block, args, shared_mem=0), with NumPy arrays where CuPy would take device arrays.
It is stricter than CuPy, to catch on the CPU what would misbehave on the device:
- each argument must have the parameter's exact C type: a numpy.int32 for an int, the REAL
  dtype for a REAL, an array of that dtype (C-contiguous, not overlapping another) or None for
  a pointer;
- launch shapes must respect the device limits (1024 threads per block, 48 KiB of dynamic
  shared memory, 65535 blocks along y and z);
- each array is copied into the middle of a buffer with 0xFF guard bands (NaN as floats): a
  write outside the array fails the call, and a read outside it shows up as NaN.
Builds are cached by the hash of the sources and flags (MINIGAN_HOST_CACHE, else
~/.cache/minigan/cuda_host), so each file compiles once per machine; the header is precompiled.
"""
import collections
import contextlib
import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy

from minigan import cuda

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_host.h")
CXX = os.environ.get("CXX", "g++")
FLAGS = ["-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-Wall", "-Wextra", "-Werror",
         "-Wno-unused-parameter"]
GUARD = 256                 # bytes of 0xFF on each side of every array
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_SCALARS = {"int": (ctypes.c_int, numpy.int32), "long long": (ctypes.c_longlong, numpy.int64),
            "unsigned int": (ctypes.c_uint, numpy.uint32), "float": (ctypes.c_float, numpy.float32),
            "double": (ctypes.c_double, numpy.float64)}


def cache_dir():
    return os.environ.get("MINIGAN_HOST_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "minigan", "cuda_host")


def kernels_of(source):
    """[(name, [(C type, parameter name)])] of the extern "C" __global__ functions in source."""
    found = []
    for name, params in _KERNEL.findall(source):
        parsed = []
        for p in params.split(","):
            words = p.replace("*", " * ").split()
            parsed.append((" ".join(words[:-1]), words[-1]))
        found.append((name, parsed))
    return found


def _thunks(kernels):
    """C++ host entry points, one per kernel."""
    out = []
    for name, params in kernels:
        decl = ", ".join(f"{t} {n}" for t, n in params)
        names = ", ".join(n for _, n in params)
        out.append(f'extern "C" void mg_host_{name}(unsigned mg_gx, unsigned mg_gy, '
                   f"unsigned mg_gz, unsigned mg_bx, unsigned mg_by, unsigned mg_bz, "
                   f"size_t mg_shmem, {decl}) {{\n"
                   f"    mg::launch(dim3(mg_gx, mg_gy, mg_gz), dim3(mg_bx, mg_by, mg_bz), "
                   f"mg_shmem, [=] {{ {name}({names}); }});\n}}\n")
    return "\n".join(out)


def _compile(args, what):
    r = subprocess.run([CXX, *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"host build of {what} failed:\n{r.stderr}")


def _header_dir():
    """A cached folder holding cuda_host.h and its precompiled form (builds: ~1 s instead of 4)."""
    with open(HEADER, encoding="utf-8") as f:
        header = f.read()
    key = hashlib.sha256("\0".join([header, CXX] + FLAGS).encode()).hexdigest()[:24]
    folder = os.path.join(cache_dir(), f"header-{key}")
    if not os.path.exists(os.path.join(folder, "cuda_host.h.gch")):
        os.makedirs(cache_dir(), exist_ok=True)
        tmp = tempfile.mkdtemp(dir=cache_dir())
        try:
            with open(os.path.join(tmp, "cuda_host.h"), "w", encoding="utf-8") as f:
                f.write(header)
            flags = [f for f in FLAGS if f != "-shared"] + ["-x", "c++-header"]
            _compile(flags + [os.path.join(tmp, "cuda_host.h"), "-o",
                              os.path.join(tmp, "cuda_host.h.gch")], HEADER)
            os.rename(tmp, folder)      # atomic; a parallel session may have won the race
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def build(path, real):
    """Compile the .cu at path for REAL = real ('float' or 'double'); the .so path (cached)."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    header_dir = _header_dir()
    unit = (f'#include "cuda_host.h"\n#line 1 "{os.path.basename(path)}"\n{source}\n'
            f"{_thunks(kernels_of(source))}")
    flags = FLAGS + [f"-DREAL={real}", "-I", header_dir]
    key = hashlib.sha256("\0".join([unit, CXX] + flags).encode()).hexdigest()[:24]
    lib = os.path.join(cache_dir(), f"{os.path.basename(path)[:-3]}-{real}-{key}.so")
    if os.path.exists(lib):
        return lib
    with tempfile.TemporaryDirectory() as tmp:
        cpp = os.path.join(tmp, "unit.cpp")
        with open(cpp, "w", encoding="utf-8") as f:
            f.write(unit)
        out = os.path.join(tmp, "lib.so")
        _compile(flags + ["-o", out, cpp], path)
        os.replace(out, lib)        # atomic: parallel sessions never see half a file
    return lib


class HostKernel:
    """One kernel of a host build, called like cupy.RawKernel: k(grid, block, args, shared_mem)."""

    def __init__(self, lib, name, params, real):
        self.name, self.params = name, params
        self.real = real                # the C type REAL stands for
        self.fn = getattr(lib, f"mg_host_{name}")
        self.fn.restype = None

    def _kind(self, ctype):
        """('ptr', dtype) or ('scalar', ctypes type, numpy type) of a parameter's C type."""
        words = [w for w in ctype.split() if w not in ("const", "__restrict__")]
        base = " ".join(w for w in words if w != "*").replace("REAL", self.real)
        if "*" in words:
            return "ptr", numpy.dtype(_SCALARS[base][1])
        return ("scalar",) + _SCALARS[base]

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
        where = f"{self.name}: "
        assert len(args) == len(self.params), f"{where}{len(args)} args for {len(self.params)}"
        assert 1 <= block[0] * block[1] * block[2] <= 1024, f"{where}block {block}"
        assert min(grid) >= 1 and max(grid[1:]) <= 65535, f"{where}grid {grid}"
        assert 0 <= shared_mem <= 48 * 1024, f"{where}{shared_mem} bytes of dynamic shared memory"
        c_args, copies = [], []
        for (ctype, pname), a in zip(self.params, args):
            kind = self._kind(ctype)
            if kind[0] == "scalar":
                if type(a) is not kind[2]:
                    raise TypeError(f"{where}{pname} ({ctype}) needs a {kind[2].__name__}, got "
                                    f"{type(a).__name__} (CuPy would pass it as another type)")
                c_args.append(kind[1](a.item()))
            elif a is None:
                c_args.append(ctypes.c_void_p(None))
            else:
                if not isinstance(a, numpy.ndarray) or a.dtype != kind[1] or \
                        not a.flags.c_contiguous:
                    raise TypeError(f"{where}{pname} ({ctype}) needs a C-contiguous {kind[1]} "
                                    f"array, got {getattr(a, 'dtype', type(a))}")
                for other, _ in copies:
                    if numpy.shares_memory(a, other):
                        raise ValueError(f"{where}{pname} overlaps another array argument")
                buf = numpy.full(a.nbytes + 2 * GUARD, 0xFF, numpy.uint8)
                buf[GUARD:GUARD + a.nbytes] = a.reshape(-1).view(numpy.uint8)
                copies.append((a, buf))
                c_args.append(ctypes.c_void_p(buf.ctypes.data + GUARD))
        self.fn(*[ctypes.c_uint(v) for v in grid + block], ctypes.c_size_t(shared_mem), *c_args)
        for a, buf in copies:
            if (buf[:GUARD] != 0xFF).any() or (buf[GUARD + a.nbytes:] != 0xFF).any():
                raise AssertionError(f"{where}wrote outside an array of shape {a.shape}")
            a.reshape(-1).view(numpy.uint8)[...] = buf[GUARD:GUARD + a.nbytes]


class HostModule:
    """A .cu file built for the host: get_function(name) -> HostKernel."""

    def __init__(self, path, dtype):
        real = cuda._REAL[numpy.dtype(dtype)]
        self.lib = ctypes.CDLL(build(path, real))
        with open(path, encoding="utf-8") as f:
            self.params = dict(kernels_of(f.read()))
        self.real = real

    def get_function(self, name):
        return HostKernel(self.lib, name, self.params[name], self.real)


@functools.lru_cache(maxsize=None)
def host_module(family, dtype):
    """The memoized host build of one kernel file for one dtype (cuda.module's host twin)."""
    return HostModule(cuda.source_path(family), numpy.dtype(dtype))


def prebuild(families, dtypes=(numpy.float32, numpy.float64), jobs=2):
    """Build (or find in the cache) every (family, dtype) at once, `jobs` compilers in parallel."""
    from concurrent.futures import ThreadPoolExecutor
    pairs = [(cuda.source_path(f), cuda._REAL[numpy.dtype(d)]) for f in families for d in dtypes]
    _header_dir()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda p: build(*p), pairs))


class Emulator:
    """Routes the ops' kernel dispatch (cuda.enabled, cuda.module) to host builds for NumPy
    arrays inside `with emulator.kernels():`; outside it the NumPy twins run as usual.

    Small blocks and grids (threads, blocks, grid_y) keep the host threads few and make every
    grid-stride and plane loop of the kernels go round more than once on small inputs.
    """

    def __init__(self, monkeypatch, threads=32, blocks=3, grid_y=4):
        self.on = False
        self.calls = collections.Counter()      # launches per kernel name
        launch = cuda.launch

        def counted(family, name, *args, **kwargs):
            self.calls[name] += 1
            return launch(family, name, *args, **kwargs)
        monkeypatch.setattr(cuda, "launch", counted)
        monkeypatch.setattr(cuda, "enabled", self.enabled)
        monkeypatch.setattr(cuda, "module", host_module)
        monkeypatch.setattr(cuda, "threads_per_block", threads)
        monkeypatch.setattr(cuda, "max_blocks", blocks)
        monkeypatch.setattr(cuda, "max_grid_y", grid_y)

    def enabled(self, x):
        return self.on and isinstance(x, numpy.ndarray) and x.dtype in cuda._REAL

    @contextlib.contextmanager
    def kernels(self):
        self.on = True
        try:
            yield
        finally:
            self.on = False
