"""The stand-in's functions: each name of CuPy's namespace (namespace.txt) computed by NumPy's
function of the same name, after checking the call against CuPy's parameters and arguments."""
import types

import numpy

from . import array as A
from .array import ndarray, unwrap, wrap
from .namespace import signature_of

# functions that take host data (CuPy copies it to the device); every other one refuses NumPy
# arrays, as CuPy does (cupy.ascontiguousarray(numpy array) is a TypeError)
_FROM_HOST = ("asarray", "array", "asanyarray")


def check_call(path, spec, args, kwargs):
    """Refuse a call CuPy's signature for path would not bind (an unknown keyword, too many
    positional arguments)."""
    sig = signature_of(spec)
    if sig is not None:
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            A.state.refuse(f"cupy.{path}(): {e}")


def _from_host(name):
    np_fn = getattr(numpy, name)

    def fn(a, dtype=None, order=None, *, copy=None, blocking=False, **kw):
        if isinstance(a, ndarray) and a._device_id == A.state.current and copy is not True \
                and (dtype is None or numpy.dtype(dtype) == a.dtype):
            return a                                    # already there: no copy, as CuPy
        if isinstance(a, ndarray):                      # another device: a peer copy
            data = a.view(numpy.ndarray)
        else:
            A.state.transfers[name] += 1
            data = unwrap(a, f"cupy.{name}", host_ok=True)
        kwargs = {} if order is None else {"order": order}
        # always a copy: device memory never aliases the host array it came from
        return numpy.array(data, dtype=dtype, copy=True, **kwargs).view(ndarray)
    fn.__name__ = name
    return fn


def _generic(path, np_fn, spec):
    def fn(*args, **kwargs):
        check_call(path, spec, args, kwargs)
        return wrap(np_fn(*unwrap(args, f"cupy.{path}"), **unwrap(kwargs, f"cupy.{path}")))
    fn.__name__ = path.rsplit(".", 1)[-1]
    return fn


class Ufunc:
    """cupy.NAME for a ufunc: call and the methods CuPy's ufunc has (reduce, at, ...)."""

    _KWARGS = {"out", "dtype", "casting"}        # what cupy.ufunc.__call__ takes

    def __init__(self, np_ufunc, detail):
        self.np, self.__name__ = np_ufunc, np_ufunc.__name__
        nin, nout, methods = (detail.split() + [""])[:3]
        self.nin, self.nout, self.methods = int(nin), int(nout), methods.split(",")

    def __call__(self, *args, **kwargs):
        unknown = set(kwargs) - self._KWARGS
        if unknown:
            A.state.refuse(f"cupy.{self.__name__}(): CuPy's ufuncs take no {sorted(unknown)}")
        return self._run("__call__", args, kwargs)

    def _run(self, method, args, kwargs):
        where = f"cupy.{self.__name__}" + ("" if method == "__call__" else f".{method}")
        out = kwargs.pop("out", None)
        plain = unwrap(args, where)
        if out is not None:
            kwargs["out"] = unwrap(out if isinstance(out, tuple) else (out,), where)
        result = getattr(self.np, method)(*plain, **kwargs)
        if method == "at":
            return None
        if out is not None:
            return out
        return wrap(result)

    def __getattr__(self, method):
        if method not in ("reduce", "accumulate", "at", "outer", "reduceat"):
            raise AttributeError(method)
        if method not in self.methods:
            A.state.refuse(f"cupy.{self.__name__}.{method}: CuPy's ufunc has no {method}",
                           AttributeError)
        return lambda *args, **kwargs: self._run(method, args, kwargs)


class RandomState:
    """cupy.random.RandomState: a NumPy generator whose draws land on the current device."""

    def __init__(self, seed=None, method=None):
        self._rs = numpy.random.RandomState(seed)

    def seed(self, seed=None):
        self._rs.seed(seed)

    def __getattr__(self, name):
        if name.startswith("_") or A.namespace.get(f"random.{name}", ("",))[0] != "function":
            raise AttributeError(f"cupy.random.RandomState has no {name}")
        return _draw(name, lambda: self._rs)


def _draw(name, generator):
    """A random function: NumPy's draw of the same name, cast to `dtype` (CuPy's draws take
    one, NumPy's mostly not), on the current device."""
    def fn(*args, dtype=None, **kwargs):
        out = getattr(generator(), name)(*unwrap(args, f"cupy.random.{name}"), **kwargs)
        out = numpy.asarray(out) if dtype is None else numpy.asarray(out).astype(dtype)
        return out.view(ndarray)
    fn.__name__ = name
    return fn


def random_module(host_random):
    """cupy.random. Each device has its own generator, seeded by cupy.random.seed; with
    host_random, draws come from NumPy's global stream instead (and seed() is ignored), so a
    run "on the GPU" draws the dropout masks the CPU run draws and the two can be compared."""
    generators = {}

    def current():
        if host_random:
            return numpy.random.mtrand._rand
        return generators.setdefault(A.state.current, numpy.random.RandomState(0))

    def seed(seed=None):
        if not host_random:
            generators[A.state.current] = numpy.random.RandomState(seed)

    mod = types.ModuleType("cupy.random")
    for path, (kind, detail) in A.namespace.items():
        if path.startswith("random.") and kind == "function":
            name = path.split(".", 1)[1]
            if hasattr(numpy.random.RandomState, name):
                setattr(mod, name, _checked(path, detail, _draw(name, current)))
    mod.seed, mod.RandomState = _checked("random.seed", "seed=", seed), RandomState
    return mod


def _checked(path, spec, fn):
    def call(*args, **kwargs):
        check_call(path, spec, args, kwargs)
        return fn(*args, **kwargs)
    call.__name__ = fn.__name__
    return call


def fill(mod):
    """Put CuPy's names (namespace.txt) that NumPy also has into the module `mod`."""
    linalg = types.ModuleType("cupy.linalg")
    for path, (kind, detail) in A.namespace.items():
        if path.startswith("random."):
            continue
        target, np_mod, name = (linalg, numpy.linalg, path[7:]) if path.startswith("linalg.") \
            else (mod, numpy, path)
        obj = getattr(np_mod, name, None)
        if obj is None:
            continue
        if kind == "ufunc" and isinstance(obj, numpy.ufunc):
            value = Ufunc(obj, detail)
        elif kind == "function" and callable(obj):
            value = _from_host(name) if name in _FROM_HOST and target is mod else \
                _generic(path, obj, detail)
            A._implementations[path] = value
        elif kind in ("type", "constant"):
            value = obj
        else:
            continue
        setattr(target, name, value)
    mod.linalg, mod.ndarray = linalg, ndarray
    mod.asnumpy = lambda a, stream=None, order="C", out=None, blocking=True: \
        a.get() if isinstance(a, ndarray) else numpy.asarray(a)
    mod.get_array_module = lambda *args: mod if any(
        isinstance(getattr(a, "array", a), ndarray) for a in args) else numpy
    return mod
