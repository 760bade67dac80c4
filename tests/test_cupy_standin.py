"""The CuPy stand-in itself: it refuses what CuPy refuses and counts what syncs, and every CuPy
name minigan uses exists, with parameters that fit its calls, in CuPy's namespace (read from the
installed cupy where it imports, else from the checked-in namespace.txt)."""
import ast
import os

import numpy
import pytest

import cupy_standin
from cupy_standin import namespace
from minigan import backend, cuda

MINIGAN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "minigan")


@pytest.fixture
def cp(monkeypatch):
    return cupy_standin.install(monkeypatch, n_devices=2)


def refused(fn, match, error=TypeError):
    with pytest.raises(error, match=match):
        fn()


def test_refuses_what_cupy_refuses(cp):
    a, host = cp.arange(6.0), numpy.ones(6)
    refused(lambda: a + host, "NumPy array .* mixed with device arrays")
    refused(lambda: host * a, "NumPy array")
    refused(lambda: cp.maximum(a, host), "NumPy array")
    refused(lambda: cp.ascontiguousarray(host), "NumPy array")    # only asarray/array copy in
    refused(lambda: numpy.asarray(a), "Implicit conversion to a NumPy array is not allowed")
    refused(lambda: numpy.array([a, a]), "Implicit conversion")
    refused(lambda: cp.zeros(3, dtype="f", like=a), "unexpected keyword argument 'like'")
    refused(lambda: numpy.vecdot(a, a), "CuPy has no vecdot")     # cupy 14.2 lacks it
    assert not hasattr(cp, "vecdot") and hasattr(cp, "vdot")
    refused(lambda: a.ctypes, "has no ctypes", AttributeError)
    with cp.cuda.Device(1):
        b = cp.ones(6)
        refused(lambda: a + b, "device 0 used while device 1 is current", ValueError)
    refused(lambda: b * 2, "device 1 used while device 0", ValueError)
    assert len(cp.state.incompatibilities) == 11


def test_device_arrays_stay_device_arrays(cp):
    a = cp.asarray(numpy.arange(6.0).reshape(2, 3))
    assert cp.state.transfers == {"asarray": 1} and a.device.id == 0
    for b in (a.sum(), a[0, 1], a.mean(axis=0), a.T @ a, cp.where(a > 2, a, 0.0), list(a)[0],
              numpy.concatenate([a, a]), a.astype(numpy.float32), a.reshape(-1)[2:]):
        assert isinstance(b, cp.ndarray) and b.device.id == 0
    assert cp.state.numpy_calls == {"concatenate": 1}     # CuPy dispatches it; counted
    assert cp.state.total_syncs == 0
    host = numpy.zeros(3)
    assert cp.asarray(host) is not host and cp.asarray(a) is a


def test_host_syncs_are_counted(cp):
    a = cp.arange(4.0)
    float(a.sum()), int(a[1]), bool(a[0] == 0), a[1].item(), a.tolist(), a.get()
    _ = a[a > 1]                                    # the mask's count comes back to the host
    assert cp.state.syncs == {"float": 1, "int": 1, "bool": 1, "item": 1, "tolist": 1,
                              "get": 1, "boolean index": 1}
    assert isinstance(a.get(), numpy.ndarray) and type(a.get()) is numpy.ndarray


def test_kernels_run_on_the_host_and_refuse_host_arguments(cp):
    x = cp.asarray(numpy.linspace(-1, 1, 50))
    n = numpy.int64(x.size)                         # leaky_relu_forward(x, y, long long n, REAL)
    launch = lambda *args: cuda.launch("activation", "leaky_relu_forward", x.dtype, 2, 32, args)
    y = cp.empty_like(x)
    refused(lambda: launch(x, y, n, 0.2), "Python float; CuPy passes it as a 64-bit value")
    refused(lambda: launch(x, y, int(n), numpy.float64(0.2)), "Python int")
    refused(lambda: launch(x, numpy.empty(50), n, numpy.float64(0.2)), "NumPy array")
    refused(lambda: launch(x, y, numpy.int32(n), numpy.float64(0.2)), "needs a int64")
    launch(x, y, n, numpy.float64(0.2))
    want = numpy.where(x.get() > 0, x.get(), 0.2 * x.get())
    numpy.testing.assert_array_equal(y.get(), want)
    assert cp.state.launches == {"leaky_relu_forward": 2}   # the int32 and the good one
    kernel0 = cuda.function("activation", "leaky_relu_forward", x.dtype)
    with cp.cuda.Device(1):                         # device 0's kernel, launched on device 1
        x1, y1 = cp.zeros(4), cp.zeros(4)
        refused(lambda: kernel0((1,), (32,), (x1, y1, numpy.int64(4), numpy.float64(0.2))),
                "compiled for device 0", ValueError)
        assert cuda.function("activation", "leaky_relu_forward", x.dtype) is not kernel0


def test_backend_sees_the_stand_in_as_cupy(cp):
    dev = backend.Device(1)
    a = dev.send(numpy.ones(3, numpy.float32))
    assert backend.is_cupy_array(a) and backend.device_of(a) == 1
    assert backend.get_array_module(a) is cp and cuda.enabled(a)
    assert type(backend.to_cpu(a)) is numpy.ndarray and cp.state.syncs == {"get": 1}


# -- the names minigan uses ----------------------------------------------------------------------

def _module_expr(node):
    """True for an expression that is an array module: xp, cupy, _xp(x), get_array_module(x),
    something.xp."""
    if isinstance(node, ast.Name):
        return node.id in ("xp", "cupy", "_cupy")
    if isinstance(node, ast.Call):
        f = node.func
        return getattr(f, "id", getattr(f, "attr", None)) in ("_xp", "get_array_module")
    return isinstance(node, ast.Attribute) and node.attr in ("xp", "_cupy")


def cupy_uses():
    """{dotted name: [(file:line, positional count or None, keywords)]} of minigan's calls and
    attribute reads on an array module."""
    found = {}
    for root, _, files in os.walk(MINIGAN):
        for f in (f for f in files if f.endswith(".py")):
            path = os.path.join(root, f)
            tree = ast.parse(open(path, encoding="utf-8").read())
            calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
            for node in ast.walk(tree):
                chain, n = [], node
                while isinstance(n, ast.Attribute) and not _module_expr(n):
                    chain.append(n.attr)
                    n = n.value
                if not chain or not _module_expr(n) or \
                        isinstance(getattr(node, "ctx", None), ast.Store):
                    continue
                name = ".".join(reversed(chain))
                if any(name != k and k.startswith(name + ".") for k in found):
                    continue
                call = calls.get(id(node))
                npos = None if call is None or any(isinstance(a, ast.Starred) for a in call.args) \
                    else len(call.args)
                kws = [k.arg for k in call.keywords if k.arg] if call is not None else []
                where = f"{os.path.relpath(path, MINIGAN)}:{node.lineno}"
                found.setdefault(name, []).append((where, npos, kws))
    # 'random' is read as part of 'random.seed': keep the longest chains only
    return {k: v for k, v in found.items() if not any(o.startswith(k + ".") for o in found)}


def test_every_cupy_name_minigan_uses_exists_with_fitting_parameters(cp):
    uses, names = cupy_uses(), namespace.load()
    assert {"asarray", "matmul", "random.seed", "cuda.Device", "RawModule"} <= set(uses)
    missing, misfits = [], []
    for name, sites in sorted(uses.items()):
        obj = cp
        for part in name.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(f"{name} ({sites[0][0]})")
            continue
        if name.split(".")[0] in ("cuda", "RawModule", "ndarray", "__name__"):
            continue                                # CuPy's own; not in NumPy's namespace
        if name.rsplit(".", 1)[-1] in ("reduce", "accumulate", "at", "outer", "reduceat"):
            ufunc, method = name.rsplit(".", 1)     # xp.add.at: a method of CuPy's ufunc
            if names.get(ufunc, ("",))[0] != "ufunc" or method not in names[ufunc][1]:
                missing.append(f"{name} ({sites[0][0]}): CuPy's {ufunc} has no {method}")
            continue
        if name not in names:
            missing.append(f"{name} ({sites[0][0]}): not in CuPy's namespace")
            continue
        sig = namespace.signature_of(names[name][1]) if names[name][0] == "function" else None
        for where, npos, kws in sites:
            if sig is not None and npos is not None:
                try:
                    sig.bind(*range(npos), **dict.fromkeys(kws))
                except TypeError as e:
                    misfits.append(f"{where}: cupy.{name}: {e}")
    # vecdot sits behind hasattr(xp, 'vecdot'): CuPy 14.2 lacks it, the NumPy path runs
    assert [m for m in missing if not m.startswith("vecdot")] == [] and misfits == []


def test_namespace_txt_is_the_installed_cupys():
    cupy = pytest.importorskip("cupy", reason="cupy is not installed: namespace.txt unchecked")
    with open(namespace.PATH, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if not line.startswith("#") and line.strip()]
    current = namespace.from_cupy(cupy)
    assert set(lines) <= set(current), \
        f"names or parameters changed in cupy {cupy.__version__}: run python -m " \
        f"cupy_standin.namespace in tests/: {sorted(set(lines) - set(current))[:5]}"
    for name in cupy_uses():                        # cupy.cuda.* and RawModule too
        obj = cupy
        for part in name.split("."):
            obj = getattr(obj, part, None)
        assert obj is not None or name == "vecdot", f"cupy {cupy.__version__} has no {name}"
