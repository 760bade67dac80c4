"""The stand-in's ndarray: NumPy memory labelled with a device, under CuPy's rules.

Every ufunc and NumPy function that meets a stand-in array comes through __array_ufunc__ /
__array_function__, which refuse what CuPy refuses: a NumPy array mixed in, an array of another
device than the current one, a function CuPy lacks. Conversions to host values that CuPy allows
(float(), .item(), .get(), a boolean mask's size) are counted as host syncs.
"""
import collections

import numpy

# numpy.ndarray attributes CuPy's ndarray lacks (read from cupy 14.2): using one is refused
_NUMPY_ONLY = ("getfield", "setfield", "setflags", "resize", "ctypes", "to_device")
_SCALARS = (numpy.generic, int, float, complex, bool, type(None), slice, type(Ellipsis), str,
            numpy.dtype, type)


class CUDARuntimeError(RuntimeError):
    """As cupy_backends.cuda.api.runtime.CUDARuntimeError."""


class Incompatible(TypeError):
    """What CuPy would refuse (its own errors are TypeError or ValueError)."""


class State:
    """One install of the stand-in: devices, host syncs, transfers, incompatibilities."""

    def __init__(self, n_devices=2, strict=True):
        self.n_devices, self.current, self.strict = n_devices, 0, strict
        self.syncs = collections.Counter()          # device -> host waits, by kind
        self.transfers = collections.Counter()      # host -> device copies, by kind
        self.numpy_calls = collections.Counter()    # numpy.NAME(device array): CuPy dispatches
        self.launches = collections.Counter()       # raw kernel launches, by name
        self.incompatibilities = []

    def refuse(self, message, error=Incompatible):
        """Record what CuPy would refuse; raise it unless the install is lenient."""
        self.incompatibilities.append(message)
        if self.strict:
            raise error(f"cupy stand-in: {message}")

    def sync(self, kind):
        self.syncs[kind] += 1

    @property
    def total_syncs(self):
        return sum(self.syncs.values())


state = State()         # replaced by install(); module-level so every array finds it
namespace = {}          # path -> (kind, detail) of CuPy's names (namespace.txt)


class Device:
    """cupy.cuda.Device(id): `with` makes it current, use() too; Device() is the current one;
    ndarray.device returns one, as CuPy's."""

    def __init__(self, device=None):
        self.id = state.current if device is None else int(getattr(device, "id", device))
        self._previous = []

    def _check(self):
        if not 0 <= self.id < state.n_devices:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    def use(self):
        self._check()
        state.current = self.id

    def __enter__(self):
        self._check()
        self._previous.append(state.current)
        state.current = self.id
        return self

    def __exit__(self, *exc):
        state.current = self._previous.pop()

    def synchronize(self):
        state.sync("synchronize")

    def __eq__(self, other):
        return getattr(other, "id", None) == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def unwrap(x, where, host_ok=False):
    """x with stand-in arrays as plain NumPy views (in lists, tuples and dicts too), after
    checking each is on the current device; NumPy arrays are refused unless host_ok."""
    if isinstance(x, ndarray):
        if x._device_id != state.current:
            state.refuse(f"{where}: an array on device {x._device_id} used while device "
                         f"{state.current} is current", ValueError)
        return x.view(numpy.ndarray)
    if isinstance(x, numpy.ndarray):
        if not host_ok:
            state.refuse(f"{where}: a NumPy array {x.dtype}{list(x.shape)} mixed with device "
                         "arrays (CuPy: Unsupported type <class 'numpy.ndarray'>)")
        return x
    if isinstance(x, (list, tuple)):
        return type(x)(unwrap(a, where, host_ok) for a in x)
    if isinstance(x, dict):
        return {k: unwrap(v, where, host_ok) for k, v in x.items()}
    return x


def wrap(x):
    """NumPy results as stand-in arrays on the current device; scalars become 0-d arrays, as
    CuPy's functions return."""
    if isinstance(x, ndarray):
        return x
    if isinstance(x, numpy.ndarray):
        return x.view(ndarray)
    if isinstance(x, numpy.generic):
        return numpy.asarray(x).view(ndarray)
    if isinstance(x, tuple):
        return tuple(wrap(a) for a in x)
    if isinstance(x, list):
        return [wrap(a) for a in x]
    return x


def holds_device_array(x):
    if isinstance(x, ndarray):
        return True
    return isinstance(x, (list, tuple)) and any(holds_device_array(a) for a in x)


class ndarray(numpy.ndarray):
    """A device array: NumPy memory plus the id of the device it lives on."""

    def __array_finalize__(self, obj):
        # a view keeps its base's device; a new array lives on the current device
        self._device_id = getattr(obj, "_device_id", state.current)

    @property
    def device(self):
        return Device(self._device_id)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        where = f"{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        entry = namespace.get(ufunc.__name__)
        if entry is None:
            state.refuse(f"{where}: CuPy has no {ufunc.__name__}")
        elif entry[0] == "ufunc" and method != "__call__" and method not in entry[1]:
            state.refuse(f"{where}: CuPy's {ufunc.__name__} has no method {method}")
        plain = unwrap(inputs, where)
        if out is not None:
            kwargs["out"] = unwrap(out, where)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if method == "at":
            return None
        if out is not None:
            return out[0] if len(out) == 1 else out
        return wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        module = func.__module__ or "numpy"
        prefix = "".join(f"{p}." for p in module.split(".")[1:] if p in ("random", "linalg"))
        path = prefix + func.__name__
        impl = _implementation(path)
        if impl is None:
            state.refuse(f"numpy.{path} on a device array: CuPy has no {path}")
            return func._implementation(*unwrap(args, path), **unwrap(kwargs, path))
        # works on CuPy too (its __array_function__ dispatches to cupy.NAME), but it is numpy
        # code meeting device arrays: counted, so a test can ask for xp.NAME instead
        state.numpy_calls[path] += 1
        return impl(*args, **kwargs)

    # -- conversions to the host: allowed where CuPy allows them, each a counted sync ---------
    def __array__(self, *args, **kwargs):
        state.refuse("Implicit conversion to a NumPy array is not allowed. Please use `.get()` "
                     "to construct a NumPy array explicitly.")
        return self.view(numpy.ndarray)

    def get(self, stream=None, order="C", out=None, blocking=True):
        state.sync("get")
        return numpy.array(self.view(numpy.ndarray), order=order)

    def set(self, arr, stream=None):
        if isinstance(arr, ndarray):
            state.refuse("ndarray.set takes a NumPy array, not a device array")
        state.transfers["set"] += 1
        self.view(numpy.ndarray)[...] = arr

    def _host(self, kind):
        state.sync(kind)
        return self.view(numpy.ndarray)

    def __float__(self):
        return float(self._host("float"))

    def __int__(self):
        return int(self._host("int"))

    def __complex__(self):
        return complex(self._host("complex"))

    def __bool__(self):
        return bool(self._host("bool"))

    def __index__(self):
        state.refuse("operator.index(device array): CuPy arrays are not indexes")
        return self._host("index").__index__()

    def item(self, *args):
        return self._host("item").item(*args)

    def tolist(self):
        return self._host("tolist").tolist()

    def tobytes(self, order="C"):
        return self._host("tobytes").tobytes(order)

    def __repr__(self):
        return f"{self._host('repr')!r} on device {self._device_id}"

    def __str__(self):
        return str(self._host("str"))

    def __format__(self, spec):
        return format(self._host("format")[()] if self.ndim == 0 else self._host("format"), spec)

    # -- indexing: 0-d arrays, never host scalars; a boolean mask syncs (its size) -------------
    def __getitem__(self, key):
        key = self._key(key)
        return wrap(super().__getitem__(key))

    def __setitem__(self, key, value):
        key = self._key(key)
        super().__setitem__(key, unwrap(value, "__setitem__"))

    def _key(self, key):
        if isinstance(key, ndarray) and key.dtype == bool:
            state.sync("boolean index")     # CuPy counts the True entries on the host
        if isinstance(key, numpy.ndarray) and not isinstance(key, ndarray) or \
                isinstance(key, tuple) and any(type(k) is numpy.ndarray for k in key):
            state.transfers["index"] += 1   # CuPy copies host index arrays to the device
            return unwrap(key, "__getitem__", host_ok=True)
        return unwrap(key, "__getitem__")

    def __iter__(self):
        # CuPy yields 0-d (or smaller) device arrays, not host scalars
        return (self[i] for i in range(len(self)))


def _numpy_only(name):
    def refused(self):
        state.refuse(f"ndarray.{name}: CuPy's ndarray has no {name}", AttributeError)
        return getattr(self.view(numpy.ndarray), name)
    return property(refused)


for _name in _NUMPY_ONLY:
    setattr(ndarray, _name, _numpy_only(_name))

_implementations = {}   # path -> the stand-in module's function, filled by the module


def _implementation(path):
    return _implementations.get(path)
