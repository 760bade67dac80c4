"""Where the PyTorch references live, and loading one without touching sys.path.

The references (torch_pix2pix.py, torch_dcgan.py, ...) are the team's shared benchmark scripts:
`--torch-ref DIR`, else $MINIGAN_TORCH_REF, else shared/bench inside the repository (a copy
that travels with a working tree, ignored by git) or ../shared/bench beside it. Benchmarks import
minigan as installed (`pip install -e .`, or PYTHONPATH=. on a machine without the install).
"""
import importlib.util
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANDIDATES = (os.path.join(REPO, "shared", "bench"), os.path.join(REPO, "..", "shared", "bench"))


def torch_ref_dir(given=None, needs="torch_pix2pix.py"):
    """The first folder holding `needs`: the one given, $MINIGAN_TORCH_REF, then the defaults."""
    for d in (given, os.environ.get("MINIGAN_TORCH_REF"), *CANDIDATES):
        if d and os.path.isfile(os.path.join(d, needs)):
            return os.path.normpath(d)
    return None


def shared_dir(*parts):
    """A path under the shared folder beside (or inside) the repository: data/facades, ..."""
    for base in (os.path.join(REPO, "shared"), os.path.join(REPO, "..", "shared")):
        if os.path.isdir(base):
            return os.path.normpath(os.path.join(base, *parts))
    return os.path.normpath(os.path.join(REPO, "..", "shared", *parts))


def _module_at(name, path):
    """The module in the file at path, registered as sys.modules[name] before it runs."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(name, ref_dir):
    """Module `name` (e.g. 'torch_pix2pix') from ref_dir, with its sibling `common` helper
    registered first (the references import it by name)."""
    common = os.path.join(ref_dir, "common.py")
    if os.path.isfile(common):
        _module_at("common", common)
    return _module_at(name, os.path.join(ref_dir, name + ".py"))


def tests_module(name):
    """tests/NAME.py (the PyTorch twins live beside the tests), loaded by its path."""
    return _module_at(name, os.path.join(REPO, "tests", name + ".py"))


def add_malloc_flag(ap):
    """--malloc-default: measure with glibc's own mmap thresholds (see host_memory)."""
    ap.add_argument("--malloc-default", action="store_true",
                    help="leave glibc's mmap threshold alone (minigan's commands raise it)")


def host_memory(args):
    """Keep freed big blocks mapped, as every minigan command does (minigan/host.py), unless
    --malloc-default; a line saying which. The setting is the process's: the PyTorch side in
    the same process gets it too, so a ratio compares like with like."""
    from minigan import host
    on = not args.malloc_default and host.keep_freed_memory()
    return ("host allocator: freed blocks kept mapped for this whole process (minigan.host)"
            if on else "host allocator: glibc's defaults (--malloc-default)")


def machine():
    """A line naming the CPU and the kernels NumPy's OpenBLAS runs on it. An environment that
    pins OPENBLAS_CORETYPE (some machines here set Haswell, for older OpenBLAS builds) halves
    minigan's GEMM rate on an AVX-512 CPU and leaves PyTorch's alone: the line says so."""
    from minigan.functions import blas
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        pass
    line = f"CPU: {model}, {os.cpu_count()} logical; OpenBLAS kernels: {blas.corename() or 'none'}"
    pinned = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
              if k in os.environ]
    if pinned:
        line += f" (pinned by {', '.join(pinned)}: unset to let OpenBLAS choose)"
    return line


SETTLE_S = 0.3


def alternate(steps, reps, block=1, settle=SETTLE_S, warm=0):
    """{name: [seconds of each step]}: the steps (name -> callable) in turn, `block` timed
    calls each, until each has `reps`. Before each switch the machine idles `settle` seconds:
    a framework's idle worker threads spin before they sleep (OpenBLAS's for ~2^28 cycles after
    a GEMM, OpenMP's teams for their spin count), and on 2 cores a spinner left by one step
    took a core from the other's (PyTorch's DCGAN step ran 0.069 s right after minigan's,
    0.027 s on its own). `warm` untimed calls then wake the side's threads and caches, as the
    previous step of a training loop would have (worth it for steps of milliseconds)."""
    times = {name: [] for name in steps}
    while any(len(t) < reps for t in times.values()):
        for name, fn in steps.items():
            time.sleep(settle)
            for _ in range(warm):
                fn()
            for _ in range(min(block, reps - len(times[name]))):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return times
