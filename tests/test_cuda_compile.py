"""Tier 1: every kernels/*.cu compiles for both dtypes, and the package finds its kernels both in
a checkout and in an installed wheel.

The compiler is NVRTC, the one cupy.RawModule uses at run time, with minigan.cuda's options:
through CuPy when it imports, else straight from libnvrtc (the nvidia-cuda-nvrtc wheel that
.ci/run installs, or a CUDA toolkit); else `nvcc -ptx`; else the test skips and says why.
"""
import ctypes
import glob
import os
import shutil
import subprocess
import sys
import sysconfig

import numpy
import pytest

from cuda_host import kernels_of
from minigan import cuda

ARCH = "compute_75"         # the oldest architecture CUDA 13 compiles for
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _libnvrtc():
    """libnvrtc loaded by ctypes, or None."""
    roots = [sysconfig.get_paths()["purelib"], os.environ.get("CUDA_PATH", "/usr/local/cuda")]
    patterns = ["nvidia/cu*/lib/libnvrtc.so.*", "nvidia/cuda_nvrtc/lib/libnvrtc.so.*",
                "lib64/libnvrtc.so*"]
    for path in sorted(p for r in roots for pat in patterns for p in glob.glob(f"{r}/{pat}")):
        if "builtins" not in path:
            try:
                return ctypes.CDLL(path)
            except OSError:
                pass
    return None


def _nvrtc_ctypes(lib, source, name, options):
    """PTX of source by libnvrtc's C API; raises with NVRTC's log."""
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None,
                                  None) == 0
    opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
    try:
        if lib.nvrtcCompileProgram(prog, len(options), opts) != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            raise AssertionError(f"NVRTC: {name} does not compile:\n{log.value.decode()}")
        size = ctypes.c_size_t()
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(prog, ptx)
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _nvrtc_cupy(source, name, options):
    """PTX of source by CuPy's NVRTC binding; raises with NVRTC's log."""
    from cupy.cuda import nvrtc
    prog = nvrtc.createProgram(source, name, [], [])
    try:
        nvrtc.compileProgram(prog, options)
        ptx = nvrtc.getPTX(prog)
        return ptx.decode() if isinstance(ptx, bytes) else ptx
    except nvrtc.NVRTCError as e:
        raise AssertionError(f"NVRTC: {name} does not compile ({e}):\n"
                             f"{nvrtc.getProgramLog(prog)}") from None
    finally:
        nvrtc.destroyProgram(prog)


def _nvcc(source, name, options, tmp):
    cu = os.path.join(tmp, name)
    with open(cu, "w", encoding="utf-8") as f:
        f.write(source)
    ptx = cu[:-3] + ".ptx"
    r = subprocess.run([shutil.which("nvcc"), "-ptx", f"-arch={ARCH}", *options, cu, "-o", ptx],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"nvcc: {name} does not compile:\n{r.stderr}"
    with open(ptx, encoding="utf-8") as f:
        return f.read()


def _compiler():
    """(label, compile(source, name, options, tmp) -> PTX), or skip with the reasons."""
    reasons = []
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
        return "NVRTC (CuPy)", lambda s, n, o, tmp: _nvrtc_cupy(s, n, o + [f"-arch={ARCH}"])
    except Exception as e:      # ImportError, or no libnvrtc for CuPy to load
        reasons.append(f"CuPy's NVRTC: {type(e).__name__}: {e}")
    lib = _libnvrtc()
    if lib is not None:
        return "NVRTC", lambda s, n, o, tmp: _nvrtc_ctypes(lib, s, n, o + [f"-arch={ARCH}"])
    reasons.append("no libnvrtc (pip install nvidia-cuda-nvrtc)")
    if shutil.which("nvcc"):
        return "nvcc", _nvcc
    reasons.append("no nvcc on PATH")
    pytest.skip("no CUDA compiler: " + "; ".join(reasons))


@pytest.fixture(scope="module")
def compiler():
    label, fn = _compiler()
    print(f"compiling kernels/*.cu with {label}")
    return fn


@pytest.mark.parametrize("family", cuda.families())
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_kernel_file_compiles(compiler, family, dtype, tmp_path):
    with open(cuda.source_path(family), encoding="utf-8") as f:
        source = f.read()
    ptx = compiler(source, f"{family}.cu", list(cuda.compile_options(dtype)), str(tmp_path))
    names = [name for name, _ in kernels_of(source)]
    assert names, f"{family}.cu declares no extern \"C\" __global__ kernel"
    for name in names:      # extern "C": the entry points keep their names, for get_function
        assert f".entry {name}(" in ptx, f"{family}.cu: no entry point {name} in the PTX"


def test_kernels_are_found_in_an_installed_wheel(tmp_path):
    # build from a copy: a build in the checkout would leave build/ and egg-info behind
    src, wheel_dir, target = tmp_path / "src", tmp_path / "wheel", tmp_path / "site"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("minigan", "kernels"):
        shutil.copytree(os.path.join(ROOT, d), src / d, ignore=skip)
    for f in ("setup.py", "README.md"):
        shutil.copy(os.path.join(ROOT, f), src / f)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(wheel_dir)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    wheel, = wheel_dir.glob("minigan-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                              "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    probe = ("import minigan.cuda as c, os; print(c.kernel_dir()); "
             "print(','.join(c.families())); print(len(open(c.source_path('conv')).read()))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                       cwd=tmp_path)            # not the checkout: only the wheel is importable
    assert r.returncode == 0, r.stderr
    folder, families, size = r.stdout.split()
    assert folder == os.path.join(str(target), "minigan", "kernels")
    assert families.split(",") == cuda.families()
    assert int(size) == os.path.getsize(cuda.source_path("conv"))
