"""Host memory: let glibc keep the big blocks a training step frees, for the next step to reuse.

glibc's malloc serves a block above its mmap threshold (which adapts up to 32 MiB) with a fresh
mmap and unmaps it on free. A training step allocates and frees the same arrays of tens of MB
(activations, their gradients, temporaries) every step, so every step pays the kernel's page
faults for them again: in Lightweight GAN's backward at 128 px one 33 MB multiply took 80-150 ms
instead of 4-8 ms (benchmarks/README.md, "The host allocator"). With the mmap threshold at
1 GiB and the heap trimmed only beyond 1 GiB of free top, those blocks come from the heap and
its pages stay mapped: the second step reuses the first one's.

The cost is that the process keeps up to the step's peak of freed memory (measured: peak RSS
+2%). Every minigan command calls keep_freed_memory() once; MINIGAN_KEEP_FREED=0 turns it off.
A library user can call it too; it is a no-op off glibc.
"""
import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3     # mallopt's parameter numbers (malloc.h)
LIMIT = 1 << 30                                   # 1 GiB: blocks above it are still mmapped
_applied = None                                   # the outcome of the first call


def _libc():
    """glibc as ctypes sees it (the process's own symbols: no library search at start-up), or
    None off glibc (musl, macOS, Windows)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


def keep_freed_memory():
    """Raise glibc's mmap and trim thresholds to LIMIT, once; True when they are set."""
    global _applied
    if _applied is None:
        libc = None if os.environ.get("MINIGAN_KEEP_FREED", "1") == "0" else _libc()
        # mallopt returns 1 on success; setting M_MMAP_THRESHOLD also ends glibc's adaptation
        _applied = libc is not None and all(libc.mallopt(p, LIMIT) == 1
                                      for p in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD))
    return _applied
