"""Save and load Links, optimizers and trainer state in HDF5 files whose groups mirror the tree.

    save_hdf5("snapshot.h5", {"gen": G, "opt_gen": opt, "iteration": 100})
    # /gen/enc/c0/W, /gen/enc/bn/avg_mean, /opt_gen/t, /opt_gen/enc/c0/W/m, /iteration
    state = load_hdf5("snapshot.h5", {"gen": G, "opt_gen": opt, "iteration": None})

Links and optimizers are loaded in place, into their existing arrays and on their device; a
plain value in a target dict (a number, string, array, tuple such as numpy's random state) is a
placeholder that load_hdf5 replaces with the file's value. Loading is strict and all or nothing:
every key of the file and the target must match, with equal shapes, else one SerializationError
lists the missing, extra and mis-shaped keys and the target is left as it was.

Saving writes a temporary file next to the destination and renames it into place, so a crash
during a save leaves the previous file intact.
"""
import os
import secrets

import h5py
import numpy

from . import backend
from .links.link import Link
from .optimizers import Optimizer

_KIND = "minigan_kind"      # attribute: how to rebuild a plain value ('int', 'tuple', ...)
_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}
_BUILD = {"bool": bool, "int": int, "float": float, "str": str}


class SerializationError(ValueError):
    """A file that does not fit the object it is loaded into, or cannot be read."""


class _Slot:
    """One value of the target: how to read it for saving and where a loaded value goes."""

    def __init__(self, get, put, shape=None):
        self.get, self.put, self.shape = get, put, shape     # shape None: any value fits


def _array_slot(array):
    """A slot for an existing array: loaded values are copied into it, on its device."""
    def put(value):
        value = numpy.asarray(value, dtype=array.dtype)
        if backend.is_cupy_array(array):
            xp = backend.get_array_module(array)
            with array.device:
                array[...] = xp.asarray(value)
        else:
            array[...] = value
    return _Slot(lambda: array, put, tuple(array.shape))


def _scalar_slot(link, name, value):
    return _Slot(lambda: value, lambda x: setattr(link, name, type(value)(x)))


def _slots(obj, prefix, out):
    """Fill out[path] with the slots of a Link, an Optimizer or a dict of them and plain values."""
    if isinstance(obj, Link):
        for path, p in obj.namedparams():
            out[prefix + path] = _array_slot(p.array)
        for link_path, link in obj.namedlinks():
            for name in link._persistent:
                value = getattr(link, name)
                if backend.is_array(value):
                    out[f"{prefix}{link_path}/{name}"] = _array_slot(value)
                else:   # a scalar such as BN's counter: replaced, keeping its type
                    out[f"{prefix}{link_path}/{name}"] = _scalar_slot(link, name, value)
    elif isinstance(obj, Optimizer):
        for key, value in obj.state_dict().items():
            if key == "t":
                out[prefix + "/t"] = _Slot(lambda: obj.t, lambda x: setattr(obj, "t", int(x)))
            else:
                out[f"{prefix}/{key.lstrip('/')}"] = _array_slot(value)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str) or not key or "/" in key:
                raise TypeError(f"serializers: dict keys must be names without '/', got {key!r}")
            if isinstance(value, (Link, Optimizer, dict)):
                _slots(value, f"{prefix}/{key}", out)
            else:
                out[f"{prefix}/{key}"] = _Slot(lambda v=value: v,
                                               lambda x, key=key: obj.__setitem__(key, x))
    else:
        raise TypeError(f"serializers: cannot save or load a {type(obj).__name__} (a Link, an "
                        "Optimizer or a dict of them and plain values)")
    return out


# -- writing ---------------------------------------------------------------------------------

def _write(group, name, value):
    """Write one value: an array as a dataset, a scalar or string as a tagged 0-d dataset, a
    tuple or list as a tagged group of its items '0', '1', ..., None as a tagged empty group."""
    if value is None:
        group.create_group(name).attrs[_KIND] = "none"
    elif isinstance(value, (tuple, list)):
        sub = group.create_group(name)
        sub.attrs[_KIND] = type(value).__name__
        for i, item in enumerate(value):
            _write(sub, str(i), item)
    elif type(value) in _SCALARS:
        group.create_dataset(name, data=value).attrs[_KIND] = _SCALARS[type(value)]
    elif isinstance(value, (numpy.ndarray, numpy.generic)) or backend.is_cupy_array(value):
        group.create_dataset(name, data=backend.to_cpu(value))
    else:
        raise TypeError(f"serializers: cannot write {name!r} of type {type(value).__name__}")


def temp_path(path):
    """A new empty file beside `path`, '.NAME.PID.RANDOM.tmp': created as any new file is
    (0666 less the umask, which the rename keeps), and named by the process writing it, so a
    later run can tell a crashed writer's leftovers from a live one's."""
    folder, name = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


def save_hdf5(path, obj):
    """Write a Link, an Optimizer, or a dict of them and plain values to `path`, atomically."""
    slots = _slots(obj, "", {})
    tmp = temp_path(path)
    try:
        with h5py.File(tmp, "w") as f:
            for key, slot in slots.items():
                parent, _, name = key.rpartition("/")
                _write(f.require_group(parent or "/"), name, slot.get())
        with open(tmp, "rb+") as fh:    # on disk before the rename makes it the snapshot
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# -- reading ---------------------------------------------------------------------------------

def _read(node):
    """A value written by _write, back in its Python form."""
    kind = node.attrs.get(_KIND)
    if isinstance(node, h5py.Group):
        if kind == "none":
            return None
        items = [_read(node[str(i)]) for i in range(len(node))]
        return tuple(items) if kind == "tuple" else items
    if kind == "str":
        return node.asstr()[()]
    if kind in _BUILD:
        return _BUILD[kind](node[()])
    return node[()]


def _leaves(group, prefix, out):
    """out[path] = h5 node for every value in the file (a tagged group is one value)."""
    for name, node in group.items():
        path = f"{prefix}/{name}"
        if isinstance(node, h5py.Group) and _KIND not in node.attrs:
            _leaves(node, path, out)
        else:
            out[path] = node
    return out


def _shape(node):
    return tuple(node.shape) if isinstance(node, h5py.Dataset) else None


def load_hdf5(path, obj, prefix=""):
    """Load `path` into a Link, an Optimizer or a dict (see the module docstring); returns obj.

    prefix: load only that group of the file (e.g. '/models/gen' of a trainer snapshot).
    Raises SerializationError if the file is unreadable or does not match obj; obj is then
    unchanged.
    """
    slots = _slots(obj, "", {})
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such snapshot file")
    try:    # read everything before touching obj: a bad file then changes nothing
        with h5py.File(path, "r") as f:
            if prefix and prefix not in f:
                raise KeyError(f"no group {prefix}")
            nodes = _leaves(f[prefix] if prefix else f, "", {})
            missing = [k for k in slots if k not in nodes]
            extra = [k for k in nodes if k not in slots]
            shaped = [(k, slots[k].shape, _shape(nodes[k])) for k in slots if k in nodes
                      and slots[k].shape is not None and slots[k].shape != _shape(nodes[k])]
            values = {} if missing or extra or shaped else {k: _read(nodes[k]) for k in slots}
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as e:
        raise SerializationError(f"{path} is not a readable HDF5 snapshot (truncated or "
                                 f"corrupt?): {e}") from None
    if missing or extra or shaped:
        lines = [f"{path} does not match the object it is loaded into:"]
        if missing:
            lines.append("  missing in the file: " + ", ".join(missing))
        if extra:
            lines.append("  not in the object: " + ", ".join(extra))
        for k, want, got in shaped:
            lines.append(f"  {k}: shape {got} in the file, {want} in the object")
        raise SerializationError("\n".join(lines))
    for key, slot in slots.items():
        slot.put(values[key])
    return obj
