"""Read PyTorch state-dict files (.pth) as NumPy arrays without torch, and without running code.

A .pth file is a pickle, and unpickling resolves any `module.name` the file names and may call
it (`os.system` included). This reader resolves only what a state dict needs: dict containers
(collections.OrderedDict), the two tensor rebuilders (torch._utils._rebuild_tensor_v2 and
_rebuild_parameter) and the typed storage names (torch.FloatStorage, ...). Each rebuilder is a
method of this reader that checks its arguments; a tensor becomes an array only after its view
(offset, size, stride) is proven to lie inside its storage. Anything else raises UnsafePickleError
naming the refused global, before it is called.

Both layouts torch.save writes:
  zip (torch >= 1.6, the default): NAME/data.pkl is the pickle; storage KEY is the raw bytes of
      NAME/data/KEY; a persistent id is ('storage', storage_type, KEY, location, numel);
      NAME/byteorder says 'little' or 'big'.
  legacy (_use_new_zipfile_serialization=False): five pickles in a row (magic number, protocol
      version, sys info, the object with persistent ids ('storage', storage_type, KEY, location,
      numel, view_metadata), the list of storage keys), then, for each key in that order, an
      8-byte little-endian element count and the storage's raw bytes.
"""
import collections
import io
import pickle
import zipfile

import numpy

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C   # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001                  # torch.serialization.PROTOCOL_VERSION

# torch's typed storages and the dtypes of their elements ('<' : stored little-endian)
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "HalfStorage": "<f2", "DoubleStorage": "<f8", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?", "BFloat16Storage": "<u2",
}


class WeightFileError(ValueError):
    """A weight file that cannot be read: truncated, malformed, or not a state dict."""


class UnsafePickleError(WeightFileError):
    """A weight file whose pickle names a global outside the state-dict allow-list."""


class _Frozen:
    """Attributes set once: a pickle's BUILD opcode cannot change a checked object afterwards."""
    __slots__ = ()

    def __init__(self, **values):
        for k, v in values.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name, value):
        raise WeightFileError(f"a weight file tried to set {type(self).__name__}.{name}")


class _StorageType(_Frozen):
    """What `torch.FloatStorage` etc. resolve to: a name with a dtype, nothing callable."""
    __slots__ = ("name",)
    dtype = property(lambda self: numpy.dtype(STORAGE_DTYPES[self.name]))


class _Storage(_Frozen):
    """A storage named by a persistent id; its bytes are read after the pickle."""
    __slots__ = ("key", "type", "numel")
    dtype = property(lambda self: self.type.dtype)


class _TensorRef(_Frozen):
    """A tensor as a view of a storage, turned into an array after the storages are read."""
    __slots__ = ("storage", "offset", "size", "stride")


def _ints(v, what, name):
    if not isinstance(v, tuple) or not all(type(i) is int and i >= 0 for i in v):
        raise WeightFileError(f"{name}: tensor {what} must be a tuple of non-negative ints, "
                              f"got {v!r}")
    return v


class _Unpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only the allow-list above (see the module docstring)."""

    def __init__(self, file, name, legacy):
        super().__init__(file)
        self.name, self.legacy = name, legacy
        self.storages = {}                  # key -> _Storage (shared storages come once)

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return self._rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name=name)
        raise UnsafePickleError(
            f"{self.name}: refused to load the global {module}.{name}: a state dict needs only "
            "tensors and dicts, so this file may try to run code; it was not loaded")

    def persistent_load(self, pid):
        n = 6 if self.legacy else 5     # legacy ids carry view_metadata too
        if not (isinstance(pid, tuple) and len(pid) == n and pid[0] == "storage"):
            raise WeightFileError(f"{self.name}: unexpected persistent id {pid!r} (a saved "
                                  "module or another object than a state dict?)")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or \
                type(numel) is not int or numel < 0:
            raise WeightFileError(f"{self.name}: malformed storage id {pid!r}")
        if self.legacy and pid[5] is not None:
            raise WeightFileError(f"{self.name}: storage views (files of torch < 0.4) are not "
                                  "supported")
        old = self.storages.get(key)
        if old is None:
            old = self.storages[key] = _Storage(key=key, type=storage_type, numel=numel)
        elif (old.dtype, old.numel) != (storage_type.dtype, numel):
            raise WeightFileError(f"{self.name}: storage {key} is named with two types or sizes")
        return old

    def _rebuild_tensor(self, storage, offset, size, stride, *_):
        """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)."""
        if not isinstance(storage, _Storage) or type(offset) is not int or offset < 0:
            raise WeightFileError(f"{self.name}: malformed tensor ({storage!r}, {offset!r})")
        size, stride = _ints(size, "size", self.name), _ints(stride, "stride", self.name)
        if len(size) != len(stride):
            raise WeightFileError(f"{self.name}: tensor size {size} and stride {stride} differ "
                                  "in length")
        return _TensorRef(storage=storage, offset=offset, size=size, stride=stride)

    def _rebuild_parameter(self, data, requires_grad, *_):
        """torch._utils._rebuild_parameter(data, requires_grad, hooks): the tensor itself."""
        if not isinstance(data, _TensorRef):
            raise WeightFileError(f"{self.name}: a parameter must wrap a tensor")
        return data


def _array(ref, data, name):
    """The tensor's values, copied out of its storage's flat array after a bounds check."""
    st, offset = ref.storage, ref.offset
    size, stride = _ints(ref.size, "size", name), _ints(ref.stride, "stride", name)
    flat = data[st.key]
    if 0 in size:
        return numpy.zeros(size, st.dtype.newbyteorder("="))
    # the view reads elements offset + sum_i k_i stride_i, 0 <= k_i < size_i: all < numel?
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if len(size) != len(stride) or offset < 0 or last >= flat.size:
        raise WeightFileError(f"{name}: a tensor of size {size}, stride {stride} at offset "
                              f"{offset} reads past its storage of {flat.size} elements")
    view = numpy.lib.stride_tricks.as_strided(
        flat[offset:], size, tuple(s * flat.itemsize for s in stride), writeable=False)
    a = numpy.array(view, dtype=view.dtype.newbyteorder("="), order="C")  # native order
    if st.type.name == "BFloat16Storage":       # bfloat16: the top half of a float32
        a = (a.astype(numpy.uint32) << 16).view(numpy.float32)
    return a


def _materialize(obj, data, name, depth=0):
    """obj with every _TensorRef replaced by its array (dicts, lists and tuples walked)."""
    if depth > 64:
        raise WeightFileError(f"{name}: nested too deeply (or a cycle) for a state dict")
    if isinstance(obj, _TensorRef):
        return _array(obj, data, name)
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v, data, name, depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, data, name, depth + 1) for v in obj)
    return obj


def _flat(storage, raw, name, byteorder="little"):
    """The storage's elements as a flat read-only array over raw."""
    nbytes = storage.numel * storage.dtype.itemsize
    if len(raw) != nbytes:
        raise WeightFileError(f"{name}: storage {storage.key} holds {len(raw)} bytes, "
                              f"{nbytes} expected (truncated file?)")
    return numpy.frombuffer(raw, storage.dtype.newbyteorder(">" if byteorder == "big" else "<"))


def _unpickle(unpickler, name):
    try:
        return unpickler.load()
    except WeightFileError:
        raise
    except Exception as e:      # a truncated or garbled pickle raises many kinds
        raise WeightFileError(f"{name}: not a readable state dict ({type(e).__name__}: {e})") \
            from None


def _load_zip(f, name):
    """(object, {key: flat array}) of a zip-format file."""
    with zipfile.ZipFile(f) as z:
        names = set(z.namelist())
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise WeightFileError(f"{name}: a zip without one NAME/data.pkl is not a torch file")
        if z.getinfo(pkl[0]).file_size > 1 << 28:
            raise WeightFileError(f"{name}: a data.pkl of over 256 MB is not a state dict")
        root = pkl[0][:-len("data.pkl")]
        byteorder = "little"
        if root + "byteorder" in names:
            byteorder = z.read(root + "byteorder").decode("ascii", "replace").strip()
        u = _Unpickler(io.BytesIO(z.read(pkl[0])), name, legacy=False)
        obj = _unpickle(u, name)
        data = {}
        for key, st in u.storages.items():
            entry = f"{root}data/{key}"
            if entry not in names:
                raise WeightFileError(f"{name}: storage {entry} is missing from the archive")
            if z.getinfo(entry).file_size != st.numel * st.dtype.itemsize:
                raise WeightFileError(f"{name}: {entry} has the wrong length")
            data[key] = _flat(st, z.read(entry), name, byteorder)
    return obj, data


def _load_legacy(f, name):
    """(object, {key: flat array}) of a legacy-format file."""
    def header():
        return _unpickle(_Unpickler(f, name, legacy=True), name)

    if header() != LEGACY_MAGIC:
        raise WeightFileError(f"{name}: not a torch weight file (no magic number)")
    if header() != LEGACY_PROTOCOL:
        raise WeightFileError(f"{name}: unknown torch legacy protocol version")
    info = header()
    if not isinstance(info, dict) or not info.get("little_endian", True):
        raise WeightFileError(f"{name}: big-endian legacy files are not supported")
    u = _Unpickler(f, name, legacy=True)
    obj = _unpickle(u, name)
    keys = header()
    if not isinstance(keys, list) or set(keys) != set(u.storages):
        raise WeightFileError(f"{name}: the storage list does not match the tensors")
    data = {}
    for key in keys:
        st = u.storages[key]
        head = f.read(8)
        if len(head) != 8 or int.from_bytes(head, "little") != st.numel:
            raise WeightFileError(f"{name}: storage {key}: wrong element count (truncated?)")
        data[key] = _flat(st, f.read(st.numel * st.dtype.itemsize), name)
    return obj, data


def load_pth(path):
    """The object torch.save wrote at path, its tensors as NumPy arrays; runs no code from it."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            f = io.BytesIO(fh.read())
    except OSError as e:
        raise WeightFileError(f"cannot read weight file {name}: {e}") from None
    is_zip = zipfile.is_zipfile(f)
    f.seek(0)
    obj, data = _load_zip(f, name) if is_zip else _load_legacy(f, name)
    return _materialize(obj, data, name)


def load_state_dict(path):
    """{name: array} of a .pth state dict; a WeightFileError if the file holds anything else."""
    sd = load_pth(path)
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise WeightFileError(f"{path}: holds a {type(sd).__name__}, not a state dict")
    bad = [k for k, v in sd.items() if not isinstance(v, numpy.ndarray)]
    if bad:
        raise WeightFileError(f"{path}: entry {bad[0]!r} is not a tensor")
    return dict(sd)
