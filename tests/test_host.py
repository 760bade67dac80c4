"""minigan.host: after keep_freed_memory() a big NumPy array comes from glibc's heap, not from a
fresh mmap; MINIGAN_KEEP_FREED=0 leaves malloc alone; every command sets it."""
import os
import platform
import subprocess
import sys

import pytest

from helpers import run

# where a 64 MB array's memory came from: glibc's mallinfo2 counts mmapped bytes (hblkhd) apart
# from the heap (arena); run in a child, since the setting is process-wide
PROBE = """
import ctypes, sys, numpy
from minigan import host
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
def mapped_mb():
    a = numpy.ones(16 << 20, numpy.float32)
    return libc.mallinfo2().hblkhd >> 20
before = mapped_mb()
applied = host.keep_freed_memory()
print(before, applied, mapped_mb(), mapped_mb(), host.keep_freed_memory())
"""


def _probe(env=None):
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, check=True).stdout.split()
    return int(out[0]), out[1] == "True", int(out[2]), int(out[3]), out[4] == "True"


glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or
                           platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_big_arrays_come_from_the_heap_once_set():
    before, applied, after, again, second_call = _probe()
    assert before >= 64                          # glibc's default: the 64 MB block was mmapped
    assert applied and second_call
    assert after < 64 and again < 64             # now from the heap, twice (the pages reused)


@glibc
def test_minigan_keep_freed_0_leaves_malloc_alone():
    before, applied, after, _, _ = _probe({"MINIGAN_KEEP_FREED": "0"})
    assert not applied and before >= 64 and after >= 64


def test_every_command_sets_it(monkeypatch):
    from minigan import host
    calls = []
    monkeypatch.setattr(host, "keep_freed_memory", lambda: calls.append(1))
    code, _ = run("fid", "--real", "no-such-folder", "--fake", "no-such-folder")
    assert code != 0 and calls == [1]            # before the subcommand reads its arguments
