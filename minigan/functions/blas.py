"""C = alpha A B + beta C on strided 2-D views, by the BLAS that NumPy itself loaded (ctypes).

numpy.matmul cannot accumulate into its output (beta = 1) and copies a view whose rows are
further apart than BLAS's leading dimension allows for it. The window convolutions
(conv_windows.py, space_to_depth.py) need both: GEMMs summed into one output, each reading a
window of one image buffer. On Linux with the OpenBLAS that NumPy's wheels ship (symbols
scipy_cblas_sgemm64_ and the like) this module calls cblas_?gemm on those views directly, in
the same library and thread pool as NumPy's products.
Elsewhere available() is False and the convolutions keep their im2col form.
"""
import ctypes
import functools
import os

import numpy

from .. import backend

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# (symbol prefix, suffix) of an OpenBLAS build: NumPy's wheels' "scipy_" ... "64_", a plain one
_NAMES = (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", ""))
_gemm = None        # {dtype: cblas function}, {} when there is none, None before the search


def _loaded_blas():
    """Paths of the OpenBLAS libraries mapped into this process (NumPy's among them)."""
    try:        # NumPy's extension module links its BLAS: mapped since `import numpy`
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return []
    # NumPy's own copy first (its wheels keep it in numpy.libs): the same thread pool as its ops
    home = os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))
    return sorted((p for p in paths if os.path.isfile(p)),
                  key=lambda p: (not p.startswith(os.path.join(home, "numpy")), p))


@functools.lru_cache(maxsize=None)
def _library():
    """(ctypes library, symbol prefix, suffix) of the loaded OpenBLAS, or None; searched once."""
    for path in _loaded_blas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in _NAMES:
            if hasattr(lib, f"{prefix}openblas_get_config{suffix}") and all(
                    hasattr(lib, f"{prefix}cblas_{ch}gemm{suffix}") for ch in "sd"):
                return lib, prefix, suffix
    return None


def _symbol(name, restype=None, argtypes=()):
    """The OpenBLAS function openblas_NAME / cblas_NAME with its C signature."""
    lib, prefix, suffix = _library()
    fn = getattr(lib, f"{prefix}{name}{suffix}")
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


def corename():
    """The kernels OpenBLAS chose for this CPU ("Haswell", "SkylakeX", ...), or None when no
    OpenBLAS is loaded. The benchmarks print it: OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU
    halves every GEMM here."""
    if _library() is None:
        return None
    name = _symbol("openblas_get_corename", ctypes.c_char_p)()
    return name.decode() if name else None


def _find():
    """{float32: sgemm, float64: dgemm} from the loaded OpenBLAS, or {}. The integer width comes
    from the library's own build line (USE64BITINT), never from a guess."""
    if _library() is None:
        return {}
    config = _symbol("openblas_get_config", ctypes.c_char_p)()
    i = ctypes.c_int64 if b"USE64BITINT" in (config or b"") else ctypes.c_int
    p = ctypes.c_void_p
    fns = {}
    for dt, ch, real in ((numpy.float32, "s", ctypes.c_float),
                         (numpy.float64, "d", ctypes.c_double)):
        fns[numpy.dtype(dt)] = _symbol(f"cblas_{ch}gemm", None,
                                       [i, i, i, i, i, i, real, p, i, p, i, real, p, i])
    return fns


def available():
    """True when gemm() may run: an OpenBLAS with cblas ?gemm is loaded (searched once) and
    MINIGAN_BLAS is not "0" (read on every call, so a benchmark can switch it)."""
    return os.environ.get("MINIGAN_BLAS", "1") != "0" and bool(_functions())


def takes(*arrays):
    """True where gemm() may run on these arrays: available(), plain NumPy float32/64."""
    return all(backend.is_host_float(a) for a in arrays) and available()


def _functions():
    """{dtype: cblas ?gemm}, searched for once."""
    global _gemm
    if _gemm is None:
        _gemm = _find()
    return _gemm


def _layout(a):
    """(transpose flag, leading dimension) under which BLAS reads the 2-D view a in place."""
    it = a.itemsize
    s0, s1 = a.strides
    rows, cols = a.shape
    # the stride of a length-1 axis is never read (NumPy leaves it arbitrary, 0 in a broadcast
    # view that it still calls contiguous): there any leading dimension >= the other side will do
    if s1 == it or cols == 1:
        ld = max(cols, 1) if rows == 1 else s0 // it
        if rows == 1 or (s0 % it == 0 and ld >= max(cols, 1)):
            return _NO_TRANS, ld
    if s0 == it or rows == 1:
        ld = max(rows, 1) if cols == 1 else s1 // it
        if cols == 1 or (s1 % it == 0 and ld >= max(rows, 1)):
            return _TRANS, ld
    return None


def gemm(a, b, c, beta=0.0, alpha=1.0):
    """c = alpha a @ b + beta c for 2-D float32/float64 views of one dtype; c's rows unit-stride.

    A view BLAS cannot read in place is copied first; c is written in place."""
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or c.shape != (m, n) or not (a.dtype == b.dtype == c.dtype):
        raise ValueError(f"gemm: {a.dtype}{a.shape} @ {b.dtype}{b.shape} -> {c.dtype}{c.shape}")
    if m == 0 or n == 0:
        return c
    if c.strides[1] != c.itemsize or c.strides[0] < n * c.itemsize or not c.flags.writeable:
        raise ValueError("gemm: c must be a writeable view with unit-stride rows")
    if k == 0:                  # as BLAS: beta = 0 ignores c (NaN there included)
        c[...] = 0 if beta == 0 else c * beta
        return c
    fn = _functions().get(c.dtype)
    if fn is None:
        raise RuntimeError("gemm: no OpenBLAS with cblas is loaded in this process "
                           f"(or no ?gemm for {c.dtype})")
    layouts = []
    for v in (a, b):
        lay = _layout(v)
        if lay is None:
            v = numpy.ascontiguousarray(v)
            lay = _layout(v)
        layouts.append((v, lay))
    (a, (ta, lda)), (b, (tb, ldb)) = layouts
    fn(_ROW_MAJOR, ta, tb, m, n, k, alpha, a.ctypes.data, lda, b.ctypes.data, ldb, beta,
       c.ctypes.data, c.strides[0] // c.itemsize)
    return c
